"""Making writes survive a power cut.

A file's data, a new name in a folder and a rename are only on the disk once they are flushed:
ext4 with delayed allocation commits a rename within seconds but a file's blocks up to half a
minute later, so without these calls a registry commit can reach the disk before the files it
describes. The order the installer keeps is: files and their folders are flushed before the swap,
the folders a rename touched are flushed before the registry commit, and SQLite's own
``synchronous = FULL`` flushes the commit before it is reported done.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Opening a folder to flush it needs O_DIRECTORY on POSIX; where there is none (Windows) a
# folder cannot be flushed and a rename is made durable by the filesystem itself.
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_CAN_FLUSH_FOLDERS = hasattr(os, "O_DIRECTORY")


def flush_folder(path: Path) -> None:
    """Flush a folder's entries (the names created, renamed or removed in it) to the disk."""
    if not _CAN_FLUSH_FOLDERS:
        return
    fd = os.open(path, _DIRECTORY_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_folders(paths: set[Path]) -> None:
    """Flush several folders, deepest first, so that each parent is flushed after its children."""
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        flush_folder(path)


def flush_file(path: Path) -> None:
    """Flush one file's data and size to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileFlusher:
    """Flushes and closes files handed over by writers, on threads of its own.

    An ``fsync`` waits for the disk; done by the thread that wrote the file it would stall the
    decompression behind it. Handed over here, the waits overlap the writing of the next files
    and each other (the filesystem commits concurrent flushes together). At most
    ``MAX_IN_FLIGHT`` files wait at once, so an archive of many files never holds more
    descriptors open than that. Use as a context manager: leaving waits for every flush, and
    ``error`` then holds the first one that failed with the path it was for.
    """

    THREADS = 4
    MAX_IN_FLIGHT = 64

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.THREADS, thread_name_prefix="fsync")
        self._slots = threading.BoundedSemaphore(self.MAX_IN_FLIGHT)
        self._lock = threading.Lock()
        self.error: tuple[object, OSError] | None = None

    def __enter__(self) -> FileFlusher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)

    def hand_over(self, fd: int, label: object) -> None:
        """Take ownership of ``fd``: it is flushed and closed, even if flushing fails."""
        self._slots.acquire()
        try:
            self._pool.submit(self._flush, fd, label)
        except BaseException:
            os.close(fd)
            self._slots.release()
            raise

    def _flush(self, fd: int, label: object) -> None:
        try:
            os.fsync(fd)
        except OSError as error:
            with self._lock:
                if self.error is None:
                    self.error = (label, error)
        finally:
            os.close(fd)
            self._slots.release()
