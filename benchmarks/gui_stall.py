"""Longest GUI-thread stall while the real window installs a large zip.

    python benchmarks/gui_stall.py DATA_DIR ZIP   ->  prints "<stall_ms> <idle_ms>"

A 1 ms precise heartbeat timer runs on the GUI thread; the longest gap between two beats, minus
the interval, is the longest time the thread could not react. The idle figure is the same
measurement with the window open and nothing running, so that timer jitter on a busy machine is
visible next to the result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402

from gui.app import ensure_application  # noqa: E402
from gui.confirm_dialog import ConfirmDialog  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from registry import open_registry  # noqa: E402
from registry.store import OperationRecord  # noqa: E402


class Heartbeat:
    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(1)
        self.timer.timeout.connect(self.beat)
        self.last = 0.0
        self.longest = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0
        self.timer.start()

    def beat(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def stop(self) -> float:
        self.timer.stop()
        return max(0.0, self.longest - 0.001) * 1000


def main() -> int:
    data_dir, archive = Path(sys.argv[1]), Path(sys.argv[2])
    app = ensure_application()
    registry = open_registry(data_dir)
    window = MainWindow(registry)
    window.show()
    # The person says yes at once: the stall being measured is the install's, not a dialog's.
    ConfirmDialog.ask = staticmethod(  # type: ignore[method-assign, assignment, unused-ignore]
        lambda parent, plan, on_answer: on_answer(True)
    )
    heartbeat = Heartbeat()
    loop = QEventLoop()

    heartbeat.start()
    QTimer.singleShot(1000, loop.quit)
    loop.exec()
    idle_ms = heartbeat.stop()

    finished: list[OperationRecord] = []

    def on_finished(record: OperationRecord, _title: str) -> None:
        finished.append(record)
        loop.quit()

    window.install_panel.operation_finished.connect(on_finished)
    heartbeat.start()
    window.install_files([archive])
    loop.exec()
    stall_ms = heartbeat.stop()
    if not finished or finished[0].status != "COMPLETED":
        print(f"install did not complete: {finished}", file=sys.stderr)
        return 1
    window.close()
    registry.close()
    print(f"{stall_ms:.1f} {idle_ms:.1f}")
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
