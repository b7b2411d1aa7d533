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
import itertools
import json
import logging
import re
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from migrations import verified
from registry.durable import flush_folder
from registry.errors import MigrationError, RegistryError, RegistryNeedsRescueError
from registry.paths import disk_is_read_only, free_bytes, same_disk
from registry.sizes import format_size

# "EXMG": marks the file as an Extension Manager registry for ``PRAGMA application_id``.
APPLICATION_ID = 0x45584D47
SQLITE_HEADER = b"SQLite format 3\x00"
HISTORY_TABLE = "schema_migrations"
STEP_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")
KEEP_BACKUPS = 5
# Room a launch needs besides the registry itself: SQLite's shared-memory index (32 KiB), the
# write-ahead log of the first writes (recovering an operation, progress rows), with margin.
OPEN_SPACE_BYTES = 1024 * 1024
# What a fresh registry needs: the schema of every step, in rollback-journal mode (the journal
# doubles the writes) and then switched to WAL.
NEW_REGISTRY_BYTES = 1024 * 1024
# Applying steps rebuilds tables inside one transaction: the new copy of a table and the
# journal (or write-ahead log) holding the pages it replaces each take up to the registry's
# size, so the working space is twice the registry, plus margin.
MIGRATION_WORKING_FACTOR = 2
MIGRATION_MARGIN_BYTES = 256 * 1024
BUSY_TIMEOUT_SECONDS = 10.0
CHECKSUM_PREFIX = "sql-v1:"
# The characters SQLite's tokenizer reads as white space (a vertical tab is not one of them).
SQL_WHITESPACE = " \t\n\f\r"

log = logging.getLogger(__name__)


RESCUE_HINT = (
    "Run 'extension-manager rescue' to restore the latest backup or to rebuild the registry "
    "from the extensions on disk."
)


class DiskConditionError(RegistryError):
    """The disk is full, over quota or read-only. An expected condition, never damage: the
    message says what is wrong and how much room is needed, and no rescue is offered (moving a
    registry aside on a full disk could not create a new one)."""


class MigrationDiskError(DiskConditionError, MigrationError):
    """An upgrade that cannot run, or did not finish, for lack of room; nothing was changed."""


class UnreadableRegistryError(RegistryNeedsRescueError):
    """SQLite cannot read the registry, or finds it damaged."""


class ForeignDatabaseError(RegistryError):
    """The file is a SQLite database of another program."""


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY_ERRNOS = (errno.EROFS,)


def _error_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_error_kind(error: BaseException) -> str | None:
    """What a full or read-only disk has to do with an error from SQLite or the operating
    system, looking through wrapped errors: "full", "read-only", "maybe" (an I/O error that a
    full or read-only disk also causes) or None."""
    kind: str | None = None
    for cause in _error_chain(error):
        if isinstance(cause, OSError) and cause.errno is not None:
            if cause.errno in _FULL_ERRNOS:
                return "full"
            if cause.errno in _READ_ONLY_ERRNOS:
                return "read-only"
        if isinstance(cause, sqlite3.Error):
            name = getattr(cause, "sqlite_errorname", None) or ""
            text = str(cause)
            if name == "SQLITE_FULL" or "database or disk is full" in text:
                return "full"
            if name in ("SQLITE_READONLY_ROLLBACK", "SQLITE_READONLY_RECOVERY"):
                # A read-only connection that finds a hot journal or log to replay: the disk
                # is to blame only if it really is read-only.
                kind = "maybe"
            elif name.startswith("SQLITE_READONLY") or "readonly database" in text:
                return "read-only"
            if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or "disk I/O error" in text:
                kind = "maybe"
    return kind


def disk_condition(
    folder: Path,
    needed: int,
    doing: str,
    outcome: str = "nothing was changed",
    then: str = "start again",
) -> DiskConditionError | None:
    """The plain sentence for a disk that cannot take ``doing`` now: read-only, or with less
    than ``needed`` bytes free. None when the disk is writable and has the room."""
    if disk_is_read_only(folder):
        return _read_only_error(folder, doing, outcome, then)
    free = free_bytes(folder)
    if free < needed:
        return DiskConditionError(
            f"The disk is full: {doing} needs about {format_size(needed)} free on the disk "
            f"holding {folder}, which has {format_size(free)} free, so {outcome}. Free some "
            f"space, then {then}."
        )
    return None


def _read_only_error(
    folder: Path, doing: str, outcome: str = "nothing was changed", then: str = "start again"
) -> DiskConditionError:
    return DiskConditionError(
        f"The disk holding {folder} is read-only (or the folder may not be written), so "
        f"{doing} is not possible and {outcome}. Make it writable, or choose another data "
        f"folder with --data-dir, then {then}."
    )


def expected_condition(
    error: BaseException, folder: Path, needed: int, doing: str
) -> DiskConditionError | None:
    """What a full or read-only disk made of ``error``, in one plain sentence; None when the
    error is something else (damage, a bug). An I/O error counts only when the disk really is
    full or read-only; SQLite's own "full" counts even with room on the disk (a quota)."""
    kind = disk_error_kind(error)
    if kind is None:
        return None
    condition = disk_condition(folder, needed, doing)
    if condition is not None or kind == "maybe":
        return condition
    if kind == "full":
        return DiskConditionError(
            f"The disk is full (or this user's quota is used up): {doing} needs about "
            f"{format_size(needed)} more free on the disk holding {folder}, so nothing was "
            f"changed. Free some space, then start again."
        )
    return DiskConditionError(
        f"The registry in {folder} is read-only (its file cannot be written), so {doing} is "
        f"not possible and nothing was changed. Check the permissions of the registry and its "
        f"folder, or choose another data folder with --data-dir, then start again."
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
    # What was moved out of the way before the database was opened, in words for the person.
    set_aside: tuple[str, ...] = field(default=())


# One token of a statement as SQLite reads it: a gap (a run of white space and comments, the
# ``gap`` group), or a string literal or quoted identifier up to its closing quote (a doubled
# quote is an escaped one, brackets have no escape), or to the end of the text when it is never
# closed. A comment that is never closed runs to the end of the text too. Every other character
# stands for itself.
_TOKENS = re.compile(
    rf"(?P<gap>(?:[{SQL_WHITESPACE}]+|--[^\n]*\n?|/\*.*?(?:\*/|\Z))+)"
    r"|'[^']*(?:''[^']*)*'?"
    r'|"[^"]*(?:""[^"]*)*"?'
    r"|`[^`]*(?:``[^`]*)*`?"
    r"|\[[^\]]*\]?",
    re.DOTALL,
)


def _layout(match: re.Match[str]) -> str:
    """A gap becomes one space, none at either end; a quoted token stays byte for byte."""
    if match.lastgroup != "gap":
        return match.group()
    return "" if match.start() == 0 or match.end() == len(match.string) else " "


def normalise_statement(statement: str) -> str:
    """The statement as SQLite reads it, minus layout: comments dropped, every run of white
    space outside quoted text collapsed to one space, none at either end. String literals and
    quoted identifiers are kept byte for byte, since their spaces are part of their meaning."""
    return _TOKENS.sub(_layout, statement)


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


def _package_file_names(package: str) -> list[str]:
    """The names of the files in ``package``: listed directly when it is a plain folder (every
    install but a zipped one), else through its resource reader, whose import (zipfile among
    others) a launch otherwise does not need."""
    folders = [Path(location) for location in importlib.import_module(package).__path__]
    if folders and all(folder.is_dir() for folder in folders):
        return [entry.name for folder in folders for entry in folder.iterdir()]
    from importlib import resources

    return [entry.name for entry in resources.files(package).iterdir()]


def _step_modules(folder: Path | None) -> Iterator[tuple[re.Match[str], str, ModuleType]]:
    if folder is None:
        # The package's own name: "migrations" in a checkout, inside another one when installed.
        package = __name__.rpartition(".")[0]
        for file_name in _package_file_names(package):
            match = STEP_FILE.match(file_name)
            if match:
                module_name = f"{package}.{file_name.removesuffix('.py')}"
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


_shipped_steps: tuple[Step, ...] | None = None


def load_steps(folder: Path | None = None) -> tuple[Step, ...]:
    """Every step shipped with the app (or found in ``folder``), in order; numbering must be
    contiguous from 1. The shipped steps are loaded and checksummed once per process (a launch
    asks for them more than once); a folder's are read again at every call."""
    global _shipped_steps
    if folder is not None:
        return _load_steps(folder)
    if _shipped_steps is None:
        _shipped_steps = _load_steps(None)
    return _shipped_steps


def _load_steps(folder: Path | None) -> tuple[Step, ...]:
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
                raise ForeignDatabaseError(
                    f"The file {db_path} is a SQLite database of another program, not an "
                    f"Extension Manager registry. It was left untouched. Move it away or choose "
                    f"another data folder with --data-dir."
                )
            if verified.check_needed(db_path):
                check = connection.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise UnreadableRegistryError(
                        f"The registry {db_path} is damaged ({check}). It was left untouched. "
                        f"{RESCUE_HINT}"
                    )
                verified.record_check_passed(db_path)
            applied = _history(connection)
            gaps = schema_gaps(connection, steps[:version]) if 0 < version <= latest else []
    except RegistryError:
        raise
    except sqlite3.DatabaseError as error:
        condition = expected_condition(
            error, db_path.parent, OPEN_SPACE_BYTES, "opening the registry"
        )
        if condition is not None:
            raise condition from error
        foreign = foreign_companions(db_path)
        if foreign:
            raise RegistryError(
                f"{foreign[0].path} does not belong to the registry ({foreign[0].reason}), so "
                f"the registry was not opened with it. Nothing was changed: close every "
                f"Extension Manager window, then start again, and it will be moved aside."
            ) from error
        if _is_permission_problem(error):
            raise RegistryError(
                f"The registry {db_path} cannot be opened ({error}): its file or folder is not "
                f"readable or writable. Check the permissions of {db_path.parent}, or choose "
                f"another data folder with --data-dir."
            ) from error
        raise UnreadableRegistryError(
            f"The registry {db_path} cannot be read ({error}). It was left untouched. {RESCUE_HINT}"
        ) from error
    if gaps:
        shown = "; ".join(gaps[:4]) + ("; ..." if len(gaps) > 4 else "")
        raise RegistryNeedsRescueError(
            f"The registry {db_path} says it is at schema version {version}, but it lacks "
            f"what that version creates: {shown}. Another program may have changed it, or it "
            f"was restored only in part. It was left untouched. {RESCUE_HINT}"
        )
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


_EXPECTED_SCHEMAS: dict[tuple[str, ...], dict[str, frozenset[str]]] = {}


def tables_and_columns(connection: sqlite3.Connection) -> dict[str, frozenset[str]]:
    """Every table of the database (SQLite's own and the runner's history aside) with the
    names of its columns."""
    names = [
        str(row[0])
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name != ?",
            (HISTORY_TABLE,),
        )
    ]
    return {
        name: frozenset(str(row[1]) for row in connection.execute(f'PRAGMA table_info("{name}")'))
        for name in names
    }


def expected_schema(steps: tuple[Step, ...]) -> dict[str, frozenset[str]]:
    """The tables and columns that ``steps`` create, found by running them on an empty
    database in memory (once per set of steps)."""
    key = tuple(f"{step.version}:{step.checksum}" for step in steps)
    cached = _EXPECTED_SCHEMAS.get(key)
    if cached is None:
        connection = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for step in steps:
                step.apply(connection)
            cached = tables_and_columns(connection)
        except sqlite3.Error:
            # Steps that cannot run on an empty database describe no schema to compare with.
            log.warning("the migration steps do not run on an empty database", exc_info=True)
            cached = {}
        finally:
            connection.close()
        _EXPECTED_SCHEMAS[key] = cached
    return cached


def schema_gaps(connection: sqlite3.Connection, steps: tuple[Step, ...]) -> list[str]:
    """What the database lacks of the tables and columns that ``steps`` (those it says it has
    applied) create: a dropped table or column, a partial restore. Extra ones are not gaps."""
    expected = expected_schema(steps)
    actual = tables_and_columns(connection)
    gaps: list[str] = []
    for table, columns in sorted(expected.items()):
        if table not in actual:
            gaps.append(f"the table {table} is missing")
            continue
        gaps.extend(
            f"the column {table}.{name} is missing" for name in sorted(columns - actual[table])
        )
    return gaps


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
    if journal_problem(db_path, journal) is not None:
        return  # another database's: never played back into this one (see migrate)
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


# -- companion files: a rollback journal or write-ahead log is used only if it is this database's

# https://www.sqlite.org/fileformat2.html: section 1.3 (the database header), 4.1 (the rollback
# journal) and 4.3 (the write-ahead log).
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
WAL_MAGIC_LITTLE_ENDIAN = 0x377F0682  # checksums in little-endian words
WAL_MAGIC_BIG_ENDIAN = 0x377F0683
WAL_FORMAT_VERSION = 3007000
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24
DB_HEADER_BYTES = 100


@dataclass(frozen=True, slots=True)
class DbHeader:
    """The fields of a database header (page 1) that tie a journal or log to its database."""

    page_size: int
    wal_mode: bool  # read/write format versions 2: the database is in WAL mode
    change_counter: int
    page_count: int | None  # the in-header size, when it is valid
    text_encoding: int
    application_id: int

    @classmethod
    def parse(cls, data: bytes) -> DbHeader | None:
        if len(data) < DB_HEADER_BYTES or not data.startswith(SQLITE_HEADER):
            return None
        raw_size = struct.unpack_from(">H", data, 16)[0]
        page_size = 65536 if raw_size == 1 else raw_size
        counter, pages = struct.unpack_from(">II", data, 24)
        valid_for = struct.unpack_from(">I", data, 92)[0]
        return cls(
            page_size=page_size,
            wal_mode=data[18] == 2 and data[19] == 2,
            change_counter=counter,
            page_count=pages if valid_for == counter and pages > 0 else None,
            text_encoding=struct.unpack_from(">I", data, 56)[0],
            application_id=struct.unpack_from(">I", data, 68)[0],
        )


@dataclass(frozen=True, slots=True)
class ForeignCompanion:
    path: Path
    reason: str  # why it is not this database's, in words for a person


def _read_db_header(db_path: Path) -> DbHeader | None:
    try:
        with db_path.open("rb") as handle:
            return DbHeader.parse(handle.read(DB_HEADER_BYTES))
    except FileNotFoundError:
        return None


def _same_encoding(first: DbHeader, second: DbHeader) -> bool:
    # A new database has no text encoding (0) until its first table is created.
    return 0 in (first.text_encoding, second.text_encoding) or (
        first.text_encoding == second.text_encoding
    )


def _valid_page_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _valid_sector_size(size: int) -> bool:
    return 32 <= size <= 65536 and size & (size - 1) == 0


def _journal_page_checksum(nonce: int, page: bytes) -> int:
    # SQLite's pager_cksum: the nonce plus every 200th byte, from the end of the page.
    total = nonce
    index = len(page) - 200
    while index > 0:
        total += page[index]
        index -= 200
    return total & 0xFFFFFFFF


def _journal_first_page(data: bytes, page_size: int) -> bytes | None:
    """The journal's copy of page 1 (the page as the transaction found it), if SQLite would
    play one back: every segment is read the way SQLite reads a hot journal, and a record whose
    checksum fails ends the playback."""
    offset = 0
    record_size = 4 + page_size + 4
    while offset + 28 <= len(data) and data[offset : offset + 8] == JOURNAL_MAGIC:
        count, nonce, _initial, sector, size = struct.unpack_from(">IIIII", data, offset + 8)
        if size != page_size or not _valid_sector_size(sector):
            return None
        header_size = sector
        position = offset + header_size
        if count == 0xFFFFFFFF:
            count = (len(data) - position) // record_size
        for _ in range(count):
            if position + record_size > len(data):
                return None
            number = struct.unpack_from(">I", data, position)[0]
            page = data[position + 4 : position + 4 + page_size]
            checksum = struct.unpack_from(">I", data, position + 4 + page_size)[0]
            if checksum != _journal_page_checksum(nonce, page):
                return None
            if number == 1:
                return page
            position += record_size
        offset = -(-position // header_size) * header_size
    return None


def journal_problem(db_path: Path, journal: Path) -> str | None:
    """Why ``journal`` is not a hot journal of the database at ``db_path`` (None when it is, or
    when SQLite would not use it anyway).

    A hot journal holds the pages a transaction found, so it must agree with the database:
    the same page size; as the original size, the size the database had when that transaction
    began; and its copy of page 1 must be the page 1 the database had then, whose change
    counter is the database's or one less (the transaction's commit may have written page 1
    before it was cut off). A database in WAL mode writes no rollback journal, except in the
    one transaction that switched it to WAL, whose copy of page 1 is not yet in WAL mode.
    """
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None  # SQLite ignores an empty journal
    if len(data) < 28 or data[:8] != JOURNAL_MAGIC:
        return "it is not a SQLite rollback journal"
    db = _read_db_header(db_path)
    if db is None:
        # SQLite deletes a journal it finds next to an empty database: keep it instead.
        return "there is no database it could belong to"
    _count, _nonce, initial, _sector, page_size = struct.unpack_from(">IIIII", data, 8)
    if page_size != db.page_size:
        return f"its pages are {page_size} bytes, the registry's {db.page_size}"
    first = _journal_first_page(data, page_size)
    original = DbHeader.parse(first) if first is not None else None
    if first is not None and original is None:
        return "its copy of the first page is not a SQLite database header"
    if original is None:
        # Page 1 was not journaled, so the transaction had not changed it: the database's own
        # page 1 is the one that transaction began with.
        if initial == 0:
            # Only the first transaction of a new database journals nothing and starts empty.
            if db.wal_mode or db.change_counter > 1:
                return "it would empty the registry: it was written for a new, empty database"
            return None
        if db.wal_mode:
            return "the registry is in WAL mode, which writes no rollback journal"
        if db.page_count is not None and db.page_count != initial:
            return (
                f"it was written for a database of {initial} pages; the registry's last "
                f"commit left {db.page_count}"
            )
        return None
    if original.page_size != db.page_size or not _same_encoding(original, db):
        return "its copy of the first page belongs to a different database"
    if original.wal_mode:
        return "its copy of the first page is of a database in WAL mode"
    if original.page_count is not None and original.page_count != initial:
        return "its header and its copy of the first page disagree"
    behind = (db.change_counter - original.change_counter) & 0xFFFFFFFF
    if behind not in (0, 1):
        return (
            f"it is older or newer than the registry's last commit (change counter "
            f"{original.change_counter}, the registry's {db.change_counter})"
        )
    if behind == 0 and db.wal_mode:
        return "the registry is in WAL mode, which writes no rollback journal"
    if original.application_id != db.application_id and not (
        behind == 1 and original.application_id == 0 and db.application_id == APPLICATION_ID
    ):
        return "its copy of the first page belongs to another program's database"
    return None


def wal_checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a header or a frame), continuing from ``s0, s1``."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for index in range(0, len(words), 2):
        s0 = (s0 + words[index] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[index + 1] + s0) & 0xFFFFFFFF
    return s0, s1


@dataclass(frozen=True, slots=True)
class _WalContents:
    page_size: int
    committed_size: int | None  # the database size in pages after the last commit in the log
    first_pages: tuple[bytes, ...]  # every committed version of page 1, oldest first


def _read_wal(data: bytes) -> _WalContents | str:
    """The frames SQLite would use: those after the header whose salts match it and whose
    running checksum holds, up to the last commit frame. A reason string if it is no WAL."""
    if len(data) < WAL_HEADER_BYTES:
        return "it is too short to be a SQLite write-ahead log"
    magic, version, page_size, _sequence, salt1, salt2, c0, c1 = struct.unpack_from(">8I", data, 0)
    if magic not in (WAL_MAGIC_LITTLE_ENDIAN, WAL_MAGIC_BIG_ENDIAN) or version != (
        WAL_FORMAT_VERSION
    ):
        return "it is not a SQLite write-ahead log"
    big_endian = magic == WAL_MAGIC_BIG_ENDIAN
    if (c0, c1) != wal_checksum(data[:24], big_endian, 0, 0) or not _valid_page_size(page_size):
        return "its header is damaged"
    s0, s1 = c0, c1
    offset = WAL_HEADER_BYTES
    frame_size = WAL_FRAME_HEADER_BYTES + page_size
    pending: list[bytes] = []
    first_pages: list[bytes] = []
    committed: int | None = None
    while offset + frame_size <= len(data):
        number, size, frame_salt1, frame_salt2, f0, f1 = struct.unpack_from(">6I", data, offset)
        if number == 0 or (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        page = data[offset + WAL_FRAME_HEADER_BYTES : offset + frame_size]
        s0, s1 = wal_checksum(data[offset : offset + 8], big_endian, s0, s1)
        s0, s1 = wal_checksum(page, big_endian, s0, s1)
        if (s0, s1) != (f0, f1):
            break
        if number == 1:
            pending.append(page)
        if size:
            committed = size
            first_pages.extend(pending)
            pending.clear()
        offset += frame_size
    return _WalContents(page_size, committed, tuple(first_pages))


def wal_problem(db_path: Path, wal: Path) -> str | None:
    """Why ``wal`` is not the write-ahead log of the database at ``db_path`` (None when it may
    be, or when SQLite would find nothing in it to use).

    The log's header holds the page size; its frames hold committed versions of pages. The
    database must be in WAL mode (it is switched before its log is first written) and have the
    log's page size; every committed page 1 in the log must be this database's (its
    application id, encoding and page size), and their change counters must follow the
    database's own: a commit that rewrites page 1 gives it the counter it read plus one, so the
    log's versions rise by at most one at a time, and the database (checkpointed up to some
    frame) holds one of them or the one just before the first. The registry never shrinks (it
    is never vacuumed), so the log's last commit cannot describe a smaller database than the
    file already is. Another registry's log that touched no page 1 cannot be told apart this
    way, unless the registry cannot be read through it (see ``read_status_without_log``).
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    db = _read_db_header(db_path)
    if db is None:
        # SQLite deletes a log it finds next to an empty database: keep it instead.
        return "there is no database it could belong to"
    contents = _read_wal(data)
    if isinstance(contents, str):
        return contents
    if contents.page_size != db.page_size:
        return f"its pages are {contents.page_size} bytes, the registry's {db.page_size}"
    if contents.committed_size is None:
        return None  # no committed frame: SQLite reads nothing from it and starts it afresh
    if not db.wal_mode:
        return "the registry is not in WAL mode, so it writes no write-ahead log"
    counters: list[int] = []
    for page in contents.first_pages:
        header = DbHeader.parse(page)
        if header is None:
            return "its first page is not a SQLite database header"
        if (header.application_id, header.page_size) != (db.application_id, db.page_size):
            return "its first page belongs to another database"
        if not _same_encoding(header, db):
            return "its first page belongs to another database"
        counters.append(header.change_counter)
    if any(later - earlier not in (0, 1) for earlier, later in itertools.pairwise(counters)):
        return "its versions of the first page do not follow one another"
    if counters and db.change_counter > counters[-1]:
        return (
            f"it is older than the registry's last commit (change counter {counters[-1]}, the "
            f"registry's {db.change_counter})"
        )
    if counters and db.change_counter < counters[0] - 1:
        return (
            f"it continues changes the registry does not have (change counter {counters[0]}, "
            f"the registry's {db.change_counter})"
        )
    db_pages = db_path.stat().st_size // db.page_size
    if contents.committed_size < db_pages:
        return (
            f"it describes a database of {contents.committed_size} pages, smaller than the "
            f"registry's {db_pages}"
        )
    return None


def companion(db_path: Path, suffix: str) -> Path:
    return db_path.with_name(db_path.name + suffix)


def foreign_companions(db_path: Path) -> list[ForeignCompanion]:
    """The rollback journal and write-ahead log next to the database that are not its own."""
    found = []
    for suffix, problem in (("-journal", journal_problem), ("-wal", wal_problem)):
        path = companion(db_path, suffix)
        reason = problem(db_path, path)
        if reason is not None:
            found.append(ForeignCompanion(path, reason))
    return found


def set_aside_foreign_companions(db_path: Path) -> tuple[str, ...]:
    """Rename every companion file that is not this database's out of SQLite's way, before
    anything opens the database: SQLite would play another database's journal back into this
    one, read another's log as if it were this one's, and delete either when it finds it next
    to an empty database. Renamed, never deleted; what was done comes back in plain words.

    The caller holds the exclusive lock: nobody else has the database open, so no log that
    another process is writing can be moved.
    """
    notes: list[str] = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for foreign in foreign_companions(db_path):
        moved = foreign.path.with_name(f"{foreign.path.name}.foreign-{stamp}")
        foreign.path.rename(moved)
        index = companion(db_path, "-shm")
        if foreign.path.name.endswith("-wal") and index.exists():
            # The shared-memory index describes that log; SQLite rebuilds its own.
            index.rename(index.with_name(f"{index.name}.foreign-{stamp}"))
        log.warning("moved %s aside as %s: %s", foreign.path, moved, foreign.reason)
        notes.append(
            f"{foreign.path.name} next to the registry was not used: it does not belong to it "
            f"({foreign.reason}). It was moved aside as {moved}; the registry was opened as it "
            f"was last saved, and nothing was deleted."
        )
    if notes:
        flush_folder(db_path.parent)
    return tuple(notes)


def read_status_without_log(
    db_path: Path, steps: tuple[Step, ...]
) -> tuple[DatabaseStatus, str] | None:
    """When the database cannot be read through its write-ahead log but is intact without it,
    the log is not its own (or is damaged): keep it aside, renamed, and say so. None (with the
    log back in place) when the database is no better without it. The caller holds the
    exclusive lock.

    Only the log is tried this way: without its log a database holds its last checkpoint, a
    consistent state, whereas without a hot rollback journal it holds half a transaction.
    """
    wal, index = companion(db_path, "-wal"), companion(db_path, "-shm")
    if not wal.is_file() or wal.stat().st_size == 0:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    moved = {path: path.with_name(f"{path.name}.unused-{stamp}") for path in (wal, index)}
    for path, aside in moved.items():
        if path.exists():
            path.rename(aside)
    try:
        status = read_status(db_path, steps)
    except RegistryError:
        for path, aside in moved.items():
            if aside.exists():
                aside.replace(path)
        return None
    flush_folder(db_path.parent)
    log.warning("the registry %s reads only without its log; moved it to %s", db_path, moved[wal])
    return status, (
        f"{wal.name} next to the registry could not be read with it, while the registry alone "
        f"is intact: the log does not belong to it or is damaged. It was moved aside as "
        f"{moved[wal]}; the registry was opened as it was last saved, and nothing was deleted."
    )


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


def _partial_files(partial: Path) -> list[Path]:
    """A partial copy and the journal SQLite keeps beside it while writing it."""
    return [partial.with_name(partial.name + suffix) for suffix in ("", "-journal", "-wal", "-shm")]


def remove_partial_backups(backups_dir: Path) -> None:
    """A backup that was cut off (killed, disk full) leaves a partial copy and its journal:
    they are never a backup, and on a nearly full disk they take the room the next try needs."""
    if not backups_dir.is_dir():
        return
    for stale in backups_dir.glob("registry-v*.partial*"):
        stale.unlink(missing_ok=True)


def backup_database(
    db_path: Path, backups_dir: Path, version: int, keep: int = KEEP_BACKUPS
) -> Path:
    """Copy the database with SQLite's online backup, verify the copy, keep the newest few."""
    backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = backups_dir / f"registry-v{version}-{stamp}.db"
    partial = target.with_suffix(".partial")
    remove_partial_backups(backups_dir)
    try:
        _copy_and_verify(db_path, backups_dir, version, partial)
        partial.replace(target)
    except BaseException:
        for leftover in _partial_files(partial):
            leftover.unlink(missing_ok=True)
        raise
    prune_backups(backups_dir, keep)
    return target


def prune_backups(backups_dir: Path, keep: int = KEEP_BACKUPS) -> None:
    backups = sorted(backups_dir.glob("registry-v*.db"), key=lambda p: p.stat().st_mtime_ns)
    for old in backups[:-keep]:
        old.unlink(missing_ok=True)


def reusable_backup(db_path: Path, backups_dir: Path, version: int) -> Path | None:
    """The newest backup of this version, if the database has not changed since it was taken.

    A migration that failed leaves the database exactly as it was, and its backup: trying again
    must not add another full-size copy each time. The database counts as unchanged when its
    inode (and its log's) last changed before the backup was written: ``st_ctime`` moves with
    every write, rename or copy into place, and cannot be set back like a modification time.
    """
    candidates = sorted(
        backups_dir.glob(f"registry-v{version}-*.db"),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )
    if not candidates:
        return None
    newest = candidates[0]
    taken = newest.stat().st_mtime_ns
    for path in (db_path, companion(db_path, "-wal"), companion(db_path, "-journal")):
        if path.exists() and path.stat().st_ctime_ns >= taken:
            return None
    try:
        with _read_only(newest) as connection:
            same = (
                connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
                and connection.execute("PRAGMA user_version").fetchone()[0] == version
                and connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            )
    except sqlite3.Error:
        return None
    return newest if same else None


def _database_bytes(db_path: Path) -> int:
    return sum(
        path.stat().st_size for path in (db_path, companion(db_path, "-wal")) if path.exists()
    )


def check_migration_room(
    db_path: Path, backups_dir: Path, *, backup_bytes: int, working_bytes: int
) -> None:
    """Refuse, before anything is written, an upgrade the disk has no room to finish."""
    if backup_bytes and not same_disk(backups_dir, db_path):
        for folder, needed, doing in (
            (backups_dir, backup_bytes, "backing up the registry before upgrading it"),
            (db_path.parent, working_bytes, "upgrading the registry"),
        ):
            condition = disk_condition(folder, needed, doing)
            if condition is not None:
                raise MigrationDiskError(str(condition))
        return
    if backup_bytes:
        doing = (
            f"upgrading the registry (a {format_size(backup_bytes)} backup and "
            f"{format_size(working_bytes)} of working space)"
        )
    else:
        doing = "creating the registry"
    condition = disk_condition(db_path.parent, backup_bytes + working_bytes, doing)
    if condition is not None:
        raise MigrationDiskError(str(condition))


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


def _backup_failure(error: OSError | sqlite3.Error, backups_dir: Path, needed: int) -> str:
    if disk_error_kind(error) == "full":
        return (
            f"The disk is full: the registry could not be backed up before upgrading it, so it "
            f"was not upgraded and nothing was changed. Upgrading needs about "
            f"{format_size(needed)} free on the disk that holds {backups_dir}, which has "
            f"{format_size(free_bytes(backups_dir))} free: free some space and start again."
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
            # After some errors (SQLITE_FULL among them) SQLite has already rolled back, and a
            # second ROLLBACK would replace the real error with "no transaction is active".
            if connection.in_transaction:
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
            if connection.in_transaction:
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
    """Bring the database to the latest version. The caller must hold the exclusive lock.

    First, companion files that are not this database's are moved aside (with the lock held
    nobody else has it open); then, if steps are pending, the disk must have room for the
    backup and the working space before anything is written.
    """
    steps = steps if steps is not None else load_steps()
    set_aside = set_aside_foreign_companions(db_path)
    try:
        status = read_status(db_path, steps)
    except (UnreadableRegistryError, ForeignDatabaseError):
        retried = read_status_without_log(db_path, steps)
        if retried is None:
            raise
        status, note = retried
        set_aside = (*set_aside, note)
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
        return MigrationReport(
            status.version,
            status.version,
            backup=None,
            restamped=restamped,
            set_aside=set_aside,
        )
    size = _database_bytes(db_path) if status.exists else 0
    with_backup = status.exists and status.version > 0
    working = MIGRATION_WORKING_FACTOR * size + MIGRATION_MARGIN_BYTES if size else 0
    remove_partial_backups(backups_dir)
    backup = reusable_backup(db_path, backups_dir, status.version) if with_backup else None
    check_migration_room(
        db_path,
        backups_dir,
        backup_bytes=size if with_backup and backup is None else 0,
        working_bytes=working or NEW_REGISTRY_BYTES,
    )
    if with_backup and backup is None:
        try:
            backup = backup_database(db_path, backups_dir, status.version)
        except (OSError, sqlite3.Error) as error:
            message = _backup_failure(error, backups_dir, size + working)
            if disk_error_kind(error) == "full":
                raise MigrationDiskError(message) from error
            raise MigrationError(message) from error
    db_path.parent.mkdir(parents=True, exist_ok=True)
    kept = f" A backup is kept at {backup}." if backup is not None else ""
    try:
        applied = apply_pending(db_path, steps)
    except (MigrationError, sqlite3.Error) as error:
        condition = expected_condition(
            error, db_path.parent, working or NEW_REGISTRY_BYTES, "upgrading the registry"
        )
        if condition is not None:
            raise MigrationDiskError(f"{condition}{kept}") from error
        if isinstance(error, MigrationError):
            raise MigrationError(f"{error}{kept}") from error
        raise MigrationError(
            f"Upgrading the registry failed: {error}. It was left at version "
            f"{status.version}.{kept}"
        ) from error
    return MigrationReport(
        status.version,
        len(steps),
        backup=backup,
        applied=applied,
        restamped=status.legacy_checksums,
        set_aside=set_aside,
    )
