"""The core file's layout (kontain.monitor.coredump), field by field, without KVM: what
gdb relies on (fs/binfmt_elf.c's layout), the memory that goes in, the holes that stay
holes, the path template. tests/integration/test_coredump.py reads real cores with gdb."""

from __future__ import annotations

import _thread
import os
import struct
from types import SimpleNamespace

from harness import make_process, make_thread

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.monitor import coredump
from kontain.monitor import signals as sig
from kontain.monitor.thread import INTERRUPTED

DATA, RESERVED = 0x2000_0000, 0x3000_0000
PAGE = 4096


def _notes(blob: bytes) -> list[tuple[bytes, int, bytes]]:
    out, at = [], 0
    while at < len(blob):
        namesz, descsz, kind = struct.unpack_from("<III", blob, at)
        at += 12
        name = blob[at:at + namesz - 1]
        at += -(-namesz // 4) * 4
        out.append((name, kind, blob[at:at + descsz]))
        at += -(-descsz // 4) * 4
    return out


def _dying_process(tmp_path):
    proc = make_process()
    proc.guest_exe = "/bin/crasher"
    proc.argv = [b"crasher", b"arg"]
    proc.procfs.auxv = struct.pack("<QQQQ", 6, 4096, 0, 0)  # AT_PAGESZ, AT_NULL
    proc.rlimits[coredump.RLIMIT_CORE] = (1 << 64) - 1, (1 << 64) - 1
    thread = make_thread(proc)
    thread.host_ident = _thread.get_ident()
    proc.mm.mmap(DATA, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.mm.mmap(RESERVED, 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.mm.write(DATA + 5 * PAGE, b"marker in page 5")
    regs = thread.regs
    regs.rip, regs.rsp, regs.rflags, regs.rax, regs.r15 = 0x401000, DATA + 8 * PAGE, 0x246, 7, 15
    thread.enter_context(INTERRUPTED)
    thread.trapno, thread.error_code, thread.cr2 = 14, 6, 0  # a write to NULL
    return proc, thread


def test_core_is_an_elf_core_with_notes_first_and_a_load_per_mapping(tmp_path):
    proc, thread = _dying_process(tmp_path)
    path = coredump.dump(proc, sig.SIGSEGV, str(tmp_path / "core.%e.%p"))
    assert path == os.fsencode(tmp_path / f"core.crasher.{proc.pid}")
    image = open(path, "rb").read()
    ident, etype, machine, _v, _entry, phoff, _shoff, _flags, _eh, phentsize, phnum = \
        coredump.EHDR.unpack_from(image)[:11]
    assert ident[:4] == b"\x7fELF" and etype == coredump.ET_CORE and machine == 62
    headers = [coredump.PHDR.unpack_from(image, phoff + i * phentsize) for i in range(phnum)]
    assert headers[0][0] == coredump.PT_NOTE
    assert all(h[0] == coredump.PT_LOAD and h[2] % PAGE == 0 for h in headers[1:])
    loads = {h[3]: h for h in headers[1:]}
    data = loads[DATA]
    assert data[5:7] == (16 * PAGE, 16 * PAGE) and data[1] == coredump.PF_R | coredump.PF_W
    assert image[data[2] + 5 * PAGE:][:16] == b"marker in page 5"
    assert loads[RESERVED][5:7] == (0, 64 * PAGE)  # PROT_NONE: no bytes
    notes = _notes(image[headers[0][2]:headers[0][2] + headers[0][5]])
    assert [(n[0], n[1]) for n in notes] == [
        (b"CORE", coredump.NT_PRSTATUS), (b"CORE", coredump.NT_PRPSINFO),
        (b"CORE", coredump.NT_SIGINFO), (b"CORE", coredump.NT_AUXV),
        (b"CORE", coredump.NT_FILE), (b"CORE", coredump.NT_FPREGSET),
        (b"LINUX", coredump.NT_X86_XSTATE)]
    status = coredump.PRSTATUS.unpack(notes[0][2])
    assert status[0] == status[3] == sig.SIGSEGV and status[6] == thread.tid
    registers = status[18:45]
    assert registers[0] == 15 and registers[10] == 7  # r15, rax
    assert registers[16:20] == (0x401000, 0x33, 0x246, DATA + 8 * PAGE)  # rip cs eflags rsp
    signo, _errno, code, address = struct.unpack_from("<iii4xQ", notes[2][2])
    assert (signo, code, address) == (sig.SIGSEGV, sig.SEGV_MAPERR, 0)
    assert notes[3][2] == proc.procfs.auxv
    psinfo = coredump.PRPSINFO.unpack(notes[1][2])
    assert psinfo[11].rstrip(b"\0") == b"crasher"
    xstate = notes[6][2]
    assert struct.unpack_from("<Q", xstate, 464)[0] == proc.machine.xcr0  # where gdb looks
    assert notes[5][2] == xstate[:512]


def test_untouched_anonymous_pages_are_holes(tmp_path):
    proc, _thread_ = _dying_process(tmp_path)
    proc.mm.mmap(0x4000_0000, 1024 * PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.mm.write(0x4000_0000 + 1000 * PAGE, b"x")
    path = coredump.dump(proc, sig.SIGABRT, str(tmp_path / "core"))
    st = os.stat(path)
    assert st.st_size > 1024 * PAGE
    assert st.st_blocks * 512 < st.st_size // 2  # sparse


def test_no_core_below_a_page_of_rlimit_core(tmp_path):
    proc, _thread_ = _dying_process(tmp_path)
    proc.rlimits[coredump.RLIMIT_CORE] = (PAGE - 1, PAGE - 1)
    assert coredump.dump(proc, sig.SIGSEGV, str(tmp_path / "core")) is None
    assert not os.listdir(tmp_path)


def test_rlimit_core_cuts_the_file(tmp_path):
    proc, _thread_ = _dying_process(tmp_path)
    proc.rlimits[coredump.RLIMIT_CORE] = (3 * PAGE, 3 * PAGE)
    path = coredump.dump(proc, sig.SIGSEGV, str(tmp_path / "core"))
    assert os.stat(path).st_size == 3 * PAGE


def test_rlimit_fsize_cuts_the_file_too(tmp_path):
    proc, _thread_ = _dying_process(tmp_path)
    proc.rlimits[1] = (2 * PAGE, 2 * PAGE)  # RLIMIT_FSIZE (km's host limit is left alone)
    path = coredump.dump(proc, sig.SIGSEGV, str(tmp_path / "core"))
    assert os.stat(path).st_size == 2 * PAGE


def test_core_path_template():
    proc = SimpleNamespace(guest_exe="/usr/bin/py%thon", pid=42)
    assert coredump.core_path(None, proc, 43) == b"core.py_thon.42"
    assert coredump.core_path("/cores/%e.%p.%i.%%.%q", proc, 43) == b"/cores/py_thon.42.43.%.%q"
    assert coredump.core_path("dir/", proc, 43) == b"dir/core.py_thon.42"


def test_private_file_mappings_go_in_when_written_to(tmp_path):
    """Linux's default filter: a private file mapping is dumped whole once written to
    (its own pages: data, relro even after it became read-only), else only the first
    page of one at offset 0 (the ELF header); code and read-only data come from the file."""
    proc, _thread_ = _dying_process(tmp_path)
    library = tmp_path / "lib.so"
    library.write_bytes(b"\x7fELF" + bytes(4 * PAGE - 4))
    fd = os.open(library, os.O_RDONLY)
    base = 0x5000_0000
    fixed = MAP_PRIVATE | MAP_FIXED
    proc.mm.mmap(base, PAGE, PROT_READ, fixed, fd, 0, name=str(library))           # header
    proc.mm.mmap(base + PAGE, PAGE, PROT_READ | PROT_EXEC, fixed, fd, PAGE, name=str(library))
    proc.mm.mmap(base + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE, fixed, fd, 2 * PAGE,
                 name=str(library))                                                # relro
    proc.mm.write(base + 2 * PAGE, b"relocated")
    proc.mm.mprotect(base + 2 * PAGE, PAGE, PROT_READ)
    proc.mm.mmap(base + 3 * PAGE, PAGE, PROT_READ, fixed, fd, 3 * PAGE, name=str(library))
    os.close(fd)
    image = open(coredump.dump(proc, sig.SIGSEGV, str(tmp_path / "core")), "rb").read()
    phoff, phnum = coredump.EHDR.unpack_from(image)[5], coredump.EHDR.unpack_from(image)[10]
    loads = {h[3]: h for h in (coredump.PHDR.unpack_from(image, phoff + i * 56)
                               for i in range(phnum))}
    assert [loads[base + i * PAGE][5] for i in range(4)] == [PAGE, 0, PAGE, 0]
    assert image[loads[base][2]:][:4] == b"\x7fELF"
    assert image[loads[base + 2 * PAGE][2]:][:9] == b"relocated"
    files = next(n[2] for n in _notes(image[loads[0][2]:][:loads[0][5]])
                 if n[1] == coredump.NT_FILE)
    count, page = struct.unpack_from("<QQ", files)
    table = [struct.unpack_from("<QQQ", files, 16 + 24 * i) for i in range(count)]
    assert page == PAGE and table == [(base + i * PAGE, base + (i + 1) * PAGE, i)
                                      for i in range(4)]
    assert files[16 + 24 * count:].split(b"\0")[:4] == [os.fsencode(library)] * 4
