"""Process descriptors: pidfd_open, pidfd_send_signal, pidfd_getfd.

Guest pids are host pids (a guest's child is a forked km, its threads are km's threads),
so a pidfd is the host's own, and poll, waitid(P_PIDFD) and signals to other processes
are the host's. What km adds:

- The payload itself is km: a signal it sends itself through a pidfd is posted by km
  before the call returns, as kill(getpid()) is (kontain.syscalls.signal), with the
  siginfo Linux would make (SI_USER, SI_TKILL for a thread, or the caller's own).
- km's helper threads are not the payload's: pidfd_open refuses their tids (ESRCH, as
  for a thread that does not exist).
- pidfd_getfd never hands the payload one of a km's own descriptors. On its own process
  it is a dup of a guest descriptor (close-on-exec, lowest free number, as Linux's
  receive_fd). From another process (another km: the payload's children are), a
  descriptor at or above the guest's range is asked for as -1 (EBADF, after the checks
  Linux makes first: ESRCH, EPERM), and a KVM object that a km held for an instant in
  the guest's range is refused too. The new descriptor lands in the guest's range
  (EMFILE otherwise). Every km is non-dumpable, so the host lets one km take another's
  descriptor only with CAP_SYS_PTRACE; while km's seccomp filter forbids the call
  (kontain.monitor.seccomp), km answers as the host would without it: EPERM (ESRCH
  for a process that is gone), never making the call (which would kill km).

Which process a pidfd names, and whether it is a thread's (PIDFD_THREAD), km reads from
/proc/self/fdinfo, as any process can.
"""

from __future__ import annotations

import errno
import os
import struct

from kontain.linux import hostcall as host
from kontain.linux.hostcall import SyscallError
from kontain.linux.numbers import NUMBERS as NR
from kontain.mm.space import GuestFault
from kontain.monitor import seccomp
from kontain.monitor import signals as sig
from kontain.monitor.hostsignals import FORWARDED
from kontain.syscalls import args
from kontain.syscalls.io import fault_address
from kontain.syscalls.signal import _host_signals_now, _user_info

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from kontain.monitor.thread import GuestThread

PIDFD_THREAD = 0o200  # O_EXCL
PIDFD_SIGNAL_THREAD, PIDFD_SIGNAL_THREAD_GROUP, PIDFD_SIGNAL_PROCESS_GROUP = 1, 2, 4
_SIGNAL_FLAGS = 7
F_DUPFD_CLOEXEC = 1030


def _pidfd_of(fd: int) -> tuple[int, int] | None:
    """(pid, file flags) of a pidfd; None for any other descriptor (the host then says
    what Linux says of it). pid is -1 once the process is gone."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            text = info.read()
    except OSError:
        return None
    pid = flags = None
    try:
        for line in text.split(b"\n"):
            if line.startswith(b"Pid:"):
                pid = int(line[4:])
            elif line.startswith(b"flags:"):
                flags = int(line[6:], 8)
    except ValueError:
        return None
    if pid is None or flags is None:
        return None
    return pid, flags


def _own_thread(t: GuestThread, pid: int) -> GuestThread | None:
    return t.proc.group.threads.get(pid)


def _km_helper(t: GuestThread, pid: int) -> bool:
    """A thread of km's own process that is not one of the payload's."""
    return pid != t.proc.pid and _own_thread(t, pid) is None \
        and os.path.exists(f"/proc/self/task/{pid}")


def sys_pidfd_open(t: GuestThread, pid: int, flags: int, *_: int) -> int:
    pid = args.s32(pid)
    fd = t.proc.fds.adopt(host.call(NR["pidfd_open"], pid, flags & 0xFFFFFFFF))
    # After the host's checks (its errors come first): km's helper threads, and
    # processes km's jail keeps out of the payload's reach (Landlock's signal scope: the
    # host's own processes), are not there for the payload, as in a pid namespace.
    if pid > 0 and (_km_helper(t, pid) or host.syscall(NR["pidfd_send_signal"], fd, 0, 0, 0)
                    == -errno.EPERM):
        os.close(fd)
        raise SyscallError(errno.ESRCH)
    return fd


def sys_pidfd_send_signal(t: GuestThread, pidfd: int, signo: int, info: int, flags: int,
                          *_: int) -> int:
    flags &= 0xFFFFFFFF
    if flags & ~_SIGNAL_FLAGS or flags & (flags - 1):  # one scope at most
        raise SyscallError(errno.EINVAL)
    fd = args.fd(t, pidfd)
    signo = args.s32(signo)
    target = _pidfd_of(fd)
    if target is None or (target[0] != t.proc.pid and _own_thread(t, target[0]) is None):
        return _send_elsewhere(t, fd, signo, info, flags)
    pid, file_flags = target
    if flags == PIDFD_SIGNAL_PROCESS_GROUP:
        return _send_elsewhere(t, fd, signo, info, flags)  # km's group: the host's rules
    thread_scope = flags == PIDFD_SIGNAL_THREAD or (not flags and file_flags & PIDFD_THREAD)
    if info:
        data = bytearray(t.mm.read(info, sig.SIGINFO_SIZE))
        si_signo, _errno, code = struct.unpack_from("<iii", data)
        if si_signo != signo:
            raise SyscallError(errno.EINVAL)
        # Only to oneself (the calling thread's own pid) may one send any si_code.
        if t.tid != pid and (code >= 0 or code == sig.SI_TKILL):
            raise SyscallError(errno.EPERM)
        siginfo = bytes(data)
    else:
        siginfo = b""
    if not 0 <= signo <= sig.NSIG:
        raise SyscallError(errno.EINVAL)
    if not signo:
        return 0
    if not siginfo:
        siginfo = _user_info(t, signo, sig.SI_TKILL if thread_scope else sig.SI_USER)
    receiver = None
    if thread_scope:
        receiver = _own_thread(t, pid)
        if receiver is None:  # its thread is gone (the leader of a process that lives on)
            raise SyscallError(errno.ESRCH)
    t.proc.post_signal(signo, siginfo, receiver, sender=t)
    return 0


def _send_elsewhere(t: GuestThread, fd: int, signo: int, info: int, flags: int) -> int:
    """Another process (or km's process group): the host sends it. An unreadable siginfo
    faults where the host reads it (after its checks of the descriptor)."""
    pointer = 0
    if info:
        try:
            pointer = args.in_ptr(t, info, sig.SIGINFO_SIZE)
        except GuestFault:
            pointer = fault_address()
    result = host.call(NR["pidfd_send_signal"], fd, signo, pointer, flags)
    if signo in FORWARDED:
        # The target may be km itself after all (a /proc/PID directory is a pidfd too):
        # the host has queued the signal on km already, to be delivered before this
        # call returns, as Linux delivers a signal a process sends itself.
        _host_signals_now(t)
    if flags == PIDFD_SIGNAL_PROCESS_GROUP and signo and os.getpgid(0) == _group_of(fd):
        # km's own group, as kill(0) (kontain.syscalls.signal.sys_kill): the host queued
        # it on km too, unless km does not take that signal from the host.
        if signo not in FORWARDED and signo not in (sig.SIGKILL, sig.SIGSTOP):
            t.proc.post_signal(signo, _user_info(t, signo), sender=t)
    return result


def _group_of(fd: int) -> int:
    target = _pidfd_of(fd)
    if target is None or target[0] <= 0:
        return -1
    try:
        return os.getpgid(target[0])
    except OSError:
        return -1


def _is_kvm(fd: int) -> bool:
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return name == "/dev/kvm" or name.startswith("anon_inode:kvm")


def sys_pidfd_getfd(t: GuestThread, pidfd: int, targetfd: int, flags: int, *_: int) -> int:
    if flags & 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    fd = args.fd(t, pidfd)
    targetfd = args.s32(targetfd)
    target = _pidfd_of(fd)
    fds = t.proc.fds
    if target is not None and (target[0] == t.proc.pid or _own_thread(t, target[0])):
        # The payload's own descriptor: a dup, never one of km's.
        new = host.call(NR["fcntl"], args.fd(t, targetfd), F_DUPFD_CLOEXEC, 0)
        return fds.adopt(new)
    if target is not None and target[0] > 0 and _km_helper(t, target[0]):
        raise SyscallError(errno.ESRCH)
    if "pidfd_getfd" not in seccomp.ALLOWED:
        # km may not make the call: what the host says of a non-dumpable process.
        raise SyscallError(errno.EBADF if target is None else
                           errno.ESRCH if target[0] <= 0 else errno.EPERM)
    if not 0 <= targetfd < fds.km_base:
        targetfd = -1  # another km's own descriptor: EBADF, where Linux checks the fd
    new = host.call(NR["pidfd_getfd"], fd, targetfd, 0)
    if _is_kvm(new):
        os.close(new)
        raise SyscallError(errno.EBADF)
    return fds.adopt(new)


HANDLERS = {
    "pidfd_open": sys_pidfd_open,
    "pidfd_send_signal": sys_pidfd_send_signal,
    "pidfd_getfd": sys_pidfd_getfd,
}
