"""The registry API: everything the window, the command line and a host application read or
write goes through ``Registry``, and this is the only module that touches the models.

Each ``Registry`` owns its database object and its own model classes bound to it, so several
registries (several data folders) can be open in one process and used from any threads.

Callers get plain immutable records, never peewee instances, so no view can hold a query or a
transaction open across event-loop turns. Writers use short ``BEGIN IMMEDIATE`` transactions
(the database is opened with ``lock_type="IMMEDIATE"``); readers run in autocommit mode.
peewee keeps one connection per thread, so a worker thread writing progress and the GUI thread
reading it never share a connection.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar, cast

import peewee

from migrations import verified
from migrations.runner import (
    APPLICATION_ID,
    MigrationReport,
    disk_error_kind,
    expected_condition,
    latest_version,
)
from registry.errors import (
    ConfigError,
    InstallRefusedError,
    OperationNotFoundError,
    RegistryError,
    RegistryNotMigratedError,
)
from registry.models import BoundModels, ExtensionInstall, bind_models
from registry.paths import DataPaths
from registry.reserve import keep_reserve, release_reserve
from registry.sizes import format_size
from registry.vocabulary import (
    ACTIVE_STATUSES,
    OperationKind,
    OperationStatus,
    change_text,
    kind_of,
)

if TYPE_CHECKING:
    from registry.lock import RegistryLock

ConfigValue = bool | int | float | str
# The step an update's download is recorded under (its bytes in download_bytes/_total).
DOWNLOAD_STEP = "Downloading"
# For Help -> About: the SQLite library the registry runs on.
SQLITE_VERSION = sqlite3.sqlite_version
BUSY_TIMEOUT_MS = 15_000

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class InnerOffer:
    """An extension inside a refused archive: an inner zip, or a folder further down."""

    member: str
    extension_id: str
    name: str
    version: str

    def payload(self) -> dict[str, str]:
        return {
            "member": self.member,
            "id": self.extension_id,
            "name": self.name,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class KeptSettingsRecord:
    """The settings of an uninstalled extension, kept for when it is installed again."""

    extension_id: str
    name: str
    version: str
    settings: dict[str, Any]
    kept_at: str


@dataclass(frozen=True, slots=True)
class OperationRecord:
    install_id: int
    extension_id: str | None
    kind: str
    archive_path: str
    archive_sha256: str | None
    from_version: str | None
    to_version: str | None
    file_count: int | None
    total_bytes: int | None
    status: str
    progress: int
    current_step: str
    started_at: str
    updated_at: str | None
    ended_at: str | None
    error: str | None
    owner_pid: int | None
    owner_started: float | None
    staging_dir: str | None
    origin_source: str | None = None
    download_bytes: int | None = None
    download_total: int | None = None
    settings_before: str | None = None
    # Installed from inside another archive: the member's path and the outer file's sha256.
    from_member: str | None = None
    outer_sha256: str | None = None
    # Refused because the extension is inside: what the archive offered (JSON), see ``offers``.
    inner_offers: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def offers(self) -> tuple[InnerOffer, ...]:
        """What a refused archive holds that could be installed from inside it."""
        if not self.inner_offers:
            return ()
        try:
            items = json.loads(self.inner_offers)
            return tuple(
                InnerOffer(
                    str(item["member"]), str(item["id"]), str(item["name"]), str(item["version"])
                )
                for item in items
            )
        except (ValueError, TypeError, KeyError):
            return ()

    @property
    def change(self) -> str:
        """'Upgrade 1.0.0 → 1.1.0' and friends, from what the record knows so far."""
        return change_text(self.kind, self.from_version, self.to_version)

    @property
    def downloading(self) -> bool:
        return self.active and self.current_step == DOWNLOAD_STEP and bool(self.download_total)

    @property
    def shown_progress(self) -> int:
        """What a bar shows: the download's share while downloading, else the progress."""
        if self.downloading and self.download_total:
            return min(100, (self.download_bytes or 0) * 100 // self.download_total)
        return self.progress

    @property
    def shown_step(self) -> str:
        """The step in words: 'Downloading 1.5 MiB of 3.0 MiB' while downloading."""
        if self.downloading:
            done = format_size(self.download_bytes or 0)
            return f"{DOWNLOAD_STEP} {done} of {format_size(self.download_total or 0)}"
        return self.current_step


@dataclass(frozen=True, slots=True)
class ExtensionRecord:
    id: str
    name: str
    version: str
    description: str
    author: str
    license: str
    homepage: str
    icon_path: str | None
    manifest: dict[str, Any]
    capabilities: tuple[str, ...]
    permissions: tuple[str, ...]
    enabled: bool
    install_path: str
    archive_sha256: str
    files: tuple[tuple[str, int], ...] | None
    installed_at: str
    updated_at: str
    origin: str = ""
    origin_source: str | None = None
    held_at: str | None = None
    hold_reason: str | None = None
    compatibility_override: str | None = None

    @property
    def held(self) -> bool:
        return self.held_at is not None

    @property
    def config_defaults(self) -> dict[str, ConfigValue]:
        defaults = self.manifest.get("config", {})
        return dict(defaults) if isinstance(defaults, dict) else {}

    @property
    def setting_descriptions(self) -> dict[str, dict[str, Any]]:
        """The manifest's ``settings``: per setting, its title, description, range, choices."""
        settings = self.manifest.get("settings", {})
        if not isinstance(settings, dict):
            return {}
        return {key: dict(info) for key, info in settings.items() if isinstance(info, dict)}


class ExtensionSummary(NamedTuple):
    """What a list of extensions shows: cheap to read for a hundred thousand rows (no JSON, and
    made from SQLite's row tuple in one step: a frozen dataclass took twice as long, which at a
    hundred thousand extensions was a tenth of a second of the window's opening)."""

    id: str
    name: str
    version: str
    description: str
    # As SQLite stores it, 1 or 0: a truth value wherever it is used.
    enabled: bool
    icon_path: str | None
    install_path: str
    installed_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class RequirementsRow:
    """An installed extension as the dependency questions see it: its manifest's ``requires``
    only, so that asking them of ten thousand extensions parses no other JSON."""

    id: str
    name: str
    version: str
    enabled: bool
    requires: dict[str, Any]


SUMMARY_COLUMNS = ", ".join(ExtensionSummary._fields)
# Rows read and converted per call when every extension is read (a few milliseconds each).
SUMMARY_CHUNK = 2000
OPERATION_COLUMNS = ", ".join(OperationRecord.__slots__)


def operation_record(row: ExtensionInstall) -> OperationRecord:
    return OperationRecord(**{name: getattr(row, name) for name in OperationRecord.__slots__})


@dataclass(frozen=True, slots=True)
class ExtensionValues:
    """What the registry records about an installed version (written by an install's commit
    and by a rebuild from disk)."""

    id: str
    name: str
    version: str
    description: str
    author: str
    license: str
    homepage: str
    icon_path: str | None
    manifest: Mapping[str, Any]
    capabilities: tuple[str, ...]
    permissions: tuple[str, ...]
    install_path: str
    archive_sha256: str
    files: tuple[tuple[str, int], ...]
    # Where the archive came from: its path or URL, and the update source it was found in.
    origin: str = ""
    origin_source: str | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "author": self.author,
            "license": self.license,
            "homepage": self.homepage,
            "icon_path": self.icon_path,
            "manifest": json.dumps(dict(self.manifest), ensure_ascii=False),
            "capabilities": json.dumps(list(self.capabilities)),
            "permissions": json.dumps(list(self.permissions)),
            "install_path": self.install_path,
            "archive_sha256": self.archive_sha256,
            "files": json.dumps([list(entry) for entry in self.files], ensure_ascii=False),
            "origin": self.origin,
            "origin_source": self.origin_source,
        }


@dataclass(frozen=True, slots=True)
class InterruptedOperation:
    install_id: int
    kind: str
    what: str  # the extension's id, or the archive's file name when the id was never known


@dataclass(frozen=True, slots=True)
class LaunchReport:
    """What opening the registry did before anyone could use it, in words for the person."""

    migration: MigrationReport | None = None
    interrupted: tuple[InterruptedOperation, ...] = ()
    # Extensions turned off because the app's version changed: one summary sentence.
    turned_off: str | None = None

    def messages(self) -> list[str]:
        lines = []
        migration = self.migration
        if migration is not None and migration.applied and migration.from_version > 0:
            backup = f" (backup: {migration.backup})" if migration.backup else ""
            lines.append(
                f"Registry upgraded from schema {migration.from_version} to "
                f"{migration.to_version}{backup}."
            )
        for operation in self.interrupted:
            noun = kind_of(operation.kind).noun
            lines.append(
                f"{noun[0].upper()}{noun[1:]} of {operation.what} was interrupted and rolled back."
            )
        if self.turned_off is not None:
            lines.append(self.turned_off)
        return lines


def _extension_record(row: Any) -> ExtensionRecord:
    files = json.loads(row.files) if row.files is not None else None
    return ExtensionRecord(
        id=row.id,
        name=row.name,
        version=row.version,
        description=row.description,
        author=row.author,
        license=row.license,
        homepage=row.homepage,
        icon_path=row.icon_path,
        manifest=json.loads(row.manifest),
        capabilities=tuple(json.loads(row.capabilities)),
        permissions=tuple(json.loads(row.permissions)),
        enabled=bool(row.enabled),
        install_path=row.install_path,
        archive_sha256=row.archive_sha256,
        files=tuple((str(path), int(size)) for path, size in files) if files is not None else None,
        installed_at=row.installed_at,
        updated_at=row.updated_at,
        origin=row.origin,
        origin_source=row.origin_source,
        held_at=row.held_at,
        hold_reason=row.hold_reason,
        compatibility_override=row.compatibility_override,
    )


@dataclass(frozen=True, slots=True)
class KeptArchive:
    """An archive copied into ``archives/`` for an install that is about to commit."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class KeptVersionRecord:
    """A version whose archive is kept: what a rollback can go back to."""

    extension_id: str
    version: str
    archive_sha256: str
    archive_size: int
    origin: str
    origin_source: str | None
    settings: dict[str, Any]
    install_id: int | None
    installed_at: str
    replaced_at: str | None


def _kept_record(row: Any) -> KeptVersionRecord:
    return KeptVersionRecord(
        extension_id=row.extension_id,
        version=row.version,
        archive_sha256=row.archive_sha256,
        archive_size=int(row.archive_size),
        origin=row.origin,
        origin_source=row.origin_source,
        settings=json.loads(row.settings),
        install_id=row.install_id,
        installed_at=row.installed_at,
        replaced_at=row.replaced_at,
    )


@dataclass(frozen=True, slots=True)
class SourceRecord:
    source_id: int
    location: str
    kind: str  # FOLDER or INDEX
    added_at: str
    checked_at: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SourceFileRecord:
    """What one zip in a folder source holds, remembered by its path, size and time."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    extension_id: str | None
    version: str | None
    min_app_version: str | None
    max_app_version: str | None
    problem: str | None


@dataclass(frozen=True, slots=True)
class Preferences:
    """The person's choices for the whole app, stored in the registry."""

    # Kept archives: besides the installed version's, this many earlier versions per
    # extension, within this many bytes for all the earlier versions together.
    keep_versions: int = 2
    keep_bytes: int = 1024**3
    # Contact the update sources when the app starts.
    check_at_launch: bool = False


# What recording an operation or a setting may need: a few pages in the WAL, and the reserve.
RECORDING_ROOM = 1024 * 1024


def plain_database_error(
    error: peewee.DatabaseError | sqlite3.DatabaseError, data_dir: Path | None = None
) -> RegistryError | None:
    """The known ways a write or read fails, in plain words; None for anything else (a bug).

    With ``data_dir``, an I/O error is told apart by looking at the disk itself: SQLite says
    only "disk I/O error" when a disk that turned read-only or filled up refuses a write."""
    if data_dir is not None:
        condition = expected_condition(error, data_dir, RECORDING_ROOM, "updating the registry")
        if condition is not None:
            return condition
    text = str(error)
    if "no such table" in text or "no such column" in text:
        return RegistryNotMigratedError(
            f"The registry has not been migrated ({error}). Start the app once so that "
            f"it can upgrade the registry, or run 'extension-manager status'."
        )
    if "locked" in text or "busy" in text:
        return RegistryError(
            "The registry is busy: another Extension Manager kept it locked for more "
            "than 15 seconds. Try again in a moment."
        )
    if "readonly" in text or "read-only" in text:
        return RegistryError(
            "The registry cannot be written: its file or folder is read-only. Check the "
            "permissions of the data folder, or choose another one with --data-dir."
        )
    if "disk" in text and "full" in text:
        return RegistryError(
            "The disk is full: the registry could not be updated. Free some space and "
            "try again; nothing was changed."
        )
    return None


def _translate_errors(method: Callable[P, R]) -> Callable[P, R]:
    """A missing table means the database was never migrated: say so, never "not found"."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except peewee.OperationalError as error:
            registry = args[0] if args and isinstance(args[0], Registry) else None
            plain = plain_database_error(error, registry.paths.root if registry else None)
            if plain is not None:
                raise plain from error
            raise

    return wrapper


# On Linux a process's start time and state are read from /proc, as psutil itself does; psutil
# (about 40 ms to import, on whichever thread records the first operation) is the fallback
# where there is no /proc.
PROC = Path("/proc")


def current_process_identity() -> tuple[int, float]:
    """PID plus start time: a PID alone can be reused by an unrelated process after a crash."""
    return _identity_of(os.getpid())


@functools.cache
def _identity_of(pid: int) -> tuple[int, float]:
    started = _proc_stat(pid)
    if started is not None:
        return pid, started[1]
    import psutil

    return pid, psutil.Process(pid).create_time()


@functools.cache
def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text(encoding="ascii").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """The process's state letter and start time (seconds since the epoch, computed as psutil
    computes ``create_time``), from /proc; None where /proc cannot tell (not Linux)."""
    boot = _boot_time()
    if boot is None:
        return None
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except FileNotFoundError:
        return "", 0.0  # no such process
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces and parentheses: the fields follow the
    # last one. The state is the third field of the file, the start time (in clock ticks since
    # the boot) the twenty-second.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[0].decode("ascii"), int(fields[19]) / os.sysconf("SC_CLK_TCK") + boot


# An operation row records its owner's process id and start time together. One with the id but
# no start time cannot be told from another program that was given the same id later, so a
# launch takes its owner for gone once the row has not changed for this long (a running
# operation writes its progress far more often); the doctor's repair, asked for by a person,
# does not wait.
UNCONFIRMED_OWNER_AFTER = timedelta(minutes=10)

# Operations whose end this process could not record (the disk turned read-only under it):
# their rows name this process, which is alive, so without this they would look in progress
# until it exits. Keyed by database file, since a process may open several registries.
_ABANDONED_HERE: set[tuple[Path, int]] = set()


def process_is_alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    seen = _proc_stat(pid)
    if seen is not None:
        state, created = seen
        if state in ("", "Z", "X"):  # gone, a zombie, or dead
            return False
        return started is None or abs(created - started) < 0.5
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class _Database(peewee.SqliteDatabase):
    """peewee's SQLite database, counting the connections it holds open (one per thread that
    has used it), so that tests and diagnostics can see that nothing is held while idle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self.open_connections = 0

    def _connect(self) -> sqlite3.Connection:
        connection = super()._connect()  # type: ignore[misc]
        with self._count_lock:
            self.open_connections += 1
        return cast(sqlite3.Connection, connection)

    def _close(self, conn: sqlite3.Connection) -> None:
        super()._close(conn)  # type: ignore[misc]
        with self._count_lock:
            self.open_connections -= 1

    # After some errors (SQLITE_FULL among them) SQLite has already rolled the whole
    # transaction back by itself. peewee's own ROLLBACK (or ROLLBACK TO SAVEPOINT) would then
    # fail with "no transaction is active" and that error would replace the real one.

    def _rolled_back_already(self) -> bool:
        return not self.is_closed() and not self.connection().in_transaction  # type: ignore[no-untyped-call]

    def rollback(self) -> None:
        if not self._rolled_back_already():
            super().rollback()

    def execute_sql(self, sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        ends_savepoint = sql.startswith(("ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT"))
        if ends_savepoint and self._rolled_back_already():
            return None
        return super().execute_sql(sql, params, *args, **kwargs)  # type: ignore[no-untyped-call]


class Registry:
    """The registry of one data folder.

    Open it with ``registry.open_registry(data_dir)``, which takes the lock, migrates and
    recovers first; constructing one directly expects all that done. Safe to use from several
    threads: peewee gives each thread its own connection, and a thread that is finished with the
    registry calls ``close_thread_connection``.
    """

    def __init__(
        self,
        paths: DataPaths,
        lock: RegistryLock | None = None,
        launch: LaunchReport | None = None,
    ) -> None:
        self.paths = paths
        self.lock = lock
        self.launch = launch or LaunchReport()
        self.database = _Database(
            str(paths.database),
            pragmas={
                "foreign_keys": 1,
                "busy_timeout": BUSY_TIMEOUT_MS,
                # In WAL mode NORMAL may lose the last commits at a power cut; an operation
                # reported done must not be one of them (see registry.durable).
                "synchronous": "FULL",
            },
            timeout=BUSY_TIMEOUT_MS / 1000,
            lock_type="IMMEDIATE",
        )
        self._models: BoundModels = bind_models(self.database)
        self._check_schema()
        keep_reserve(paths.space_reserve)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        if not self.paths.database.exists():
            raise RegistryNotMigratedError(
                f"There is no registry at {self.paths.database}. Start the app once (or run "
                f"'extension-manager status') so that it is created."
            )
        try:
            application_id = self.scalar("PRAGMA application_id")
            version = self.scalar("PRAGMA user_version")
        except (peewee.DatabaseError, sqlite3.DatabaseError) as error:
            raise RegistryError(
                f"The registry {self.paths.database} cannot be read: {error}"
            ) from error
        finally:
            self.close_thread_connection()
        latest = latest_version()
        if application_id != APPLICATION_ID or version != latest:
            raise RegistryNotMigratedError(
                f"The registry {self.paths.database} is at schema version {version}, but this app "
                f"needs version {latest}. Start the app once so that it can upgrade the registry."
            )

    def close_thread_connection(self) -> None:
        """peewee keeps one connection per thread: a worker thread closes its own when done."""
        if not self.database.is_closed():
            self.database.close()

    def owner_is_running(
        self, operation: OperationRecord, *, repairing: bool = False, now: datetime | None = None
    ) -> bool:
        """Whether the process that owns ``operation`` may still be working on it.

        ``process_is_alive`` cannot tell a reused process id when no start time was recorded;
        such an owner counts as running only while the row is fresh, and never for a repair.
        An operation this process gave up on (``abandon_operation``) is not running.
        """
        if (self.paths.database, operation.install_id) in _ABANDONED_HERE:
            return False
        if not process_is_alive(operation.owner_pid, operation.owner_started):
            return False
        if operation.owner_started is not None:
            return True
        if repairing:
            return False
        last_change = _parse_time(operation.updated_at or operation.started_at)
        if last_change is None:
            return False
        return (now or datetime.now(UTC)) - last_change < UNCONFIRMED_OWNER_AFTER

    def abandon_operation(self, install_id: int) -> None:
        """This process stops working on an operation whose end it could not record: the next
        recovery (even in this process) treats it as interrupted."""
        _ABANDONED_HERE.add((self.paths.database, install_id))

    @property
    def open_connections(self) -> int:
        """How many threads hold a connection to this registry's file right now."""
        return self.database.open_connections

    def close(self) -> None:
        self.close_thread_connection()
        # Closed cleanly: the next launch need not read the whole file to look for damage.
        verified.record_clean_close(self.paths.database)
        if self.lock is not None:
            self.lock.release()

    def fetch_all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Raw SQL for pragmas and read-only checks that the models do not cover."""
        cursor = self.database.execute_sql(sql, params)
        return list(cursor.fetchall())

    def data_version(self) -> int:
        """A number that changes when another connection (a worker thread, another process)
        has committed since this thread's last look: SQLite's ``PRAGMA data_version``. A
        watcher compares it to skip reading when nothing changed."""
        return int(self.scalar("PRAGMA data_version"))

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        rows = self.fetch_all(sql, params)
        return rows[0][0] if rows else None

    # -- schema ----------------------------------------------------------------------------------

    @_translate_errors
    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    @_translate_errors
    def applied_migrations(self) -> list[tuple[int, str, str]]:
        rows = self.fetch_all(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        )
        return [(int(v), str(n), str(a)) for v, n, a in rows]

    # -- operations ------------------------------------------------------------------------------

    @_translate_errors
    def create_operation(
        self,
        archive_path: str | Path = "",
        *,
        kind: OperationKind = OperationKind.INSTALL,
        status: OperationStatus = OperationStatus.INSTALLING,
        extension_id: str | None = None,
        current_step: str = "Queued",
    ) -> int:
        """Record an operation the moment a file is accepted, before its manifest is read."""
        pid, started = current_process_identity()
        now = utc_now()
        with self.database.atomic():
            row = self._models.install.create(
                extension_id=extension_id,
                kind=OperationKind(kind),
                archive_path=str(archive_path),
                status=OperationStatus(status),
                progress=0,
                current_step=current_step,
                started_at=now,
                updated_at=now,
                owner_pid=pid,
                owner_started=started,
            )
        return int(row.install_id)

    @_translate_errors
    def update_operation(self, install_id: int, **fields: Any) -> None:
        """Change any columns of an operation (progress, step, version change, counts...).

        ``progress`` never goes backwards: a late, lower value is ignored.
        """
        installs = self._models.install
        unknown = set(fields) - set(installs._meta.fields)
        if unknown or "install_id" in fields:
            raise ValueError(f"cannot update operation fields {sorted(unknown)}")
        fields["updated_at"] = utc_now()
        query = installs.update(**fields).where(installs.install_id == install_id)
        if "progress" in fields:
            query = query.where(installs.progress <= fields["progress"])
        with self.database.atomic():
            changed = query.execute()
            if not changed and not installs.get_or_none(install_id=install_id):
                raise OperationNotFoundError(install_id)

    @_translate_errors
    def record_completed_operation(
        self, extension_id: str, kind: OperationKind, note: str, **fields: Any
    ) -> int:
        """Record a change made outside the installer (doctor, rescue) as one finished
        operation, so that the history explains it; joins the caller's transaction if any."""
        now = utc_now()
        with self.database.atomic():
            row = self._models.install.create(
                extension_id=extension_id,
                kind=OperationKind(kind),
                status=OperationStatus.COMPLETED,
                progress=100,
                current_step="Done",
                started_at=now,
                updated_at=now,
                ended_at=now,
                error=note,
                **fields,
            )
        return int(row.install_id)

    @_translate_errors
    def finish_operation(
        self, install_id: int, status: OperationStatus, error: str | None = None
    ) -> None:
        """End an operation that is still running; one that already ended keeps its outcome
        (a late failure must never turn a committed change into "failed").

        On a full disk the space reserve is given up and the write tried once more, so that
        the history says why the operation failed instead of "interrupted" (registry.reserve).
        """
        # Inside a caller's transaction (a commit) a retry could outlive the statements a
        # failure rolled back, so only a finish on its own is retried.
        on_its_own = not self.database.in_transaction()
        try:
            self._finish_operation(install_id, status, error)
        except peewee.OperationalError as failure:
            if not on_its_own or disk_error_kind(failure) != "full":
                raise
            if not release_reserve(self.paths.space_reserve):
                raise
            log.warning("disk full: gave up the space reserve to record operation %s", install_id)
            self._finish_operation(install_id, status, error)

    def _finish_operation(
        self, install_id: int, status: OperationStatus, error: str | None
    ) -> None:
        installs = self._models.install
        now = utc_now()
        fields: dict[str, Any] = {"status": status, "ended_at": now, "updated_at": now}
        fields["error"] = error
        if status == OperationStatus.COMPLETED:
            fields.update(progress=100, current_step="Done")
        elif status in (OperationStatus.FAILED, OperationStatus.CANCELLED):
            fields["current_step"] = OperationStatus(status).words
        with self.database.atomic():
            changed = (
                installs.update(**fields)
                .where(
                    (installs.install_id == install_id)
                    & (installs.status.in_(list(ACTIVE_STATUSES)))
                )
                .execute()
            )
            if not changed:
                existing = self.get_operation(install_id)
                log.warning(
                    "operation %s already ended as %s; not marking it %s",
                    install_id,
                    existing.status,
                    status,
                )

    @_translate_errors
    def claim_operation(
        self,
        install_id: int,
        extension_id: str,
        recover_dead: Callable[[OperationRecord], None],
    ) -> None:
        """Mark the operation as working on ``extension_id``, unless another live one is.

        The check and the claim happen in one IMMEDIATE transaction, so two processes racing to
        change the same extension cannot both win. An operation on it whose process died is
        first recovered (``recover_dead``, inside the transaction), before this one touches the
        same folders; otherwise the next launch would put its old version back over ours.
        """
        installs = self._models.install
        with self.database.atomic():
            others = installs.select().where(
                (installs.extension_id == extension_id)
                & (installs.status.in_(list(ACTIVE_STATUSES)))
                & (installs.install_id != install_id)
            )
            for other in others:
                if self.owner_is_running(operation_record(other)):
                    raise InstallRefusedError(
                        f"Another operation (number {other.install_id}) is already changing "
                        f"{extension_id}. Wait for it to finish, then try again."
                    )
                recover_dead(operation_record(other))
            installs.update(extension_id=extension_id, updated_at=utc_now()).where(
                installs.install_id == install_id
            ).execute()

    @_translate_errors
    def completed_after(self, extension_id: str, install_id: int) -> bool:
        """Whether a later operation on this extension has committed."""
        installs = self._models.install
        return bool(
            installs.select()
            .where(
                (installs.extension_id == extension_id)
                & (installs.status == OperationStatus.COMPLETED)
                & (installs.install_id > install_id)
            )
            .exists()
        )

    @_translate_errors
    def get_operation(self, install_id: int) -> OperationRecord:
        installs = self._models.install
        row = installs.get_or_none(installs.install_id == install_id)
        if row is None:
            raise OperationNotFoundError(install_id)
        return operation_record(row)

    @_translate_errors
    def get_operations(self, install_ids: Iterable[int]) -> dict[int, OperationRecord]:
        # Raw SQL: the window asks this of its running operations sixteen times a second,
        # and building peewee's query and model objects would be most of the cost.
        ids = tuple(install_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self.fetch_all(
            f"SELECT {OPERATION_COLUMNS} FROM extension_installs WHERE install_id IN ({marks})",
            ids,
        )
        return {row[0]: OperationRecord(*row) for row in rows}

    @_translate_errors
    def list_operations(
        self,
        *,
        limit: int | None = None,
        active_only: bool = False,
        since_id: int = 0,
        before_id: int | None = None,
        matching: str = "",
    ) -> list[OperationRecord]:
        """Newest first; ``since_id``/``before_id`` page through the history by operation id.

        ``matching`` keeps the operations whose file, extension (id or installed name), kind,
        status or message contains that text, ignoring case.
        """
        installs, extensions = self._models.install, self._models.extension
        query = installs.select().order_by(installs.install_id.desc())
        text = matching.strip()
        if text:
            named = extensions.select(extensions.id).where(extensions.name.contains(text))
            query = query.where(
                installs.archive_path.contains(text)
                | installs.extension_id.contains(text)
                | installs.extension_id.in_(named)
                | installs.kind.contains(text)
                | installs.status.contains(text)
                | installs.error.contains(text)
            )
        if active_only:
            query = query.where(installs.status.in_(list(ACTIVE_STATUSES)))
        if since_id:
            query = query.where(installs.install_id > since_id)
        if before_id is not None:
            query = query.where(installs.install_id < before_id)
        if limit is not None:
            query = query.limit(limit)
        # Tuples in the record's field order: no model object per row.
        fields = [getattr(installs, name) for name in OperationRecord.__slots__]
        rows = cast(Iterable[tuple[Any, ...]], query.select(*fields).tuples())
        return [OperationRecord(*row) for row in rows]

    @_translate_errors
    def count_operations(self) -> int:
        return int(self._models.install.select().count())

    # -- extensions ------------------------------------------------------------------------------

    @_translate_errors
    def list_extensions(self) -> list[ExtensionRecord]:
        extensions = self._models.extension
        return [_extension_record(row) for row in extensions.select().order_by(extensions.name)]

    @_translate_errors
    def count_extensions(self) -> int:
        return int(self._models.extension.select().count())

    @_translate_errors
    def installed_archives(self) -> dict[str, str]:
        """Each installed extension's archive sha256, by id (one light query: pruning after
        every install asks it)."""
        return dict(self.fetch_all("SELECT id, archive_sha256 FROM extensions"))

    @_translate_errors
    def list_requirements(self) -> list[RequirementsRow]:
        """The installed extensions whose manifest ``requires`` something: every question of
        who needs whom starts from these. A text search picks the manifests that mention the
        key before SQLite parses any (most extensions need nothing, and ten thousand JSON
        parses on every such question would stall the window)."""
        return self._requirement_rows(
            "WHERE manifest LIKE '%\"requires\"%'", (), keep=lambda row: bool(row.requires)
        )

    @_translate_errors
    def requirement_rows(self, extension_ids: Iterable[str]) -> dict[str, RequirementsRow]:
        """These installed extensions (the ones a plan needs), by id."""
        ids = tuple(extension_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self._requirement_rows(f"WHERE id IN ({marks})", ids)
        return {row.id: row for row in rows}

    def _requirement_rows(
        self,
        where: str,
        params: tuple[object, ...],
        keep: Callable[[RequirementsRow], bool] = lambda _row: True,
    ) -> list[RequirementsRow]:
        rows = self.fetch_all(
            "SELECT id, name, version, enabled, CASE WHEN json_valid(manifest) THEN "
            f"json_extract(manifest, '$.requires') END FROM extensions {where}",
            params,
        )
        result = []
        for extension_id, name, version, enabled, requires in rows:
            try:
                parsed = json.loads(requires) if isinstance(requires, str) else {}
            except ValueError:
                parsed = {}
            row = RequirementsRow(
                extension_id,
                name,
                version,
                bool(enabled),
                parsed if isinstance(parsed, dict) else {},
            )
            if keep(row):
                result.append(row)
        return result

    @_translate_errors
    def list_extension_summaries(self, limit: int | None = None) -> list[ExtensionSummary]:
        """Every installed extension, in no particular order (the window sorts them its own
        way), or the first ``limit`` by name ignoring case: rows straight from SQLite, without
        peewee's per-field conversion, which dominates the window's opening time at ten
        thousand rows."""
        if limit is None:
            return self._summaries_in_chunks(f"SELECT {SUMMARY_COLUMNS} FROM extensions")
        rows = self.fetch_all(
            f"SELECT {SUMMARY_COLUMNS} FROM extensions ORDER BY name COLLATE NOCASE, id LIMIT ?",
            (limit,),
        )
        return list(map(ExtensionSummary._make, rows))

    def _summaries_in_chunks(self, sql: str) -> list[ExtensionSummary]:
        """Rows read a few thousand at a time: reading and converting a hundred thousand in
        one call holds Python's interpreter lock for a quarter of a second, so the window's
        thread (this runs on a worker) could not paint meanwhile."""
        cursor = self.database.execute_sql(sql)
        summaries: list[ExtensionSummary] = []
        while rows := cursor.fetchmany(SUMMARY_CHUNK):
            summaries.extend(map(ExtensionSummary._make, rows))
        return summaries

    @_translate_errors
    def extension_summaries(self, extension_ids: Iterable[str]) -> list[ExtensionSummary]:
        """The summaries of these extensions (those still installed): what the window reads
        again after an operation changed them, instead of the whole list."""
        ids = list(extension_ids)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self.fetch_all(
            f"SELECT {SUMMARY_COLUMNS} FROM extensions WHERE id IN ({marks})", tuple(ids)
        )
        return list(map(ExtensionSummary._make, rows))

    @_translate_errors
    def get_extension(self, extension_id: str) -> ExtensionRecord | None:
        extensions = self._models.extension
        row = extensions.get_or_none(extensions.id == extension_id)
        return _extension_record(row) if row is not None else None

    @_translate_errors
    def set_enabled(self, extension_id: str, enabled: bool) -> None:
        extensions = self._models.extension
        with self.database.atomic():
            changed = (
                extensions.update(enabled=enabled, updated_at=utc_now())
                .where(extensions.id == extension_id)
                .execute()
            )
        if not changed:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")

    @_translate_errors
    def commit_install(
        self,
        install_id: int,
        values: ExtensionValues,
        *,
        expected_version: str | None,
        config_removed: Iterable[str] = (),
        kept: KeptArchive | None = None,
        restore_settings: Mapping[str, Any] | None = None,
        hold_reason: str | None = None,
    ) -> None:
        """Record the version now in ``values.install_path`` and complete the operation, in one
        transaction. ``expected_version`` is the version the plan replaced (None for a first
        install): if the registry changed meanwhile, nothing is committed.

        The same transaction remembers the settings as they were (on the operation, and on the
        replaced version's kept archive, for a rollback to bring back), records ``kept`` as the
        new version's archive, and for a rollback puts back ``restore_settings`` and a hold."""
        extensions, configs = self._models.extension, self._models.config
        with self.database.atomic():
            current = extensions.get_or_none(extensions.id == values.id)
            current_version = current.version if current is not None else None
            if current_version != expected_version:
                raise InstallRefusedError(
                    f"{values.name} changed in the registry while it was being installed (it "
                    f"is now {current_version or 'not installed'}). Nothing was changed; "
                    "install the file again."
                )
            settings = self._stored_values(values.id)
            self._remember_replaced(install_id, current, settings)
            self._write_extension_row(values, exists=current is not None)
            # Installing the id again answers the settings kept at its uninstall: they were
            # restored (``restore_settings``) or the person chose to start afresh.
            kept_settings = self._models.kept_settings
            kept_settings.delete().where(kept_settings.extension_id == values.id).execute()
            if restore_settings is not None:
                configs.delete().where(configs.extension_id == values.id).execute()
                defaults = values.manifest.get("config", {})
                known = defaults if isinstance(defaults, dict) else {}
                self._store_values(
                    values.id, {k: v for k, v in restore_settings.items() if k in known}
                )
            elif current is not None:
                removed = list(config_removed)
                if removed:
                    configs.delete().where(
                        (configs.extension_id == values.id) & (configs.key.in_(removed))
                    ).execute()
            if kept is not None:
                self._keep_version(install_id, values, kept)
            if hold_reason is not None:
                extensions.update(held_at=utc_now(), hold_reason=hold_reason).where(
                    extensions.id == values.id
                ).execute()
            # Same transaction as the rows that make the change real.
            self.finish_operation(install_id, OperationStatus.COMPLETED)

    def _stored_values(self, extension_id: str) -> dict[str, Any]:
        """The settings the person chose (not the defaults), as stored."""
        configs = self._models.config
        rows = configs.select().where(configs.extension_id == extension_id)
        return {row.key: json.loads(row.value) for row in rows}

    def _remember_replaced(
        self, install_id: int, current: Any, settings: Mapping[str, Any]
    ) -> None:
        installs, kept = self._models.install, self._models.kept
        snapshot = json.dumps(dict(settings), ensure_ascii=False)
        installs.update(settings_before=snapshot).where(installs.install_id == install_id).execute()
        if current is not None:
            kept.update(settings=snapshot, replaced_at=utc_now()).where(
                (kept.extension_id == current.id) & (kept.archive_sha256 == current.archive_sha256)
            ).execute()

    def _keep_version(self, install_id: int, values: ExtensionValues, archive: KeptArchive) -> None:
        kept = self._models.kept
        kept.insert(
            extension_id=values.id,
            version=values.version,
            archive_sha256=archive.sha256,
            archive_size=archive.size,
            origin=values.origin,
            origin_source=values.origin_source,
            install_id=install_id,
            installed_at=utc_now(),
            replaced_at=None,
        ).on_conflict(
            conflict_target=[kept.extension_id, kept.archive_sha256],
            preserve=[
                kept.version,
                kept.origin,
                kept.origin_source,
                kept.install_id,
                kept.installed_at,
                kept.replaced_at,
            ],
        ).execute()

    def _write_extension_row(self, values: ExtensionValues, *, exists: bool) -> None:
        """Insert a new extension (enabled), or update what describes the files of one that
        is registered, keeping its enabled state, settings and install date."""
        extensions = self._models.extension
        now = utc_now()
        if exists:
            extensions.update(updated_at=now, **values.columns()).where(
                extensions.id == values.id
            ).execute()
        else:
            extensions.insert(
                id=values.id, enabled=True, installed_at=now, updated_at=now, **values.columns()
            ).execute()

    @_translate_errors
    def commit_uninstall(
        self, install_id: int, extension_id: str, *, keep_settings: bool = True
    ) -> None:
        """Forget the extension and complete the operation. Its kept archives stay. With
        ``keep_settings`` the settings the person chose are kept for a later install of the
        same id to offer back; without, they are gone, from the kept archives' records too."""
        extensions, kept = self._models.extension, self._models.kept
        kept_settings = self._models.kept_settings
        with self.database.atomic():
            current = extensions.get_or_none(extensions.id == extension_id)
            settings = self._stored_values(extension_id)
            self._remember_replaced(install_id, current, settings if keep_settings else {})
            kept_settings.delete().where(kept_settings.extension_id == extension_id).execute()
            if not keep_settings:
                kept.update(settings="{}").where(kept.extension_id == extension_id).execute()
            elif settings and current is not None:
                kept_settings.insert(
                    extension_id=extension_id,
                    name=current.name,
                    version=current.version,
                    settings=json.dumps(settings, ensure_ascii=False),
                    kept_at=utc_now(),
                ).execute()
            extensions.delete().where(extensions.id == extension_id).execute()
            self.finish_operation(install_id, OperationStatus.COMPLETED)

    @_translate_errors
    def kept_settings(self, extension_id: str) -> KeptSettingsRecord | None:
        """The settings kept when ``extension_id`` was uninstalled, if the person kept any."""
        model = self._models.kept_settings
        row = model.get_or_none(model.extension_id == extension_id)
        if row is None:
            return None
        try:
            values = json.loads(row.settings)
        except ValueError:
            values = {}
        return KeptSettingsRecord(
            row.extension_id,
            row.name,
            row.version,
            values if isinstance(values, dict) else {},
            row.kept_at,
        )

    @_translate_errors
    def register_found(
        self,
        values: ExtensionValues,
        note: str,
        kind: OperationKind = OperationKind.INSTALL,
    ) -> None:
        """Record an extension found on disk (a rebuilt registry, or a folder that holds another
        version than the registry says), with an operation row of ``kind``. An extension that
        is already registered keeps its enabled state, its settings and when it was installed;
        only what describes the files changes."""
        extensions = self._models.extension
        with self.database.atomic():
            current = extensions.get_or_none(extensions.id == values.id)
            self._write_extension_row(values, exists=current is not None)
            self.record_completed_operation(
                values.id,
                kind,
                note,
                from_version=current.version if current is not None else None,
                to_version=values.version,
                file_count=len(values.files),
                total_bytes=sum(size for _path, size in values.files),
            )

    # -- configuration ---------------------------------------------------------------------------

    @_translate_errors
    def get_config(self, extension_id: str) -> dict[str, ConfigValue]:
        """The manifest's defaults with the user's stored values on top."""
        configs = self._models.config
        extension = self.get_extension(extension_id)
        if extension is None:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")
        values = extension.config_defaults
        for row in configs.select().where(configs.extension_id == extension_id):
            if row.key in values:
                values[row.key] = json.loads(row.value)
        return values

    @_translate_errors
    def set_config(self, extension_id: str, values: Mapping[str, ConfigValue]) -> None:
        """Store user values; each must exist in the defaults and have the default's type."""
        self._checked_defaults(extension_id, values)
        with self.database.atomic():
            self._store_values(extension_id, values)

    @_translate_errors
    def save_config(self, extension_id: str, values: Mapping[str, ConfigValue]) -> None:
        """Store what a settings form shows: values equal to the default are not stored, so a
        later version's new default applies to every setting the user never changed."""
        configs = self._models.config
        defaults = self._checked_defaults(extension_id, values)
        # 2 is not the same choice as a float default of 2.0: compare types as well as values.
        chosen = {
            key: value
            for key, value in values.items()
            if value != defaults[key] or type(value) is not type(defaults[key])
        }
        with self.database.atomic():
            configs.delete().where(
                (configs.extension_id == extension_id)
                & (configs.key.in_([k for k in values if k not in chosen]))
            ).execute()
            self._store_values(extension_id, chosen)

    def _checked_defaults(
        self, extension_id: str, values: Mapping[str, ConfigValue]
    ) -> dict[str, ConfigValue]:
        extension = self.get_extension(extension_id)
        if extension is None:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")
        defaults = extension.config_defaults
        for key, value in values.items():
            check_config_value(extension_id, defaults, key, value)
        return defaults

    def _store_values(self, extension_id: str, values: Mapping[str, ConfigValue]) -> None:
        for key, value in values.items():
            self._models.config.insert(
                extension_id=extension_id, key=key, value=json.dumps(value)
            ).on_conflict_replace().execute()

    @_translate_errors
    def reset_config(self, extension_id: str) -> None:
        configs = self._models.config
        with self.database.atomic():
            configs.delete().where(configs.extension_id == extension_id).execute()

    # -- kept versions ---------------------------------------------------------------------------

    @_translate_errors
    def list_kept_versions(self, extension_id: str | None = None) -> list[KeptVersionRecord]:
        """Kept archives, newest install first (one extension's, or every extension's)."""
        kept = self._models.kept
        query = kept.select().order_by(kept.installed_at.desc())
        if extension_id is not None:
            query = query.where(kept.extension_id == extension_id)
        return [_kept_record(row) for row in query]

    @_translate_errors
    def forget_kept_versions(self, versions: Iterable[KeptVersionRecord]) -> list[str]:
        """Drop these kept versions from the registry; returns the archives (by sha256) that no
        kept version refers to any more, whose files the caller may now delete."""
        kept = self._models.kept
        chosen = list(versions)
        with self.database.atomic():
            for version in chosen:
                kept.delete().where(
                    (kept.extension_id == version.extension_id)
                    & (kept.archive_sha256 == version.archive_sha256)
                ).execute()
            digests = {version.archive_sha256 for version in chosen}
            still_used = {
                row.archive_sha256
                for row in kept.select(kept.archive_sha256).where(
                    kept.archive_sha256.in_(list(digests))
                )
            }
        return sorted(digests - still_used)

    @_translate_errors
    def hold(self, extension_id: str, reason: str) -> None:
        """No update is offered for a held extension until ``release``."""
        self._update_extension(extension_id, held_at=utc_now(), hold_reason=reason)

    @_translate_errors
    def release(self, extension_id: str) -> None:
        self._update_extension(extension_id, held_at=None, hold_reason=None)

    def _update_extension(self, extension_id: str, **fields: Any) -> None:
        extensions = self._models.extension
        with self.database.atomic():
            changed = extensions.update(**fields).where(extensions.id == extension_id).execute()
        if not changed:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")

    # -- compatibility with the running app ------------------------------------------------------

    @_translate_errors
    def turn_off_incompatible(self, extension_id: str, app_version: str, reason: str) -> bool:
        """Disable an extension that does not fit ``app_version`` and record why, as a DISABLE
        operation. False when it is not enabled (nothing to do)."""
        extensions = self._models.extension
        with self.database.atomic():
            current = extensions.get_or_none(extensions.id == extension_id)
            if current is None or not current.enabled:
                return False
            extensions.update(enabled=False, compatibility_override=None).where(
                extensions.id == extension_id
            ).execute()
            self.record_completed_operation(
                extension_id,
                OperationKind.DISABLE,
                f"Turned off for Extension Manager {app_version}: {reason}",
                from_version=current.version,
                to_version=current.version,
            )
        return True

    @_translate_errors
    def override_compatibility(self, extension_id: str, app_version: str, reason: str) -> None:
        """Turn on an extension although it does not fit ``app_version``, as the person asked:
        recorded as an ENABLE operation, and not turned off again while this app runs."""
        extensions = self._models.extension
        with self.database.atomic():
            current = extensions.get_or_none(extensions.id == extension_id)
            if current is None:
                raise RegistryError(f"The extension '{extension_id}' is not installed.")
            extensions.update(
                enabled=True, compatibility_override=app_version, updated_at=utc_now()
            ).where(extensions.id == extension_id).execute()
            self.record_completed_operation(
                extension_id,
                OperationKind.ENABLE,
                f"Turned on by you for Extension Manager {app_version} although {reason}",
                from_version=current.version,
                to_version=current.version,
            )

    # -- app state and preferences ---------------------------------------------------------------

    @_translate_errors
    def get_state(self, key: str) -> str | None:
        state = self._models.state
        row = state.get_or_none(state.key == key)
        return None if row is None else str(row.value)

    @_translate_errors
    def set_state(self, key: str, value: str) -> None:
        with self.database.atomic():
            self._models.state.insert(key=key, value=value).on_conflict_replace().execute()

    def preferences(self) -> Preferences:
        stored = self.get_state("preferences")
        values = json.loads(stored) if stored else {}
        known = {name: values[name] for name in Preferences.__slots__ if name in values}
        return Preferences(**known)

    def set_preferences(self, preferences: Preferences) -> None:
        self.set_state(
            "preferences",
            json.dumps({name: getattr(preferences, name) for name in Preferences.__slots__}),
        )

    # -- update sources --------------------------------------------------------------------------

    @_translate_errors
    def add_source(self, location: str, kind: str) -> SourceRecord:
        sources = self._models.source
        with self.database.atomic():
            existing = sources.get_or_none(sources.location == location)
            if existing is None:
                existing = sources.create(location=location, kind=kind, added_at=utc_now())
        return _source_record(existing)

    @_translate_errors
    def list_sources(self) -> list[SourceRecord]:
        sources = self._models.source
        return [_source_record(row) for row in sources.select().order_by(sources.source_id)]

    @_translate_errors
    def remove_source(self, location: str) -> bool:
        sources = self._models.source
        with self.database.atomic():
            return bool(sources.delete().where(sources.location == location).execute())

    @_translate_errors
    def note_source_checked(self, source_id: int, error: str | None) -> None:
        sources = self._models.source
        with self.database.atomic():
            sources.update(checked_at=utc_now(), last_error=error).where(
                sources.source_id == source_id
            ).execute()

    @_translate_errors
    def source_files(self, paths: Iterable[str]) -> dict[str, SourceFileRecord]:
        files = self._models.source_file
        wanted = list(paths)
        found: dict[str, SourceFileRecord] = {}
        for start in range(0, len(wanted), 500):
            rows = files.select().where(files.path.in_(wanted[start : start + 500]))
            found.update(
                (
                    row.path,
                    SourceFileRecord(**{n: getattr(row, n) for n in SourceFileRecord.__slots__}),
                )
                for row in rows
            )
        return found

    @_translate_errors
    def remember_source_files(self, records: Iterable[SourceFileRecord]) -> None:
        files = self._models.source_file
        rows = [{n: getattr(r, n) for n in SourceFileRecord.__slots__} for r in records]
        if not rows:
            return
        with self.database.atomic():
            for start in range(0, len(rows), 100):
                files.insert_many(rows[start : start + 100]).on_conflict_replace().execute()


def _source_record(row: Any) -> SourceRecord:
    return SourceRecord(
        source_id=int(row.source_id),
        location=row.location,
        kind=row.kind,
        added_at=row.added_at,
        checked_at=row.checked_at,
        last_error=row.last_error,
    )


def check_config_value(
    extension_id: str, defaults: Mapping[str, ConfigValue], key: str, value: object
) -> None:
    if key not in defaults:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"'{key}' is not a setting of {extension_id}. Its settings are: {known}.")
    expected = type(defaults[key])
    # bool is an int in Python; a number setting must not accept true/false, nor the reverse.
    fits = isinstance(value, expected) and (isinstance(value, bool) == (expected is bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        fits = True
    if not fits:
        raise ConfigError(
            f"The setting '{key}' of {extension_id} must be {_type_words(expected)}, not {value!r}."
        )


def _type_words(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(
        kind, kind.__name__
    )
