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
            # Room for km above everything the payload may use: the payload then sees
            # the limits it would natively (raising a hard limit needs CAP_SYS_RESOURCE).
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard + KM_RESERVED, hard + KM_RESERVED))
            #: km's descriptors live in [km_base, its own limit).
            self.km_base = hard
            #: The guest's RLIMIT_NOFILE, as it sees it.
            self.guest_soft, self.guest_hard = soft, hard
        except (ValueError, OSError):
            # Not allowed: km takes the top of the range it has, the payload the rest.
            # The payload is still told its limits as they are (what a program prints
            # or sizes its tables by); only its last descriptors are km's.
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                hard = soft
            self.km_base = hard - min(KM_RESERVED, hard // 2)
            self.guest_soft, self.guest_hard = soft, hard

    @property
    def usable(self) -> int:
        """The guest's descriptors are below this number (its limit, or km's first)."""
        return min(self.guest_soft, self.km_base)

    def move_high(self, fd: int) -> int:
        """Move one of km's descriptors out of the guest's range (close-on-exec). The
        lowest free number above the guest's is taken: closed ones are used again."""
        if fd >= self.km_base:
            return fd
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self.km_base)
        os.close(fd)
        return new

    def check(self, fd: int) -> int:
        """A guest-supplied fd that must be in the guest's range; EBADF otherwise."""
        if not 0 <= fd < self.km_base:
            raise OSError(errno.EBADF, "bad file descriptor")
        return fd

    def adopt(self, fd: int) -> int:
        """A descriptor the host just created for the guest: enforce the guest's limit."""
        if fd >= self.usable:
            os.close(fd)
            raise OSError(errno.EMFILE, "too many open files")
        return fd

    def set_limit(self, soft: int, hard: int) -> None:
        if soft > hard:
            raise OSError(errno.EINVAL, "setrlimit")
        if hard > self.guest_hard:  # raising the hard limit: km has no room for it
            raise OSError(errno.EPERM, "setrlimit")
        self.guest_soft, self.guest_hard = soft, hard
