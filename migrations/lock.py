"""The process lock that makes migrations exclusive.

Every process of the app that has the registry open holds a *shared* lock on ``registry.lock``
for as long as it runs. A migration needs the *exclusive* lock, so it can never run while another
process has the registry open, and two launches racing on an old database cannot both migrate.
``flock`` locks belong to the open file, so the operating system drops them when a process dies
(kill -9 included): a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RegistryLock:
    """One open handle on the lock file; its mode moves between none, shared and exclusive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.mode: str = "none"

    def _flock(self, operation: int) -> bool:
        if self._fd is None:
            raise RuntimeError("the registry lock was already released")
        try:
            fcntl.flock(self._fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def try_exclusive(self) -> bool:
        if self._flock(fcntl.LOCK_EX):
            self.mode = "exclusive"
            return True
        return False

    def try_shared(self) -> bool:
        if self._flock(fcntl.LOCK_SH):
            self.mode = "shared"
            return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self.mode = "none"

    def __enter__(self) -> RegistryLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
