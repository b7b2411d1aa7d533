"""Opening a data folder's registry: lock, preflight, backup, migrations, recovery.

The window, the command line and host applications all come through here (host applications
through ``registry.open_registry``). Nothing here asks anyone anything or shows anything: what
was done comes back as the registry's ``launch`` report, for the front end to show.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from migrations.runner import (
    OPEN_SPACE_BYTES,
    RESCUE_HINT,
    DiskConditionError,
    expected_condition,
)
from registry import compatibility
from registry.errors import RegistryError, RegistryNeedsRescueError
from registry.lock import prepare_registry
from registry.paths import DataPaths, disk_is_read_only, free_bytes
from registry.recovery import recover_interrupted
from registry.sizes import format_size
from registry.store import LaunchReport, Registry
from registry.version import APP_VERSION


@dataclass(frozen=True, slots=True)
class OpeningReport(LaunchReport):
    """The launch report, with what had to be moved out of the way before the registry could
    be opened (a journal or log of another database) said first."""

    set_aside: tuple[str, ...] = ()

    def messages(self) -> list[str]:
        return [*self.set_aside, *LaunchReport.messages(self)]


def extension_folders(paths: DataPaths) -> tuple[str, ...]:
    if not paths.extensions.is_dir():
        return ()
    return tuple(
        sorted(
            entry.name
            for entry in paths.extensions.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
        )
    )


def missing_registry_problem(paths: DataPaths) -> str | None:
    """A missing (or empty) registry next to installed extensions: starting empty would forget
    them, and their folders would look like strays to the doctor."""
    database = paths.database
    if database.exists() and database.stat().st_size > 0:
        return None
    folders = extension_folders(paths)
    if not folders:
        return None
    shown = ", ".join(folders[:5]) + (", ..." if len(folders) > 5 else "")
    return (
        f"The registry {database} is missing, but {paths.extensions} still holds "
        f"{len(folders)} installed extension(s) ({shown}). A new, empty registry would forget "
        f"them, so none was created. {RESCUE_HINT}"
    )


def data_folder_error(error: OSError, paths: DataPaths) -> RegistryError:
    """The data folder itself cannot be used: say which, and what to do, in plain words."""
    where = error.filename or paths.root
    if error.errno == errno.EROFS or (
        error.errno in (errno.EACCES, errno.EPERM) and disk_is_read_only(paths.root)
    ):
        return DiskConditionError(
            f"The data folder {paths.root} cannot be written ({where}: the disk is read-only "
            f"or the folder may not be written). Nothing was changed: make it writable, or "
            f"choose another folder with --data-dir."
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return RegistryError(
            f"The data folder {paths.root} cannot be written ({where}: permission denied). "
            f"Check its permissions, or choose another folder with --data-dir."
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskConditionError(
            f"The disk is full: preparing the data folder {paths.root} needs about "
            f"{format_size(OPEN_SPACE_BYTES)} free, and the disk has "
            f"{format_size(free_bytes(paths.root))}, so nothing was changed. Free some space "
            f"and start again."
        )
    return RegistryError(
        f"The data folder {paths.root} cannot be used ({where}: {error.strerror or error}). "
        f"Check it, or choose another folder with --data-dir."
    )


def open_data_folder(
    paths: DataPaths,
    *,
    wait_seconds: float = 60.0,
    rescue_check: bool = True,
    app_version: str = APP_VERSION,
) -> Registry:
    """Lock, migrate, open, recover and re-check compatibility when the app changed. Raises
    ``UserFacingError`` subclasses for the person.

    ``rescue_check=False`` is for the rescue itself, which creates the new registry on purpose.
    """
    try:
        return _open(paths, wait_seconds, rescue_check, app_version)
    except OSError as error:
        raise data_folder_error(error, paths) from error


def _open(paths: DataPaths, wait_seconds: float, rescue_check: bool, app_version: str) -> Registry:
    if rescue_check:
        problem = missing_registry_problem(paths)
        if problem is not None:
            raise RegistryNeedsRescueError(problem)
    paths.create()
    lock, migration = prepare_registry(
        paths.database, paths.lock, paths.backups, wait_seconds=wait_seconds
    )
    try:
        registry = Registry(paths, lock)
        recovery = recover_interrupted(registry)
        turned_off = compatibility.summary(compatibility.recheck(registry, app_version))
    except RegistryError as error:
        lock.release()
        # Opening reads, and recovering writes: on a full or read-only disk either fails with
        # SQLite's words, which are no help to a person.
        condition = expected_condition(error, paths.root, OPEN_SPACE_BYTES, "opening the registry")
        if condition is not None:
            raise condition from error
        raise
    except BaseException:
        lock.release()
        raise
    registry.launch = OpeningReport(
        migration, tuple(recovery.interrupted), turned_off, migration.set_aside
    )
    return registry
