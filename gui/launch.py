"""The window's launch up to Qt, in this order: a display check, the hand-off to a window
already running for this data folder, and only then the registry, opened (locked, checked,
backed up, migrated, recovered) on one background thread of its own. Qt is loaded once that
thread has started, so that loading Qt and opening the registry overlap: most of an opening is
SQLite and disk flushes, during which the launch's own thread runs.

Until then nothing here imports Qt (except for the hand-off, where a plain socket cannot reach
the running window); ``gui.app`` takes over with the QApplication, and builds the window from
the opened registry once the thread is done.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cli.invocation import runnable
from gui.handoff import send_to_running_instance
from registry.errors import RegistryNeedsRescueError
from registry.paths import DataPaths

if TYPE_CHECKING:
    # The rescue is only imported on the path that needs it: it is never part of a normal launch.
    from registry.rescue import RescueOptions
    from registry.store import ExtensionSummary, Registry

log = logging.getLogger(__name__)
Opener = Callable[[DataPaths], "Registry"]
# A registry with at least this many extensions shows these first (by name), the rest once a
# worker of the window has read them: the first paint of a hundred thousand would otherwise
# wait a second for them.
FIRST_PAGE = 500


@dataclass(frozen=True, slots=True)
class Opened:
    registry: Registry
    extensions: list[ExtensionSummary]


@dataclass(frozen=True, slots=True)
class NeedsRescue:
    error: RegistryNeedsRescueError
    options: RescueOptions | None  # None when looking for a way to rescue failed too


@dataclass(frozen=True, slots=True)
class Failed:
    error: Exception


Outcome = Opened | NeedsRescue | Failed


def open_and_read(opener: Opener, paths: DataPaths) -> tuple[Registry, list[ExtensionSummary]]:
    """Open the registry and read the first view's rows, both off the GUI thread."""
    registry = opener(paths)
    try:
        extensions = registry.list_extension_summaries(limit=FIRST_PAGE)
    except BaseException:
        registry.close()
        raise
    # Each thread has its own connection in peewee; this thread is done with its one.
    registry.close_thread_connection()
    return registry, extensions


class RegistryOpening:
    """The registry being opened on a thread of its own. Its outcome goes to the one callback
    given to ``when_done``: on the opening thread if it is still running then, else at once."""

    def __init__(self, paths: DataPaths, opener: Opener) -> None:
        self.paths = paths
        self.opener = opener
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None
        self._callback: Callable[[Outcome], None] | None = None
        self._thread = threading.Thread(target=self._run, name="open-registry", daemon=True)

    def start(self) -> RegistryOpening:
        self._thread.start()
        return self

    def when_done(self, callback: Callable[[Outcome], None]) -> None:
        with self._lock:
            outcome = self._outcome
            if outcome is None:
                self._callback = callback
                return
        callback(outcome)

    def _run(self) -> None:
        outcome = self._open()
        with self._lock:
            self._outcome = outcome
            callback = self._callback
        if callback is not None:
            callback(outcome)

    def _open(self) -> Outcome:
        try:
            registry, extensions = open_and_read(self.opener, self.paths)
        except RegistryNeedsRescueError as error:
            return NeedsRescue(error, self._rescue_options())
        except Exception as error:
            return Failed(error)
        return Opened(registry, extensions)

    def _rescue_options(self) -> RescueOptions | None:
        """Still on the opening thread: look at what can be rescued (reads only)."""
        try:
            from registry.rescue import rescue_options

            return rescue_options(self.paths)
        except Exception:
            log.exception("looking for a way to rescue the registry failed")
            return None


def load_window_registry() -> None:
    """The rest of the registry the window uses, loaded before Qt too (see below)."""
    from registry import installer, versions  # noqa: F401


def skip_pyside_source_scan() -> None:
    """Once loaded, PySide reads the source file of the module every later ``import`` statement
    names (once per module), looking for "PySide6" in it, to know which modules may switch on
    its ``from __feature__ import ...`` options; this app uses none. Every module loaded before
    Qt is recorded here as one that does not, which is what PySide would find for all of them,
    without reading the hundred-odd files again (tens of milliseconds at every launch). A
    PySide that keeps its table elsewhere simply scans as before."""
    feature = sys.modules.get("PySide6.support.feature")
    table = getattr(feature, "pyside_feature_dict", None)
    if not isinstance(table, dict):
        return
    for name in list(sys.modules):
        if not name.startswith(("PySide6", "shiboken6")):
            table.setdefault(name, -1)


def display_problem() -> str | None:
    """Qt aborts the process when it finds no display; say so plainly before it can."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return runnable(
        "There is no display to open the window on. Run this from a desktop session, "
        "or use a command such as 'extension-manager status' or 'extension-manager install FILE'."
    )


def run_gui(
    paths: DataPaths,
    *,
    files: list[Path],
    smoke_test: bool,
    started: float | None = None,
    opener: Opener | None = None,
) -> int:
    """The window's launch: display, hand-off, the registry's thread, then Qt (see above)."""
    if smoke_test and display_problem():
        # The smoke test only needs to render once; it does not need a screen.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    problem = display_problem()
    if problem:
        print(f"extension-manager: {problem}", file=sys.stderr)
        return 1
    if not smoke_test and send_to_running_instance(paths.root, files):
        log.info("handed %d file(s) to the window already running", len(files))
        return 0
    if opener is None:
        # The registry's whole stack, imported before Qt: once Qt is loaded, PySide reads the
        # source of every module imported after it (to look for its ``__feature__`` switch).
        from registry.startup import open_data_folder

        opener = open_data_folder
    opening = RegistryOpening(paths, opener).start()
    load_window_registry()
    import PySide6.QtCore  # noqa: F401

    skip_pyside_source_scan()
    from gui.app import run_window

    return run_window(paths, opening, files=files, smoke_test=smoke_test, started=started)
