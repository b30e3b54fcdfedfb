"""`krun exec`: one more process in a running container, a km VM like the others.

The new process joins the container's cgroup, then every namespace of the container's
first process (opened up front from /proc/PID/ns; the mount namespace last, since it
takes the host's paths away), forks once more so that a pid namespace applies to it,
and becomes km running the exec's process, with the container's root as its /.
"""

from __future__ import annotations

import os
import socket

from kontain.kvm.api import Kvm
from kontain.linux import hostcall as host
from kontain.linux.numbers import NUMBERS as NR
from kontain.oci import init
from kontain.oci.cgroups import Cgroup
from kontain.oci.spec import NAMESPACE_FLAGS

#: The order setns takes them in: user first (it grants the rights for the others),
#: mount last.
NAMESPACE_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")
PROC_NAMES = {"network": "net", "mount": "mnt", "pid": "pid", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}


def process_for_exec(config: dict, args: list[str], cwd: str | None, env: list[str],
                     user: str | None, tty: bool) -> dict:
    """runc's rule: the container's process, with what exec's options replace."""
    process = dict(config.get("process") or {})
    process["args"] = args
    process["terminal"] = tty
    if cwd:
        process["cwd"] = cwd
    process["env"] = list(process.get("env") or []) + list(env)
    if user:
        uid, _, gid = user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return process


def open_namespaces(pid: int) -> list[tuple[str, int]]:
    """(type, descriptor) of each namespace the container's process has that krun's
    own process does not share, in setns order."""
    opened = []
    for kind in NAMESPACE_ORDER:
        name = PROC_NAMES[kind]
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.readlink(theirs) == os.readlink(f"/proc/self/ns/{name}"):
                continue
        except OSError:
            continue  # (a namespace type this kernel lacks)
        opened.append((kind, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
    return opened


def enter(container_pid: int, cgroup: Cgroup, process: dict, report: init.Reporter,
          console_socket: socket.socket | None, preserve_fds: int, kvm: Kvm,
          syscall_filter: object = None, device_rules: object = None) -> None:
    """The child of `krun exec`: never returns."""
    try:
        namespaces = open_namespaces(container_pid)
        cgroup.join(os.getpid())
        for kind, fd in namespaces:
            host.call(NR["setns"], fd, NAMESPACE_FLAGS[kind])
            os.close(fd)
        if any(kind == "pid" for kind, _fd in namespaces):
            child = os.fork()
            if child:
                report.send(pid=child)
                os._exit(0)
        else:
            report.send(pid=os.getpid())
        init.set_rlimits(process)
        if process.get("terminal") and console_socket:
            init.console(console_socket)
        elif console_socket:
            console_socket.close()
        init.close_inherited(set(range(3, 3 + preserve_fds)) | {report.fd, kvm.fd})
        init.set_user_and_capabilities(process)
        report.send(ready=1)
        os.close(report.fd)
    except BaseException as e:  # noqa: BLE001 - everything goes back to exec as one line
        report.send(error=init.describe(e))
        os._exit(1)
    init.run_km({"process": process}, kvm, False, syscall_filter, device_rules)
