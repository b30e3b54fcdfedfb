"""The file descriptor space shared by km and its payload.

Guest fd N is host fd N: no translation on the hot path, and poll/select/epoll, fd
passing and inheritance across fork/exec all work unchanged. km keeps its own
descriptors (/dev/kvm, the VM, the vCPUs, its diagnostics stream) at the top of the
RLIMIT_NOFILE range, above what the guest may use, and rejects guest access to them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource

#: How many descriptors at the top of the range km keeps for itself.
KM_RESERVED = 2048


class FdSpace:
    """Which descriptors belong to the guest, and the guest's RLIMIT_NOFILE."""

    def __init__(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            hard = soft
        reserved = min(KM_RESERVED, hard // 2)
        #: km's descriptors live in [km_base, hard).
        self.km_base = hard - reserved
        self._next_km_fd = self.km_base
        #: The guest's RLIMIT_NOFILE, as it sees it.
        self.guest_soft = min(soft, self.km_base)
        self.guest_hard = self.km_base

    def move_high(self, fd: int) -> int:
        """Move one of km's descriptors out of the guest's range (close-on-exec)."""
        if fd >= self.km_base:
            return fd
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self._next_km_fd)
        os.close(fd)
        self._next_km_fd = new + 1
        return new

    def check(self, fd: int) -> int:
        """A guest-supplied fd that must be in the guest's range; EBADF otherwise."""
        if not 0 <= fd < self.km_base:
            raise OSError(errno.EBADF, "bad file descriptor")
        return fd

    def adopt(self, fd: int) -> int:
        """A descriptor the host just created for the guest: enforce the guest's limit."""
        if fd >= self.guest_soft:
            os.close(fd)
            raise OSError(errno.EMFILE, "too many open files")
        return fd

    def set_limit(self, soft: int, hard: int) -> None:
        if soft > hard or hard > self.km_base:
            raise OSError(errno.EPERM if hard > self.km_base else errno.EINVAL, "setrlimit")
        self.guest_soft, self.guest_hard = soft, hard
