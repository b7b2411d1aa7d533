"""Get a person back to a working registry when ``registry.db`` is gone or damaged.

The registry is the only record of what is installed, so losing it must never be silent: a
launch that finds the file missing while ``extensions/`` still holds extensions, or a file that
is not a readable database, refuses with :class:`RegistryNeedsRescueError` and points here.
Two ways out, both explicit choices:

* restore the newest backup in ``backups/`` that passes verification (taken before each
  migration), then bring it up to date as any launch would;
* start a new registry and re-register every extension folder whose ``manifest.json`` is
  valid, with an operation row per extension saying why.

Nothing is deleted: a damaged file (and its ``-wal``/``-journal`` companions, which must never
be replayed onto another database) is renamed to ``registry.db.damaged-<timestamp>``, and a
folder that cannot be re-registered is moved to ``orphans/``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from migrations.runner import APPLICATION_ID, RESCUE_HINT, latest_version, read_status
from registry.doctor import diagnose, installed_files
from registry.errors import (
    ManifestError,
    RegistryBusyError,
    RegistryError,
    RegistryNeedsRescueError,
)
from registry.installer import extension_values
from registry.limits import DEFAULT_LIMITS
from registry.lock import hold_exclusive
from registry.manifest import Manifest, parse_manifest
from registry.paths import DataPaths
from registry.startup import extension_folders, missing_registry_problem, open_data_folder
from registry.store import Registry

__all__ = [
    "RESCUE_HINT",
    "BackupInfo",
    "RegistryNeedsRescueError",
    "RescueOptions",
    "RescueResult",
    "missing_registry_problem",
    "rebuild_from_disk",
    "registry_problem",
    "rescue_options",
    "restore_latest_backup",
]

log = logging.getLogger(__name__)

# The database's own file and the companions SQLite keeps next to it.
SIDECAR_SUFFIXES = ("", "-wal", "-shm", "-journal")
REBUILT_NOTE = (
    "Re-registered from the files on disk by 'extension-manager rescue': the registry was "
    "{reason}. Its settings and earlier history could not be recovered."
)


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    schema_version: int
    taken_at: str  # local time, for people
    extensions: int


@dataclass(frozen=True, slots=True)
class RescueOptions:
    """What is wrong (``problem`` is None when nothing is) and what can be done about it."""

    paths: DataPaths
    problem: str | None
    backup: BackupInfo | None
    extension_folders: tuple[str, ...]

    @property
    def needed(self) -> bool:
        return self.problem is not None

    def describe(self) -> list[str]:
        """Plain lines: the problem, then each possible rescue with its command-line option."""
        if self.problem is None:
            return [f"The registry at {self.paths.database} is fine: there is nothing to rescue."]
        lines = [self.problem, "", "What can be done:"]
        if self.backup is not None:
            lines.append(
                f"  --restore-backup  restore the backup taken {self.backup.taken_at} "
                f"({self.backup.extensions} extension(s), schema version "
                f"{self.backup.schema_version}) from {self.backup.path}"
            )
        else:
            lines.append(f"  (no verified backup to restore in {self.paths.backups})")
        count = len(self.extension_folders)
        lines.append(
            f"  --rebuild         start a new registry and re-register the {count} extension "
            f"folder(s) found in {self.paths.extensions}"
        )
        lines.append(
            "Either way the damaged file, if any, is kept as registry.db.damaged-<time>; "
            "nothing is deleted."
        )
        return lines


@dataclass(frozen=True, slots=True)
class RescueResult:
    actions: tuple[str, ...]
    moved_aside: tuple[Path, ...] = ()


def registry_problem(paths: DataPaths) -> str | None:
    """Why the registry needs rescuing, or None. Reads only; never changes a file."""
    missing = missing_registry_problem(paths)
    if missing is not None:
        return missing
    try:
        read_status(paths.database)
    except RegistryNeedsRescueError as error:
        return str(error)
    except RegistryError:
        # Newer, foreign, busy or unreadable for lack of permission: a rescue would not help.
        return None
    return None


def _verified(backup: Path) -> BackupInfo | None:
    try:
        connection = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return None
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if not 1 <= version <= latest_version():
            return None
        if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            return None
        extensions = int(connection.execute("SELECT count(*) FROM extensions").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    taken = datetime.fromtimestamp(backup.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    return BackupInfo(backup, version, taken, extensions)


def latest_verified_backup(paths: DataPaths) -> BackupInfo | None:
    if not paths.backups.is_dir():
        return None
    candidates = sorted(
        paths.backups.glob("registry-v*.db"),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    for candidate in candidates:
        info = _verified(candidate)
        if info is not None:
            return info
        log.warning("backup %s failed verification; skipped", candidate)
    return None


def rescue_options(paths: DataPaths) -> RescueOptions:
    return RescueOptions(
        paths=paths,
        problem=registry_problem(paths),
        backup=latest_verified_backup(paths),
        extension_folders=extension_folders(paths),
    )


class _ExclusiveRegistry:
    """Hold the registry lock exclusively: no other process may have the registry open while
    its file is swapped underneath it."""

    def __init__(self, paths: DataPaths) -> None:
        paths.root.mkdir(parents=True, exist_ok=True)
        try:
            self.lock = hold_exclusive(paths.lock)
        except RegistryBusyError as error:
            raise RegistryBusyError(
                f"Another Extension Manager is using {paths.root}. Close it, then run the "
                f"rescue again."
            ) from error

    def __enter__(self) -> _ExclusiveRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.lock.release()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _move_aside(paths: DataPaths) -> tuple[Path, ...]:
    """Rename the database and its companions to ``registry.db.damaged-<stamp>[-wal...]``."""
    stamp = _stamp()
    moved = []
    for suffix in SIDECAR_SUFFIXES:
        source = paths.database.with_name(paths.database.name + suffix)
        if source.exists():
            destination = paths.database.with_name(f"{paths.database.name}.damaged-{stamp}{suffix}")
            source.rename(destination)
            moved.append(destination)
    return tuple(moved)


def _require_problem(paths: DataPaths) -> str:
    problem = registry_problem(paths)
    if problem is None:
        raise RegistryError(
            f"The registry at {paths.database} does not need rescuing, so it was left as it is. "
            f"Run 'extension-manager doctor' to compare it with the files on disk."
        )
    return problem


def restore_latest_backup(paths: DataPaths) -> RescueResult:
    """Put the newest verified backup in place of the missing or damaged registry."""
    _require_problem(paths)
    backup = latest_verified_backup(paths)
    if backup is None:
        raise RegistryError(
            f"There is no verified backup of the registry in {paths.backups}. Run "
            f"'extension-manager rescue --rebuild' to re-register the extensions on disk instead."
        )
    actions: list[str] = []
    with _ExclusiveRegistry(paths):
        moved = _move_aside(paths)
        actions.extend(f"Kept the damaged registry as {path}." for path in moved[:1])
        restoring = paths.database.with_name(paths.database.name + ".restoring")
        restoring.unlink(missing_ok=True)
        try:
            source = sqlite3.connect(f"{backup.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                destination = sqlite3.connect(restoring)
                try:
                    source.backup(destination)
                finally:
                    destination.close()
            finally:
                source.close()
            restoring.replace(paths.database)
        except (OSError, sqlite3.Error) as error:
            restoring.unlink(missing_ok=True)
            raise RegistryError(
                f"Could not restore {backup.path} ({error}). The backup itself is unchanged; "
                f"check free disk space in {paths.root} and try again."
            ) from error
    actions.append(f"Restored the backup taken {backup.taken_at} from {backup.path}.")
    actions.extend(_compare_with_disk(paths))
    return RescueResult(tuple(actions), moved)


def _compare_with_disk(paths: DataPaths) -> list[str]:
    """Open the restored registry as a launch would (migrating it) and report what drifted."""
    with open_data_folder(paths, rescue_check=False) as registry:
        findings = diagnose(registry)
    if not findings:
        return ["The restored registry matches the extensions on disk."]
    return [
        f"The backup is older than the files on disk: {len(findings)} difference(s). Run "
        "'extension-manager doctor' to see them and 'extension-manager doctor --repair' to "
        "fix the safe ones, then reinstall what is missing."
    ]


def _read_folder_manifest(folder: Path) -> Manifest:
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise ManifestError(["manifest.json: the folder has no manifest.json"])
    data = manifest_file.read_bytes()
    if len(data) > DEFAULT_LIMITS.max_manifest_bytes:
        raise ManifestError(["manifest.json: the file is too large"])
    manifest = parse_manifest(data)
    if manifest.id != folder.name:
        raise ManifestError([f"id: '{manifest.id}' does not match the folder name"])
    return manifest


def rebuild_from_disk(paths: DataPaths, app_version: str) -> RescueResult:
    """Start a new registry and re-register every extension folder with a valid manifest."""
    problem = _require_problem(paths)
    reason = "missing" if "is missing" in problem else "damaged"
    with _ExclusiveRegistry(paths):
        moved = _move_aside(paths)
        # A new registry has no history, so the launch's clean-up would take every trash and
        # staging folder for garbage; after a crash mid-upgrade the trash may hold the only copy
        # of an extension. Keep them where a person can look.
        kept = [
            _to_orphans(paths, entry)
            for folder in (paths.trash, paths.staging)
            if folder.is_dir()
            for entry in sorted(folder.iterdir())
        ]
    actions = [f"Kept the damaged registry as {path}." for path in moved[:1]]
    actions.extend(f"Kept an unfinished operation's files as {path}." for path in kept)
    with open_data_folder(paths, rescue_check=False) as registry:
        actions.extend(_register_folders(registry, reason, app_version))
    return RescueResult(tuple(actions), moved)


def _register_folders(registry: Registry, reason: str, app_version: str) -> list[str]:
    paths = registry.paths
    actions: list[str] = []
    note = REBUILT_NOTE.format(reason=reason)
    for name in sorted(entry.name for entry in paths.extensions.iterdir()):
        folder = paths.extensions / name
        try:
            if not folder.is_dir():
                raise ManifestError([f"{name}: not a folder"])
            manifest = _read_folder_manifest(folder)
        except (ManifestError, OSError) as error:
            destination = _to_orphans(paths, folder)
            problem = str(error).splitlines()[0]
            actions.append(f"Could not re-register {name} ({problem}); moved it to {destination}.")
            continue
        files = sorted(installed_files(folder).items())
        registry.register_found(extension_values(manifest, folder, "", files), note)
        actions.append(f"Re-registered {manifest.id} {manifest.version} from {folder}.")
    if not actions:
        actions.append("Started a new, empty registry: there were no extension folders.")
    log.info("registry rebuilt from disk by app %s: %s", app_version, actions)
    return actions


def _to_orphans(paths: DataPaths, entry: Path) -> Path:
    orphans = paths.root / "orphans"
    orphans.mkdir(exist_ok=True)
    destination = orphans / f"{entry.name}-{_stamp()}"
    entry.rename(destination)
    return destination
