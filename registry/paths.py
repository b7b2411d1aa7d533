"""Where the app keeps its data: one folder, resolved once at launch."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "ExtensionManager"
APP_AUTHOR = "ExtensionManager"
DATA_DIR_ENV = "EXTENSION_MANAGER_DATA_DIR"


@dataclass(frozen=True, slots=True)
class DataPaths:
    """Everything inside the data folder. Staging lives here too, so that the final rename into
    ``extensions/`` stays on one filesystem and is atomic."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "registry.db"

    @property
    def lock(self) -> Path:
        return self.root / "registry.lock"

    @property
    def extensions(self) -> Path:
        return self.root / "extensions"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def trash(self) -> Path:
        """Old versions moved aside during an upgrade or uninstall, until the registry commits."""
        return self.root / "trash"

    @property
    def archives(self) -> Path:
        """Every installed version's archive, by content (``<sha256>.zip``), for rollbacks."""
        return self.root / "archives"

    def kept_archive(self, sha256: str) -> Path:
        return self.archives / f"{sha256}.zip"

    @property
    def space_reserve(self) -> Path:
        """A file of zeros given up when the disk is full, so that the registry can still
        record why an operation failed (see ``Registry.finish_operation``)."""
        return self.root / "registry.reserve"

    def create(self) -> None:
        for folder in (
            self.root,
            self.extensions,
            self.backups,
            self.staging,
            self.trash,
            self.archives,
        ):
            folder.mkdir(parents=True, exist_ok=True)


def existing_folder(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: the folder whose disk a new file would use."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path.cwd()


def free_bytes(path: Path) -> int:
    """Bytes free on the disk that holds ``path`` (as an ordinary user may use them)."""
    return shutil.disk_usage(existing_folder(path)).free


def disk_is_read_only(path: Path) -> bool:
    """Whether nothing can be written on the disk (or into the folder) that holds ``path``: a
    read-only mount, or a folder this user may not write. ``access`` answers EROFS for a
    read-only mount even to root."""
    folder = existing_folder(path)
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return True
    return not os.access(folder, os.W_OK)


def same_disk(first: Path, second: Path) -> bool:
    return existing_folder(first).stat().st_dev == existing_folder(second).stat().st_dev


def resolve_data_dir(argument: str | os.PathLike[str] | None) -> Path:
    """``--data-dir`` wins, then the environment variable, then the platform's user data dir."""
    if argument:
        return Path(argument).expanduser().absolute()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser().absolute()
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def default_log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))
