"""When the launch's full-file check (``PRAGMA quick_check``) may be skipped.

The check reads every page of the registry: about 70 ms at ten thousand extensions and 700 ms
at a hundred thousand, on every launch and every command. It finds damage done while the file
was not in a clean state (a crash or power cut in the middle of a write, another program, a
failing disk), so it is skipped only when none of that can have happened since it last passed:

- a check passed within ``RECHECK_AFTER`` (``registry.verified`` records when), and
- every process that had the registry open since then closed it cleanly: the last one to close
  found no write-ahead log left (SQLite removes it when the last connection closes; after a
  crash it stays) and recorded the file's identity (inode, size, modification and change
  times, which every write moves; the change time cannot be set back by any program), and
- the file still has that identity and no write-ahead log is beside it.

Otherwise the check runs. The stamp is only ever a reason to skip work: a missing, unreadable
or stale one means the check runs, and failing to write one (a read-only disk) costs nothing
but the next launch's check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

STAMP_SUFFIX = ".verified"
# A registry used every day is still checked in full once a week.
RECHECK_AFTER = 7 * 24 * 3600


def _stamp_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + STAMP_SUFFIX)


def _wal_is_empty(db_path: Path) -> bool:
    try:
        return db_path.with_name(db_path.name + "-wal").stat().st_size == 0
    except FileNotFoundError:
        return True


def _identity(db_path: Path) -> list[int]:
    st = db_path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _read(db_path: Path) -> dict[str, object]:
    try:
        stamp = json.loads(_stamp_path(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write(db_path: Path, stamp: dict[str, object]) -> None:
    path = _stamp_path(db_path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(stamp), encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        log.debug("could not record the registry's check in %s: %s", path, error)
        with contextlib.suppress(OSError):
            temporary.unlink()


def check_needed(db_path: Path, now: float | None = None) -> bool:
    """True unless the file is exactly as a clean close left it after a recent passed check."""
    stamp = _read(db_path)
    verified_at = stamp.get("verified_at")
    if not isinstance(verified_at, int | float):
        return True
    if (time.time() if now is None else now) - verified_at > RECHECK_AFTER:
        return True
    try:
        return not _wal_is_empty(db_path) or stamp.get("closed_as") != _identity(db_path)
    except OSError:
        return True


def record_check_passed(db_path: Path) -> None:
    """The full check just passed: a clean close from now on may let the next launch skip it."""
    _write(db_path, {"verified_at": time.time(), "closed_as": None})


def record_clean_close(db_path: Path) -> None:
    """This process closed its connections. If it was the last one (no log is left), record the
    file as it is now, so that the next launch can tell nothing touched it since."""
    stamp = _read(db_path)
    if "verified_at" not in stamp:
        return
    try:
        if not _wal_is_empty(db_path):
            return  # another process still has the registry open; it records its own close
        stamp["closed_as"] = _identity(db_path)
    except OSError:
        return
    _write(db_path, stamp)
