"""Core dumps: the ELF core file Linux writes when a signal's default action dumps core.

The file has Linux's own layout (fs/binfmt_elf.c, elf_core_dump), so gdb reads it as
it reads a native core: the ELF header, a PT_NOTE, one PT_LOAD per guest mapping, then
the notes and the mappings' bytes, each segment at a page-aligned offset.

Notes, in Linux's order: per thread NT_PRSTATUS (the dying thread first, with the
signal), and after the first one NT_PRPSINFO, NT_SIGINFO, NT_AUXV and NT_FILE; then
that thread's NT_FPREGSET and NT_X86_XSTATE.

What memory goes in follows Linux's default coredump_filter (0x33): anonymous memory,
private or shared, and private file mappings except code (gdb reads code from the
executable and the libraries NT_FILE names); only the first page (its ELF header) of a
read-only mapping at file offset 0; nothing of shared file mappings; the vDSO. A
mapping with nothing behind it (PROT_NONE, a demand-backed reservation never touched,
file pages past the end of the file) has a PT_LOAD of file size 0. Pages of anonymous
memory the guest never touched are holes (the host's /proc/self/pagemap tells which
without touching them): the file is sparse.

km writes every byte through the kernel (pwrite from the host address), never by
reading guest memory itself: a file page truncated under a mapping, or a vDSO data page
with nothing behind it, is an EFAULT for the kernel, where a read by km would be a
SIGBUS in km.
"""

from __future__ import annotations

import _thread
import errno
import os
import stat
import struct
import time

from kontain.linux import hostcall as host
from kontain.linux.abi import PROT_EXEC, PROT_READ, PROT_WRITE
from kontain.linux.numbers import NUMBERS as NR
from kontain.machine import cpustate, hostmem
from kontain.machine.cpu import MSR_FS_BASE, MSR_GS_BASE
from kontain.machine.layout import PAGE_SIZE
from kontain.monitor import faults
from kontain.monitor import signals as sig

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.mm.vma import Vma
    from kontain.monitor.process import Process
    from kontain.monitor.thread import GuestThread

RLIMIT_FSIZE, RLIMIT_CORE = 1, 4
#: Linux writes no core when RLIMIT_CORE is below binfmt_elf's min_coredump (a page).
MIN_COREDUMP = PAGE_SIZE
#: How long the dying thread waits for the others to stop before it takes their state
#: as it is (a thread that does not stop in time shows its last known registers).
STOP_TIMEOUT = 2.0

# ELF (include/uapi/linux/elf.h).
ET_CORE, EM_X86_64, EV_CURRENT = 4, 62, 1
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV = 1, 2, 3, 6
NT_SIGINFO, NT_FILE, NT_X86_XSTATE = 0x53494749, 0x46494C45, 0x202
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
NOTE_HEADER = struct.Struct("<III")
#: struct elf_prstatus (x86-64): elf_siginfo, cursig, sigpend, sighold, pid, ppid,
#: pgrp, sid, four timevals, the 27 user_regs_struct registers, fpvalid.
PRSTATUS = struct.Struct("<iiih2xQQiiii8q27Qi4x")
#: struct elf_prpsinfo (x86-64): state, sname, zomb, nice, flag, uid, gid, pid, ppid,
#: pgrp, sid, fname[16], psargs[80].
PRPSINFO = struct.Struct("<bcbb4xQIIiiii16s80s")
#: The sw_reserved bytes of the FXSAVE area: for ptrace and cores, XCR0 comes first
#: (arch/x86/include/asm/user.h, USER_XSTATE_XCR0_WORD), where gdb looks for it.
XSTATE_SW_OFFSET, FXSAVE_SIZE = 464, 512
USER_CS, USER_SS = 0x33, 0x2B
PF_DUMPCORE, PF_SIGNALED = 0x200, 0x400
#: Blocks of one pwrite (a mapping is written in pieces this large, at most).
WRITE_CHUNK = 64 << 20
#: The top byte of a /proc/self/pagemap entry: bit 63 present, 62 swapped, 61 a file
#: page (or shared anonymous memory). Page is backed by the host / is km's own copy.
_PRESENT_OR_SWAPPED = bytes(1 if b & 0xC0 else 0 for b in range(256))
_ANONYMOUS = bytes(1 if b & 0x40 or b & 0xA0 == 0x80 else 0 for b in range(256))


class CoreError(Exception):
    """No core is written (the reason is said on km's diagnostics stream under -V)."""


# ---- where the core goes ------------------------------------------------------------------

def core_path(template: str | None, proc: Process, tid: int) -> bytes:
    """The guest path of the core. The template (km --coredump) is a guest path,
    relative to the payload's working directory when it dies, as core_pattern is; it
    may hold %p (pid), %i (tid of the dying thread), %e (the program's name), %t (time
    of the dump, seconds since the Epoch) and %%. A template ending in "/" names a
    directory for the default name, core.PROGRAM.PID."""
    name = os.path.basename(proc.guest_exe or "payload").replace("%", "_") or "payload"
    default = f"core.{name}.{proc.pid}"
    if not template:
        return os.fsencode(default)
    expansions = {"p": str(proc.pid), "i": str(tid), "e": name,
                  "t": str(int(time.time())), "%": "%"}
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template) and template[i + 1] in expansions:
            out.append(expansions[template[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    path = "".join(out)
    if path.endswith("/"):
        path += default
    return os.fsencode(path)


def open_core(proc: Process, path: bytes) -> int:
    """Open the core file as Linux does (do_coredump): with the payload's own
    credentials, inside its root, never through a symbolic link (O_NOFOLLOW), never
    blocking on a FIFO; an existing file is reused only if it is a regular file of the
    caller's with one link, and truncated."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = proc.root.open(-100, path, flags, 0o600)  # AT_FDCWD: the payload's cwd
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            raise CoreError(f"{os.fsdecode(path)}: not a regular file of this user's "
                            "with one link")
        os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---- the dying process's threads --------------------------------------------------------------

class ThreadImage:
    """What a core says of one thread."""

    __slots__ = ("tid", "registers", "xsave", "pending", "blocked")

    def __init__(self, tid: int, registers: tuple[int, ...], xsave: bytes | None,
                 pending: int, blocked: int) -> None:
        self.tid, self.registers, self.xsave = tid, registers, xsave
        self.pending, self.blocked = pending, blocked


def capture(proc: Process, thread: GuestThread, stopped: bool) -> ThreadImage:
    """A thread's registers where it will resume in user mode (its user context), its
    FS/GS bases and XSAVE state. stopped=False: the thread did not stop in time; only
    the copy of its registers km holds is used (asking its vCPU would wait for it)."""
    regs = thread.regs
    rip, rsp, rflags = thread.user_context()
    fs_base = gs_base = 0
    xsave = None
    if stopped:
        try:
            state = cpustate.capture(thread.vcpu, regs)
        except OSError:
            state = None
        if state is not None:
            fs_base = state.msrs.get(MSR_FS_BASE, 0)
            gs_base = state.msrs.get(MSR_GS_BASE, 0)
            xsave = _xstate(bytes(state.xsave), proc.machine.xsave_size,
                            proc.machine.xcr0)
    registers = (regs.r15, regs.r14, regs.r13, regs.r12, regs.rbp, regs.rbx, regs.r11,
                 regs.r10, regs.r9, regs.r8, regs.rax, regs.rcx, regs.rdx, regs.rsi,
                 regs.rdi, (1 << 64) - 1, rip, USER_CS, rflags, rsp, USER_SS,
                 fs_base, gs_base, 0, 0, 0, 0)
    return ThreadImage(thread.tid, registers, xsave, thread.pending.bits, thread.signal_mask)


def _xstate(image: bytes, size: int, xcr0: int) -> bytes:
    """The XSAVE area as ptrace and cores give it: standard format, XCR0 in the first
    software-reserved word and the rest of those bytes zero."""
    image = bytearray(image[:max(size, FXSAVE_SIZE)])
    image[XSTATE_SW_OFFSET:FXSAVE_SIZE] = struct.pack("<Q", xcr0).ljust(
        FXSAVE_SIZE - XSTATE_SW_OFFSET, b"\0")
    return bytes(image)


def stop_threads(proc: Process, dying: GuestThread | None) -> tuple[list[GuestThread], bool]:
    """Stop every other thread of the process where its state is whole (the paused
    state, kontain.monitor.group), the dying one counting as stopped already. Returns
    the threads, dying first, and whether they all stopped in time."""
    group = proc.group
    if dying is not None:
        dying.parked = True  # out of the guest for good, its context in hand
    others = [t for t in group.all() if t is not dying]
    stopped = not others or group.pause(STOP_TIMEOUT)
    threads = ([dying] if dying is not None else []) + [t for t in others if not t.exited]
    return threads, stopped


def siginfo_of(thread: GuestThread | None, signo: int, proc: Process) -> bytes:
    """The siginfo of the fatal signal. A CPU exception leaves its vector, error code
    and faulting address in the thread (the sigcontext fields): what Linux would have
    sent for it is recomputed from them; otherwise the signal was sent (SI_USER)."""
    if thread is not None and signo in sig.SYNCHRONOUS:
        vector, error, cr2 = thread.trapno, thread.error_code, thread.cr2
        if vector == faults.PAGE_FAULT and signo in (sig.SIGSEGV, sig.SIGBUS):
            if signo == sig.SIGBUS:
                code = sig.BUS_ADRERR
            elif error & faults.PF_PROTECTION or proc.mm.find(cr2) is not None:
                code = sig.SEGV_ACCERR
            else:
                code = sig.SEGV_MAPERR
            return sig.siginfo(signo, code, addr=cr2)
        known = faults.EXCEPTION_SIGNALS.get(vector)
        if known is not None and known[0] == signo:
            rip = thread.user_context()[0]
            return sig.siginfo(signo, known[1], addr=rip if known[2] else 0)
    return sig.siginfo(signo, sig.SI_USER, pid=proc.pid, uid=os.getuid())


# ---- notes -------------------------------------------------------------------------------

def note(name: bytes, kind: int, desc: bytes) -> bytes:
    name += b"\0"
    return (NOTE_HEADER.pack(len(name), len(desc), kind) + name.ljust(-(-len(name) // 4) * 4,
            b"\0") + desc.ljust(-(-len(desc) // 4) * 4, b"\0"))


def prstatus(image: ThreadImage, signo: int) -> bytes:
    """Every thread's carries the fatal signal (fill_prstatus: si_signo and cursig,
    nothing else of the siginfo, which is NT_SIGINFO's)."""
    return PRSTATUS.pack(signo, 0, 0, signo, image.pending, image.blocked, image.tid,
                         os.getppid(), os.getpgrp(), os.getsid(0), 0, 0, 0, 0, 0, 0, 0, 0,
                         *image.registers, int(image.xsave is not None))


def prpsinfo(proc: Process, thread: GuestThread | None) -> bytes:
    start, end = proc.procfs.argv_range
    try:
        args = proc.mm.read(start, min(end - start, 80)) if end > start else b""
    except OSError:
        args = b""
    if not args:
        args = b" ".join(proc.argv)[:80]
    args = args.rstrip(b"\0").replace(b"\0", b" ")[:79]
    comm = (thread.name if thread is not None and thread.name
            else os.fsencode(os.path.basename(proc.guest_exe)))[:15]
    return PRPSINFO.pack(0, b"R", 0, 0, PF_DUMPCORE | PF_SIGNALED, os.getuid(), os.getgid(),
                         proc.pid, os.getppid(), os.getpgrp(), os.getsid(0), comm, args)


def file_note(vmas: list[Vma]) -> bytes:
    """NT_FILE: every file-backed mapping with its file offset (in pages), and the names."""
    files = [v for v in vmas if v.file_backed and not v.foreign]
    head = struct.pack("<QQ", len(files), PAGE_SIZE)
    table = b"".join(struct.pack("<QQQ", v.start, v.end, v.offset // PAGE_SIZE) for v in files)
    names = b"".join(os.fsencode(v.name) + b"\0" for v in files)
    return head + table + names


def notes(proc: Process, threads: list[ThreadImage], info: bytes, vmas: list[Vma],
          dying: GuestThread | None) -> bytes:
    out = []
    signo = struct.unpack_from("<i", info)[0]
    for i, image in enumerate(threads):
        out.append(note(b"CORE", NT_PRSTATUS, prstatus(image, signo)))
        if i == 0:
            out.append(note(b"CORE", NT_PRPSINFO, prpsinfo(proc, dying)))
            out.append(note(b"CORE", NT_SIGINFO, info))
            out.append(note(b"CORE", NT_AUXV, proc.procfs.auxv))
            out.append(note(b"CORE", NT_FILE, file_note(vmas)))
        if image.xsave is not None:
            out.append(note(b"CORE", NT_FPREGSET, image.xsave[:FXSAVE_SIZE]))
            out.append(note(b"LINUX", NT_X86_XSTATE, image.xsave))
    return b"".join(out)


# ---- memory ------------------------------------------------------------------------------

def dump_size(vma: Vma, proc: Process, pagemap: int = -1) -> int:
    """How many bytes of vma the core holds (Linux's vma_dump_size, default filter)."""
    if vma.pa is None or not vma.prot & PROT_READ:
        return 0
    if vma.foreign:
        return vma.size if vma.name == "[vdso]" else 0
    if not vma.file_backed:
        return vma.size
    if vma.shared:  # a shared file mapping: only an anonymous one (shmem) is dumped
        return vma.size if vma.name.endswith(" (deleted)") else 0
    if vma.prot & PROT_WRITE or _written(pagemap, _host_address(vma, proc), vma.size):
        return vma.size  # written to (Linux: it has an anon_vma): data, bss, relro
    if vma.offset == 0:
        return PAGE_SIZE  # the ELF header of an executable or a library (its build-id)
    return 0  # code, read-only data: gdb reads them from the file


def _pagemap_chunks(pagemap: int, address: int, size: int):
    """(first page, page count, the 8-byte entries or b"" where unreadable) of
    [address, address+size) of km's memory, read from /proc/self/pagemap in pieces."""
    first, pages = address // PAGE_SIZE, size // PAGE_SIZE
    step = 1 << 16
    for base in range(0, pages, step):
        count = min(step, pages - base)
        try:
            entries = os.pread(pagemap, count * 8, (first + base) * 8)
        except OSError:
            entries = b""
        yield base, count, entries if len(entries) == count * 8 else b""


def _written(pagemap: int, address: int, size: int) -> bool:
    """Whether a private file mapping of km's (at address) has a page of its own: one
    present and not the file's (a copy made by a write), or swapped out. Unknown
    (no pagemap): True, the whole mapping is dumped."""
    if pagemap < 0:
        return True
    return any(not entries or entries[7::8].translate(_ANONYMOUS).find(1) >= 0
               for _base, _count, entries in _pagemap_chunks(pagemap, address, size))


def _host_address(vma: Vma, proc: Process) -> int:
    return proc.machine.phys.host_address(vma.pa)


def _present_runs(pagemap: int, address: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the runs of pages of [address, address+size) of km's memory
    the host has memory for (present or swapped); all of it when pagemap is unknown."""
    if pagemap < 0:
        return [(0, size)]
    runs: list[tuple[int, int]] = []
    for base, count, entries in _pagemap_chunks(pagemap, address, size):
        if not entries:
            runs.append((base * PAGE_SIZE, count * PAGE_SIZE))
            continue
        flags = entries[7::8].translate(_PRESENT_OR_SWAPPED)
        i = flags.find(1)
        while i >= 0:
            j = flags.find(0, i)
            j = count if j < 0 else j
            start = (base + i) * PAGE_SIZE
            if runs and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + (j - i) * PAGE_SIZE)
            else:
                runs.append((start, (j - i) * PAGE_SIZE))
            i = flags.find(1, j)
    return runs


def _write_range(fd: int, address: int, size: int, offset: int, limit: int) -> None:
    """pwrite size bytes of km's memory at address to offset (the kernel copies them:
    a page it cannot read is left a hole). Stops at limit (RLIMIT_CORE)."""
    end = min(offset + size, limit)
    while offset < end:
        n = min(end - offset, WRITE_CHUNK)
        done = host.syscall(NR["pwrite64"], fd, address, n, offset)
        if done == -errno.EFAULT:
            if n > PAGE_SIZE:  # page by page, skipping what cannot be read
                n = PAGE_SIZE - (address & (PAGE_SIZE - 1))
                done = host.syscall(NR["pwrite64"], fd, address, n, offset)
            if done == -errno.EFAULT:
                done = n
        if done == -errno.EINTR:
            continue
        if done <= 0:
            raise CoreError(f"write: {os.strerror(-done) if done else 'no progress'}")
        address += done
        offset += done


# ---- the whole file ----------------------------------------------------------------------

def write_core(fd: int, proc: Process, threads: list[ThreadImage], info: bytes,
               dying: GuestThread | None, limit: int) -> int:
    """Write the core to fd; returns its size (at most limit, where Linux stops)."""
    vmas = proc.mm.vmas()
    pagemap = hostmem.pagemap_fd(proc.fds.move_high)
    sizes = [dump_size(v, proc, pagemap) for v in vmas]
    return _write(fd, proc, vmas, sizes, notes(proc, threads, info, vmas, dying), limit,
                  pagemap)


def _write(fd: int, proc: Process, vmas: list[Vma], sizes: list[int], body: bytes,
           limit: int, pagemap: int) -> int:
    phnum = len(vmas) + 1
    extended = phnum >= PN_XNUM
    offset = EHDR.size + phnum * PHDR.size
    notes_offset = offset
    offset += len(body)
    shoff = 0
    if extended:  # more program headers than e_phnum holds: the count in section 0
        shoff = offset
        offset += SHDR.size
    data = -(-offset // PAGE_SIZE) * PAGE_SIZE
    headers = [PHDR.pack(PT_NOTE, 0, notes_offset, 0, 0, len(body), 0, 0)]
    placed = []
    for vma, filesz in zip(vmas, sizes, strict=True):
        flags = (PF_R if vma.prot & PROT_READ else 0) | (PF_W if vma.prot & PROT_WRITE else 0) \
            | (PF_X if vma.prot & PROT_EXEC else 0)
        headers.append(PHDR.pack(PT_LOAD, flags, data, vma.start, 0, filesz, vma.size,
                                 PAGE_SIZE))
        placed.append(data)
        data += filesz
    ehdr = EHDR.pack(b"\x7fELF\x02\x01\x01".ljust(16, b"\0"), ET_CORE, EM_X86_64, EV_CURRENT,
                     0, EHDR.size, shoff, 0, EHDR.size, PHDR.size,
                     PN_XNUM if extended else phnum, SHDR.size if extended else 0,
                     1 if extended else 0, 0)
    head = ehdr + b"".join(headers) + body
    if extended:
        head += SHDR.pack(0, 0, 0, 0, 0, 0, 0, phnum, 0, 0)
    total = min(data, limit)
    os.ftruncate(fd, total)  # the holes (never-touched memory) stay holes
    written = os.pwrite(fd, head[:limit], 0)
    if written != min(len(head), limit):
        raise CoreError("short write of the headers")
    for vma, filesz, at in zip(vmas, sizes, placed, strict=True):
        if not filesz or at >= limit:
            continue
        address = _host_address(vma, proc)
        if vma.file_backed or vma.foreign:  # file data is data even where untouched
            runs = [(0, filesz)]
        else:
            runs = _present_runs(pagemap, address, filesz)
        for start, length in runs:
            _write_range(fd, address + start, length, at + start, limit)
    return total


def dump(proc: Process, signo: int, template: str | None,
         delivered: bytes | None = None) -> bytes | None:
    """Write the payload's core for fatal signal signo, if its RLIMIT_CORE allows one;
    returns the core's guest path (None: no core). Called by the dying thread, with
    the process over: every other thread is stopped first and stays stopped."""
    limit = proc.guest_rlimit(RLIMIT_CORE)[0]
    if limit < MIN_COREDUMP or not proc.dumpable:  # (prctl, or changed credentials)
        return None
    # The file also stops at RLIMIT_FSIZE, as the kernel's writes of a core do (and
    # km's host limit is the payload's: a write past it would fail with EFBIG).
    limit = min(limit, proc.guest_rlimit(RLIMIT_FSIZE)[0])
    me = _thread.get_ident()
    dying = next((t for t in proc.group.all() if t.host_ident == me and not t.exited), None)
    threads, stopped = stop_threads(proc, dying)
    if not threads:
        return None
    # The siginfo as delivered when there is one (its sender, as Linux gives it),
    # else rebuilt from the thread's fault state.
    info = delivered if delivered and len(delivered) >= 128 else siginfo_of(dying, signo, proc)
    images = [capture(proc, t, stopped or t is dying or t.parked) for t in threads]
    path = core_path(template, proc, threads[0].tid)
    fd = open_core(proc, path)
    try:
        write_core(fd, proc, images, info, dying, limit)
    finally:
        os.close(fd)
    return path
