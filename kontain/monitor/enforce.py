"""km --policy FILE: a kontain.Policy mapped onto what km enforces.

Each knob becomes the mechanism km already has, or a small check of its own:

- root, memory: the launch's root and guest memory size (km --root, --mem-size);
- cpu_time, max_file_size: RLIMIT_CPU and RLIMIT_FSIZE, set on km itself (km carries
  out the payload's work, so the host enforces them as it would on the payload: SIGXCPU
  forwarded to the payload, SIGKILL at the hard limit a second later; EFBIG) and shown
  to the payload by getrlimit; max_open_files: the payload's RLIMIT_NOFILE (EMFILE);
- allow / deny: an OCI seccomp profile for the payload's calls
  (kontain.monitor.syscall_filter), denials counted for the stats;
- read_only, writable, hidden, tmpfs, mounts: km's own mount namespace
  (kontain.monitor.mountpolicy), so the host kernel gives EROFS and friends;
- network, allow_connect: kontain.monitor.netpolicy, checked on socket calls;
- max_processes, max_threads: kontain.monitor.procpolicy, checked on fork and clone;
- allow_exec: checked on the file execve opened (kontain.monitor.exec).

wall_time and max_output are the caller's (kontain.api): km knows neither.
"""

from __future__ import annotations

import math
import os
import resource

TYPE_CHECKING = False  # no typing import at run time: km start-up is timed
if TYPE_CHECKING:
    from collections.abc import Callable

    from kontain.monitor.launch import LaunchSpec
    from kontain.monitor.policy import Policy
    from kontain.monitor.process import Process

RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE = 0, 1, 7


class Denials:
    """Calls the policy refused: counts by name, and each one when deny_log is set."""

    #: The most denials kept one by one (the counts go on).
    LOG_MAX = 1000

    def __init__(self, log: bool) -> None:
        self.counts: dict[str, int] = {}
        self.log: list[dict] | None = [] if log else None

    def record(self, name: str, verdict: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.log is not None and len(self.log) < self.LOG_MAX:
            self.log.append({"call": name, "verdict": verdict})


class Enforcement:
    """One policy, applied to one launch (configure), then to its process (attach)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.denials = Denials(bool(policy.deny_log))
        self.processes = None
        self._programs: set[str] | None = None

    def configure(self, spec: LaunchSpec, handlers: dict[str, Callable[..., int]]
                  ) -> dict[str, Callable[..., int]]:
        """Set the launch up for the policy; returns the handlers the payload gets."""
        p = self.policy
        if p.root is not None and spec.root == "/":  # (km --root DIR wins)
            spec.root = p.root
        if p.memory is not None:
            spec.mem_size = p.memory
        if p.cpu_time is not None:
            soft = max(1, math.ceil(p.cpu_time))
            self._host_limit(spec, RLIMIT_CPU, soft, soft + 1)
        if p.max_file_size is not None:
            self._host_limit(spec, RLIMIT_FSIZE, p.max_file_size, p.max_file_size)
        if p.allow is not None or p.deny:
            spec.syscall_filter = self.syscall_filter()
        if any(getattr(p, name) for name in ("read_only", "writable", "hidden", "tmpfs",
                                             "mounts")):
            from kontain.monitor import mountpolicy
            spec.prepare_root = lambda root: mountpolicy.prepare(p, root)
        if p.allow_exec is not None and p.allow_exec is not True:
            spec.exec_allowed = self._exec_allowed
        handlers = dict(handlers)
        if p.max_file_size is not None:
            handlers = _file_size_signal(handlers)
        if p.network not in (None, "host") or p.allow_connect:
            from kontain.monitor import netpolicy
            handlers = netpolicy.wrap(handlers, p.network or "host",
                                      p.allow_connect or (), self.denials)
        if p.max_processes is not None or p.max_threads is not None:
            from kontain.monitor import procpolicy
            self.processes = procpolicy.Limits(p.max_processes, p.max_threads, self.denials)
            handlers = self.processes.wrap(handlers)
            spec.process_limits = self.processes
        return handlers

    def attach(self, proc: Process) -> None:
        """After the launch: what lives in the process itself."""
        if self.policy.max_open_files is not None:
            n = min(self.policy.max_open_files, proc.fds.guest_hard)
            proc.fds.set_limit(n, n)

    def syscall_filter(self):
        """allow / deny as an OCI seccomp profile (kontain.monitor.syscall_filter)."""
        from kontain.monitor.syscall_filter import compile_profile
        p = self.policy
        rules = []
        if p.allow is not None:
            profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                       "architectures": ["SCMP_ARCH_X86_64"]}
            allowed = set(p.allow) - set(p.deny or ())
            if allowed:
                rules.append({"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"})
        else:
            profile = {"defaultAction": "SCMP_ACT_ALLOW"}
        for name, verdict in (p.deny or {}).items():
            if verdict == "kill":
                rules.append({"names": [name], "action": "SCMP_ACT_KILL_PROCESS"})
            else:
                rules.append({"names": [name], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": verdict})
        profile["syscalls"] = rules
        compiled = compile_profile(profile)
        compiled.on_deny = self.denials.record
        return compiled

    def _exec_allowed(self, proc: Process, host_path: str) -> bool:
        """Whether execve may run the file at host_path (its real path: the program
        opened, links resolved), for allow_exec's guest paths resolved the same way."""
        allowed = self.policy.allow_exec
        if isinstance(allowed, bool):
            ok = allowed
        else:
            ok = host_path in self._allowed_programs(proc, allowed)
        if not ok:
            self.denials.record("execve", "EACCES")
        return ok

    def _allowed_programs(self, proc: Process, paths: tuple[str, ...]) -> set[str]:
        if self._programs is None:
            programs = set()
            for path in paths:
                try:
                    programs.add(os.path.realpath(os.fsdecode(
                        proc.host_path(os.fsencode(path)))))
                except OSError:
                    pass  # (not in the root: nothing to allow)
            self._programs = programs
        return self._programs

    @staticmethod
    def _host_limit(spec: LaunchSpec, resource_id: int, soft: int, hard: int) -> None:
        """A limit the host enforces on km (never above the one km has)."""
        _old_soft, old_hard = resource.getrlimit(resource_id)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(resource_id, (soft, hard))
        spec.rlimits[resource_id] = (soft, hard)


#: Calls that can grow a file: past RLIMIT_FSIZE Linux sends SIGXFSZ, then fails them
#: with EFBIG (generic_write_check_limits, inode_newsize_ok).
GROWING_CALLS = ("write", "pwrite64", "writev", "pwritev", "pwritev2", "truncate",
                 "ftruncate", "fallocate", "copy_file_range", "sendfile", "splice")
SIGXFSZ, EFBIG = 25, 27


def _file_size_signal(handlers: dict[str, Callable[..., int]]) -> dict[str, Callable[..., int]]:
    """The calls that can grow a file, sending SIGXFSZ as Linux does when they fail with
    EFBIG. (The host did send it, to km's thread, where it is blocked like every signal
    km forwards but not to its signalfd's thread: it is taken back here.)"""
    import _signal

    from kontain.monitor import signals as sig
    out = dict(handlers)

    def make(original: Callable[..., int]) -> Callable[..., int]:
        def checked(t, *args: int) -> int:
            try:
                return original(t, *args)
            except OSError as e:
                if e.errno == EFBIG:
                    try:
                        _signal.sigtimedwait([SIGXFSZ], 0)
                    except OSError:
                        pass
                    t.proc.post_signal(SIGXFSZ, sig.siginfo(SIGXFSZ, sig.SI_USER,
                                                            pid=t.proc.pid, uid=os.getuid()),
                                       t, sender=t)
                raise
        return checked
    for name in GROWING_CALLS:
        if name in out:
            out[name] = make(out[name])
    return out


def load(path: str) -> Enforcement:
    """The policy in TOML file path (ValueError, OSError when it cannot be used)."""
    from kontain.monitor.policy import Policy
    return Enforcement(Policy.load(path))


class Extras:
    """km --policy FILE and --stats-fd N, for km's command line: one object it asks at
    the launch's few points (configure, launched or failed, finished)."""

    def __init__(self, policy_path: str | None, stats_fd: int | None) -> None:
        self.enforcement = load(policy_path) if policy_path else None
        if self.enforcement is not None:
            policy = self.enforcement.policy
            ignored = [n for n in ("wall_time", "max_output") if getattr(policy, n) is not None]
            if ignored:  # (kontain.run's to enforce: it leaves them out of what it hands km)
                verb = "is" if len(ignored) == 1 else "are"
                os.write(2, f"km: --policy: {' and '.join(ignored)} {verb} enforced by "
                            "kontain.run, not by km: ignored\n".encode())
        if policy_path and policy_path.startswith("/dev/fd/"):
            # Handed over as a pipe (kontain.api): not a descriptor for the payload.
            import contextlib
            with contextlib.suppress(ValueError, OSError):
                os.close(int(policy_path[len("/dev/fd/"):]))
        self.stats = None
        if stats_fd is not None:
            from kontain.monitor.statsfd import StatsReport
            self.stats = StatsReport(stats_fd)
            self.stats.enforcement = self.enforcement

    def configure(self, spec: LaunchSpec, handlers: dict[str, Callable[..., int]]
                  ) -> dict[str, Callable[..., int]]:
        if self.enforcement is not None:
            handlers = self.enforcement.configure(spec, handlers)
        if self.stats is not None:
            spec.stats = True  # (the per-call counts)
        limits = self.enforcement.processes if self.enforcement is not None else None

        def adopt(fds) -> None:
            if self.stats is not None:
                self.stats.adopt_fds(fds)
            if limits is not None:
                limits.adopt_fds(fds)
        spec.adopt_fds = adopt
        return handlers

    def launched(self, proc: Process) -> None:
        if self.enforcement is not None:
            self.enforcement.attach(proc)
        if self.stats is not None:
            self.stats.launched(proc.pid)

    def failed(self, error: Exception) -> None:
        if self.stats is not None:
            self.stats.failed(error)

    def finished(self, proc: Process, outcome) -> None:
        if self.stats is not None:
            self.stats.finished(proc, outcome)
        if self.enforcement is not None and self.enforcement.processes is not None:
            self.enforcement.processes.release()
