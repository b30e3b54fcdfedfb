"""vmsplice, splice, tee, Linux AIO and pidfds in detail, each group of calls run natively
and under km by tests/payloads/sysdetails_io.c and compared line by line: results,
errno names, and the order in which Linux checks its arguments (a zero length before
the flags, the flags before the descriptors, a pipe's offset before the pointer...).

What km must add to the host's own answers, and what these tests pin down:

- vmsplice hands the pipe the guest's pages themselves (a change after the call shows
  through, gifted pages survive munmap); memory that is not accessible faults where it
  does natively (EFAULT, or a short count); huge lengths and counts are refused or
  truncated on the same numbers.
- AIO: km submits copies of the guest's iocbs; events name the guest's own iocb and
  carry its aio_data; the context id the guest gets is a mapping of its own, never km's
  ring (libaio reads it and falls back to the system call); contexts end at fork (in
  the child) and at execve.
- pidfds: signals the payload sends itself are delivered before the call returns;
  pidfd_getfd never yields one of km's descriptors.
"""

import pytest

from .oracle import compare

LIBCS = ["musl", "glibc"]


@pytest.fixture(params=LIBCS)
def libc(request):
    return request.param


@pytest.fixture
def musl_payload(payloads):
    return payloads.build("sysdetails_io", "musl")


@pytest.fixture
def payload(payloads, libc):
    """Built with both libcs, for the calls that go through libc wrappers or threads."""
    return payloads.build("sysdetails_io", libc)


# ---- vmsplice, splice, tee --------------------------------------------------------------


def test_vmsplice_like_linux(payload, run_both, assert_same):
    out = compare(run_both([payload, "vmsplice"]), assert_same)
    # The pipe holds the pages, not a copy: a change made after the call is what is read.
    assert 'vmsplice then change: 6\nreader sees: "AFTER!" (6 bytes)\n' in out
    assert "vmsplice gift: 8192\nafter munmap: 8192 bytes" in out
    assert "vmsplice unmapped base: -1 EFAULT\n" in out
    assert "vmsplice unmapped iovec array: -1 EFAULT\n" in out
    assert "vmsplice partly mapped: 4096\n" in out
    assert 'vmsplice to partly mapped: -1 EFAULT\nlanded: "0123" (4 bytes)\n' in out
    assert "vmsplice len 2^62: 4096\n" in out
    assert "vmsplice len -1: -1 EINVAL\n" in out
    assert "vmsplice 1025 segments: -1 EINVAL\n" in out
    assert "vmsplice bad fd bad iovec: -1 EBADF\n" in out
    assert "vmsplice fd beyond limit: -1 EBADF\n" in out
    assert "vmsplice no reader: -1 EPIPE\nSIGPIPEs: 1\n" in out


def test_splice_and_tee_like_linux(payload, run_both, assert_same):
    out = compare(run_both([payload, "splice"]), assert_same)
    assert "splice bad off_in on pipe: -1 ESPIPE\n" in out
    # A read-only offset: the data moves, then writing the offset back fails.
    assert 'splice read-only off_in: -1 EFAULT\nro_off still 2\npipe holds: "YZ4"' in out
    assert "splice len 0 bad fds: 0\nsplice len 0 bad flags: 0\n" in out
    assert "splice bad flags bad fds: -1 EINVAL\n" in out
    assert "tee len 0 bad flags: -1 EINVAL\ntee len 0 bad fds: 0\n" in out
    assert "splice fd beyond limit: -1 EBADF\n" in out
    assert "tee no reader: -1 EPIPE\nSIGPIPEs: 1\n" in out
    assert "splice file no reader: -1 EPIPE\nSIGPIPEs: 3\n" in out
    # sendfile reads the offset before the descriptors, writes it back even after an
    # error; copy_file_range reads it after them, writes it back only after a copy.
    assert 'sendfile read-only offset: -1 EFAULT\npipe holds: "YZ4"' in out
    assert "sendfile bad fd, read-only offset: -1 EFAULT\n" in out
    assert "copy_file_range read-only off_in: -1 EFAULT\n" in out
    assert "copy_file_range bad fd, bad off_in: -1 EBADF\n" in out
    assert "copy_file_range at EOF, read-only off_out: 0\n" in out


# ---- AIO ------------------------------------------------------------------------------


def test_aio_like_linux(musl_payload, run_both, assert_same):
    out = compare(run_both([musl_payload, "aio"]), assert_same)
    assert "reaped: 1\n  data 100 iocb #0 res 18 res2 0\n" in out
    assert "libaio getevents: 1\n  data 11 iocb #0 res 4 res2 0\n" in out
    assert 'io_submit preadv across mappings: 1\nreaped: 1\n  data 13 iocb #0 res 13' in out
    assert "eventfd counted 3\n" in out
    assert "getevents, poll pending: 0\n" in out
    assert "poll reaped: 1\n  data 30 iocb #0 res 65 res2 0\n" in out
    assert "getevents interrupted: -1 EINTR\n" in out
    assert "io_cancel poll: -1 EINPROGRESS\ncancelled: 1\n  data 31 iocb #0" in out
    assert "child: io_submit on the parent's context: -1 EINVAL\n" in out
    assert "child: reaped: 1\n  data 50 iocb #0 res 2 res2 0\n" in out
    assert "io_destroy: 0\nio_destroy again: -1 EINVAL\n" in out


def test_aio_errors_like_linux(musl_payload, run_both, assert_same):
    out = compare(run_both([musl_payload, "aio_errors"]), assert_same)
    assert "io_setup read-only: -1 EFAULT\n" in out
    assert "opcode 99 bad fd: -1 EBADF\n" in out
    assert "fd beyond limit: -1 EBADF\nresfd not an eventfd: -1 EINVAL\n" in out
    assert "read-only iocb: -1 EFAULT\nread-only iocb, bad fd: -1 EBADF\n" in out
    assert "batch, third bad: 2\n" in out
    # Memory that is not there fails in the event, as natively: not at submission.
    assert "pread into unmapped: 1\nreaped: 1\n  data 1 iocb #0 res EFAULT" in out
    assert "pread partly mapped: 1\nreaped: 1\n  data 3 iocb #0 res 6 res2 0\n" in out
    assert "pread into kernel address: -1 EFAULT\n" in out
    assert "pread 2^62 bytes: 1\nreaped: 1\n  data 6 iocb #0 res 6 res2 0\n" in out
    assert "preadv len -1: -1 EINVAL\n" in out
    assert "preadv second unmapped: 1\nreaped: 1\n  data 12 iocb #0 res 4 res2 0\n" in out
    # An event with nowhere to go stays in the ring.
    assert "getevents unmapped events: -1 EFAULT\n" in out
    assert "still there: 1\n  data 14 iocb #0 res 3 res2 0\n" in out


def test_aio_across_threads_like_linux(payload, run_both, assert_same):
    out = compare(run_both([payload, "aio_threads"]), assert_same)
    assert "io_destroy while a thread waits: 0\nwaiter: -1 EINVAL\n" in out
    assert "reaped 200 events from another thread's submissions, 0 wrong\n" in out


def test_aio_contexts_end_at_execve(musl_payload, run_both, assert_same):
    """A context with a request in flight does not survive execve: its id names nothing
    in the new program, which makes its own."""
    out = compare(run_both([musl_payload, "aio_exec"]), assert_same)
    assert "after exec: io_submit on the old context: -1 EINVAL\n" in out
    assert "after exec: io_destroy of the old context: -1 EINVAL\n" in out
    assert 'after exec: reaped: 1\n  data 3 iocb #0 res 4 res2 0\nread: "\\x7fELF"' in out


def test_aio_context_is_a_guest_mapping_not_kms_ring(musl_payload, run_both):
    """Natively the context id is the kernel's ring, mapped in the process. Under km it
    is a mapping of the guest's own, where km's ring would be: readable (libaio peeks
    at it), named like the ring, gone after io_destroy, but holding no ring (the magic
    is not there, so libaio makes the system call), so no km memory shows through."""
    runs = run_both([musl_payload, "aio_ring"])
    assert runs.native.returncode == 0 and runs.km.returncode == 0, runs.km.err
    assert runs.native.out.startswith("ring magic: AIO_RING_MAGIC\n")
    assert runs.km.out.startswith("ring magic: not a ring\n")
    rest = "mapped: yes, 1 pages, name: /[aio] (deleted)\n" \
           "aio rings mapped after io_destroy: 0\ndone\n"
    assert runs.native.out.endswith(rest) and runs.km.out.endswith(rest)


# ---- pidfd ----------------------------------------------------------------------------


def test_pidfd_like_linux(payload, run_both, assert_same):
    """pidfd_open, pidfd_send_signal (to itself, a thread, a child), pidfd_getfd on
    itself, waitid(P_PIDFD); the last signal, SIGTERM to itself, ends the process."""
    out = compare(run_both([payload, "pidfd"]), assert_same, status=-15)
    assert "pidfd_open self: ok, close-on-exec: yes, lowest free: yes\n" in out
    assert "after send: SIGUSR1 x1, SI_USER, from self: yes, value 0\n" in out
    assert "after send: SIGUSR1 x1, SI_QUEUE, from self: yes, value 42\n" in out
    assert "after send: SIGUSR1 x1, SI_TKILL, from self: yes, value 0\n" in out
    assert "while blocked: SIGUSR1 x0" in out and "after unblocking: SIGUSR1 x1" in out
    assert "handled by that thread: yes\n" in out
    assert ("send SI_QUEUE to the process group: 0\n"
            "after send: SIGUSR1 x1, SI_QUEUE, from self: yes, value 7\n") in out
    assert "send SI_USER to the process group: -1 EPERM\n" in out
    assert "SIGPIPEs: 1\n" in out  # SIGPIPE to its own group, which km takes itself
    assert "pidfd_getfd self: ok, close-on-exec: yes, lowest free: yes\n" in out
    assert 'pipe holds: "through the copy"' in out
    for i in range(1, 9):
        assert f"pidfd_getfd target limit+{i}: -1 EBADF\n" in out
    assert "send SI_USER siginfo to the child: -1 EPERM\n" in out
    assert "child: code CLD_KILLED, status 15, pid matches: yes\n" in out
    assert "waitid P_PIDFD beyond limit: -1 EBADF\n" in out
    assert "not reached" not in out


def test_pidfd_getfd_from_a_child_never_yields_kms_descriptors(musl_payload, run_both):
    """Natively a process may take a descriptor of its own (dumpable) child. Every km is
    non-dumpable (one of its walls), so the host refuses a payload's pidfd_getfd of
    another km's descriptor with EPERM, before it looks at the number: the known
    difference. Either way no descriptor of km's own range ever comes back."""
    runs = run_both([musl_payload, "pidfd_getfd_child"])
    assert runs.native.returncode == 0 and runs.km.returncode == 0, runs.km.err
    assert 'pidfd_getfd child fd 100: read 14 "from the child"\n' in runs.native.out
    assert "pidfd_getfd child fd 100: EPERM\n" in runs.km.out
    for i in range(1, 9):
        assert f"pidfd_getfd child, limit+{i}: -1 EBADF\n" in runs.native.out
        assert f"pidfd_getfd child, limit+{i}: -1 EPERM\n" in runs.km.out
    tail = "waitid P_PIDFD: 0\npidfd_getfd reaped child: -1 ESRCH\ndone\n"
    assert runs.native.out.endswith(tail) and runs.km.out.endswith(tail)
