"""Handing things to the desktop (file manager, browser); one seam that tests replace."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices


def open_folder(path: Path) -> bool:
    """Show ``path`` in the file manager; False when the desktop could not do it."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
