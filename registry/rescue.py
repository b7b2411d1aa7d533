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

Nothing is moved either before it is certain the rescue can finish: a full or read-only disk is
refused first (moving the registry aside and then failing to create a new one would leave only
a rebuild, which loses settings and history). And a registry that is unreadable only because of
a journal or log that is not its own is not damaged: those are moved aside and the registry is
kept.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from migrations.runner import (
    APPLICATION_ID,
    MIGRATION_MARGIN_BYTES,
    MIGRATION_WORKING_FACTOR,
    NEW_REGISTRY_BYTES,
    OPEN_SPACE_BYTES,
    RESCUE_HINT,
    DiskConditionError,
    disk_condition,
    latest_version,
    load_steps,
    read_status,
    read_status_without_log,
    schema_gaps,
    set_aside_foreign_companions,
)
from registry.doctor import diagnose, installed_files, read_folder_manifest, version_differences
from registry.errors import (
    ManifestError,
    RegistryBusyError,
    RegistryError,
    RegistryNeedsRescueError,
)
from registry.installer import extension_values
from registry.lock import hold_exclusive
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
# What a rebuilt registry needs per extension: its row, its file list and its operation row.
REBUILD_BYTES_PER_EXTENSION = 64 * 1024
RESTORED_NOTE = (
    "Interrupted before the backup this registry was restored from was taken; marked failed by "
    "'extension-manager rescue --restore-backup'."
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
    # Journals or logs of another database found next to the registry and moved aside.
    set_aside: tuple[str, ...] = ()

    @property
    def needed(self) -> bool:
        return self.problem is not None

    def describe(self) -> list[str]:
        """Plain lines: the problem, then each possible rescue with its command-line option."""
        if self.problem is None:
            return [
                *self.set_aside,
                f"The registry at {self.paths.database} is fine: there is nothing to rescue.",
            ]
        lines = [*self.set_aside, self.problem, "", "What can be done:"]
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
    """Why the registry needs rescuing, or None. Reads only; never changes a file.

    A full or read-only disk is no reason to rescue anything, and a rescue could not finish on
    it: that is raised as ``DiskConditionError``, in its own plain words.
    """
    missing = missing_registry_problem(paths)
    if missing is not None:
        return missing
    try:
        read_status(paths.database)
    except RegistryNeedsRescueError as error:
        return str(error)
    except DiskConditionError:
        raise
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
        if schema_gaps(connection, load_steps()[:version]):
            return None  # a table or column is missing: it would need rescuing itself
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
    """What is wrong and what can be done. A journal or log of another database next to the
    registry is moved aside first (when nobody has the registry open), as a launch would: it is
    what makes an intact registry look damaged."""
    set_aside: tuple[str, ...] = ()
    if paths.root.is_dir():
        try:
            with _ExclusiveRegistry(paths):
                set_aside = _set_companions_aside(paths)
        except (RegistryBusyError, OSError):
            # In use (whatever SQLite reads now, the launch holding it has judged), or the
            # folder cannot be written (which the problem below then says).
            pass
    return RescueOptions(
        paths=paths,
        problem=registry_problem(paths),
        backup=latest_verified_backup(paths),
        extension_folders=extension_folders(paths),
        set_aside=set_aside,
    )


def _set_companions_aside(paths: DataPaths) -> tuple[str, ...]:
    """Under the exclusive lock: move another database's journal or log out of the way, and a
    log that makes the registry unreadable while it is intact without it."""
    notes = set_aside_foreign_companions(paths.database)
    try:
        problem = registry_problem(paths)
    except DiskConditionError:
        return notes
    if problem is not None:
        retried = read_status_without_log(paths.database, load_steps())
        if retried is not None:
            notes = (*notes, retried[1])
    return notes


def _check_room(paths: DataPaths, needed: int, doing: str) -> None:
    """Refuse, before anything is moved, a rescue that the disk could not let finish."""
    condition = disk_condition(
        paths.root,
        needed,
        doing,
        outcome="the rescue was not started and nothing was moved",
        then="run it again",
    )
    if condition is not None:
        raise condition


def _restore_room(backup: BackupInfo) -> int:
    """The copy of the backup, then (if it is older than this app) the launch's upgrade of it:
    its own backup and working space, and room to open it."""
    size = backup.path.stat().st_size
    upgrade = 0
    if backup.schema_version < latest_version():
        upgrade = size + MIGRATION_WORKING_FACTOR * size + MIGRATION_MARGIN_BYTES
    return size + upgrade + OPEN_SPACE_BYTES


def _rebuild_room(paths: DataPaths) -> int:
    return NEW_REGISTRY_BYTES + REBUILD_BYTES_PER_EXTENSION * len(extension_folders(paths))


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


def _intact_after_all(paths: DataPaths, set_aside: tuple[str, ...]) -> RescueResult:
    return RescueResult(
        (
            *set_aside,
            f"The registry at {paths.database} is intact without it, so nothing else was "
            "rescued: it keeps its settings and history.",
        )
    )


def restore_latest_backup(paths: DataPaths) -> RescueResult:
    """Put the newest verified backup in place of the missing or damaged registry."""
    _require_problem(paths)
    backup = latest_verified_backup(paths)
    if backup is None:
        raise RegistryError(
            f"There is no verified backup of the registry in {paths.backups}. Run "
            f"'extension-manager rescue --rebuild' to re-register the extensions on disk instead."
        )
    _check_room(paths, _restore_room(backup), "restoring the backup")
    actions: list[str] = []
    with _ExclusiveRegistry(paths):
        set_aside = _set_companions_aside(paths)
        if registry_problem(paths) is None:
            return _intact_after_all(paths, set_aside)
        actions.extend(set_aside)
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
                    interrupted = _fail_operations_in_flight(destination)
                finally:
                    destination.close()
            finally:
                source.close()
            restoring.replace(paths.database)
        except (OSError, sqlite3.Error) as error:
            for leftover in paths.root.glob(f"{restoring.name}*"):
                leftover.unlink(missing_ok=True)
            kept = f", and the damaged registry is kept as {moved[0]}" if moved else ""
            raise RegistryError(
                f"Could not restore {backup.path} ({error}). The backup itself is unchanged"
                f"{kept}; check free disk space in {paths.root} and try again."
            ) from error
        # The backup knows nothing of the operations after it: their unfinished files must not
        # be taken for garbage (or put back) by the launch. Kept where a person can look.
        actions.extend(
            f"Kept an unfinished operation's files as {path}." for path in _keep_unfinished(paths)
        )
    actions.append(f"Restored the backup taken {backup.taken_at} from {backup.path}.")
    if interrupted:
        actions.append(
            f"Marked {interrupted} operation(s) that were unfinished when the backup was taken "
            "as failed."
        )
    actions.extend(_compare_with_disk(paths))
    return RescueResult(tuple(actions), moved)


def _fail_operations_in_flight(connection: sqlite3.Connection) -> int:
    """An operation the backup recorded as running had no process any more once it was taken;
    recovering it against today's folders could remove an extension installed since. So it is
    marked failed in the copy, and the folders are compared by the doctor instead."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    with connection:
        cursor = connection.execute(
            "UPDATE extension_installs SET status = 'FAILED', ended_at = ?, error = ?"
            " WHERE status IN ('INSTALLING', 'UNINSTALLING')",
            (stamp, RESTORED_NOTE),
        )
    return cursor.rowcount


def _keep_unfinished(paths: DataPaths) -> list[Path]:
    return [
        _to_orphans(paths, entry)
        for folder in (paths.trash, paths.staging)
        if folder.is_dir()
        for entry in sorted(folder.iterdir())
    ]


def _compare_with_disk(paths: DataPaths) -> list[str]:
    """Open the restored registry as a launch would (migrating it) and report what drifted:
    each extension whose folder holds another version by name, the rest as a count."""
    with open_data_folder(paths, rescue_check=False) as registry:
        differences = version_differences(registry)
        findings = diagnose(registry)
    if not findings:
        return ["The restored registry matches the extensions on disk."]
    lines = [f"{difference.words}." for difference in differences]
    others = len(findings) - len(differences)
    summary = "The backup is older than the files on disk: "
    if differences:
        summary += f"{len(differences)} extension(s) differ in version (above)"
        summary += f" and there are {others} other difference(s)." if others else "."
    else:
        summary += f"{others} difference(s)."
    summary += (
        " Run 'extension-manager doctor' to see them and 'extension-manager doctor --repair' to "
        "record what is on disk (settings are kept), then reinstall what is missing."
    )
    return [summary, *lines]


def rebuild_from_disk(paths: DataPaths, app_version: str) -> RescueResult:
    """Start a new registry and re-register every extension folder with a valid manifest."""
    problem = _require_problem(paths)
    reason = "missing" if "is missing" in problem else "damaged"
    _check_room(paths, _rebuild_room(paths), "rebuilding the registry")
    with _ExclusiveRegistry(paths):
        set_aside = _set_companions_aside(paths)
        if registry_problem(paths) is None:
            return _intact_after_all(paths, set_aside)
        moved = _move_aside(paths)
        # A new registry has no history, so the launch's clean-up would take every trash and
        # staging folder for garbage; after a crash mid-upgrade the trash may hold the only copy
        # of an extension. Keep them where a person can look.
        kept = _keep_unfinished(paths)
    actions = [*set_aside, *(f"Kept the damaged registry as {path}." for path in moved[:1])]
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
            manifest = read_folder_manifest(folder)
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
