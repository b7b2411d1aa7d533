"""Apply pending schema steps to the registry database, safely.

The launch sequence (the lock and its protocol are ``registry.lock.prepare_registry``):

1. Take the process lock (shared for a normal launch, exclusive only to migrate).
2. Preflight, read-only: is the file SQLite, is it ours (``application_id``), ``quick_check``,
   the schema version, and the checksums of the steps already applied.
3. A database newer than this app, corrupt, or foreign is refused and left byte-identical.
4. Pending steps: verified backup first, then every step in ONE ``BEGIN IMMEDIATE`` transaction
   with foreign keys off, ``foreign_key_check`` and the version bump before the commit. Any
   failure rolls back: the database is exactly as before and the backup is kept.

A step's identity is its SQL, not its file: the checksum recorded in ``schema_migrations`` is
taken over the step's ``STATEMENTS`` with comments dropped and whitespace collapsed outside
quoted text (``sql-v1:<sha256>``), so a reformatted file or a new docstring still matches while
a changed statement does not. The runner executes exactly those statements, so what is
checksummed is what runs. The first releases recorded the sha256 of the file's bytes instead;
those checksums are known per step (``LEGACY_CHECKSUMS``), accepted while the step's statements
are still the shipped ones, and re-stamped in the current format under the exclusive lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import importlib.util
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import ModuleType

from registry.errors import MigrationError, RegistryError, RegistryNeedsRescueError

# "EXMG": marks the file as an Extension Manager registry for ``PRAGMA application_id``.
APPLICATION_ID = 0x45584D47
SQLITE_HEADER = b"SQLite format 3\x00"
HISTORY_TABLE = "schema_migrations"
STEP_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")
KEEP_BACKUPS = 5
BUSY_TIMEOUT_SECONDS = 10.0
CHECKSUM_PREFIX = "sql-v1:"
# The characters SQLite's tokenizer reads as white space (a vertical tab is not one of them).
SQL_WHITESPACE = " \t\n\f\r"

log = logging.getLogger(__name__)


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
    statements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LegacyChecksum:
    """What the first releases recorded for a step, and the same step's SQL checksum."""

    file_sha256: str
    statements: str


# While checksums covered the file, each step file had exactly one version (commit 870d23de):
# these are the sha256 of its bytes (CRLF read as LF), as the first releases stored them, next
# to the checksum of that version's statements. A stored file checksum is accepted only while
# the step's statements still have that checksum, so a legacy registry cannot hide an edited
# statement.
LEGACY_CHECKSUMS: dict[int, LegacyChecksum] = {
    1: LegacyChecksum(
        file_sha256="23a6a471a4a9e7edb49bc7215dd6928f2b28b40868c16386e20026f8ee4e5660",
        statements="sql-v1:ef0ed3a46a3135e434eab61cc094d3c4f9c1fe4bbcfa5aad52e53fc2d9ac0138",
    ),
    2: LegacyChecksum(
        file_sha256="31e753ee518e0251128d01ce29c7abad7afe47b9cbb3b2520ff90f6adb110c80",
        statements="sql-v1:3a562130acba17f3f136dc9b041fc588a7c5ab70ec32ae06e675e33ec5fa46de",
    ),
}


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
    # Applied steps whose history row still holds a known checksum of the first releases.
    legacy_checksums: tuple[int, ...] = ()

    @property
    def pending(self) -> int:
        return self.latest - self.version


@dataclass(frozen=True, slots=True)
class MigrationReport:
    from_version: int
    to_version: int
    backup: Path | None
    applied: tuple[str, ...] = field(default=())
    restamped: tuple[int, ...] = field(default=())


def normalise_statement(statement: str) -> str:
    """The statement as SQLite reads it, minus layout: comments dropped, every run of white
    space outside quoted text collapsed to one space, none at either end. String literals and
    quoted identifiers are kept byte for byte, since their spaces are part of their meaning."""
    out: list[str] = []
    space_pending = False
    index, end = 0, len(statement)
    while index < end:
        char = statement[index]
        if char in SQL_WHITESPACE:
            space_pending = True
            index += 1
            continue
        if statement.startswith("--", index):
            newline = statement.find("\n", index)
            index = end if newline < 0 else newline + 1
            space_pending = True
            continue
        if statement.startswith("/*", index):
            close = statement.find("*/", index + 2)
            index = end if close < 0 else close + 2
            space_pending = True
            continue
        if char in "'\"`[":
            token_end = _quoted_end(statement, index)
            token = statement[index:token_end]
        else:
            token_end = index + 1
            token = char
        if space_pending and out:
            out.append(" ")
        space_pending = False
        out.append(token)
        index = token_end
    return "".join(out)


def _quoted_end(statement: str, start: int) -> int:
    """Where the literal or quoted identifier opening at ``start`` ends (a doubled closing
    quote is an escaped one; brackets have no escape). Unterminated: the end of the text."""
    opener = statement[start]
    closer = "]" if opener == "[" else opener
    index = start + 1
    while True:
        found = statement.find(closer, index)
        if found < 0:
            return len(statement)
        if closer != "]" and statement.startswith(closer * 2, found):
            index = found + 2
            continue
        return found + 1


def statements_checksum(statements: tuple[str, ...]) -> str:
    """The step's identity: its normalised statements, in order; empty ones do not count."""
    normalised = [text for text in map(normalise_statement, statements) if text]
    encoded = json.dumps(normalised, ensure_ascii=False, separators=(",", ":")).encode()
    return CHECKSUM_PREFIX + hashlib.sha256(encoded).hexdigest()


def _run_statements(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    def apply(connection: sqlite3.Connection) -> None:
        for statement in statements:
            connection.execute(statement)

    return apply


def sql_step(version: int, name: str, statements: tuple[str, ...], module: str = "") -> Step:
    """A step that runs ``statements`` in order, identified by their checksum."""
    return Step(
        version=version,
        name=name,
        module=module,
        checksum=statements_checksum(statements),
        apply=_run_statements(statements),
        statements=statements,
    )


class _RecordingConnection:
    """Stands in for the connection to see what a step module's own ``apply`` would execute."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, tuple[object, ...]]] = []

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> None:
        self.executed.append((sql, tuple(parameters)))


def _check_module_apply(module: ModuleType, statements: tuple[str, ...], label: str) -> None:
    """The runner executes ``STATEMENTS`` itself, because only they are checksummed. A module's
    ``apply`` that would do anything else (parameters, reading results, other work) would be
    silently skipped and its effect unprotected, so such a module is refused when loaded."""
    own_apply = getattr(module, "apply", None)
    if own_apply is None:
        return
    recorder = _RecordingConnection()
    try:
        own_apply(recorder)
        plain = recorder.executed == [(statement, ()) for statement in statements]
    except Exception:
        plain = False
    if not plain:
        raise RuntimeError(
            f"migration {label}: apply() does more than execute STATEMENTS in order. The runner "
            f"executes and checksums STATEMENTS only; express the change as SQL statements."
        )


def _step_modules(folder: Path | None) -> Iterator[tuple[re.Match[str], str, ModuleType]]:
    if folder is None:
        for entry in resources.files("migrations").iterdir():
            match = STEP_FILE.match(entry.name)
            if match:
                module_name = f"migrations.{entry.name.removesuffix('.py')}"
                yield match, module_name, importlib.import_module(module_name)
        return
    for path in folder.iterdir():
        match = STEP_FILE.match(path.name)
        if not match:
            continue
        module_name = f"{folder.name}.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"migration {path} cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield match, module_name, module


def load_steps(folder: Path | None = None) -> tuple[Step, ...]:
    """Every step shipped with the app (or found in ``folder``), in order; numbering must be
    contiguous from 1."""
    found: list[Step] = []
    for match, module_name, module in _step_modules(folder):
        statements = tuple(module.STATEMENTS)
        if not all(isinstance(statement, str) for statement in statements):
            raise RuntimeError(f"migration {module_name}: STATEMENTS must be strings")
        _check_module_apply(module, statements, module_name)
        found.append(sql_step(int(match.group(1)), str(module.NAME), statements, module_name))
    found.sort(key=lambda step: step.version)
    for expected, step in enumerate(found, start=1):
        if step.version != expected:
            raise RuntimeError(f"migration steps are not contiguous: expected {expected:04d}")
    return tuple(found)


def legacy_checksum(step: Step) -> str | None:
    """The checksum the first releases recorded for this step, if its statements are still
    the ones they shipped."""
    known = LEGACY_CHECKSUMS.get(step.version)
    if known is None or known.statements != step.checksum:
        return None
    return known.file_sha256


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
    legacy: list[int] = []
    for done in applied:
        step = by_version.get(done.version)
        if step is None or step.checksum == done.checksum:
            continue
        if done.checksum == legacy_checksum(step):
            legacy.append(step.version)
            continue
        raise RegistryError(
            f"Migration {done.version:04d} ({done.name}) was changed after it was applied to "
            f"{db_path}: its SQL statements are not the ones that ran (recorded checksum "
            f"{done.checksum}, this app's {step.checksum}). The registry was left untouched. "
            f"Use the Extension Manager release that upgraded it, or a newer one; a migration "
            f"that has been released must never change (add a new step instead)."
        )
    return DatabaseStatus(
        db_path,
        exists=True,
        version=version,
        latest=latest,
        applied=applied,
        legacy_checksums=tuple(legacy),
    )


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
            _restamp_legacy_checksums(connection, steps)
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


def _restamp_legacy_checksums(connection: sqlite3.Connection, steps: tuple[Step, ...]) -> None:
    # Only a row that still holds the exact known legacy checksum is rewritten.
    for step in steps:
        legacy = legacy_checksum(step)
        if legacy is not None:
            connection.execute(
                f"UPDATE {HISTORY_TABLE} SET checksum = ? WHERE version = ? AND checksum = ?",
                (step.checksum, step.version, legacy),
            )


def restamp_checksums(db_path: Path, steps: tuple[Step, ...]) -> None:
    """Rewrite the legacy checksums of applied steps in the current format, in one
    transaction. The caller must hold the exclusive lock."""
    connection = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            _restamp_legacy_checksums(connection, steps)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()


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
        restamped = status.legacy_checksums
        if restamped:
            try:
                restamp_checksums(db_path, steps)
            except sqlite3.Error as error:
                # The legacy checksums stay valid, so this must not keep anyone out; the next
                # exclusive open tries again.
                log.warning("could not re-stamp the migration checksums of %s: %s", db_path, error)
                restamped = ()
        return MigrationReport(status.version, status.version, backup=None, restamped=restamped)
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
    return MigrationReport(
        status.version,
        len(steps),
        backup=backup,
        applied=applied,
        restamped=status.legacy_checksums,
    )
