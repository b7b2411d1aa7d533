"""Starting the window, once ``gui.launch`` has checked the display, handed the files to a
window already running for this data folder if there is one, and started opening the registry
(locked, checked, backed up, migrated and recovered) on one background thread: the
QApplication (so that every later problem can be shown), then the event loop, while that thread
finishes. No view is built until it has, and the window tells the person what opening did."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QApplication

import assets
from gui import colors, messages
from gui.launch import (
    Failed,
    NeedsRescue,
    Opened,
    Opener,
    Outcome,
    RegistryOpening,
    display_problem,
    open_and_read,
)
from gui.main_window import MainWindow
from migrations.runner import RESCUE_HINT
from registry.errors import UserFacingError
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import ExtensionSummary, Registry
from registry.version import APP_VERSION

if TYPE_CHECKING:
    # The rescue is only imported on the path that needs it: it is never part of a normal launch.
    from registry.rescue import RescueOptions, RescueResult

__all__ = ["LaunchController", "display_problem", "ensure_application", "run_window"]

log = logging.getLogger(__name__)


def application_icon() -> QIcon:
    """Every size, read from its file only when a size is first drawn (a launch draws at most
    one or two of them); from bytes when the icons are not plain files (a zipped install)."""
    icon = QIcon()
    for size in assets.ICON_SIZES:
        image = assets.icon_png(size)
        if isinstance(image, Path):
            icon.addFile(str(image), QSize(size, size))
            continue
        pixmap = QPixmap()
        pixmap.loadFromData(image.read_bytes(), "PNG")
        icon.addPixmap(pixmap)
    return icon


def ensure_application() -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName("ExtensionManager")
    app.setOrganizationDomain("extension-manager.github.io")
    app.setApplicationName("Extension Manager")
    app.setApplicationVersion(APP_VERSION)
    app.setDesktopFileName(assets.APP_ID)
    app.setWindowIcon(application_icon())
    # The desktop theme's palette, with hints that stay readable (some dark themes' are not).
    app.setPalette(colors.with_readable_placeholders(app.palette()))
    return app


class LaunchController(QObject):
    """Opens the registry off the GUI thread, then builds the window (or reports the failure,
    or offers the rescue)."""

    _registry_opened = Signal(object, object)  # Registry, list[ExtensionSummary]
    _registry_failed = Signal(str)
    _registry_needs_rescue = Signal(object)
    _registry_rescued = Signal(object, object, object)
    window_shown = Signal(object)
    finished = Signal(int)

    def __init__(
        self,
        paths: DataPaths,
        *,
        files: list[Path] | None = None,
        smoke_test: bool = False,
        started: float | None = None,
        opener: Opener = open_data_folder,
        single_instance: bool = True,
        opening: RegistryOpening | None = None,
    ) -> None:
        """``opening``: the registry's opening, when the launch started it before Qt was
        loaded; without one, ``start`` starts it with ``opener``."""
        super().__init__()
        self.paths = paths
        self.files = list(files or [])
        self.smoke_test = smoke_test
        self.started = started if started is not None else time.perf_counter()
        self.opener = opener
        self.single_instance = single_instance and not smoke_test
        self.window: MainWindow | None = None
        self.registry: Registry | None = None
        self.exit_code: int | None = None
        self._opening = opening
        self._thread: threading.Thread | None = None
        self._registry_opened.connect(self._on_opened, Qt.ConnectionType.QueuedConnection)
        self._registry_failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)
        self._registry_needs_rescue.connect(
            self._on_needs_rescue, Qt.ConnectionType.QueuedConnection
        )
        self._registry_rescued.connect(self._on_rescued, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        # Until the main window is up, a question or message box may be the only window:
        # closing it must not end the event loop while the registry is being opened or rescued.
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(False)
        opening = self._opening or RegistryOpening(self.paths, self.opener).start()
        # The outcome comes on the opening thread, or at once if it is already there: either
        # way the signals queue it for the event loop.
        opening.when_done(self._deliver)

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def _deliver(self, outcome: Outcome) -> None:
        if isinstance(outcome, Opened):
            self._registry_opened.emit(outcome.registry, outcome.extensions)
        elif isinstance(outcome, NeedsRescue):
            options = outcome.options
            if self.smoke_test or options is None or not options.needed:
                self._registry_failed.emit(str(outcome.error))
            else:
                self._registry_needs_rescue.emit(options)
        elif isinstance(outcome, Failed):
            self._report_failure(outcome.error, "opened", "")

    def _on_needs_rescue(self, options: RescueOptions) -> None:
        from registry.rescue import rebuild_from_disk, restore_latest_backup

        log.error("launch needs a rescue: %s", options.problem)
        actions: list[tuple[str, Callable[[], RescueResult]]] = []
        if options.backup is not None:
            actions.append(
                (
                    f"Restore the backup of {options.backup.taken_at}",
                    lambda: restore_latest_backup(self.paths),
                )
            )
        count = len(options.extension_folders)
        actions.append(
            (
                f"Re-register the {count} extension(s) on disk",
                lambda: rebuild_from_disk(self.paths, APP_VERSION),
            )
        )
        # The problem's own advice names the command line; here the buttons are the way out.
        problem = (options.problem or "").replace(RESCUE_HINT, "").strip()
        restoring = (
            "Restoring the backup brings back the registry as it was when the backup was taken. "
            if options.backup is not None
            else "There is no backup to restore. "
        )
        text = (
            f"{problem}\n\n{restoring}Re-registering starts a new registry and records every "
            "extension found on disk (their settings and history are lost). Nothing is deleted: "
            "a damaged registry file is kept beside the new one."
        )
        chosen = messages.choose(
            None,
            "Extension Manager needs to rescue its registry",
            text,
            [label for label, _action in actions],
        )
        if chosen is None:
            self.finish(1)
            return
        _label, action = actions[chosen]
        self._start_thread(lambda: self._rescue(action), "rescue-registry")

    def _rescue(self, action: Callable[[], RescueResult]) -> None:
        try:
            result = action()
            registry, extensions = open_and_read(self.opener, self.paths)
        except Exception as error:
            self._report_failure(error, "rescued", "Nothing was deleted; ")
        else:
            self._registry_rescued.emit(result, registry, extensions)

    def _report_failure(self, error: Exception, could_not_be: str, reassurance: str) -> None:
        """Expected failures in their own words; a bug logged with its traceback."""
        if isinstance(error, UserFacingError):
            self._registry_failed.emit(str(error))
            return
        log.error("the registry could not be %s", could_not_be, exc_info=error)
        self._registry_failed.emit(
            f"The registry could not be {could_not_be} because of an unexpected error ({error}). "
            f"{reassurance}Details are in the log file."
        )

    def _on_rescued(
        self, result: RescueResult, registry: Registry, extensions: list[ExtensionSummary]
    ) -> None:
        log.warning("registry rescued: %s", " ".join(result.actions))
        messages.show_info(None, "Registry rescued", "\n".join(result.actions))
        self._on_opened(registry, extensions)

    def _on_opened(self, registry: Registry, extensions: list[ExtensionSummary]) -> None:
        self.registry = registry
        for line in registry.launch.messages():
            log.warning("%s", line)
        self.window = MainWindow(registry, extensions)
        if self.smoke_test:
            # Report after the paint event has fully returned, not from inside it.
            self.window.first_painted.connect(
                self._report_ready, Qt.ConnectionType.QueuedConnection
            )
        self.window.show()
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(True)
        if self.single_instance:
            # From now on a second launch for this data folder hands its files to this window.
            from gui.single_instance import InstanceServer

            server = InstanceServer(self.paths.root, self.window)
            server.start()
            self.window.attach_instance_server(server)
        if self.files:
            self.window.install_files(self.files)
        self.window_shown.emit(self.window)

    def _report_ready(self) -> None:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        print(f"ready in {elapsed_ms:.0f} ms", flush=True)
        self.finish(0)

    def _on_failed(self, message: str) -> None:
        log.error("launch failed: %s", message)
        if self.smoke_test:
            print(f"extension-manager: {message}", file=sys.stderr)
        else:
            messages.show_error(None, "Extension Manager cannot start", message)
        self.finish(1)

    def finish(self, code: int) -> None:
        self.exit_code = code
        if self.window is not None:
            self.window.close()
        if self.registry is not None:
            self.registry.close()
        self.finished.emit(code)
        app = QApplication.instance()
        if app is not None:
            app.exit(code)


def install_exception_hook() -> None:
    """A bug in a slot is logged and shown; the app keeps running."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        details = "".join(traceback.format_exception(kind, value, tb))
        log.error("unexpected error\n%s", details)
        messages.show_error(
            QApplication.activeWindow(),
            "Unexpected error",
            f"Something went wrong: {value}. The app keeps running; details are in the log file.",
            details,
        )

    sys.excepthook = hook


def run_window(
    paths: DataPaths,
    opening: RegistryOpening,
    *,
    files: list[Path],
    smoke_test: bool,
    started: float | None = None,
) -> int:
    """The QApplication and the event loop, while ``opening`` finishes (see above)."""
    app = ensure_application()
    if not smoke_test:
        install_exception_hook()
    controller = LaunchController(
        paths,
        files=files,
        smoke_test=smoke_test,
        started=started,
        opener=opening.opener,
        opening=opening,
    )
    controller.start()
    code = app.exec()
    if controller.registry is not None and controller.exit_code is None:
        controller.registry.close()
    return code
