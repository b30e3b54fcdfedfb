"""What krun remembers of a container between commands: one directory per container
under the state root (--root, /run/krun by default).

    ROOT/ID/state.json   the runtime-spec state, as written at create (status aside)
    ROOT/ID/exec.fifo    exists from create until start: the container's first process
                         waits to open it for writing; `start` opens it for reading

The status is never stored: it is read from the world each time, as runc does —
"created" while the fifo exists and the process lives, "running" once it is gone,
"stopped" when the process has exited (or its pid now names another process: the
process's start time is kept to tell).
"""

from __future__ import annotations

import os

from kontain.oci import jsonio

DEFAULT_ROOT = "/run/krun"
_ID_PUNCTUATION = frozenset("_+-.")


class StateError(Exception):
    """A command's container cannot be found, made or used as asked."""


def valid_id(container_id: str) -> str:
    if not container_id or container_id in (".", "..") or not all(
            c.isalnum() or c in _ID_PUNCTUATION for c in container_id):
        raise StateError(f"invalid container id: {container_id!r}")
    return container_id


def start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has exited: its state is stopped
        return None
    return int(fields[19])


class Container:
    """One container's directory of state."""

    def __init__(self, root: str, container_id: str) -> None:
        self.id = valid_id(container_id)
        self.dir = os.path.join(root, container_id)
        self.fifo = os.path.join(self.dir, "exec.fifo")
        self._state_file = os.path.join(self.dir, "state.json")

    @classmethod
    def make(cls, root: str, container_id: str) -> Container:
        container = cls(root, container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(container.dir, 0o711)
        except FileExistsError:
            raise StateError(f"container with id exists: {container_id}") from None
        os.mkfifo(container.fifo)
        # Writable by anyone (the umask would take that away): the container's first
        # process may be a user namespace's root, another uid on the host.
        os.chmod(container.fifo, 0o622)
        return container

    @classmethod
    def find(cls, root: str, container_id: str) -> Container:
        container = cls(root, container_id)
        if not os.path.exists(container._state_file):
            raise StateError(f"container does not exist: {container_id}")
        return container

    def save(self, state: dict) -> None:
        temporary = self._state_file + ".new"
        with open(temporary, "w") as f:
            jsonio.dump(state, f)
        os.replace(temporary, self._state_file)

    def load(self) -> dict:
        try:
            with open(self._state_file) as f:
                return jsonio.load(f)
        except (OSError, ValueError) as e:
            raise StateError(f"container {self.id}: state unreadable: {e}") from None

    def status(self, state: dict | None = None) -> str:
        state = state or self.load()
        pid = state.get("pid") or 0
        if pid <= 0 or start_time(pid) != state.get("krun", {}).get("start_time"):
            return "stopped"
        if state.get("krun", {}).get("paused"):
            return "paused"
        return "created" if os.path.exists(self.fifo) else "running"

    def public_state(self) -> dict:
        """The runtime-spec state JSON (`krun state`)."""
        state = self.load()
        status = self.status(state)
        shown = {key: state[key] for key in ("ociVersion", "id", "bundle") if key in state}
        shown["status"] = status
        shown["pid"] = state.get("pid", 0) if status != "stopped" else 0
        shown["annotations"] = state.get("annotations") or {}
        for key in ("created", "owner", "rootfs"):
            if key in state:
                shown[key] = state[key]
        return shown

    def remove(self) -> None:
        """Forget the container: its directory holds only files krun made (no shutil:
        `krun run` removes it on its way out, and that is timed)."""
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    try:
                        os.unlink(entry.path)
                    except IsADirectoryError:
                        import shutil  # (never made by krun)

                        shutil.rmtree(entry.path, ignore_errors=True)
                    except OSError:
                        pass
            os.rmdir(self.dir)
        except OSError:
            pass  # gone already, or not ours to remove: as rmtree(ignore_errors=True)


def all_containers(root: str) -> list[Container]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            found.append(Container.find(root, name))
        except StateError:
            continue
    return found
