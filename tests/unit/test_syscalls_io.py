"""System call handlers of the io family (kontain/syscalls/io.py) without KVM: read/write
and their positioned and vectored relatives, lseek, sendfile, copy_file_range, splice, tee.

Linux is the oracle: each case is also made natively by this process, on host memory laid
out as the guest's is (`Twin`), and km must answer the same result, errno and bytes. The
cases cover short transfers into partly mapped buffers, buffers spanning two mappings,
read-only and unmapped buffers, NULL and km's own memory, bad and km-owned descriptors,
iovec limits, offsets, and EPIPE turning into SIGPIPE.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

import pytest
from harness import Guest, make_process, make_thread
from oracle import (
    BAD,
    HOLE,
    LAYOUT,
    MASK64,
    PAGE,
    RO,
    RW,
    Twin,
    call,
    hostile_registers_leave_km_untouched,
    native,
)

from kontain.linux.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
)
from kontain.machine.layout import kernel_va
from kontain.mm.access import SplitBuffer
from kontain.syscalls import io as family

SIGPIPE = 13


@pytest.fixture
def thread():
    return make_thread(make_process())


@pytest.fixture
def guest(thread):
    return Guest(thread)


@pytest.fixture
def twin(thread):
    made: list[Twin] = []

    def make(prots: list[int | None], data: bytes = b"") -> Twin:
        made.append(Twin(thread, prots, data))
        return made[-1]
    yield make
    for t in made:
        t.close()


@pytest.fixture
def files(tmp_path):
    """Two descriptors on two files with the same contents: one for km, one for the
    oracle (so that file offsets and contents can be compared afterwards)."""
    opened: list[int] = []

    def make(contents: bytes = b"", flags: int = os.O_RDWR) -> tuple[int, int]:
        pair = []
        for side in ("km", "native"):
            path = tmp_path / f"{side}{len(opened)}"
            path.write_bytes(contents)
            pair.append(os.open(path, flags))
        opened.extend(pair)
        return pair[0], pair[1]
    yield make
    for fd in opened:
        os.close(fd)


def closed_fd() -> int:
    """A descriptor number that is not open (in this process, hence in the guest)."""
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


# ---- results and the bytes they move ---------------------------------------------------

def test_write_then_read_move_the_bytes(thread, guest, files):
    fd, _ = files()
    data = guest.put(b"hello, world")
    assert call(thread, "write", fd, data, 12) == 12
    assert os.pread(fd, 100, 0) == b"hello, world"
    buf = guest.alloc(64)
    assert call(thread, "pread64", fd, buf, 64, 7) == 5
    assert guest.read(buf, 5) == b"world"
    assert call(thread, "pwrite64", fd, data, 5, 100) == 5
    assert os.fstat(fd).st_size == 105
    assert call(thread, "lseek", fd, 0, os.SEEK_CUR) == 12  # positioned calls keep it


def test_zero_length_transfers_touch_no_memory(thread, files):
    fd, nfd = files(b"abc")
    for name in ("read", "write"):
        assert call(thread, name, fd, BAD, 0) == native(name, nfd, BAD, 0) == 0
    assert call(thread, "pread64", fd, 0, 0, 1) == native("pread64", nfd, 0, 0, 1) == 0


def test_a_huge_count_reads_what_there_is(thread, guest, files):
    """count is capped at MAX_RW_COUNT and the buffer's mapped part is what matters."""
    fd, nfd = files(b"x" * 100)
    buf = guest.alloc(PAGE)
    host = ctypes.create_string_buffer(PAGE)
    assert call(thread, "read", fd, buf, 1 << 40) == \
        native("read", nfd, ctypes.addressof(host), 1 << 40) == 100


def test_a_count_past_the_address_space_is_efault(thread, guest, files):
    fd, nfd = files(b"x" * 100)
    host = ctypes.create_string_buffer(PAGE)
    assert native("read", nfd, ctypes.addressof(host), 1 << 63) == -errno.EFAULT
    assert call(thread, "read", fd, guest.alloc(PAGE), 1 << 63) == -errno.EFAULT


# ---- buffers: partly mapped, split, read-only, unmapped, km's ---------------------------

def test_read_into_a_partly_mapped_buffer_is_short(thread, twin, files):
    fd, nfd = files(bytes(range(256)) * 40)
    t = twin([RW, HOLE])
    start = PAGE - 100
    assert call(thread, "read", fd, t.guest + start, 300) == \
        native("read", nfd, t.host + start, 300) == 100
    assert thread.mm.read(t.guest + start, 100) == ctypes.string_at(t.host + start, 100)
    assert os.lseek(fd, 0, os.SEEK_CUR) == os.lseek(nfd, 0, os.SEEK_CUR) == 100


def test_write_from_a_partly_mapped_buffer_is_short(thread, twin, files):
    fd, nfd = files()
    t = twin([RW, HOLE], b"\x5a" * PAGE)
    start = PAGE - 100
    assert call(thread, "write", fd, t.guest + start, 300) == \
        native("write", nfd, t.host + start, 300) == 100
    assert os.pread(fd, 300, 0) == os.pread(nfd, 300, 0) == b"\x5a" * 100


def test_a_buffer_whose_first_byte_is_unmapped_is_efault(thread, twin, files):
    fd, nfd = files(b"data" * 100)
    t = twin([HOLE, RW])
    for name in ("read", "write"):
        assert call(thread, name, fd, t.guest + PAGE - 1, 10) == \
            native(name, nfd, t.host + PAGE - 1, 10) == -errno.EFAULT


def test_read_into_read_only_memory_is_efault(thread, twin, files):
    fd, nfd = files(b"data" * 100)
    t = twin([RO])
    assert call(thread, "read", fd, t.guest, 10) == native("read", nfd, t.host, 10) \
        == -errno.EFAULT
    assert os.lseek(fd, 0, os.SEEK_CUR) == os.lseek(nfd, 0, os.SEEK_CUR) == 0


def test_write_from_read_only_memory_works(thread, twin, files):
    fd, nfd = files()
    t = twin([RO], b"constant")
    assert call(thread, "write", fd, t.guest, 8) == native("write", nfd, t.host, 8) == 8
    assert os.pread(fd, 8, 0) == b"constant"


def test_a_buffer_spanning_two_mappings_moves_every_byte(thread, guest, files):
    """Two adjacent mappings are not contiguous in km's memory: the vectored host call
    moves the same bytes (and for a read-only first page, the write still works)."""
    fd, nfd = files(b"\x01" * 3 * PAGE)
    mm = thread.mm
    # Mapped top page first: the lower one then gets physical pages elsewhere.
    mm.mmap(LAYOUT + PAGE, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    mm.mmap(LAYOUT, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    with pytest.raises(SplitBuffer):
        mm.translate(LAYOUT + 10, PAGE, True)
    host = ctypes.create_string_buffer(2 * PAGE)
    assert call(thread, "read", fd, LAYOUT + 10, PAGE) == \
        native("read", nfd, ctypes.addressof(host), PAGE) == PAGE
    assert mm.read(LAYOUT + 10, PAGE) == b"\x01" * PAGE
    mm.write(LAYOUT, b"\x02" * 2 * PAGE)
    assert call(thread, "pwrite64", fd, LAYOUT + 10, PAGE, 0) == PAGE
    assert os.pread(fd, PAGE + 1, 0) == b"\x02" * PAGE + b"\x01"


@pytest.mark.parametrize("size", [8, PAGE])
def test_km_memory_and_kernel_addresses_are_efault(thread, files, size):
    """A guest pointer that happens to be km's address of something, or one in the
    guest kernel's half (GDT, stub), reaches nothing."""
    fd, _ = files(b"z" * PAGE)
    km = ctypes.create_string_buffer(b"km's own", size)
    for pointer in (ctypes.addressof(km), kernel_va(0), kernel_va(0x7000), MASK64 - 7):
        assert call(thread, "read", fd, pointer, size) == -errno.EFAULT
        assert call(thread, "pread64", fd, pointer, size, 0) == -errno.EFAULT
        assert call(thread, "write", fd, pointer, size) == -errno.EFAULT
    assert km.raw[:8] == b"km's own"
    assert os.lseek(fd, 0, os.SEEK_CUR) == 0 and os.fstat(fd).st_size == PAGE


def test_read_at_end_of_file_touches_no_memory(thread, twin, files):
    fd, nfd = files(b"")
    t = twin([HOLE])
    assert native("read", nfd, t.host, 10) == 0
    assert call(thread, "read", fd, t.guest, 10) == 0


def _pipe_pair():
    r, w = os.pipe2(os.O_NONBLOCK)
    return r, w


def _stream_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    b.setblocking(False)
    return b.detach(), a.detach()


def _datagram_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    return b.detach(), a.detach()


def _drain(fd: int) -> bytes:
    try:
        return os.read(fd, 1000)
    except BlockingIOError:
        return b""


CHANNELS = {"pipe": _pipe_pair, "unix stream": _stream_pair, "unix datagram": _datagram_pair}


@pytest.mark.parametrize("kind", CHANNELS)
def test_reading_a_channel_into_a_partly_mapped_buffer_is_efault(thread, twin, kind):
    t = twin([RW, HOLE])
    ends = [CHANNELS[kind]() for _ in range(2)]
    try:
        (kr, kw), (nr, nw) = ends
        os.write(kw, b"m" * 200)
        os.write(nw, b"m" * 200)
        assert native("read", nr, t.host + PAGE - 100, 200) == -errno.EFAULT
        left = _drain(nr)  # a stream keeps its bytes, a datagram is gone
        assert call(thread, "read", kr, t.guest + PAGE - 100, 200) == -errno.EFAULT
        assert _drain(kr) == left
    finally:
        for fd in (fd for pair in ends for fd in pair):
            os.close(fd)


@pytest.mark.parametrize("kind", CHANNELS)
def test_writing_a_channel_from_a_partly_mapped_buffer_is_efault(thread, twin, kind):
    t = twin([RW, HOLE], b"w" * PAGE)
    ends = [CHANNELS[kind]() for _ in range(2)]
    try:
        (kr, kw), (nr, nw) = ends
        assert native("write", nw, t.host + PAGE - 100, 200) == -errno.EFAULT
        assert call(thread, "write", kw, t.guest + PAGE - 100, 200) == -errno.EFAULT
        assert _drain(nr) == _drain(kr) == b""  # nothing was sent
    finally:
        for fd in (fd for pair in ends for fd in pair):
            os.close(fd)


# ---- descriptors ----------------------------------------------------------------------

def _km_fds(thread) -> list[int]:
    base = thread.proc.fds.km_base
    return [base, base + 1, -1 & 0xFFFFFFFF, 1 << 31]


@pytest.mark.parametrize("name", ["read", "write", "pread64", "pwrite64", "readv", "writev",
                                  "preadv", "pwritev", "preadv2", "pwritev2", "lseek"])
def test_bad_and_km_descriptors_are_ebadf(thread, guest, name):
    buf = guest.alloc(64)
    iov = guest.put(struct.pack("<QQ", buf, 64))
    pointer = iov if name.endswith(("v", "v2")) else buf
    count = 1 if name.endswith(("v", "v2")) else 64
    host_buf = ctypes.create_string_buffer(64)
    host_iov = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(host_buf), 64))
    host_pointer = ctypes.addressof(host_iov if name.endswith(("v", "v2")) else host_buf)
    closed = closed_fd()
    if name == "lseek":
        assert call(thread, name, closed, 0, 0) == native(name, closed, 0, 0) == -errno.EBADF
    else:
        assert call(thread, name, closed, pointer, count) == \
            native(name, closed, host_pointer, count) == -errno.EBADF
    for fd in _km_fds(thread):
        assert call(thread, name, fd, pointer, count) == -errno.EBADF


def test_a_bad_descriptor_is_found_before_a_bad_buffer(thread):
    closed = closed_fd()
    assert native("read", closed, BAD, 10) == -errno.EBADF
    assert call(thread, "read", closed, BAD, 10) == -errno.EBADF


def test_wrong_kinds_of_descriptor(thread, guest, tmp_path):
    buf = guest.alloc(64)
    host = ctypes.create_string_buffer(64)
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    read_only = os.open(os.devnull, os.O_RDONLY)
    r, w = os.pipe()
    try:
        cases = [("read", directory, 0), ("write", read_only, 0), ("read", w, 0),
                 ("pread64", r, 0), ("pwrite64", w, 0), ("pread64", directory, 0)]
        for name, fd, offset in cases:
            expected = native(name, fd, ctypes.addressof(host), 64, offset)
            assert expected < 0
            assert call(thread, name, fd, buf, 64, offset) == expected, name
    finally:
        for fd in (directory, read_only, r, w):
            os.close(fd)


# ---- offsets -----------------------------------------------------------------------------

@pytest.mark.parametrize("offset, whence", [
    (0, os.SEEK_SET), (5, os.SEEK_CUR), (-3 & MASK64, os.SEEK_END), (-1 & MASK64, os.SEEK_SET),
    (-1000 & MASK64, os.SEEK_END), (0, 7), (1 << 62, os.SEEK_SET), (0, os.SEEK_DATA),
    (100, os.SEEK_DATA), (0, os.SEEK_HOLE)])
def test_lseek_answers_like_linux(thread, files, offset, whence):
    fd, nfd = files(b"0123456789")
    assert call(thread, "lseek", fd, offset, whence) == native("lseek", nfd, offset, whence)


def test_positioned_calls_refuse_negative_offsets_and_pipes(thread, guest, files):
    fd, nfd = files(b"abc")
    buf = guest.alloc(16)
    host = ctypes.create_string_buffer(16)
    for name in ("pread64", "pwrite64"):
        assert call(thread, name, fd, buf, 1, -1 & MASK64) == \
            native(name, nfd, ctypes.addressof(host), 1, -1 & MASK64) == -errno.EINVAL
    r, w = os.pipe()
    try:
        assert call(thread, "lseek", r, 0, 0) == native("lseek", r, 0, 0) == -errno.ESPIPE
        assert call(thread, "pread64", r, buf, 1, 0) == -errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


# ---- vectors -------------------------------------------------------------------------------

def _iovecs(base: int, pieces: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<QQ", base + offset, length) for offset, length in pieces)


@pytest.mark.parametrize("pieces, expected", [
    ([(0, 10), (100, 20)], 30),                          # all mapped
    ([(0, 0), (PAGE - 10, 10)], 10),                     # empty entries are skipped
    ([(PAGE - 10, 30), (0, 10)], 10),                    # the second half of entry 0 is a hole
    ([(0, 10), (PAGE, 10), (20, 5)], 10),                # entry 1 starts in the hole
    ([(PAGE, 10), (0, 10)], -errno.EFAULT),              # the first entry is bad
    ([(PAGE, 0), (0, 10)], 10),                          # a bad but empty entry is skipped
    ([(0, 8), (2 * PAGE, 8)], 8),                        # entry 1 is read-only
    ([(2 * PAGE, 8)], -errno.EFAULT),                    # so is the only entry
])
def test_readv_moves_what_linux_moves(thread, twin, files, pieces, expected):
    fd, nfd = files(bytes(range(256)) * 40)
    t = twin([RW, HOLE, RO], b"")
    gio = thread.mm
    giov = LAYOUT + 3 * PAGE  # the iovec arrays live just above the layout
    gio.mmap(giov, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    gio.write(giov, _iovecs(t.guest, pieces))
    hiov = ctypes.create_string_buffer(_iovecs(t.host, pieces))
    assert native("readv", nfd, ctypes.addressof(hiov), len(pieces)) == expected
    assert call(thread, "readv", fd, giov, len(pieces)) == expected
    offset, length = pieces[0]
    moved = max(expected, 0)
    if moved and length:
        assert gio.read(t.guest + offset, min(length, moved)) == \
            ctypes.string_at(t.host + offset, min(length, moved))


def test_writev_gathers_in_order(thread, guest, files):
    fd, _ = files()
    a, b = guest.put(b"first-"), guest.put(b"second")
    iov = guest.put(_iovecs(0, [(a, 6), (b, 6)]))
    assert call(thread, "writev", fd, iov, 2) == 12
    assert call(thread, "pwritev", fd, iov, 1, 100) == 6
    assert os.pread(fd, 200, 0) == b"first-second" + bytes(88) + b"first-"


@pytest.mark.parametrize("count", [-1 & 0xFFFFFFFF, 1025, 1 << 31])
def test_iovec_count_limits(thread, guest, files, count):
    fd, nfd = files(b"x")
    iov = guest.alloc(16)
    host = ctypes.create_string_buffer(16)
    assert call(thread, "readv", fd, iov, count) == \
        native("readv", nfd, ctypes.addressof(host), count) == -errno.EINVAL


def test_iovec_array_and_lengths_are_checked(thread, guest, files):
    fd, nfd = files(b"x" * 100)
    buf = guest.alloc(64)
    host = ctypes.create_string_buffer(64)
    # no entries: nothing is read, and the array pointer is not looked at
    assert call(thread, "readv", fd, BAD, 0) == native("readv", nfd, BAD, 0) == 0
    assert call(thread, "readv", fd, BAD, 1) == native("readv", nfd, BAD, 1) == -errno.EFAULT
    assert call(thread, "readv", fd, 0, 1) == native("readv", nfd, 0, 1) == -errno.EFAULT
    negative = guest.put(struct.pack("<QQ", buf, MASK64))
    host_negative = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(host),
                                                            MASK64))
    assert call(thread, "readv", fd, negative, 1) == \
        native("readv", nfd, ctypes.addressof(host_negative), 1) == -errno.EINVAL


def test_an_iov_len_of_2_to_the_63_is_einval(thread, guest, files):
    fd, nfd = files(b"x" * 100)
    host = ctypes.create_string_buffer(64)
    iov = guest.put(struct.pack("<QQ", guest.alloc(64), 1 << 63))
    host_iov = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(host), 1 << 63))
    assert native("readv", nfd, ctypes.addressof(host_iov), 1) == -errno.EINVAL
    assert call(thread, "readv", fd, iov, 1) == -errno.EINVAL


def test_iovec_array_partly_mapped_is_efault(thread, twin, files):
    fd, nfd = files(b"x" * 100)
    t = twin([RW, HOLE])
    entry = PAGE - 16  # one whole entry fits, the second lies in the hole
    thread.mm.write(t.guest + entry, struct.pack("<QQ", t.guest, 8))
    ctypes.memmove(t.host + entry, struct.pack("<QQ", t.host, 8), 16)
    assert call(thread, "readv", fd, t.guest + entry, 2) == \
        native("readv", nfd, t.host + entry, 2) == -errno.EFAULT


def test_vector_lengths_are_checked_before_any_buffer(thread, twin, files):
    """Linux reads and checks the whole array (a negative length is EINVAL) before it
    looks at a buffer, and it looks at the descriptor before the array."""
    fd, nfd = files(b"x" * 100)
    t = twin([RW, HOLE])
    pieces = [(PAGE, 8), (0, 1 << 63)]  # a buffer in the hole, then a length of 2**63
    thread.mm.write(t.guest, _iovecs(t.guest, pieces))
    ctypes.memmove(t.host, _iovecs(t.host, pieces), 32)
    assert call(thread, "readv", fd, t.guest, 2) == native("readv", nfd, t.host, 2) \
        == -errno.EINVAL
    closed = closed_fd()
    for count in (1, 2, 1025):
        assert call(thread, "readv", closed, BAD, count) == \
            native("readv", closed, BAD, count) == -errno.EBADF


@pytest.mark.parametrize("kind", CHANNELS)
def test_readv_of_a_channel_into_a_partly_mapped_entry_is_efault(thread, twin, kind):
    t = twin([RW, HOLE])
    ends = [CHANNELS[kind]() for _ in range(2)]
    try:
        (kr, kw), (nr, nw) = ends
        os.write(kw, b"m" * 200)
        os.write(nw, b"m" * 200)
        giov = LAYOUT + 2 * PAGE  # the iovec arrays live just above the layout
        thread.mm.mmap(giov, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        thread.mm.write(giov, _iovecs(t.guest, [(0, 50), (PAGE - 100, 150)]))
        hiov = ctypes.create_string_buffer(_iovecs(t.host, [(0, 50), (PAGE - 100, 150)]))
        assert native("readv", nr, ctypes.addressof(hiov), 2) == -errno.EFAULT
        left = _drain(nr)
        assert call(thread, "readv", kr, giov, 2) == -errno.EFAULT
        assert _drain(kr) == left
    finally:
        for fd in (fd for pair in ends for fd in pair):
            os.close(fd)


@pytest.mark.parametrize("name", ["read", "write"])
def test_a_zero_count_at_a_kernel_address_is_efault(thread, files, name):
    """access_ok() refuses a kernel address even for nothing; a user one is fine."""
    fd, nfd = files(b"abc")
    for pointer in (kernel_va(0), MASK64 - 7):
        assert call(thread, name, fd, pointer, 0) == native(name, nfd, pointer, 0) \
            == -errno.EFAULT
    assert call(thread, name, fd, BAD, 0) == native(name, nfd, BAD, 0) == 0


def test_preadv2_flags_and_current_position(thread, guest, files):
    fd, nfd = files(b"0123456789")
    buf = guest.alloc(16)
    iov = guest.put(struct.pack("<QQ", buf, 4))
    host = ctypes.create_string_buffer(16)
    host_iov = ctypes.create_string_buffer(struct.pack("<QQ", ctypes.addressof(host), 4))
    hiov = ctypes.addressof(host_iov)
    os.lseek(fd, 3, 0)
    os.lseek(nfd, 3, 0)
    # offset -1: the file position, which moves
    assert call(thread, "preadv2", fd, iov, 1, -1 & MASK64, 0, 0) == \
        native("preadv2", nfd, hiov, 1, -1 & MASK64, 0, 0) == 4
    assert guest.read(buf, 4) == host.raw[:4] == b"3456"
    assert os.lseek(fd, 0, 1) == os.lseek(nfd, 0, 1) == 7
    for flags in (0x1234_0000, 0x1):  # unknown flags; RWF_HIPRI is accepted
        assert call(thread, "preadv2", fd, iov, 1, 0, 0, flags) == \
            native("preadv2", nfd, hiov, 1, 0, 0, flags)


# ---- between descriptors -------------------------------------------------------------

def test_sendfile_updates_the_offset_like_linux(thread, guest, files):
    src, nsrc = files(b"abcdefghij")
    dst, ndst = files()
    offset = guest.put(struct.pack("<q", 2))
    host_offset = ctypes.c_int64(2)
    assert call(thread, "sendfile", dst, src, offset, 5) == \
        native("sendfile", ndst, nsrc, ctypes.addressof(host_offset), 5) == 5
    assert struct.unpack("<q", guest.read(offset, 8))[0] == host_offset.value == 7
    assert os.pread(dst, 10, 0) == os.pread(ndst, 10, 0) == b"cdefg"
    assert os.lseek(src, 0, 1) == os.lseek(nsrc, 0, 1) == 0  # with an offset, unmoved
    # without one, the file position is used and moves
    assert call(thread, "sendfile", dst, src, 0, 3) == \
        native("sendfile", ndst, nsrc, 0, 3) == 3
    assert os.lseek(src, 0, 1) == os.lseek(nsrc, 0, 1) == 3


def test_sendfile_errors(thread, guest, files):
    src, nsrc = files(b"abc")
    dst, ndst = files()
    assert call(thread, "sendfile", dst, src, BAD, 3) == \
        native("sendfile", ndst, nsrc, BAD, 3) == -errno.EFAULT
    negative = guest.put(struct.pack("<q", -1))
    host_negative = ctypes.c_int64(-1)
    assert call(thread, "sendfile", dst, src, negative, 3) == \
        native("sendfile", ndst, nsrc, ctypes.addressof(host_negative), 3) == -errno.EINVAL
    closed = closed_fd()
    assert call(thread, "sendfile", closed, src, 0, 3) == \
        native("sendfile", closed, nsrc, 0, 3) == -errno.EBADF
    for fd in _km_fds(thread):
        assert call(thread, "sendfile", dst, fd, 0, 3) == -errno.EBADF
        assert call(thread, "sendfile", fd, src, 0, 3) == -errno.EBADF


def test_copy_file_range_like_linux(thread, guest, files):
    src, nsrc = files(b"0123456789")
    dst, ndst = files()
    off_in, off_out = guest.put(struct.pack("<qq", 4, 1)), 0
    off_out = off_in + 8
    host = (ctypes.c_int64 * 2)(4, 1)
    hin, hout = ctypes.addressof(host), ctypes.addressof(host) + 8
    assert call(thread, "copy_file_range", src, off_in, dst, off_out, 3, 0) == \
        native("copy_file_range", nsrc, hin, ndst, hout, 3, 0) == 3
    assert struct.unpack("<qq", guest.read(off_in, 16)) == tuple(host) == (7, 4)
    assert os.pread(dst, 10, 0) == os.pread(ndst, 10, 0) == b"\x00456"
    assert call(thread, "copy_file_range", src, off_in, dst, off_out, 3, 1) == \
        native("copy_file_range", nsrc, hin, ndst, hout, 3, 1) == -errno.EINVAL
    assert call(thread, "copy_file_range", src, BAD, dst, 0, 3, 0) == \
        native("copy_file_range", nsrc, BAD, ndst, 0, 3, 0) == -errno.EFAULT
    assert call(thread, "copy_file_range", thread.proc.fds.km_base, 0, dst, 0, 3, 0) \
        == -errno.EBADF


def test_splice_and_tee_between_pipes(thread, guest, files):
    src, _ = files(b"spliced!")
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        offset = guest.put(struct.pack("<q", 1))
        assert call(thread, "splice", src, offset, w1, 0, 4, 0) == 4
        assert struct.unpack("<q", guest.read(offset, 8))[0] == 5
        assert call(thread, "tee", r1, w2, 100, 0) == 4
        assert os.read(r2, 100) == b"plic"
        assert os.read(r1, 100) == b"plic"  # tee left it in the first pipe
        # no pipe on either side; an offset on a pipe; a bad offset pointer
        assert call(thread, "splice", src, 0, src, 0, 4, 0) == \
            native("splice", src, 0, src, 0, 4, 0) == -errno.EINVAL
        assert call(thread, "splice", src, 0, w1, offset, 4, 0) == \
            native("splice", src, 0, w1, offset, 4, 0) == -errno.ESPIPE
        assert call(thread, "splice", src, BAD, w1, 0, 4, 0) == \
            native("splice", src, BAD, w1, 0, 4, 0) == -errno.EFAULT
        assert call(thread, "tee", r1, src, 4, 0) == native("tee", r1, src, 4, 0) \
            == -errno.EINVAL
        assert call(thread, "tee", thread.proc.fds.km_base, w2, 4, 0) == -errno.EBADF
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


# ---- EPIPE ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["write", "pwrite64", "writev"])
def test_writing_a_pipe_without_reader_is_epipe_and_sigpipe(thread, guest, name):
    r, w = os.pipe()
    os.close(r)
    data = guest.put(b"lost")
    pointer, count = data, 4
    if name == "writev":
        pointer, count = guest.put(struct.pack("<QQ", data, 4)), 1
    try:
        expected = -errno.ESPIPE if name == "pwrite64" else -errno.EPIPE
        assert call(thread, name, w, pointer, count, 0) == expected
        raised = bool(thread.pending.bits & 1 << (SIGPIPE - 1))
        assert raised == (expected == -errno.EPIPE)
    finally:
        os.close(w)


# ---- hostile registers ---------------------------------------------------------------------

NOT_SWEPT: dict[str, str] = {}  # every handler of the family is swept


@pytest.mark.parametrize("name", sorted(set(family.HANDLERS) - set(NOT_SWEPT)))
def test_hostile_registers_give_errors_never_crashes(thread, name):
    hostile_registers_leave_km_untouched(thread, name)
