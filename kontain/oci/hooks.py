"""config.json's hooks: programs the runtime runs at points of the container's life,
each given the container's state JSON on its standard input.

    prestart, createRuntime   during create, in krun's namespaces, once the container's
                              namespaces exist and before its root is pivoted to
    createContainer           during create, by the container's first process, before
                              the pivot (in the container's namespaces)
    startContainer            during start, by the container's first process, just before
                              the program runs (inside the container)
    poststart                 by start, once the program runs (a failure is a warning)
    poststop                  by delete, once the container is gone (a failure is a
                              warning; the other hooks still run)

Runtime spec: config.md "POSIX-platform Hooks".
"""

from __future__ import annotations

from kontain.oci import jsonio


class HookFailed(Exception):
    """A hook exited non-zero, timed out or could not be run."""


def run(config: dict, kind: str, state: dict) -> None:
    """Run the hooks of one kind in order; the first failure raises HookFailed."""
    for hook in ((config.get("hooks") or {}).get(kind) or []):
        _run_one(kind, hook, state)


def run_all(config: dict, kind: str, state: dict) -> list[str]:
    """Run every hook of one kind whatever the others do; the failures, as warnings."""
    warnings = []
    for hook in ((config.get("hooks") or {}).get(kind) or []):
        try:
            _run_one(kind, hook, state)
        except HookFailed as e:
            warnings.append(str(e))
    return warnings


def _run_one(kind: str, hook: dict, state: dict) -> None:
    import subprocess  # only when a hook runs: krun's start-up is timed

    path = hook.get("path")
    args = hook.get("args") or [path]
    try:
        done = subprocess.run(args, executable=path, input=jsonio.dumps(state).encode(),
                              env=dict(e.split("=", 1) for e in hook.get("env") or []
                                       if "=" in e),
                              timeout=hook.get("timeout"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, close_fds=True)
    except subprocess.TimeoutExpired:
        raise HookFailed(f"{kind} hook {path}: timed out after {hook['timeout']} s") from None
    except OSError as e:
        raise HookFailed(f"{kind} hook {path}: {e.strerror or e}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise HookFailed(f"{kind} hook {path}: exit status {done.returncode}"
                         + (f": {message[-1]}" if message else ""))
