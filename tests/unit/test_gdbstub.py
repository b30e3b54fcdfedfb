"""The gdb remote protocol on packets (kontain.monitor.gdbstub), against a fake target:
framing, escapes, each packet's reply, and malformed input answered, never raised."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kontain.monitor import gdbstub
from kontain.monitor.gdbstub import PacketReader, Session, StopEvent, Target, frame


class FakeTarget(Target):
    pid = 0x42

    def __init__(self, avx: bool = False) -> None:
        self.avx = avx
        self.memory = {0x1000 + i: i & 0xFF for i in range(64)}
        self.regs = {1: {"rax": (7).to_bytes(8, "little"), "rip": (0x1234).to_bytes(8, "little")},
                     2: {}}
        self.resumed: list = []
        self.breakpoints: list = []
        self.passed: set[int] = set()
        self.killed = self.detached = False
        self.forks = {0x99}
        self.children_detached: list[int] = []

    def threads(self) -> list[int]:
        return [1, 2]

    def thread_name(self, tid: int) -> str:
        return f"t<{tid}>"

    def read_registers(self, tid: int) -> dict[str, bytes]:
        return self.regs.get(tid, {})

    def write_registers(self, tid: int, values: dict[str, bytes]) -> bool:
        self.regs.setdefault(tid, {}).update(values)
        return True

    def read_memory(self, address: int, length: int) -> bytes:
        out = bytearray()
        for a in range(address, address + length):
            if a not in self.memory:
                break
            out.append(self.memory[a])
        return bytes(out)

    def write_memory(self, address: int, data: bytes) -> bool:
        if any(a not in self.memory for a in range(address, address + len(data))):
            return False
        for i, b in enumerate(data):
            self.memory[address + i] = b
        return True

    def set_breakpoint(self, kind, address, length, insert):
        if kind in (1, 3, 4):
            return None
        self.breakpoints.append((kind, address, length, insert))
        return address in self.memory

    def resume(self, actions, default) -> None:
        self.resumed.append((actions, default))

    def pass_signals(self, signals) -> None:
        self.passed = signals

    def auxv(self) -> bytes:
        return bytes(range(40))

    def exec_file(self) -> bytes:
        return b"/bin/payload"

    def forked_child(self, pid: int) -> bool:
        return pid in self.forks

    def detach_child(self, pid: int) -> bool:
        self.children_detached.append(pid)
        return pid in self.forks

    def kill(self) -> None:
        self.killed = True

    def detach(self) -> None:
        self.detached = True


@pytest.fixture
def session():
    sent: list[bytes] = []
    s = Session(FakeTarget(), sent.append)
    s.sent = sent
    return s


def test_framing_and_checksum():
    assert frame(b"OK") == b"$OK#9a"
    assert gdbstub.escape(b"a#b$c}d*") == b"a}\x03b}\x04c}]d}\x0a"
    assert gdbstub.unescape(gdbstub.escape(bytes(range(256)))) == bytes(range(256))


def test_reader_splits_packets_acks_interrupts_and_bad_checksums():
    reader = PacketReader()
    events = reader.feed(b"+$qC#b4\x03$g#00-$m1,")
    assert events == [("ack",), ("packet", b"qC"), ("interrupt",), ("bad",), ("nak",)]
    assert reader.feed(b"2#") == []  # split in the middle: waits for the rest
    assert reader.feed(b"fc") == [("packet", b"m1,2")]


def test_reader_drops_an_endless_packet():
    reader = PacketReader(limit=100)
    assert reader.feed(b"$" + b"x" * 200) == []
    assert reader.feed(b"$?#3f") == [("packet", b"?")]


def test_qsupported_and_no_ack_mode(session):
    reply = session.handle(b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386")
    assert b"PacketSize=4000" in reply and b"qXfer:features:read+" in reply
    assert b"QStartNoAckMode+" in reply and b"swbreak+" in reply
    assert session.handle(b"QStartNoAckMode") is None
    assert session.sent[-1] == frame(b"OK") and not session.ack
    session.deliver(("packet", b"qC"))
    assert session.sent[-1] == frame(b"QCp42.1")  # no `+` before it any more


def test_target_xml_is_well_formed_and_matches_the_g_packet():
    for avx in (False, True):
        root = ET.fromstring(gdbstub.target_xml(avx))
        names = [r.get("name") for r in root.iter("reg")]
        assert names == [n for n, _, _ in gdbstub.register_layout(avx)]
        features = [f.get("name") for f in root.iter("feature")]
        assert "org.gnu.gdb.i386.linux" in features and "org.gnu.gdb.i386.segments" in features
        assert ("org.gnu.gdb.i386.avx" in features) == avx
        assert {"fs_base", "gs_base", "orig_rax", "xmm15", "mxcsr"} <= set(names)


def test_xfer_reads_in_pieces(session):
    first = session.handle(b"qXfer:features:read:target.xml:0,40")
    assert first.startswith(b"m") and len(first) == 0x41
    assert session.handle(b"qXfer:auxv:read::0,1000") == b"l" + gdbstub.escape(bytes(range(40)))
    assert session.handle(b"qXfer:auxv:read::10,8") == b"m" + gdbstub.escape(bytes(range(16, 24)))
    assert session.handle(b"qXfer:exec-file:read::0,100") == b"l/bin/payload"
    threads = session.handle(b"qXfer:threads:read::0,1000")
    root = ET.fromstring(gdbstub.unescape(threads[1:]))
    assert [(t.get("id"), t.get("name")) for t in root] == [("1", "t?1?"), ("2", "t?2?")]
    assert session.handle(b"qXfer:features:read:other.xml:0,10") == b"E00"
    # (a static program: an error, and gdb looks for r_debug itself)
    assert session.handle(b"qXfer:libraries-svr4:read::0,10") == b"E01"


def test_registers_g_p_and_writes(session):
    layout = gdbstub.register_layout(False)
    g = session.handle(b"g")
    assert len(g) == 2 * sum(bits // 8 for _, bits, _ in layout)
    assert g.startswith(b"0700000000000000")
    assert b"xx" in g  # unavailable registers
    rip = [n for n, _, _ in layout].index("rip")
    assert session.handle(b"p%x" % rip) == b"3412000000000000"
    assert session.handle(b"P%x=ff00000000000000" % rip) == b"OK"
    assert session.target.regs[1]["rip"] == b"\xff" + b"\0" * 7
    assert session.handle(b"P%x=ff" % rip) == b"E01"  # wrong size
    assert session.handle(b"p999") == b"E01"
    assert session.handle(b"Hg2") == b"OK" and session.current == 2
    assert session.handle(b"Hg99") == b"E01"


def test_memory_m_M_X(session):
    assert session.handle(b"m1000,4") == b"00010203"
    assert session.handle(b"m103e,8") == b"3e3f"  # as far as it is readable
    assert session.handle(b"m0,4") == b"E14"
    assert session.handle(b"M1000,2:aabb") == b"OK" and session.target.memory[0x1001] == 0xBB
    assert session.handle(b"M1000,3:aabb") == b"E01"
    assert session.handle(b"X1000,0:") == b"OK"
    assert session.handle(b"X1000,2:}\x03}\x04") == b"OK"
    assert session.target.memory[0x1000] == ord("#") and session.target.memory[0x1001] == ord("$")
    assert session.handle(b"M0,1:00") == b"E14"


def test_breakpoints_and_unsupported_kinds(session):
    assert session.handle(b"Z0,1000,1") == b"OK"
    assert session.handle(b"z0,1000,1") == b"OK"
    assert session.handle(b"Z0,10,1") == b"E01"
    assert session.handle(b"Z1,1000,1") == b""  # no hardware breakpoints: gdb is told so
    assert session.handle(b"Z2,1000,4") == b"OK"
    assert session.handle(b"Z3,1000,4") == b""


def test_threads_and_stop_replies(session):
    assert session.handle(b"qfThreadInfo") == b"m1,2"
    assert session.handle(b"qsThreadInfo") == b"l"
    assert session.handle(b"T2") == b"OK" and session.handle(b"T9") == b"E01"
    assert session.handle(b"?") == b"T05thread:1;"
    assert session.stop_reply(StopEvent(2, 5, "swbreak")) == b"T05thread:2;swbreak:;"
    assert session.stop_reply(StopEvent(2, 5, "watch", 0x1008)) == b"T05thread:2;watch:1008;"
    assert session.stop_reply(StopEvent(1, 10)) == b"T1ethread:1;"  # SIGUSR1 is gdb's 30
    assert session.stop_reply(StopEvent(1, 7)) == b"T0athread:1;"  # SIGBUS is gdb's 10
    assert session.stop_reply(StopEvent(exit_status=3)) == b"W03"
    assert session.stop_reply(StopEvent(killed_by=11)) == b"X0b"


def test_vcont(session):
    assert session.handle(b"vCont?") == b"vCont;c;C;s;S"
    assert session.handle(b"vCont;s:2;c") is None and session.running
    assert session.target.resumed[-1] == ({2: ("s", 0)}, ("c", 0))
    session.handle(b"vCont;C1e:1")  # gdb's SIGUSR1 is Linux's 10
    assert session.target.resumed[-1] == ({1: ("c", 10)}, None)
    assert session.handle(b"vCont;r1000,2000:1") == b"E01"
    session.handle(b"c")
    assert session.target.resumed[-1] == ({1: ("c", 0)}, ("c", 0))


def test_pass_signals_kill_detach(session):
    assert session.handle(b"QPassSignals:e;14;1e") == b"OK"
    assert session.target.passed == {14, 17, 10}  # ALRM; gdb's 0x14 is CHLD (17); USR1
    assert session.handle(b"D") == b"OK" and session.target.detached and session.closed
    session.closed = False
    assert session.handle(b"k") is None and session.target.killed


@pytest.mark.parametrize("packet", [
    b"m", b"mzz,1", b"m1000", b"Mxx", b"M1000,1:zz", b"G123", b"Gzz", b"Pzz", b"p",
    b"Z", b"Z0", b"Z9,1,1", b"vCont;", b"vCont;q", b"vCont;C", b"QPassSignals:zz", b"Hgzz",
    b"qXfer:features:read:target.xml:zz,1", b"qXfer", b"X1000", b"T", b"C", b"qThreadExtraInfo,",
    bytes(range(256)), b"\xff" * 10, b"$#",
])
def test_malformed_packets_get_an_error_reply_never_an_exception(session, packet):
    session.deliver(("packet", packet))
    assert session.sent[-1].startswith(b"$")  # a reply went out (E01, or empty)
    assert not session.target.killed


def test_listen_addresses():
    assert gdbstub.parse_listen_address("2159") == ("127.0.0.1", 2159)
    assert gdbstub.parse_listen_address("localhost:0") == ("127.0.0.1", 0)
    assert gdbstub.parse_listen_address("/tmp/x.sock") == "/tmp/x.sock"
    with pytest.raises(ValueError):
        gdbstub.parse_listen_address("0.0.0.0:2159")
    with pytest.raises(ValueError):
        gdbstub.parse_listen_address("99999")


def test_command_line_options():
    from kontain.cli.km import parse
    assert parse(["-g", "x"]).gdb == "" and parse(["-g", "x"]).payload == ["x"]
    assert parse(["-g", "1234", "x"]).gdb == "1234"
    assert parse(["-g1234", "x", "5"]).payload == ["x", "5"]
    cl = parse(["--gdb-listen", "x"])
    assert cl.gdb == "" and cl.gdb_listen
    cl = parse(["-g", "77", "--gdb-listen", "x"])
    assert cl.gdb == "77" and cl.gdb_listen
    assert parse(["--gdb-listen=/tmp/s", "x"]).gdb == "/tmp/s"
    assert parse(["x"]).gdb is None


def test_vcont_for_a_thread_that_is_gone_is_an_error(session):
    assert session.handle(b"vCont;s:99") == b"E01" and not session.running
    assert session.target.resumed == []


def test_multiprocess_ids_and_fork_events(session):
    """fork-events are offered only with multiprocess (gdb detaches a fork child with
    D;PID, which needs it); thread ids are then p<pid>.<tid> everywhere."""
    reply = session.handle(b"qSupported:fork-events+;vfork-events+")
    assert b"fork-events" not in reply and b"multiprocess" not in reply
    assert session.handle(b"qfThreadInfo") == b"m1,2"
    reply = session.handle(b"qSupported:multiprocess+;fork-events+;vfork-events+")
    assert b";multiprocess+" in reply and b";fork-events+" in reply
    assert b"vfork-events" not in reply and b"qXfer:libraries-svr4:read+" in reply
    assert session.handle(b"qfThreadInfo") == b"mp42.1,p42.2"
    assert b'id="p42.2"' in session.handle(b"qXfer:threads:read::0,1000")
    assert session.stop_reply(StopEvent(1, 5, "fork", 0x99)) == b"T05fork:p99.99;thread:p42.1;"
    # gdb takes its breakpoints out of the child (done already: the child's km did it
    # itself), then detaches it; nothing else of the child's is served.
    assert session.handle(b"Hgp99.99") == b"OK"
    assert session.handle(b"z0,1000,1") == b"OK" and session.target.breakpoints == []
    assert session.handle(b"m1000,2") == b"0001"  # (a copy of the parent's at the fork)
    assert session.handle(b"M1000,1:ff") == b"E01" and session.handle(b"g") == b"E01"
    assert session.handle(b"Z0,1000,1") == b"E01"
    assert session.handle(b"D;99") == b"OK" and not session.target.detached
    assert session.target.children_detached == [0x99]
    assert session.handle(b"Hgp77.77") == b"E01" and session.handle(b"vKill;77") == b"E01"
    assert session.handle(b"Hgp42.2") == b"OK" and session.handle(b"g")[:2] != b"E0"
    assert session.handle(b"qAttached:42") == b"1"
    assert session.stop_reply(StopEvent(exit_status=3)) == b"W03;process:42"

