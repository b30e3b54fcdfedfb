"""km's diagnostics: -V tracing by category, and the stream km's own messages go to.

Categories: syscall, mem, exit, load, signal. `-V` enables all of them; `-V=REGEX`
enables those whose name matches REGEX. Output goes to a descriptor km keeps above the
guest's range, so payload redirections of fd 2 do not capture it.
"""

from __future__ import annotations

import os
import time


class Tracer:
    def __init__(self, pattern: str | None, fd: int) -> None:
        if pattern:
            import re  # only when a pattern is given: km start-up is timed

            self._regex = re.compile(pattern)
        else:
            self._regex = None
        self._all = pattern == ""
        self.fd = fd
        self._start = time.monotonic()
        self._cache: dict[str, bool] = {}

    def enabled(self, category: str) -> bool:
        if self._all:
            return True
        if self._regex is None:
            return False
        hit = self._cache.get(category)
        if hit is None:
            hit = self._cache[category] = bool(self._regex.search(category))
        return hit

    def log(self, category: str, message: str) -> None:
        if self.enabled(category):
            stamp = time.monotonic() - self._start
            self.write(f"km: {stamp:10.6f} {category}: {message}\n")

    def write(self, text: str) -> None:
        try:
            os.write(self.fd, text.encode(errors="replace"))
        except OSError:
            pass
