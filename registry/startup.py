"""Steps 2-7 of the launch sequence, shared by the window and the command line."""

from __future__ import annotations

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
