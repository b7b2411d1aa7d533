"""Extension Manager's registry: which extensions are installed, every operation on them, and
their settings, kept in a SQLite database inside a data folder.

``open_registry(data_dir)`` is the one way in, for the window, the command line and any host
application. It takes the data folder's lock, checks and migrates the database, recovers
operations a dead process left half done, and returns a ``Registry`` bound to that folder alone;
several can be open in one process. Close it (or use it as a context manager) to release the
lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.store import Registry

__all__ = ["open_registry"]


def open_registry(data_dir: Path, *, wait_seconds: float = 60.0) -> Registry:
    """Open (creating and migrating as needed) the registry in ``data_dir``.

    Waits up to ``wait_seconds`` while another process is upgrading it. Raises
    ``registry.errors.UserFacingError`` subclasses, whose messages say what to do.
    """
    # Imported here: ``migrations`` imports ``registry.errors``, which imports this package
    # first, and the store imports ``migrations``.
    from registry.paths import DataPaths
    from registry.startup import open_data_folder

    return open_data_folder(DataPaths(Path(data_dir)), wait_seconds=wait_seconds)
