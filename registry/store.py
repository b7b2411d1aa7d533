"""The registry API: everything the GUI and the CLI read or write goes through ``Registry``.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee

from migrations.lock import RegistryLock
from migrations.runner import APPLICATION_ID, latest_version
from registry.errors import (
    ConfigError,
    OperationNotFoundError,
    RegistryError,
    RegistryNotMigratedError,
)
from registry.models import (
    KINDS,
    STATUSES,
    Extension,
    ExtensionConfig,
    ExtensionInstall,
    database_proxy,
)
from registry.paths import DataPaths

ConfigValue = bool | int | float | str
ACTIVE_STATUSES = ("INSTALLING", "UNINSTALLING")
# For Help -> About: the SQLite library the registry runs on.
SQLITE_VERSION = sqlite3.sqlite_version
BUSY_TIMEOUT_MS = 15_000

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


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

    @property
    def config_defaults(self) -> dict[str, ConfigValue]:
        defaults = self.manifest.get("config", {})
        return dict(defaults) if isinstance(defaults, dict) else {}


@dataclass(frozen=True, slots=True)
class ExtensionSummary:
    """What a list of extensions shows: cheap to read for ten thousand rows (no JSON)."""

    id: str
    name: str
    version: str
    description: str
    enabled: bool
    icon_path: str | None
    install_path: str
    installed_at: str
    updated_at: str


def operation_record(row: ExtensionInstall) -> OperationRecord:
    return OperationRecord(**{name: getattr(row, name) for name in OperationRecord.__slots__})


def _extension_record(row: Extension) -> ExtensionRecord:
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
    )


def plain_database_error(
    error: peewee.DatabaseError | sqlite3.DatabaseError,
) -> RegistryError | None:
    """The known ways a write or read fails, in plain words; None for anything else (a bug)."""
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
            plain = plain_database_error(error)
            if plain is not None:
                raise plain from error
            raise

    return wrapper


# psutil is imported by the two functions below, which a launch calls only when there is an
# operation to record or to check: it is not needed to open the window.


def current_process_identity() -> tuple[int, float]:
    """PID plus start time: a PID alone can be reused by an unrelated process after a crash."""
    return _identity_of(os.getpid())


@functools.cache
def _identity_of(pid: int) -> tuple[int, float]:
    import psutil

    return pid, psutil.Process(pid).create_time()


def process_is_alive(pid: int | None, started: float | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Registry:
    """The registry of one data folder. One per process (models bind to it at open)."""

    def __init__(self, paths: DataPaths, lock: RegistryLock | None = None) -> None:
        self.paths = paths
        self.lock = lock
        self.database = peewee.SqliteDatabase(
            str(paths.database),
            pragmas={
                "foreign_keys": 1,
                "busy_timeout": BUSY_TIMEOUT_MS,
                "synchronous": "NORMAL",
            },
            timeout=BUSY_TIMEOUT_MS / 1000,
            lock_type="IMMEDIATE",
        )
        database_proxy.initialize(self.database)
        self._check_schema()

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

    def close(self) -> None:
        if not self.database.is_closed():
            self.database.close()
        if self.lock is not None:
            self.lock.release()

    def fetch_all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Raw SQL for pragmas and read-only checks that the models do not cover."""
        cursor = self.database.execute_sql(sql, params)  # type: ignore[no-untyped-call]
        return list(cursor.fetchall())

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
        kind: str = "INSTALL",
        status: str = "INSTALLING",
        extension_id: str | None = None,
        current_step: str = "Queued",
    ) -> int:
        """Record an operation the moment a file is accepted, before its manifest is read."""
        if status not in STATUSES or kind not in KINDS:
            raise ValueError(f"unknown status {status!r} or kind {kind!r}")
        pid, started = current_process_identity()
        now = utc_now()
        with self.database.atomic():
            row = ExtensionInstall.create(
                extension_id=extension_id,
                kind=kind,
                archive_path=str(archive_path),
                status=status,
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
        unknown = set(fields) - set(ExtensionInstall._meta.fields)
        if unknown or "install_id" in fields:
            raise ValueError(f"cannot update operation fields {sorted(unknown)}")
        fields["updated_at"] = utc_now()
        query = ExtensionInstall.update(**fields).where(ExtensionInstall.install_id == install_id)
        if "progress" in fields:
            query = query.where(ExtensionInstall.progress <= fields["progress"])
        with self.database.atomic():
            changed = query.execute()
            if not changed and not ExtensionInstall.get_or_none(install_id=install_id):
                raise OperationNotFoundError(install_id)

    @_translate_errors
    def record_completed_operation(
        self, extension_id: str, kind: str, note: str, **fields: Any
    ) -> int:
        """Record a change made outside the installer (doctor, rescue) as one finished
        operation, so that the history explains it; joins the caller's transaction if any."""
        now = utc_now()
        with self.database.atomic():
            row = ExtensionInstall.create(
                extension_id=extension_id,
                kind=kind,
                status="COMPLETED",
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
    def finish_operation(self, install_id: int, status: str, error: str | None = None) -> None:
        """End an operation that is still running; one that already ended keeps its outcome
        (a late failure must never turn a committed change into "failed")."""
        now = utc_now()
        fields: dict[str, Any] = {"status": status, "ended_at": now, "updated_at": now}
        fields["error"] = error
        if status == "COMPLETED":
            fields.update(progress=100, current_step="Done")
        elif status == "FAILED":
            fields["current_step"] = "Failed"
        with self.database.atomic():
            changed = (
                ExtensionInstall.update(**fields)
                .where(
                    (ExtensionInstall.install_id == install_id)
                    & (ExtensionInstall.status.in_(ACTIVE_STATUSES))
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
    def completed_after(self, extension_id: str, install_id: int) -> bool:
        """Whether a later operation on this extension has committed."""
        return bool(
            ExtensionInstall.select()
            .where(
                (ExtensionInstall.extension_id == extension_id)
                & (ExtensionInstall.status == "COMPLETED")
                & (ExtensionInstall.install_id > install_id)
            )
            .exists()
        )

    @_translate_errors
    def get_operation(self, install_id: int) -> OperationRecord:
        row = ExtensionInstall.get_or_none(ExtensionInstall.install_id == install_id)
        if row is None:
            raise OperationNotFoundError(install_id)
        return operation_record(row)

    @_translate_errors
    def get_operations(self, install_ids: Iterable[int]) -> dict[int, OperationRecord]:
        ids = list(install_ids)
        if not ids:
            return {}
        rows = ExtensionInstall.select().where(ExtensionInstall.install_id.in_(ids))
        return {row.install_id: operation_record(row) for row in rows}

    @_translate_errors
    def list_operations(
        self,
        *,
        limit: int | None = None,
        active_only: bool = False,
        since_id: int = 0,
        before_id: int | None = None,
    ) -> list[OperationRecord]:
        """Newest first; ``since_id``/``before_id`` page through the history by operation id."""
        query = ExtensionInstall.select().order_by(ExtensionInstall.install_id.desc())
        if active_only:
            query = query.where(ExtensionInstall.status.in_(ACTIVE_STATUSES))
        if since_id:
            query = query.where(ExtensionInstall.install_id > since_id)
        if before_id is not None:
            query = query.where(ExtensionInstall.install_id < before_id)
        if limit is not None:
            query = query.limit(limit)
        return [operation_record(row) for row in query]

    @_translate_errors
    def count_operations(self) -> int:
        return int(ExtensionInstall.select().count())

    # -- extensions ------------------------------------------------------------------------------

    @_translate_errors
    def list_extensions(self) -> list[ExtensionRecord]:
        return [_extension_record(row) for row in Extension.select().order_by(Extension.name)]

    @_translate_errors
    def list_extension_summaries(self) -> list[ExtensionSummary]:
        """Every installed extension, by name: rows straight from SQLite, without peewee's
        per-field conversion, which dominates the window's opening time at ten thousand rows."""
        columns = ", ".join(ExtensionSummary.__slots__)
        rows = self.fetch_all(f"SELECT {columns} FROM extensions ORDER BY name")
        return [
            ExtensionSummary(
                id=row[0],
                name=row[1],
                version=row[2],
                description=row[3],
                enabled=bool(row[4]),
                icon_path=row[5],
                install_path=row[6],
                installed_at=row[7],
                updated_at=row[8],
            )
            for row in rows
        ]

    @_translate_errors
    def get_extension(self, extension_id: str) -> ExtensionRecord | None:
        row = Extension.get_or_none(Extension.id == extension_id)
        return _extension_record(row) if row is not None else None

    @_translate_errors
    def set_enabled(self, extension_id: str, enabled: bool) -> None:
        with self.database.atomic():
            changed = (
                Extension.update(enabled=enabled, updated_at=utc_now())
                .where(Extension.id == extension_id)
                .execute()
            )
        if not changed:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")

    # -- configuration ---------------------------------------------------------------------------

    @_translate_errors
    def get_config(self, extension_id: str) -> dict[str, ConfigValue]:
        """The manifest's defaults with the user's stored values on top."""
        extension = self.get_extension(extension_id)
        if extension is None:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")
        values = extension.config_defaults
        stored = ExtensionConfig.select().where(ExtensionConfig.extension_id == extension_id)
        for row in stored:
            if row.key in values:
                values[row.key] = json.loads(row.value)
        return values

    @_translate_errors
    def set_config(self, extension_id: str, values: Mapping[str, ConfigValue]) -> None:
        """Store user values; each must exist in the defaults and have the default's type."""
        extension = self.get_extension(extension_id)
        if extension is None:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")
        defaults = extension.config_defaults
        for key, value in values.items():
            check_config_value(extension_id, defaults, key, value)
        with self.database.atomic():
            for key, value in values.items():
                ExtensionConfig.insert(
                    extension_id=extension_id, key=key, value=json.dumps(value)
                ).on_conflict_replace().execute()

    @_translate_errors
    def save_config(self, extension_id: str, values: Mapping[str, ConfigValue]) -> None:
        """Store what a settings form shows: values equal to the default are not stored, so a
        later version's new default applies to every setting the user never changed."""
        extension = self.get_extension(extension_id)
        if extension is None:
            raise RegistryError(f"The extension '{extension_id}' is not installed.")
        defaults = extension.config_defaults
        for key, value in values.items():
            check_config_value(extension_id, defaults, key, value)
        # 2 is not the same choice as a float default of 2.0: compare types as well as values.
        chosen = {
            key: value
            for key, value in values.items()
            if value != defaults[key] or type(value) is not type(defaults[key])
        }
        with self.database.atomic():
            ExtensionConfig.delete().where(
                (ExtensionConfig.extension_id == extension_id)
                & (ExtensionConfig.key.in_([k for k in values if k not in chosen]))
            ).execute()
            for key, value in chosen.items():
                ExtensionConfig.insert(
                    extension_id=extension_id, key=key, value=json.dumps(value)
                ).on_conflict_replace().execute()

    @_translate_errors
    def reset_config(self, extension_id: str) -> None:
        with self.database.atomic():
            ExtensionConfig.delete().where(ExtensionConfig.extension_id == extension_id).execute()


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
