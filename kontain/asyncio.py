"""kontain.asyncio.create_subprocess_exec: asyncio's, the program in its own VM.

Returns a Process with asyncio.subprocess.Process's interface (pid, stdin, stdout,
stderr as StreamWriter/StreamReader, wait, communicate, send_signal, terminate, kill,
returncode) and `.stats` once it has ended. Raises FileNotFoundError (and the other
OSErrors of an execve) as asyncio's does. The policy's wall_time kills the payload's
whole tree, as in kontain.api, and so does max_output in communicate(); kill() does too,
and so does the end of wait().
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kontain import api
from kontain.policy import Policy

__all__ = ["create_subprocess_exec", "Process"]


class Process:
    """asyncio.subprocess.Process, for a payload in its own VM."""

    def __init__(self, process: asyncio.subprocess.Process, stats_fd: int, args: Sequence[str],
                 policy: Policy) -> None:
        self._process, self._stats_fd, self.args, self.policy = process, stats_fd, args, policy
        self.pid = process.pid
        self.stdin, self.stdout, self.stderr = process.stdin, process.stdout, process.stderr
        self.stats: api.Stats | None = None
        self._limit: str | None = None
        self._started = time.monotonic()
        self._timer = None
        if policy.wall_time is not None:
            self._timer = asyncio.get_running_loop().call_later(policy.wall_time, self._wall)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def _wall(self) -> None:
        if self._process.returncode is None:
            self._limit = "wall_time"
            self.kill()

    def _ended(self) -> None:
        if self.stats is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        data = b""
        os.set_blocking(self._stats_fd, False)
        try:
            while chunk := os.read(self._stats_fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        self.stats = api._parse_stats(data, time.monotonic() - self._started, self._limit)
        api.kill_tree(self._stats_fd, self.pid)
        os.close(self._stats_fd)
        self._stats_fd = -1

    async def wait(self) -> int:
        code = await self._process.wait()
        self._ended()
        return code

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """As asyncio's; past policy.max_output (stdout and stderr together) the tree is
        killed and the first max_output bytes kept."""
        cap = self.policy.max_output
        if cap is None:
            out = await self._process.communicate(input)
            self._ended()
            return out
        taken = [0]

        async def feed() -> None:
            if self.stdin is None:
                return
            try:
                if input:
                    self.stdin.write(input)
                    await self.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                self.stdin.close()

        async def collect(stream: asyncio.StreamReader | None) -> bytes | None:
            if stream is None:
                return None
            chunks = []
            while chunk := await stream.read(65536):
                room = cap - taken[0]
                if len(chunk) > room:
                    chunks.append(chunk[:room])
                    taken[0] = cap
                    if self._limit is None:
                        self._limit = "max_output"
                        self.kill()
                    break
                chunks.append(chunk)
                taken[0] += len(chunk)
            return b"".join(chunks)
        _fed, out, err = await asyncio.gather(feed(), collect(self.stdout), collect(self.stderr))
        await self.wait()
        return out, err

    def send_signal(self, signal: int) -> None:
        self._process.send_signal(signal)

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        """SIGKILL the payload and every process of its tree."""
        if self._process.returncode is None:
            self._process.kill()
        if self._stats_fd >= 0:
            api.kill_tree(self._stats_fd, self.pid)

    def __repr__(self) -> str:
        return f"<kontain.asyncio.Process {self.pid}>"


async def create_subprocess_exec(program: str | bytes | os.PathLike, *args: Any,
                                 stdin: Any = None, stdout: Any = None, stderr: Any = None,
                                 limit: int = 2 ** 16, cwd: Any = None,
                                 env: Mapping[str, str] | None = None, root: Any = None,
                                 policy: Policy | None = None,
                                 km_options: Sequence[str] = (), **kwds: Any) -> Process:
    """asyncio.create_subprocess_exec(program, *args, ...), in a VM under policy."""
    argv = [os.fsdecode(program)] + [os.fsdecode(a) for a in args]
    policy = api._policy(policy, root)
    host_cwd = cwd
    if cwd is not None and policy.root is not None:
        host_cwd = os.path.join(policy.root, os.fsdecode(cwd).lstrip("/"))
    loop = asyncio.get_running_loop()
    holder: dict[str, Any] = {}

    async def spawn(command: list[str], pass_fds: tuple[int, ...]) -> None:
        holder["process"] = await asyncio.create_subprocess_exec(
            *command, stdin=stdin, stdout=stdout, stderr=stderr, limit=limit, cwd=host_cwd,
            env=env, pass_fds=pass_fds, **kwds)

    command, stats_fd, keep = api._command(argv, km_options, policy)
    try:
        try:
            await spawn(command, keep)
        finally:
            for fd in keep:
                os.close(fd)
        line = await loop.run_in_executor(None, api._read_line, stats_fd)
    except BaseException:
        os.close(stats_fd)
        raise
    process = holder["process"]
    if not line.startswith(b'{"started"'):
        await process.wait()
        os.close(stats_fd)
        api._raise_start_error(line, argv[0], process.returncode)
    return Process(process, stats_fd, argv, policy)
