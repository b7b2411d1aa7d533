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
