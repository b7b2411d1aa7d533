"""Steps 2-7 of the launch sequence, shared by the window and the command line."""

from __future__ import annotations

import errno
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from migrations.runner import (
    RESCUE_HINT,
    MigrationReport,
    prepare_registry,
)
from registry.errors import (
    RegistryError,
    RegistryNeedsRescueError,
)
from registry.paths import DataPaths
from registry.recovery import RecoveryReport, recover_interrupted
from registry.store import (
    ExtensionSummary,
    Registry,
)


@dataclass(frozen=True, slots=True)
class OpenedRegistry:
    registry: Registry
    migration: MigrationReport
    recovery: RecoveryReport
    # Read on the opening thread for the first view, while the GUI toolkit was still loading.
    extensions: list[ExtensionSummary] | None = None


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
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RegistryError(
            f"The data folder {paths.root} cannot be written ({where}: permission denied or "
            f"read-only). Check its permissions, or choose another folder with --data-dir."
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return RegistryError(
            f"The disk is full: the data folder {paths.root} cannot be prepared. Free some space "
            f"and start again."
        )
    return RegistryError(
        f"The data folder {paths.root} cannot be used ({where}: {error.strerror or error}). "
        f"Check it, or choose another folder with --data-dir."
    )


def open_registry(
    paths: DataPaths, *, wait_seconds: float = 60.0, rescue_check: bool = True
) -> OpenedRegistry:
    """Lock, migrate, open and recover. Raises ``UserFacingError`` subclasses for the user.

    ``rescue_check=False`` is for the rescue itself, which creates the new registry on purpose.
    """
    try:
        return _open(paths, wait_seconds, rescue_check)
    except OSError as error:
        raise data_folder_error(error, paths) from error


def _open(paths: DataPaths, wait_seconds: float, rescue_check: bool) -> OpenedRegistry:
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
    except BaseException:
        lock.release()
        raise
    return OpenedRegistry(registry, migration, recovery)


def open_in_background(paths: DataPaths) -> Future[OpenedRegistry]:
    """Start opening (and migrating) the registry on a thread right away, so that it overlaps
    loading the GUI toolkit. The window is still built only from the finished result."""

    def work() -> OpenedRegistry:
        opened = open_registry(paths)
        opened = replace(opened, extensions=opened.registry.list_extension_summaries())
        # peewee keeps one connection per thread; this thread is finished with its own.
        opened.registry.close_thread_connection()
        return opened

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="open-registry")
    try:
        return executor.submit(work)
    finally:
        executor.shutdown(wait=False)
