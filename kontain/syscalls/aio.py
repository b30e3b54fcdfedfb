"""Linux AIO: io_setup, io_submit, io_getevents, io_pgetevents, io_cancel, io_destroy.

The host does the I/O, on km's copy of each iocb: the guest's holds guest pointers
(aio_buf; for IOCB_CMD_PREADV/PWRITEV an iovec array), km's holds km's addresses of the
same guest memory (kontain.syscalls.io.host_vector: in place, never a copy; a buffer
spanning mappings becomes a vector; memory that is not accessible becomes km's guard,
so the event reports EFAULT or a short count exactly as natively). A copy lives until
its event is reaped (or its context destroyed); io_event.obj names km's copy, and km
gives the guest back its own iocb pointer; aio_data travels in the copy unchanged.

Contexts. The aio_context_t the host returns is the address of a ring the kernel maps
into km: the guest never sees it. The guest's context id is the address of a mapping
km makes in the guest's address space in its stead, as big as the ring (Linux maps the
ring there too), holding zeros: libaio's io_getevents, and the other libraries that peek
at the ring in user space, read `magic` at that address, find it is not
AIO_RING_MAGIC and make the system call, which km serves. (An id that pointed at
unmapped guest memory would crash them: they dereference it.) Unmapping that mapping
ends the id (EINVAL), as it ends Linux's; io_destroy unmaps it. A forked child has no
contexts (Linux's are not inherited either); a new program (execve) has none: km
destroys the old image's on its first use of AIO.

Guest buffers with I/O in flight. The host pins the pages of an asynchronous transfer
(O_DIRECT) when it starts, as Linux does for a native process. If the guest unmaps or
remaps a buffer meanwhile, km replaces its host pages (kontain.mm.space: MAP_FIXED over
them), so the transfer completes on the pinned pages, which nothing maps any more: the
guest sees fresh memory, as natively, and km's own memory is never written. Buffered
AIO completes within io_submit, so it never outlives the call.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import struct
import weakref

from kontain.linux import hostcall as host
from kontain.linux.abi import (
    ERESTARTNOHAND,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
)
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.space import GuestFault
from kontain.mm.vma import page_up
from kontain.syscalls import args
from kontain.syscalls.io import IOV_MAX, fault_address, translate_vector
from kontain.syscalls.poll import _with_mask

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.process import Process
    from kontain.monitor.thread import GuestThread

#: struct iocb: aio_data, aio_key, aio_rw_flags, aio_lio_opcode, aio_reqprio, aio_fildes,
#: aio_buf, aio_nbytes, aio_offset, aio_reserved2, aio_flags, aio_resfd.
IOCB = struct.Struct("<QIiHhIQQqQII")
#: struct io_event: data, obj, res, res2.
EVENT = struct.Struct("<QQqq")
#: struct aio_ring's head: id, nr, head, tail (then magic, features, header_length).
RING_HEAD = struct.Struct("<IIII")
RING_HEADER_SIZE = 32
KEY_OFFSET = 8
IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV = 0, 1, 7, 8
IOCB_FLAG_RESFD = 1
_TRANSFERS = (IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV)
_READS = (IOCB_CMD_PREAD, IOCB_CMD_PREADV)
_NO_FD = 0xFFFFFFFF  # what km gives the host for a descriptor the guest may not name
#: What /proc/PID/maps calls the ring (Linux: a file of the internal aio filesystem).
RING_NAME = "/[aio] (deleted)"
F_GETFD = 1


class _Context:
    """One guest context: the host's, the guest mapping standing for its ring, and the
    requests in flight (km's iocb copy address -> (guest iocb pointer, what to keep))."""

    __slots__ = ("host", "guest", "size", "pa", "nr", "requests", "lock", "dead")

    def __init__(self, host_ctx: int, guest: int, size: int, pa: int | None, nr: int) -> None:
        self.host = host_ctx
        self.guest = guest
        self.size = size
        self.pa = pa
        self.nr = nr
        self.requests: dict[int, tuple[int, object]] = {}
        #: Held while km reads the host ring (io_destroy unmaps it).
        self.lock = _thread.allocate_lock()
        self.dead = False


class _State:
    """A process's contexts, for one program image of one host process."""

    __slots__ = ("pid", "mm", "contexts", "lock")

    def __init__(self, pid: int, mm: object) -> None:
        self.pid = pid
        self.mm = mm
        self.contexts: dict[int, _Context] = {}
        self.lock = _thread.allocate_lock()


_states: weakref.WeakKeyDictionary[Process, _State] = weakref.WeakKeyDictionary()
_init_lock = _thread.allocate_lock()


def _state(t: GuestThread) -> _State:
    proc = t.proc
    state = _states.get(proc)
    if state is not None and state.pid == proc.pid and state.mm is t.mm:
        return state
    with _init_lock:
        state = _states.get(proc)
        if state is None or state.pid != proc.pid or state.mm is not t.mm:
            if state is not None and state.pid == proc.pid:
                # A new program: Linux destroyed the old one's contexts at execve. Their
                # rings are km's (waiting here for what is still in flight); the guest
                # mappings went with the old address space.
                for ctx in state.contexts.values():
                    _kill(ctx)
            # (A forked child: the host contexts and their rings are the parent's.)
            state = _states[proc] = _State(proc.pid, t.mm)
    return state


def _kill(ctx: _Context) -> None:
    """Destroy the host context (it waits for the requests in flight to end)."""
    with ctx.lock:  # nobody reads its ring from here on
        ctx.dead = True
    host.syscall(NR["io_destroy"], ctx.host)
    ctx.requests.clear()


def _lookup(t: GuestThread, ctx_id: int) -> _Context:
    """The context a guest id names: EINVAL unless its ring mapping is still there, as
    Linux (which reads the ring's id through it)."""
    ctx = _state(t).contexts.get(ctx_id)
    if ctx is None or ctx.dead:
        raise SyscallError(errno.EINVAL)
    vma = t.mm.find(ctx_id)
    if vma is None or vma.pa is None or not vma.prot & PROT_READ \
            or vma.pa + ctx_id - vma.start != ctx.pa:
        raise SyscallError(errno.EINVAL)
    return ctx


# ---- io_setup, io_destroy ----------------------------------------------------------------

def sys_io_setup(t: GuestThread, nr_events: int, ctxp: int, *_: int) -> int:
    nr_events &= 0xFFFFFFFF
    if t.mm.read_u64(ctxp) or not nr_events:  # EFAULT first, then EINVAL
        raise SyscallError(errno.EINVAL)
    state = _state(t)
    box = ctypes.c_uint64(0)
    host.call(NR["io_setup"], nr_events, ctypes.addressof(box))
    host_ctx = box.value
    # The ring's size, from its header (km's own memory): ring->nr events after it.
    ring_nr = RING_HEAD.unpack(ctypes.string_at(host_ctx, RING_HEAD.size))[1]
    size = page_up(RING_HEADER_SIZE + ring_nr * EVENT.size)
    try:
        guest = t.mm.mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          name=RING_NAME)
    except OSError:
        host.syscall(NR["io_destroy"], host_ctx)
        raise SyscallError(errno.ENOMEM) from None
    vma = t.mm.find(guest)
    pa = vma.pa + guest - vma.start if vma is not None and vma.pa is not None else None
    ctx = _Context(host_ctx, guest, size, pa, ring_nr)
    with state.lock:
        state.contexts[guest] = ctx
    try:
        t.mm.write_u64(ctxp, guest)
    except GuestFault:
        with state.lock:
            state.contexts.pop(guest, None)
        _kill(ctx)
        t.mm.munmap(guest, size)
        raise
    return 0


def sys_io_destroy(t: GuestThread, ctx_id: int, *_: int) -> int:
    ctx = _lookup(t, ctx_id)
    state = _state(t)
    with state.lock:
        if state.contexts.pop(ctx_id, None) is not ctx:
            raise SyscallError(errno.EINVAL)  # another thread destroyed it first
    _kill(ctx)
    t.mm.munmap(ctx.guest, ctx.size)  # as Linux unmaps the ring
    return 0


# ---- io_submit, io_cancel ----------------------------------------------------------------

def _prepare(t: GuestThread, raw: bytes) -> tuple[ctypes.Array, object]:
    """km's copy of a guest iocb (and what it refers to, to keep), for the host.

    Only what holds a guest pointer or descriptor changes: the host makes every other
    check itself, in Linux's order. Fields the host refuses before using them are left
    alone (reserved2 set, an overflowing length: EINVAL; an unknown opcode)."""
    (data, key, rw_flags, opcode, prio, fildes, buf, nbytes, offset, reserved2, flags,
     resfd) = IOCB.unpack(raw)
    km_base = t.proc.fds.km_base
    if fildes >= km_base:
        fildes = _NO_FD  # EBADF from the host, where Linux says it
    if flags & IOCB_FLAG_RESFD and resfd >= km_base:
        resfd = _NO_FD
    keep: object = None
    if opcode in _TRANSFERS and not reserved2 and not nbytes >> 63:
        write = opcode in _READS  # the host writes guest memory
        if opcode in (IOCB_CMD_PREAD, IOCB_CMD_PWRITE):
            single = struct.pack("<QQ", buf, nbytes)
            pointer, count, keep = translate_vector(t, single, 1, write)
            if keep is single or not count:
                pass  # refused on the numbers (the host refuses them too), or nothing
            elif count == 1:
                buf, nbytes = keep[0], keep[1]  # one host segment: still a plain transfer
            else:  # spans mappings or runs into inaccessible memory: a vector
                opcode = IOCB_CMD_PREADV if write else IOCB_CMD_PWRITEV
                buf, nbytes = pointer, count
        else:
            # The kernel takes the segment count as an unsigned int.
            count = nbytes & 0xFFFFFFFF
            if count > IOV_MAX:
                buf = fault_address()  # EINVAL before the array is read
            elif count:
                try:
                    iov = t.mm.read(buf, count * 16)
                except GuestFault:
                    buf = fault_address()  # EFAULT reading the array
                else:
                    buf, nbytes, keep = translate_vector(t, iov, count, write)
            else:
                buf, nbytes = 0, 0
    block = ctypes.create_string_buffer(IOCB.pack(
        data, key, rw_flags, opcode, prio, fildes, buf, nbytes, offset, reserved2, flags,
        resfd), IOCB.size)
    return block, keep


def _unwritable_key_error(t: GuestThread, raw: bytes) -> int:
    """The error Linux gives for an iocb whose aio_key it cannot write (it writes it
    after looking up the descriptor and the eventfd): EBADF, EINVAL or EFAULT."""
    _data, _key, _rwf, _op, _prio, fildes, *_rest, flags, resfd = IOCB.unpack(raw)
    km_base = t.proc.fds.km_base
    if fildes >= km_base or host.syscall(NR["fcntl"], fildes, F_GETFD) < 0:
        return errno.EBADF
    if flags & IOCB_FLAG_RESFD:
        if resfd >= km_base or host.syscall(NR["fcntl"], resfd, F_GETFD) < 0:
            return errno.EBADF
        try:
            if os.readlink(f"/proc/self/fd/{resfd}") != "anon_inode:[eventfd]":
                return errno.EINVAL
        except OSError:
            return errno.EBADF
    return errno.EFAULT


def sys_io_submit(t: GuestThread, ctx_id: int, nr: int, iocbpp: int, *_: int) -> int:
    nr = args.s64(nr)
    if nr < 0:
        raise SyscallError(errno.EINVAL)
    ctx = _lookup(t, ctx_id)
    nr = min(nr, ctx.nr)
    if not nr:
        return 0
    mm = t.mm
    try:
        pointers = struct.unpack(f"<{nr}Q", mm.read(iocbpp, 8 * nr))
    except GuestFault:  # Linux reads them one by one: those before the bad one count
        pointers = []
        try:
            while len(pointers) < nr:
                pointers.append(mm.read_u64(iocbpp + 8 * len(pointers)))
        except GuestFault:
            pass
    error = errno.EFAULT if len(pointers) < nr else 0
    requests = ctx.requests
    batch: list[int] = []
    guests: list[int] = []
    for pointer in pointers:
        try:
            raw = mm.read(pointer, IOCB.size)
        except GuestFault:
            error = errno.EFAULT
            break
        if sum(n for _pa, n in mm.accessible_prefix(pointer + KEY_OFFSET, 4, True)) < 4:
            error = _unwritable_key_error(t, raw)  # Linux writes aio_key: EFAULT, in order
            break
        block, keep = _prepare(t, raw)
        address = ctypes.addressof(block)
        # Known before the host has it: another thread may reap its event at once.
        requests[address] = (pointer, (block, keep))
        batch.append(address)
        guests.append(pointer)
    if not batch:
        raise SyscallError(error)
    array = (ctypes.c_uint64 * len(batch))(*batch)
    result = host.syscall(NR["io_submit"], ctx.host, len(batch), ctypes.addressof(array))
    accepted = max(result, 0)
    for address in batch[accepted:]:
        requests.pop(address, None)
    for pointer in guests[:accepted]:
        try:
            mm.write(pointer + KEY_OFFSET, b"\0\0\0\0")  # the kernel's KIOCB_KEY, as Linux
        except GuestFault:
            pass  # unmapped by another thread meanwhile: the payload's race
    if accepted:
        return accepted
    return host.check(result) if result < 0 else 0


def sys_io_cancel(t: GuestThread, ctx_id: int, iocb: int, result: int, *_: int) -> int:
    # Linux: the iocb's key first (EFAULT, EINVAL), then the context; `result` is unused.
    key = struct.unpack("<I", t.mm.read(iocb + KEY_OFFSET, 4))[0]
    if key:
        raise SyscallError(errno.EINVAL)
    ctx = _lookup(t, ctx_id)
    # The oldest request for that iocb, as Linux walks its list of active ones.
    address = next((km for km, (pointer, _keep) in list(ctx.requests.items())
                    if pointer == iocb), None)
    if address is None:
        raise SyscallError(errno.EINVAL)
    event = ctypes.create_string_buffer(EVENT.size)
    # The event (-EINPROGRESS: cancelled, it comes through the ring) is reaped as usual.
    return host.call(NR["io_cancel"], ctx.host, address, ctypes.addressof(event))


# ---- io_getevents, io_pgetevents ---------------------------------------------------------

def _timeout(t: GuestThread, va: int) -> tuple[int, ctypes.Array | None]:
    """km's copy of a guest timespec (read first, as Linux): (host pointer, the copy)."""
    if not va:
        return 0, None
    box = ctypes.create_string_buffer(t.mm.read(va, 16), 16)
    return ctypes.addressof(box), box


def _reap(t: GuestThread, ctx: _Context, min_nr: int, nr: int, events: int,
          timeout: int) -> int:
    """Take up to nr events (at least min_nr, unless the timeout ends the wait) into
    the guest's array, each naming the guest's iocb. EINTR is the caller's to map."""
    if not 0 <= min_nr <= nr:
        raise SyscallError(errno.EINVAL)
    want = min(nr, ctx.nr)  # the ring never holds more
    if not want:
        return 0
    mm = t.mm
    room = sum(n for _pa, n in mm.accessible_prefix(events, want * EVENT.size, True))
    room //= EVENT.size
    if not room:
        # Linux copies an event out before consuming it: with nowhere to put one it
        # fails (EFAULT) as soon as one is there, and leaves it in the ring.
        with ctx.lock:
            if ctx.dead:
                raise SyscallError(errno.EINVAL)
            _id, _nr, head, tail = RING_HEAD.unpack(ctypes.string_at(ctx.host,
                                                                     RING_HEAD.size))
        if head == tail and not min_nr:
            return 0
        raise GuestFault(events)  # (Linux would first wait for an event to fail on)
    count = min(want, room)
    buffer = ctypes.create_string_buffer(count * EVENT.size)
    got = host.call(NR["io_getevents"], ctx.host, min(min_nr, count), count,
                    ctypes.addressof(buffer), timeout)
    if not got:
        return 0
    requests = ctx.requests
    out = bytearray(buffer.raw[:got * EVENT.size])
    for offset in range(0, len(out), EVENT.size):
        data, obj, res, res2 = EVENT.unpack_from(out, offset)
        request = requests.pop(obj, None)
        # Never a km address to the guest: its own iocb pointer, or 0 if km lost it.
        EVENT.pack_into(out, offset, data, request[0] if request else 0, res, res2)
    mm.write(events, out)
    return got


def sys_io_getevents(t: GuestThread, ctx_id: int, min_nr: int, nr: int, events: int,
                     timeout: int, *_: int) -> int:
    pointer, box = _timeout(t, timeout)
    ctx = _lookup(t, ctx_id)
    try:
        return _reap(t, ctx, args.s64(min_nr), args.s64(nr), events, pointer)
    except SyscallError as e:
        # Linux returns EINTR even to a handler with SA_RESTART; a wake-up of km's own
        # (nothing to deliver) runs the call again.
        if e.errno == errno.EINTR:
            raise SyscallError(ERESTARTNOHAND) from None
        raise


def sys_io_pgetevents(t: GuestThread, ctx_id: int, min_nr: int, nr: int, events: int,
                      timeout: int, usig: int) -> int:
    pointer, box = _timeout(t, timeout)
    # struct __aio_sigset { const sigset_t *sigmask; size_t sigsetsize; }, or NULL.
    mask, size = struct.unpack("<QQ", t.mm.read(usig, 16)) if usig else (0, 0)

    def wait() -> int:
        return _reap(t, _lookup(t, ctx_id), args.s64(min_nr), args.s64(nr), events, pointer)
    try:
        return _with_mask(t, mask, size, wait)
    except SyscallError as e:
        if e.errno == errno.EINTR:  # Linux: ERESTARTNOHAND when nothing was reaped
            raise SyscallError(ERESTARTNOHAND) from None
        raise


HANDLERS = {
    "io_setup": sys_io_setup,
    "io_destroy": sys_io_destroy,
    "io_submit": sys_io_submit,
    "io_cancel": sys_io_cancel,
    "io_getevents": sys_io_getevents,
    "io_pgetevents": sys_io_pgetevents,
}
