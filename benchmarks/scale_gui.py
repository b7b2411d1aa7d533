"""The real window on a big registry: a filter keystroke, and scrolling the activity.

    python benchmarks/scale_gui.py DATA_DIR [--word 12345] [--pages 20] [--profile FILE]
        ->  prints one JSON object:
            {"keystrokes_ms": [...], "repaint_ms": [...], "rows_shown": [...], "idle_ms": ...,
             "scroll_stall_ms": ..., "pages": ..., "rows": ...}

Keystrokes: the word is typed into the extensions filter and deleted again, one key event at a
time (``QTest.keyClick`` on ``window.filter_edit``); each is timed from the key event until the
table has been painted again and control is back in the event loop: what a person waits for
before seeing the list change. The floor beside it (``repaint_ms``) is the same wait after only
asking the table to repaint, nothing changed.

Scrolling: the Activity tab is shown and its scroll bar moved to the bottom, page after page
(every move to the bottom fetches the next page of operations); a 1 ms heartbeat on the GUI
thread gives the longest stall meanwhile, next to the idle window's.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# PySide6 6.12 on Python 3.11 (where None is not yet immortal) drops one reference to None at
# every call of a Qt method that returns nothing. The app gains references faster than that
# loses them, but these measuring loops mostly wait in the event loop and could bring None's
# count to zero (a crash of the interpreter). A million references keep it far from zero; the
# script ends with os._exit, so they are never released either.
NONE_RESERVE = (None,) * 1_000_000
sys.path.insert(0, str(REPO_ROOT))

from PySide6.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from benchmarks.gui_stall import Heartbeat, wait  # noqa: E402
from gui.app import ensure_application  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from registry import open_registry  # noqa: E402

TIMEOUT_MS = 5000


class PaintWatch(QObject):
    """Ends ``loop`` once ``widget`` has been painted and the event loop has come round again."""

    def __init__(self, widget: QWidget, loop: QEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.armed = False
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self.armed and event.type() == QEvent.Type.Paint:
            self.armed = False
            QTimer.singleShot(0, self.loop.quit)
        return False


def until_painted(watch: PaintWatch, loop: QEventLoop, action: object) -> float:
    """Milliseconds from calling ``action`` to the next paint (``TIMEOUT_MS`` if none)."""
    assert callable(action)
    watch.armed = True
    timeout = QTimer()
    timeout.setSingleShot(True)
    timeout.timeout.connect(loop.quit)
    timeout.start(TIMEOUT_MS)
    started = time.perf_counter()
    action()
    if watch.armed:
        loop.exec()
    elapsed = (time.perf_counter() - started) * 1000
    timeout.stop()
    watch.armed = False
    return elapsed


def keystrokes(
    window: MainWindow, loop: QEventLoop, word: str
) -> tuple[list[float], list[float], list[int]]:
    """Each keystroke's wait, each bare repaint's, and the rows shown after each keystroke."""
    viewport = window.table.viewport()
    watch = PaintWatch(viewport, loop)
    window.filter_edit.setFocus()
    typed, repaints, shown = [], [], []

    def press(char: str) -> None:
        if char:
            QTest.keyClicks(window.filter_edit, char)
        else:
            QTest.keyClick(window.filter_edit, Qt.Key.Key_Backspace)

    for char in [*word, *[""] * len(word)]:
        repaints.append(until_painted(watch, loop, viewport.update))
        wait(loop, 50)
        typed.append(until_painted(watch, loop, lambda char=char: press(char)))
        shown.append(window.table.model().rowCount())
        wait(loop, 50)
    return typed, repaints, shown


def scroll_activity(window: MainWindow, loop: QEventLoop, pages: int) -> tuple[float, int]:
    window.show_activity()
    view = window.activity_view
    model = view.activity_model
    wait(loop, 300)
    bar = view.verticalScrollBar()
    heartbeat = Heartbeat()
    heartbeat.start()
    for _ in range(pages):
        rows = model.rowCount()
        bar.setValue(bar.maximum())
        deadline = time.perf_counter() + TIMEOUT_MS / 1000
        while model.rowCount() == rows and time.perf_counter() < deadline:
            wait(loop, 5)
        wait(loop, 30)  # the relayout after the new rows
    return heartbeat.stop(), model.rowCount()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--word", default="12345", help="typed into the filter, then deleted")
    parser.add_argument("--pages", type=int, default=20, help="activity pages scrolled through")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured part")
    args = parser.parse_args()

    app = ensure_application()
    registry = open_registry(args.data_dir)
    window = MainWindow(registry)
    window.resize(1100, 700)
    window.show()
    loop = QEventLoop()
    wait(loop, 500)
    heartbeat = Heartbeat()
    heartbeat.start()
    wait(loop, 1000)
    idle_ms = heartbeat.stop()

    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    typed, repaints, shown = keystrokes(window, loop, args.word)
    scroll_ms, rows = scroll_activity(window, loop, args.pages)
    if profile is not None:
        profile.disable()
        profile.dump_stats(str(args.profile))
    window.close()
    registry.close()
    result = {
        "keystrokes_ms": typed,
        "repaint_ms": repaints,
        "rows_shown": shown,
        "idle_ms": idle_ms,
        "scroll_stall_ms": scroll_ms,
        "pages": args.pages,
        "rows": rows,
    }
    print(json.dumps(result), flush=True)
    app.quit()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
