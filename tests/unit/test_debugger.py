"""km's side of the gdb stub (kontain.monitor.debugger) over a process without KVM
(tests/unit/harness.py): breakpoints poked into read-only text and shadowed in reads,
writes refused outside the guest's private mappings, registers read and written where
the thread resumes, and the #BP/#DB traps it takes or leaves to the payload."""

from __future__ import annotations

import _socket

import pytest
from harness import make_process, make_thread

from kontain.linux.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE
from kontain.machine.cpu import RFLAGS_TF
from kontain.monitor import debugger as dbg
from kontain.monitor.thread import INTERRUPTED

TEXT, DATA = 0x40_0000, 0x60_0000


@pytest.fixture
def setup():
    proc = make_process()
    thread = make_thread(proc)
    proc.mm.mmap(TEXT, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.mm.write(TEXT, bytes(range(64)))
    proc.mm.mprotect(TEXT, 0x1000, PROT_READ)  # text: read-only to the payload
    proc.mm.mmap(DATA, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    debugger = dbg.Debugger(proc, sock, "/")
    debugger.attached = True
    yield proc, thread, debugger
    debugger._listener.close()


def test_breakpoints_in_read_only_text_are_poked_and_hidden(setup):
    proc, _, debugger = setup
    assert debugger.set_breakpoint(0, TEXT + 4, 1, True)
    assert proc.mm.read(TEXT + 4, 1) == b"\xcc"
    assert debugger.read_memory(TEXT, 8) == bytes(range(8))  # gdb sees the original
    assert debugger.write_memory(TEXT + 3, b"\xaa\xbb")  # a debugger may write text
    assert proc.mm.read(TEXT + 3, 2) == b"\xaa\xcc"  # the breakpoint stays in place
    assert debugger.set_breakpoint(0, TEXT + 4, 1, False)
    assert proc.mm.read(TEXT + 3, 2) == b"\xaa\xbb"  # and what it hid was updated


@pytest.mark.parametrize("address", [0, 0x1000, 0xFFFF_FF80_0000_0000, 1 << 47, -1])
def test_nothing_outside_the_guest_mappings(setup, address):
    _, _, debugger = setup
    assert debugger.read_memory(address, 8) == b""
    assert not debugger.write_memory(address, b"\xcc")
    assert not debugger.set_breakpoint(0, address, 1, True)


def test_reads_go_as_far_as_the_mapping(setup):
    _, _, debugger = setup
    assert len(debugger.read_memory(DATA + 0xFF8, 64)) == 8


def test_hardware_breakpoints_and_read_watchpoints_are_not_supported(setup):
    _, _, debugger = setup
    assert debugger.set_breakpoint(1, TEXT, 1, True) is None
    assert debugger.set_breakpoint(3, DATA, 4, True) is None
    assert debugger.set_breakpoint(4, DATA, 4, True) is None
    assert debugger.set_breakpoint(2, DATA, 4, True) is True
    assert debugger.set_breakpoint(2, DATA, 16, True) is False  # 1 to 8 bytes


def test_registers_where_the_thread_resumes(setup):
    _, thread, debugger = setup
    thread.regs.rax, thread.regs.rip, thread.regs.rsp, thread.regs.rflags = 5, TEXT, DATA, 0x202
    thread.enter_context(INTERRUPTED)
    regs = debugger.read_registers(thread.tid)
    assert int.from_bytes(regs["rax"], "little") == 5
    assert int.from_bytes(regs["rip"], "little") == TEXT
    assert regs["cs"] == (0x33).to_bytes(4, "little") and regs["orig_rax"] == b"\xff" * 8
    assert debugger.write_registers(thread.tid, {"rip": (TEXT + 2).to_bytes(8, "little"),
                                                 "rbx": (7).to_bytes(8, "little")})
    assert thread.user_context()[0] == TEXT + 2 and thread.regs.rbx == 7
    assert debugger.read_registers(12345) == {}


def test_a_breakpoint_hit_rewinds_and_a_foreign_int3_is_the_payloads(setup, monkeypatch):
    _, thread, debugger = setup
    stops = []
    monkeypatch.setattr(debugger, "_stop", lambda t, event: stops.append(event))
    debugger.set_breakpoint(0, TEXT + 4, 1, True)
    thread.regs.rip, thread.regs.rsp, thread.regs.rflags = TEXT + 5, DATA, 0x202
    thread.enter_context(INTERRUPTED)
    assert debugger.trap(thread, dbg.BREAKPOINT)
    assert thread.user_context()[0] == TEXT + 4 and stops[-1].reason == "swbreak"
    thread.regs.rip = TEXT + 9
    thread.enter_context(INTERRUPTED)
    assert not debugger.trap(thread, dbg.BREAKPOINT)  # not one of gdb's: SIGTRAP
    assert not debugger.trap(thread, dbg.DEBUG)  # nobody is stepping: the payload's TF


def test_a_step_stops_and_takes_tf_off(setup, monkeypatch):
    _, thread, debugger = setup
    stops = []
    monkeypatch.setattr(debugger, "_stop", lambda t, event: stops.append(event))
    thread.regs.rip, thread.regs.rsp, thread.regs.rflags = TEXT, DATA, 0x202 | RFLAGS_TF
    thread.enter_context(INTERRUPTED)
    debugger._gdb_step.add(thread.tid)
    assert debugger.trap(thread, dbg.DEBUG)
    assert stops[-1].signo == 5 and not thread.user_context()[2] & RFLAGS_TF


def test_a_watched_write_stops_the_stepping_thread(setup, monkeypatch):
    proc, thread, debugger = setup
    stops = []
    monkeypatch.setattr(debugger, "_stop", lambda t, event: stops.append(event))
    debugger.set_breakpoint(2, DATA + 8, 4, True)
    debugger._km_step.add(thread.tid)
    thread.regs.rip, thread.regs.rsp, thread.regs.rflags = TEXT, DATA, 0x202 | RFLAGS_TF
    thread.enter_context(INTERRUPTED)
    assert debugger.trap(thread, dbg.DEBUG) and not stops  # nothing changed: steps on
    assert thread.user_context()[2] & RFLAGS_TF
    proc.mm.write(DATA + 10, b"\x01")
    assert debugger.trap(thread, dbg.DEBUG)
    assert stops[-1].reason == "watch" and stops[-1].address == DATA + 8


def test_tag_word_and_listen_addresses():
    assert dbg._full_tag_word(0) == 0xFFFF and dbg._full_tag_word(0xFF) == 0
    assert dbg.port_argument("") == ("127.0.0.1", 2159)
    assert dbg.port_argument("7") == ("127.0.0.1", 7)


def test_a_step_over_a_syscall_ends_at_an_int3_after_it(setup, monkeypatch):
    proc, thread, debugger = setup
    stops = []
    monkeypatch.setattr(debugger, "_stop", lambda t, event: stops.append(event))
    debugger.write_memory(TEXT + 16, b"\x0f\x05")
    thread.regs.rip, thread.regs.rsp, thread.regs.rflags = TEXT + 16, DATA, 0x202
    thread.enter_context(INTERRUPTED)
    debugger.resume({thread.tid: ("s", 0)}, None)
    assert proc.mm.read(TEXT + 18, 1) == b"\xcc"  # no TF: an int3 after the syscall
    assert not thread.user_context()[2] & RFLAGS_TF
    assert debugger.read_memory(TEXT + 18, 1) == bytes([18])  # hidden from gdb
    thread.regs.rip = TEXT + 19  # the syscall was made, the int3 hit
    thread.enter_context(INTERRUPTED)
    assert debugger.trap(thread, dbg.BREAKPOINT)
    assert stops[-1].signo == 5 and stops[-1].reason == ""  # a step's end
    assert thread.user_context()[0] == TEXT + 18
    assert proc.mm.read(TEXT + 18, 1) == bytes([18]) and not debugger._temporary


def test_another_thread_at_the_int3_goes_on_once_its_stepper_is_gone(setup):
    proc, thread, debugger = setup
    other = make_thread(proc)
    other.tid = thread.tid + 1
    proc.group.threads[other.tid] = other
    debugger.write_memory(TEXT + 16, b"\x0f\x05")
    debugger._step_over_syscall(thread.tid, TEXT + 18)
    proc.group.threads.pop(thread.tid)  # the stepper exited in its system call
    other.regs.rip, other.regs.rsp, other.regs.rflags = TEXT + 19, DATA, 0x202
    other.enter_context(INTERRUPTED)
    assert debugger.trap(other, dbg.BREAKPOINT)
    assert other.user_context()[0] == TEXT + 18  # runs the original instruction
    assert proc.mm.read(TEXT + 18, 1) == bytes([18]) and not debugger._syscall_steps


class SparseMemory:
    """Guest memory for svr4_library_list: what is not written does not read (b"")."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def put(self, address: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.bytes[address + i] = b

    def words(self, address: int, *values: int) -> None:
        self.put(address, b"".join(v.to_bytes(8, "little") for v in values))

    def read(self, address: int, length: int) -> bytes:
        out = bytes(self.bytes.get(a, -1) & 0xFF for a in range(address, address + length))
        if any(a not in self.bytes for a in range(address, address + length)):
            return b""
        return out


def _phdr(kind: int, vaddr: int) -> bytes:
    return kind.to_bytes(4, "little") + bytes(12) + vaddr.to_bytes(8, "little") + bytes(32)


def _dynamic_process(memory: SparseMemory, r_debug: int) -> bytes:
    """A PIE loaded at 0x10000 (PT_PHDR at 0x40): PT_DYNAMIC at 0x100, DT_DEBUG there."""
    memory.put(0x10040, _phdr(dbg.PT_PHDR, 0x40) + _phdr(dbg.PT_DYNAMIC, 0x100))
    memory.words(0x10100, 1, 0x10, dbg.DT_DEBUG, r_debug, 0, 0)  # DT_NEEDED, DT_DEBUG, DT_NULL
    return b"".join(v.to_bytes(8, "little") for v in (dbg.AT_PHDR, 0x10040, dbg.AT_PHNUM, 2,
                                                      0, 0))


def test_svr4_library_list_from_r_debug_and_a_hostile_link_map():
    import xml.etree.ElementTree as ET
    memory = SparseMemory()
    auxv = _dynamic_process(memory, 0x20000)
    memory.words(0x20000, 1, 0x30000)  # r_version 1, r_map
    memory.put(0x40000, b"/lib/a<&\".so".ljust(0x100, b"\0"))  # (names read in pieces)
    # the program, a library, one whose name does not read, then a cycle back
    memory.words(0x30000, 0x0, 0x40100, 0x10200, 0x30100)
    memory.words(0x30100, 0x7000, 0x40000, 0x7100, 0x30200)
    memory.words(0x30200, 0x8000, 0xDEAD_0000_0000, 0x8100, 0x30000)
    memory.put(0x40100, bytes(0x100))
    root = ET.fromstring(dbg.svr4_library_list(memory.read, auxv))
    assert root.tag == "library-list-svr4" and root.get("main-lm") == "0x30000"
    libraries = [(e.get("name"), e.get("lm"), e.get("l_addr"), e.get("l_ld"), e.get("lmid"))
                 for e in root.iter("library")]
    assert libraries == [('/lib/a<&".so', "0x30100", "0x7000", "0x7100", "0x20000"),
                         ("", "0x30200", "0x8000", "0x8100", "0x20000")]
    # a link_map pointer that does not read ends the list
    memory.words(0x30100, 0x7000, 0x40000, 0x7100, 0xFFFF_FFFF_FFFF_0000)
    assert len(list(ET.fromstring(dbg.svr4_library_list(memory.read, auxv)))) == 1


def test_svr4_library_list_before_ld_so_and_for_static_programs():
    memory = SparseMemory()
    auxv = _dynamic_process(memory, 0)  # DT_DEBUG not filled in yet
    assert dbg.svr4_library_list(memory.read, auxv) == \
        b'<library-list-svr4 version="1.0"></library-list-svr4>'
    static = SparseMemory()
    static.put(0x10040, _phdr(dbg.PT_PHDR, 0x40))
    assert dbg.svr4_library_list(static.read, auxv) is None
    assert dbg.svr4_library_list(memory.read, b"") is None
    assert dbg.svr4_library_list(memory.read, b"\xff" * 37) is None


def test_svr4_library_list_walks_are_bounded():
    memory = SparseMemory()
    auxv = _dynamic_process(memory, 0x20000)
    memory.words(0x20000, 2, 0x100000, 0, 0, 0, 0x20000)  # r_next: itself
    for i in range(dbg.MAX_LIBRARIES + 50):  # a long chain, every name empty
        memory.words(0x100000 + 32 * i, i, 0, 0, 0x100000 + 32 * (i + 1))
    document = dbg.svr4_library_list(memory.read, auxv)
    assert document.count(b"<library ") == dbg.MAX_LIBRARIES - 1


def test_a_fork_child_takes_the_breakpoints_out_itself(setup):
    proc, _, debugger = setup
    assert debugger.set_breakpoint(0, TEXT + 4, 1, True)
    debugger.child_started()
    assert proc.mm.read(TEXT + 4, 1) == bytes([4]) and not debugger.attached
    assert not debugger.forked_child(5) and not debugger.detach_child(5)
