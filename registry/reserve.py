"""A little disk space kept back, so that a full disk cannot also erase why an operation failed.

When an install fills the disk, everything it wrote is removed before its failure is recorded,
but the disk may have been full because of something else entirely. SQLite then cannot append
the few pages that record "failed: the disk is full", the row stays "installing", and the next
launch can only call it interrupted. The data folder therefore holds a small file of reserved
blocks; the registry gives it up when a failure cannot otherwise be written, and takes it back
at the next opening that finds room.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# A failure record touches a handful of pages (the row, an index, the WAL header): 256 KiB
# is dozens of times that, and nothing anyone would miss.
RESERVE_BYTES = 256 * 1024


def keep_reserve(path: Path) -> None:
    """Create the reserve if it is missing; silently do nothing where there is no room."""
    try:
        if path.exists() and path.stat().st_size >= RESERVE_BYTES:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        _allocate(fd, RESERVE_BYTES)
    except OSError:
        log.info("no room for the space reserve %s yet", path)
        os.close(fd)
        fd = -1
        _remove(path)
    finally:
        if fd != -1:
            os.close(fd)


def release_reserve(path: Path) -> bool:
    """Give the reserved space back to the disk; True when there was some to give."""
    if not path.exists():
        return False
    return _remove(path)


def _allocate(fd: int, size: int) -> None:
    """Reserve real blocks (a sparse file would free nothing when removed)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # raised where unsupported
                raise
    os.write(fd, bytes(size))


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True
