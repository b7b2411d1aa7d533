"""Apply pending schema steps to the registry database, safely.

The launch sequence (see ``prepare_registry``):

1. Take the process lock (shared for a normal launch, exclusive only to migrate).
2. Preflight, read-only: is the file SQLite, is it ours (``application_id``), ``quick_check``,
   the schema version, and the checksums of the steps already applied.
3. A database newer than this app, corrupt, or foreign is refused and left byte-identical.
4. Pending steps: verified backup first, then every step in ONE ``BEGIN IMMEDIATE`` transaction
   with foreign keys off, ``foreign_key_check`` and the version bump before the commit. Any
   failure rolls back: the database is exactly as before and the backup is kept.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from migrations.lock import RegistryLock
from registry.errors import (
    MigrationError,
    RegistryBusyError,
    RegistryError,
    RegistryNeedsRescueError,
)

# "EXMG": marks the file as an Extension Manager registry for ``PRAGMA application_id``.
APPLICATION_ID = 0x45584D47
SQLITE_HEADER = b"SQLite format 3\x00"
HISTORY_TABLE = "schema_migrations"
STEP_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")
KEEP_BACKUPS = 5
BUSY_TIMEOUT_SECONDS = 10.0


RESCUE_HINT = (
    "Run 'extension-manager rescue' to restore the latest backup or to rebuild the registry "
    "from the extensions on disk."
)


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    name: str
    module: str
    checksum: str
    apply: Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class AppliedStep:
    version: int
    name: str
    checksum: str
    applied_at: str


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    path: Path
    exists: bool
    version: int
    latest: int
    applied: tuple[AppliedStep, ...] = ()

    @property
    def pending(self) -> int:
        return self.latest - self.version


@dataclass(frozen=True, slots=True)
class MigrationReport:
    from_version: int
    to_version: int
    backup: Path | None
    applied: tuple[str, ...] = field(default=())


def _checksum(source: bytes) -> str:
    # Line endings differ between checkouts on different systems; the step's meaning does not.
    return hashlib.sha256(source.replace(b"\r\n", b"\n")).hexdigest()


def load_steps() -> tuple[Step, ...]:
    """Every step shipped with the app, in order; numbering must be contiguous from 1."""
    found: list[Step] = []
    for entry in resources.files("migrations").iterdir():
        match = STEP_FILE.match(entry.name)
        if not match:
            continue
        module_name = f"migrations.{entry.name.removesuffix('.py')}"
        module = importlib.import_module(module_name)
        found.append(
            Step(
                version=int(match.group(1)),
                name=str(module.NAME),
                module=module_name,
                checksum=_checksum(entry.read_bytes()),
                apply=module.apply,
            )
        )
    found.sort(key=lambda step: step.version)
    for expected, step in enumerate(found, start=1):
        if step.version != expected:
            raise RuntimeError(f"migration steps are not contiguous: expected {expected:04d}")
    return tuple(found)


def latest_version(steps: tuple[Step, ...] | None = None) -> int:
    return len(steps if steps is not None else load_steps())


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS
    )
    try:
        yield connection
    finally:
        connection.close()


def _history(connection: sqlite3.Connection) -> tuple[AppliedStep, ...]:
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
    ).fetchone()
    if not exists:
        return ()
    rows = connection.execute(
        f"SELECT version, name, checksum, applied_at FROM {HISTORY_TABLE} ORDER BY version"
    ).fetchall()
    return tuple(AppliedStep(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows)


def read_status(db_path: Path, steps: tuple[Step, ...] | None = None) -> DatabaseStatus:
    """Inspect the database without writing to it; refuse anything we must not touch."""
    steps = steps if steps is not None else load_steps()
    latest = len(steps)
    if not db_path.exists() or db_path.stat().st_size == 0:
        return DatabaseStatus(db_path, exists=False, version=0, latest=latest)
    with db_path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise RegistryNeedsRescueError(
            f"The registry file {db_path} is not a SQLite database (it may be damaged or belong "
            f"to another program). It was left untouched. {RESCUE_HINT}"
        )
    _roll_back_hot_journal(db_path)
    try:
        with _read_only(db_path) as connection:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if application_id != APPLICATION_ID and (application_id != 0 or tables or version):
                raise RegistryError(
                    f"The file {db_path} is a SQLite database of another program, not an "
                    f"Extension Manager registry. It was left untouched. Move it away or choose "
                    f"another data folder with --data-dir."
                )
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise RegistryNeedsRescueError(
                    f"The registry {db_path} is damaged ({check}). It was left untouched. "
                    f"{RESCUE_HINT}"
                )
            applied = _history(connection)
    except RegistryError:
        raise
    except sqlite3.DatabaseError as error:
        if _is_permission_problem(error):
            raise RegistryError(
                f"The registry {db_path} cannot be opened ({error}): its file or folder is not "
                f"readable or writable. Check the permissions of {db_path.parent}, or choose "
                f"another data folder with --data-dir."
            ) from error
        raise RegistryNeedsRescueError(
            f"The registry {db_path} cannot be read ({error}). It was left untouched. {RESCUE_HINT}"
        ) from error
    if version > latest:
        raise RegistryError(
            f"The registry {db_path} was written by a newer Extension Manager (schema version "
            f"{version}; this app knows up to {latest}). It was left untouched. Update the app, "
            f"or use another data folder with --data-dir."
        )
    by_version = {step.version: step for step in steps}
    for done in applied:
        step = by_version.get(done.version)
        if step is not None and step.checksum != done.checksum:
            raise RegistryError(
                f"Migration {done.version:04d} ({done.name}) was changed after it was applied to "
                f"{db_path}; refusing to continue. Reinstall this version of the app."
            )
    return DatabaseStatus(db_path, exists=True, version=version, latest=latest, applied=applied)


def _is_permission_problem(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", None) or ""
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))


def _roll_back_hot_journal(db_path: Path) -> None:
    """Finish what SQLite does after a crash before the read-only preflight looks at the file.

    A process killed inside a transaction in rollback-journal mode (every migration of a
    database that predates WAL) leaves a "hot" journal holding the pages as they were before.
    A read-only connection cannot roll it back and refuses the file, so a kill during a
    migration would lock the user out. Any read on a writable connection makes SQLite restore
    the previous content, which is exactly the database as it was before the migration.
    """
    journal = db_path.with_name(db_path.name + "-journal")
    if not journal.exists() or journal.stat().st_size == 0:
        return
    try:
        connection = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error:
        return  # the read-only preflight reports the problem in its own words
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        pass
    finally:
        connection.close()


def _table_counts(connection: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names
    }


def backup_database(
    db_path: Path, backups_dir: Path, version: int, keep: int = KEEP_BACKUPS
) -> Path:
    """Copy the database with SQLite's online backup, verify the copy, keep the newest few."""
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = backups_dir / f"registry-v{version}-{stamp}.db"
    partial = target.with_suffix(".partial")
    # A launch killed during an earlier backup leaves its partial copy: it is never a backup.
    for stale in backups_dir.glob("registry-v*.partial"):
        stale.unlink(missing_ok=True)
    try:
        _copy_and_verify(db_path, backups_dir, version, partial)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    backups = sorted(backups_dir.glob("registry-v*.db"), key=lambda p: p.stat().st_mtime_ns)
    for old in backups[:-keep]:
        old.unlink(missing_ok=True)
    return target


def _copy_and_verify(db_path: Path, backups_dir: Path, version: int, partial: Path) -> None:
    with _read_only(db_path) as source:
        destination = sqlite3.connect(partial)
        try:
            source.backup(destination)
            destination.commit()
            check = destination.execute("PRAGMA integrity_check").fetchone()[0]
            copied_version = destination.execute("PRAGMA user_version").fetchone()[0]
            if check != "ok" or copied_version != version:
                raise MigrationError(
                    f"The backup of the registry could not be verified ({check}); nothing was "
                    f"changed. Check free disk space in {backups_dir} and start again."
                )
            if _table_counts(destination) != _table_counts(source):
                raise MigrationError(
                    "The backup of the registry does not match the original; nothing was "
                    f"changed. Check free disk space in {backups_dir} and start again."
                )
        finally:
            destination.close()


def _backup_failure(error: OSError | sqlite3.Error, backups_dir: Path) -> str:
    if isinstance(error, OSError):
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        full = getattr(error, "sqlite_errorname", None) == "SQLITE_FULL" or "disk is full" in str(
            error
        )
    if full:
        return (
            f"The disk is full: the registry could not be backed up before upgrading it, so it "
            f"was not upgraded and nothing was changed. Free some space on the disk that holds "
            f"{backups_dir} and start again."
        )
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return (
        f"Could not back up the registry before upgrading it ({reason}). Nothing was changed. "
        f"Check that {backups_dir} can be written and has free space, then start again."
    )


def apply_pending(db_path: Path, steps: tuple[Step, ...]) -> tuple[str, ...]:
    """Apply every step newer than the database's version in one transaction.

    Foreign keys are off for this connection (SQLite ignores the pragma inside a transaction,
    so it is set first): a table rebuild drops the old table, and with foreign keys on,
    ``ON DELETE CASCADE`` would silently delete every child row.
    """
    connection = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    applied: list[str] = []
    try:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute("BEGIN IMMEDIATE")
        try:
            current = connection.execute("PRAGMA user_version").fetchone()[0]
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            for step in steps:
                if step.version <= current:
                    continue
                try:
                    step.apply(connection)
                except sqlite3.Error as error:
                    raise MigrationError(
                        f"Upgrading the registry to version {step.version} ({step.name}) "
                        f"failed: {error}. The registry was left at version {current}, unchanged."
                    ) from error
                connection.execute(
                    f"INSERT INTO {HISTORY_TABLE} (version, name, checksum, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (step.version, step.name, step.checksum, _utc_now()),
                )
                applied.append(f"{step.version:04d} {step.name}")
            violations = connection.execute("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise MigrationError(
                    f"Upgrading the registry would break {len(violations)} references between "
                    f"tables (first: {violations[0]}). The registry was left unchanged."
                )
            # Both pragmas are part of the transaction: they roll back with it.
            connection.execute(f"PRAGMA user_version = {len(steps)}")
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        _enable_wal(connection)
    finally:
        connection.close()
    return tuple(applied)


def _enable_wal(connection: sqlite3.Connection, attempts: int = 50) -> None:
    # Switching the journal mode fails at once (no busy wait) while another connection holds a
    # lock, so it is retried briefly; WAL is persistent, so this happens once per database.
    for _ in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            time.sleep(0.02)
        else:
            return


def migrate(
    db_path: Path, backups_dir: Path, steps: tuple[Step, ...] | None = None
) -> MigrationReport:
    """Bring the database to the latest version. The caller must hold the exclusive lock."""
    steps = steps if steps is not None else load_steps()
    status = read_status(db_path, steps)
    if status.pending == 0:
        return MigrationReport(status.version, status.version, backup=None)
    backup = None
    if status.exists and status.version > 0:
        try:
            backup = backup_database(db_path, backups_dir, status.version)
        except (OSError, sqlite3.Error) as error:
            raise MigrationError(_backup_failure(error, backups_dir)) from error
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        applied = apply_pending(db_path, steps)
    except MigrationError as error:
        if backup is not None:
            raise MigrationError(f"{error} A backup is kept at {backup}.") from error
        raise
    except sqlite3.Error as error:
        raise MigrationError(
            f"Upgrading the registry failed: {error}. It was left at version {status.version}."
        ) from error
    return MigrationReport(status.version, len(steps), backup=backup, applied=applied)


def prepare_registry(
    db_path: Path,
    lock_path: Path,
    backups_dir: Path,
    *,
    wait_seconds: float = 60.0,
    steps: tuple[Step, ...] | None = None,
) -> tuple[RegistryLock, MigrationReport]:
    """Lock, preflight and migrate; return the lock (held shared) for the process's lifetime.

    The loop handles every interleaving of launches: whoever gets the exclusive lock migrates
    (after re-reading the version, since someone else may just have done it) and then drops to
    shared; the others wait while a migration runs, and proceed shared once nothing is pending.
    If the database still needs upgrading while other processes hold it shared, those are older
    windows of the app that are open right now: refuse, and say so.
    """
    steps = steps if steps is not None else load_steps()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = RegistryLock(lock_path)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            if lock.try_exclusive():
                report = migrate(db_path, backups_dir, steps)
                lock.try_shared()
                return lock, report
            if lock.try_shared():
                status = read_status(db_path, steps)
                if status.pending == 0:
                    return lock, MigrationReport(status.version, status.version, backup=None)
                raise RegistryBusyError(
                    f"The registry at {db_path} needs an upgrade (version {status.version} to "
                    f"{status.latest}), but another Extension Manager is using it. Close the other "
                    f"window or command, then start again."
                )
            # Someone holds the exclusive lock: a migration is running right now.
            if time.monotonic() > deadline:
                raise RegistryBusyError(
                    f"Another Extension Manager has been upgrading the registry at {db_path} for "
                    f"more than {wait_seconds:.0f} seconds. Wait for it to finish, then try again."
                )
            time.sleep(0.05)
    except BaseException:
        lock.release()
        raise
