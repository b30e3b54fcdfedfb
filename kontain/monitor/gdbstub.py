"""The GDB remote serial protocol, on packets: framing, and what each packet asks of a
debug target.

Pure: no socket, no VM. A Session turns each packet into a reply through a Target
(kontain.monitor.debugger is km's; tests/unit/test_gdbstub.py uses a fake one). The
protocol is gdb's public one ("GDB Remote Serial Protocol" in the gdb manual): packets
`$data#cs` acknowledged with `+`/`-` until QStartNoAckMode, `}` escapes, a bare 0x03 to
interrupt. Everything a client sends is untrusted: a malformed packet gets an error
reply (or the empty reply: not supported), never an exception out of the session.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: Kontain's default port for `km -g`.
DEFAULT_PORT = 2159
#: The largest packet km accepts, and says so in qSupported (PacketSize, in hex there).
PACKET_SIZE = 0x4000
INTERRUPT = 0x03

SIGTRAP, SIGINT, SIGKILL = 5, 2, 9

#: Linux's signal numbers (x86-64) -> gdb's own (the protocol's: gdb/signals.def, in
#: the order `info signals` lists them). They differ from 7 on: SIGBUS is 10 for gdb,
#: SIGUSR1 30, SIGCHLD 20, and the real-time signals are numbered apart.
_TO_GDB = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 10, 8: 8, 9: 9, 10: 30, 11: 11, 12: 31,
           13: 13, 14: 14, 15: 15, 17: 20, 18: 19, 19: 17, 20: 18, 21: 21, 22: 22, 23: 16,
           24: 24, 25: 25, 26: 26, 27: 27, 28: 28, 29: 23, 30: 32, 31: 12, 32: 77, 64: 78}
_TO_GDB.update({n: n + 12 for n in range(33, 64)})  # SIG33..SIG63: 45..75
_FROM_GDB = {g: n for n, g in _TO_GDB.items()}
GDB_SIGNAL_UNKNOWN = 143


def to_gdb_signal(signo: int) -> int:
    """A Linux signal number as the protocol gives it (0 stays 0: no signal)."""
    return _TO_GDB.get(signo, GDB_SIGNAL_UNKNOWN) if signo else 0


def from_gdb_signal(number: int) -> int:
    """gdb's signal number as Linux's (0: none, or one Linux does not have)."""
    return _FROM_GDB.get(number, 0)

# ---- registers: the layout km describes in target.xml and uses for g/G/p/P -----------
#: (name, bits, type, group): the order is gdb's amd64 one, which is also the g packet's.
GENERAL = [(n, 64, "int64") for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")] + [
    ("rbp", 64, "data_ptr"), ("rsp", 64, "data_ptr")] + [
    (f"r{i}", 64, "int64") for i in range(8, 16)] + [
    ("rip", 64, "code_ptr"), ("eflags", 32, "i386_eflags")] + [
    (n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")] + [
    (f"st{i}", 80, "i387_ext") for i in range(8)] + [
    (n, 32, "int") for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff",
                             "fop")]
SSE = [(f"xmm{i}", 128, "vec128") for i in range(16)] + [("mxcsr", 32, "i386_mxcsr")]
LINUX = [("orig_rax", 64, "int")]
SEGMENTS = [("fs_base", 64, "int"), ("gs_base", 64, "int")]
AVX = [(f"ymm{i}h", 128, "uint128") for i in range(16)]


def register_layout(avx: bool) -> list[tuple[str, int, str]]:
    """Every register in g-packet order (AVX's upper halves last, when the CPU has them)."""
    return GENERAL + SSE + LINUX + SEGMENTS + (AVX if avx else [])


_EFLAGS_TYPE = """<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
<field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/></flags>
"""
_SSE_TYPES = """<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>
<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/></union>
<flags id="i386_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
<field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
<field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
<field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
<field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/></flags>
"""


def target_xml(avx: bool) -> bytes:
    """The target description: gdb's amd64-linux features (names and order as gdb's own
    features/i386/64bit-*.xml, which gdb checks by name)."""
    def regs(group: list[tuple[str, int, str]], extra: str = "") -> str:
        return "".join(f'<reg name="{n}" bitsize="{b}" type="{t}"{extra}/>\n'
                       for n, b, t in group)
    fp_control = GENERAL[-8:]
    core = GENERAL[:-8]
    parts = [
        '<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n<target>\n'
        "<architecture>i386:x86-64</architecture>\n<osabi>GNU/Linux</osabi>\n",
        '<feature name="org.gnu.gdb.i386.core">\n', _EFLAGS_TYPE, regs(core),
        regs(fp_control, ' group="float"'), "</feature>\n",
        '<feature name="org.gnu.gdb.i386.sse">\n', _SSE_TYPES, regs(SSE), "</feature>\n",
        '<feature name="org.gnu.gdb.i386.linux">\n', regs(LINUX), "</feature>\n",
        '<feature name="org.gnu.gdb.i386.segments">\n', regs(SEGMENTS), "</feature>\n",
    ]
    if avx:
        parts += ['<feature name="org.gnu.gdb.i386.avx">\n', regs(AVX), "</feature>\n"]
    parts.append("</target>\n")
    return "".join(parts).encode()


# ---- framing --------------------------------------------------------------------------

def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data in a packet: `#`, `$`, `}` and `*` become `}` and the byte ^ 0x20."""
    out = bytearray()
    for b in data:
        if b in (0x23, 0x24, 0x7D, 0x2A):
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x7D and i + 1 < n:
            i += 1
            b = data[i] ^ 0x20
        out.append(b)
        i += 1
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """A packet as sent: payload already escaped where it holds binary data."""
    return b"$" + payload + b"#" + b"%02x" % checksum(payload)


class PacketReader:
    """Bytes from the client in, events out: ("packet", data), ("interrupt",),
    ("ack",), ("nak",), ("bad",) (a packet whose checksum does not match: to be
    answered `-`). Bytes outside packets are skipped; an overlong packet is dropped."""

    def __init__(self, limit: int = PACKET_SIZE * 4) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[tuple]:
        buffer = self._buffer
        buffer += data
        events: list[tuple] = []
        while buffer:
            first = buffer[0]
            if first == 0x24:  # $
                end = buffer.find(b"#")
                if end < 0:
                    if len(buffer) > self._limit:
                        buffer.clear()  # a packet too long to be real: drop it
                    break
                if len(buffer) < end + 3:
                    break
                body = bytes(buffer[1:end])
                given = bytes(buffer[end + 1:end + 3])
                del buffer[:end + 3]
                try:
                    ok = int(given, 16) == checksum(body)
                except ValueError:
                    ok = False
                events.append(("packet", body) if ok else ("bad",))
                continue
            del buffer[:1]
            if first == INTERRUPT:
                events.append(("interrupt",))
            elif first == 0x2B:
                events.append(("ack",))
            elif first == 0x2D:
                events.append(("nak",))
        return events


# ---- the target a session drives --------------------------------------------------------

class StopEvent:
    """Why the target stopped: a thread and a signal (SIGTRAP for breakpoints and steps),
    or the end of the process (exit status, or the signal that killed it)."""

    __slots__ = ("tid", "signo", "reason", "address", "exit_status", "killed_by")

    #: reason "fork": address is the child's pid (its one thread has the same id).

    def __init__(self, tid: int = 0, signo: int = 0, reason: str = "", address: int = 0,
                 exit_status: int | None = None, killed_by: int | None = None) -> None:
        self.tid, self.signo, self.reason, self.address = tid, signo, reason, address
        self.exit_status, self.killed_by = exit_status, killed_by

    def __repr__(self) -> str:
        return (f"StopEvent(tid={self.tid}, signo={self.signo}, reason={self.reason!r}, "
                f"exit={self.exit_status}, killed_by={self.killed_by})")


class Target:
    """What a session needs of the debugged process (all threads stopped between a stop
    reply and the next resume). kontain.monitor.debugger.Debugger is km's."""

    avx = False
    #: The process's pid (multiprocess thread ids are p<pid>.<tid>).
    pid = 0

    def threads(self) -> list[int]:
        raise NotImplementedError

    def thread_name(self, tid: int) -> str:
        return ""

    def read_registers(self, tid: int) -> dict[str, bytes]:
        """Each register's bytes (little-endian, its size); missing ones are unavailable."""
        raise NotImplementedError

    def write_registers(self, tid: int, values: dict[str, bytes]) -> bool:
        raise NotImplementedError

    def read_memory(self, address: int, length: int) -> bytes:
        """As many bytes from address on as can be read (b"": none)."""
        raise NotImplementedError

    def write_memory(self, address: int, data: bytes) -> bool:
        raise NotImplementedError

    def set_breakpoint(self, kind: int, address: int, length: int, insert: bool) -> bool | None:
        """Z/z kind 0-4: True done, False failed, None not supported."""
        raise NotImplementedError

    def resume(self, actions: dict[int, tuple[str, int]], default: tuple[str, int] | None
               ) -> None:
        """Let threads go: per tid ("c" or "s", signal to deliver or 0); default for the
        others (None: they stay stopped)."""
        raise NotImplementedError

    def pass_signals(self, signals: set[int]) -> None:
        """Signals to deliver without stopping (QPassSignals)."""

    def auxv(self) -> bytes:
        return b""

    def exec_file(self) -> bytes:
        return b""

    def libraries_svr4(self) -> bytes | None:
        """The <library-list-svr4> document (None: not available)."""
        return None

    def forked_child(self, pid: int) -> bool:
        """Whether pid is a child whose fork was reported (and not yet detached)."""
        return False

    def detach_child(self, pid: int) -> bool:
        """D;PID of a reported fork child: it runs free (False: no such child)."""
        return False

    def kill(self) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        raise NotImplementedError


# ---- a session ----------------------------------------------------------------------------

def _hex_int(text: bytes) -> int:
    return int(text, 16)


def _thread_id(text: bytes) -> int:
    """A thread id as gdb writes it: hex, -1 (all), 0 (any), or p<pid>.<tid> with
    multiprocess (the pid part: _process_id)."""
    if text == b"-1":
        return -1
    if text.startswith(b"p"):
        text = text.partition(b".")[2] or b"-1"
        return _thread_id(text)
    return _hex_int(text)


def _process_id(text: bytes) -> int:
    """The pid of a p<pid>.<tid> thread id (0: none given, or any; -1: all)."""
    if not text.startswith(b"p"):
        return 0
    pid = text[1:].partition(b".")[0]
    return -1 if pid == b"-1" else _hex_int(pid)


def _xfer_slice(data: bytes, offset: int, length: int) -> bytes:
    chunk = data[offset:offset + length]
    return (b"l" if offset + length >= len(data) else b"m") + escape(chunk)


class Session:
    """One client connection's protocol state. handle() answers one packet; a resume
    packet answers None: the reply is the stop reply, when the target stops
    (stop_reply)."""

    def __init__(self, target: Target, send: Callable[[bytes], None]) -> None:
        self.target = target
        self._send = send
        self.ack = True
        #: Thread for register access (Hg) and the one stop replies name last.
        self.current = 0
        self.running = False
        self.last_stop: StopEvent | None = None
        self.closed = False
        self._thread_list: list[int] = []
        self._layout = register_layout(target.avx)
        #: What the client said it supports in qSupported (e.g. b"exec-events").
        self.client_features: set[bytes] = set()
        #: Thread ids as p<pid>.<tid> (the client offered multiprocess+).
        self.multiprocess = False
        #: The process an Hg named, when it is not the target's own: a fork child gdb
        #: is taking breakpoints out of before it detaches it (see _other_process).
        self.other_pid = 0

    # ---- sending -------------------------------------------------------------------------

    def send_packet(self, payload: bytes) -> None:
        self._send(frame(payload))

    def deliver(self, kind: tuple) -> None:
        """One event from the PacketReader."""
        if kind[0] == "bad":
            if self.ack:
                self._send(b"-")
            return
        if kind[0] != "packet":
            return
        if self.ack:
            self._send(b"+")
        try:
            reply = self.handle(kind[1])
        except Exception:  # a malformed packet (or a target error): an error reply
            reply = b"E01"
        if reply is not None:
            self.send_packet(reply)

    def ptid(self, tid: int, pid: int = 0) -> bytes:
        """A thread id on the wire: p<pid>.<tid> once multiprocess is negotiated."""
        if self.multiprocess:
            return b"p%x.%x" % (pid or self.target.pid, tid)
        return b"%x" % tid

    def stop_reply(self, event: StopEvent) -> bytes:
        self.running = False
        self.last_stop = event
        process = b";process:%x" % self.target.pid if self.multiprocess else b""
        if event.exit_status is not None:
            self.closed = True
            return b"W%02x" % (event.exit_status & 0xFF) + process
        if event.killed_by is not None:
            self.closed = True
            return b"X%02x" % to_gdb_signal(event.killed_by & 0x7F) + process
        self.current = event.tid
        self.other_pid = 0
        reply = b"T%02x" % (to_gdb_signal(event.signo) & 0xFF)
        if event.reason == "fork":  # (gdbserver's order: the event, then the thread)
            reply += b"fork:%s;" % self.ptid(event.address, event.address)
        reply += b"thread:%s;" % self.ptid(event.tid)
        if event.reason == "swbreak":
            reply += b"swbreak:;"
        elif event.reason == "watch":
            reply += b"watch:%x;" % event.address
        elif event.reason == "exec":
            reply += b"exec:%s;" % self.target.exec_file().hex().encode()
        return reply

    # ---- packets ---------------------------------------------------------------------------

    def handle(self, packet: bytes) -> bytes | None:
        if not packet:
            return b""
        head = packet[:1]
        if packet.startswith(b"vCont"):
            return self._vcont(packet)
        if packet.startswith(b"qSupported"):
            self.client_features = {f[:-1] for f in packet[11:].split(b";")
                                    if f.endswith(b"+")}
            self.multiprocess = b"multiprocess" in self.client_features
            # fork-events need p<pid>.<tid> ids (the child's, and D;PID to detach it:
            # without multiprocess gdb would detach the parent): offered only with it.
            # No vfork-events: see docs/ARCHITECTURE.md, "exec and fork".
            extra = b";multiprocess+" if self.multiprocess else b""
            if self.multiprocess and b"fork-events" in self.client_features:
                extra += b";fork-events+"
            return (b"PacketSize=%x;QStartNoAckMode+;qXfer:features:read+;"
                    b"qXfer:threads:read+;qXfer:auxv:read+;qXfer:exec-file:read+;"
                    b"qXfer:libraries-svr4:read+;"
                    b"QPassSignals+;swbreak+;vContSupported+;exec-events+" % PACKET_SIZE
                    + extra)
        if packet == b"QStartNoAckMode":
            self.send_packet(b"OK")  # acknowledged (this one still with an ack)
            self.ack = False
            return None
        if packet.startswith(b"qXfer:"):
            return self._xfer(packet)
        if packet.startswith(b"QPassSignals:"):
            signals = {from_gdb_signal(_hex_int(s)) for s in packet[13:].split(b";") if s}
            self.target.pass_signals(signals)
            return b"OK"
        if packet == b"qC":
            return b"QC%s" % self.ptid(self._stopped_thread())
        if packet == b"qfThreadInfo":
            self._thread_list = self.target.threads()
            return self._thread_chunk()
        if packet == b"qsThreadInfo":
            return self._thread_chunk()
        if packet == b"qAttached" or packet.startswith(b"qAttached:"):
            return b"1"
        if packet.startswith(b"qThreadExtraInfo,"):
            tid = _hex_int(packet[17:])
            return self.target.thread_name(tid).encode().hex().encode()
        if packet == b"qOffsets" or packet.startswith(b"qSymbol"):
            return b"" if packet == b"qOffsets" else b"OK"
        if head == b"?":
            return self.stop_reply(self.last_stop or StopEvent(self._stopped_thread(), SIGTRAP))
        if head == b"H":
            pid = _process_id(packet[2:])
            if pid > 0 and pid != self.target.pid:
                if not self.target.forked_child(pid):
                    return b"E01"
                if packet[1:2] == b"g":
                    self.other_pid = pid
                return b"OK"
            tid = _thread_id(packet[2:])
            if tid > 0 and tid not in self.target.threads():
                return b"E01"
            if packet[1:2] == b"g":
                self.other_pid = 0
                if tid > 0:
                    self.current = tid
            return b"OK"
        if head == b"T":
            return b"OK" if _thread_id(packet[1:]) in self.target.threads() else b"E01"
        if self.other_pid and head in (b"g", b"G", b"p", b"P", b"m", b"M", b"X", b"Z",
                                       b"z"):
            return self._other_process(head, packet)
        if head == b"g":
            return self._read_all()
        if head == b"G":
            return self._write_all(bytes.fromhex(packet[1:].decode()))
        if head == b"p":
            return self._read_one(_hex_int(packet[1:]))
        if head == b"P":
            number, _, value = packet[1:].partition(b"=")
            return self._write_one(_hex_int(number), bytes.fromhex(value.decode()))
        if head == b"m":
            address, _, length = packet[1:].partition(b",")
            data = self.target.read_memory(_hex_int(address),
                                           min(_hex_int(length), PACKET_SIZE // 2 - 8))
            return data.hex().encode() if data else b"E14"
        if head == b"M":
            where, _, data = packet[1:].partition(b":")
            address, _, length = where.partition(b",")
            raw = bytes.fromhex(data.decode())
            if len(raw) != _hex_int(length):
                return b"E01"
            return b"OK" if self.target.write_memory(_hex_int(address), raw) else b"E14"
        if head == b"X":
            colon = packet.index(b":")
            address, _, length = packet[1:colon].partition(b",")
            raw = unescape(packet[colon + 1:])
            if len(raw) != _hex_int(length):
                return b"E01"
            if not raw:
                return b"OK"  # (gdb probes X support with an empty write)
            return b"OK" if self.target.write_memory(_hex_int(address), raw) else b"E14"
        if head in (b"Z", b"z"):
            kind, address, length = packet[1:].split(b",")[:3]
            done = self.target.set_breakpoint(int(kind), _hex_int(address),
                                              _hex_int(length.partition(b";")[0]),
                                              head == b"Z")
            return b"" if done is None else b"OK" if done else b"E01"
        if head in (b"c", b"s", b"C", b"S"):
            return self._legacy_resume(packet)
        if head == b"k" or packet.startswith(b"vKill"):
            pid = _hex_int(packet[6:]) if packet.startswith(b"vKill;") else 0
            if pid and pid != self.target.pid:
                return b"E01"  # (a fork child runs free: gdb never follows one)
            self.closed = True
            self.target.kill()
            return None if head == b"k" else b"OK"
        if head == b"D":
            pid = _hex_int(packet[2:]) if packet.startswith(b"D;") else 0
            if pid and pid != self.target.pid:
                self.other_pid = 0
                return b"OK" if self.target.detach_child(pid) else b"E01"
            self.target.detach()
            self.closed = True
            return b"OK"
        if packet.startswith(b"vMustReplyEmpty"):
            return b""
        return b""  # not supported

    def _stopped_thread(self) -> int:
        threads = self.target.threads()
        if self.current in threads:
            return self.current
        return threads[0] if threads else 0

    def _thread_chunk(self) -> bytes:
        if not self._thread_list:
            return b"l"
        chunk, self._thread_list = self._thread_list[:64], self._thread_list[64:]
        return b"m" + b",".join(self.ptid(t) for t in chunk)

    def _other_process(self, head: bytes, packet: bytes) -> bytes:
        """A packet for a fork child gdb named with Hg. gdb takes its breakpoints out
        of the child (z0) and detaches it (D;PID): the child km took every inherited
        breakpoint out of its own memory before its first instruction, so z0 is done
        already. Its memory reads as the parent's (a copy of it at the fork); nothing
        else is served: km never follows a fork child."""
        if head == b"z":
            return b"OK"
        if head == b"m":
            other, self.other_pid = self.other_pid, 0
            try:
                return self.handle(packet)
            finally:
                self.other_pid = other
        return b"E01"

    def _xfer(self, packet: bytes) -> bytes:
        parts = packet.split(b":")
        if len(parts) != 5 or parts[2] != b"read":
            return b""
        obj, annex, span = parts[1], parts[3], parts[4]
        offset, _, length = span.partition(b",")
        offset, length = _hex_int(offset), min(_hex_int(length), PACKET_SIZE - 16)
        if obj == b"features":
            if annex != b"target.xml":
                return b"E00"
            data = target_xml(self.target.avx)
        elif obj == b"threads":
            data = self._threads_xml()
        elif obj == b"auxv":
            data = self.target.auxv()
        elif obj == b"exec-file":
            data = self.target.exec_file()
        elif obj == b"libraries-svr4":
            found = self.target.libraries_svr4()
            if found is None:
                return b"E01"
            data = found
        else:
            return b""
        return _xfer_slice(data, offset, length)

    def _threads_xml(self) -> bytes:
        rows = []
        for tid in self.target.threads():
            name = self.target.thread_name(tid)
            name = "".join(c if c.isalnum() or c in "-_./ " else "?" for c in name)
            rows.append(f'<thread id="{self.ptid(tid).decode()}" name="{name}"/>\n')
        return ('<?xml version="1.0"?>\n<threads>\n' + "".join(rows) + "</threads>\n").encode()

    def _register_thread(self) -> int:
        return self.current if self.current > 0 else self._stopped_thread()

    def _read_all(self) -> bytes:
        values = self.target.read_registers(self._register_thread())
        out = []
        for name, bits, _ in self._layout:
            value = values.get(name)
            out.append(value.hex() if value is not None else "xx" * (bits // 8))
        return "".join(out).encode()

    def _write_all(self, raw: bytes) -> bytes:
        values, at = {}, 0
        for name, bits, _ in self._layout:
            size = bits // 8
            if at + size > len(raw):
                break
            values[name] = raw[at:at + size]
            at += size
        return b"OK" if self.target.write_registers(self._register_thread(), values) else b"E01"

    def _read_one(self, number: int) -> bytes:
        if not 0 <= number < len(self._layout):
            return b"E01"
        name, bits, _ = self._layout[number]
        value = self.target.read_registers(self._register_thread()).get(name)
        return value.hex().encode() if value is not None else b"xx" * (bits // 8)

    def _write_one(self, number: int, value: bytes) -> bytes:
        if not 0 <= number < len(self._layout):
            return b"E01"
        name, bits, _ = self._layout[number]
        if len(value) != bits // 8:
            return b"E01"
        ok = self.target.write_registers(self._register_thread(), {name: value})
        return b"OK" if ok else b"E01"

    def _vcont(self, packet: bytes) -> bytes | None:
        if packet == b"vCont?":
            return b"vCont;c;C;s;S"
        if not packet.startswith(b"vCont;"):
            return b""
        actions: dict[int, tuple[str, int]] = {}
        default = None
        for item in packet[6:].split(b";"):
            action, _, thread = item.partition(b":")
            op = action[:1].decode()
            if op not in ("c", "C", "s", "S"):
                return b"E01"  # (t, r: not offered in vCont?)
            signo = from_gdb_signal(_hex_int(action[1:])) if op in ("C", "S") else 0
            entry = (op.lower(), signo)
            if not thread or _thread_id(thread) == -1:
                if default is None:
                    default = entry
            else:
                actions.setdefault(_thread_id(thread), entry)
        known = self.target.threads()
        if any(tid not in known for tid in actions) or default is None and not actions:
            return b"E01"  # (a thread that is gone: nothing would run, gdb would wait)
        self.running = True
        self.target.resume(actions, default)
        return None

    def _legacy_resume(self, packet: bytes) -> bytes | None:
        op = packet[:1].decode()
        signo = 0
        if op in ("C", "S"):
            signo = from_gdb_signal(_hex_int(packet[1:].partition(b";")[0]))
        if packet[1:] and op in ("c", "s"):
            return b"E01"  # (resuming at another address: gdb does not use it)
        tid = self._register_thread()
        self.running = True
        # c/s: the current thread steps or continues, the others continue.
        self.target.resume({tid: (op.lower(), signo)}, ("c", 0))
        return None


def parse_listen_address(text: str) -> tuple[str, int] | str:
    """A -g / --gdb-listen argument: PORT, HOST:PORT (HOST must be loopback), or a unix
    socket path (anything with a slash)."""
    if "/" in text:
        return text
    host, _, port = text.rpartition(":")
    host = host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("the gdb stub listens on 127.0.0.1 only")
    number = int(port)
    if not 0 <= number < 65536:
        raise ValueError(f"bad port {port}")
    return "127.0.0.1", number


__all__ = ["DEFAULT_PORT", "PacketReader", "Session", "StopEvent", "Target", "frame",
           "register_layout", "target_xml"]
