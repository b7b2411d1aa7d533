"""Steps 2-7 of the launch sequence, shared by the window and the command line."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from migrations.runner import MigrationReport, prepare_registry
from registry.paths import DataPaths
from registry.recovery import RecoveryReport, recover_interrupted
from registry.store import Registry


@dataclass(frozen=True, slots=True)
class OpenedRegistry:
    registry: Registry
    migration: MigrationReport
    recovery: RecoveryReport


def open_registry(paths: DataPaths, *, wait_seconds: float = 60.0) -> OpenedRegistry:
    """Lock, migrate, open and recover. Raises ``UserFacingError`` subclasses for the user."""
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
        # peewee keeps one connection per thread; this thread is finished with its own.
        opened.registry.database.close()
        return opened

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="open-registry")
    try:
        return executor.submit(work)
    finally:
        executor.shutdown(wait=False)
