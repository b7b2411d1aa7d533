"""Handing things to the desktop (file manager, browser); one seam that tests replace.

On Linux the folder goes to ``xdg-open``, run here rather than through QDesktopServices: Qt
reports success as soon as ``xdg-open`` starts, even when no file manager then opens anything,
and the person would see nothing happen. ``xdg-open``'s own exit status says whether it worked.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QUrl
from PySide6.QtGui import QDesktopServices

Failure = Callable[[str], None]


def open_folder(path: Path, on_failure: Failure, parent: QObject) -> None:
    """Show ``path`` in the file manager; ``on_failure(reason)`` when nothing could."""
    if not sys.platform.startswith("linux"):
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            on_failure("the desktop could not open it")
        return
    opener = shutil.which("xdg-open")
    if opener is None:
        on_failure("there is no xdg-open on this system (package xdg-utils)")
        return
    process = QProcess(parent)

    def finished(code: int, status: QProcess.ExitStatus) -> None:
        if status != QProcess.ExitStatus.NormalExit or code != 0:
            on_failure("no file manager could open it")
        process.deleteLater()

    def errored(error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            on_failure("xdg-open could not be started")
            process.deleteLater()

    process.finished.connect(finished)
    process.errorOccurred.connect(errored)
    process.start(opener, [str(path)])
