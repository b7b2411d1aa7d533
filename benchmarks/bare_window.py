"""The launch floor: a bare PySide6 main window, shown and painted once, then exit."""

from __future__ import annotations

import sys
import time

started = time.perf_counter()

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtGui import QPaintEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMainWindow  # noqa: E402


class Window(QMainWindow):
    def __init__(self, app: QApplication) -> None:
        super().__init__()
        self.app = app
        self.painted = False

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self.painted:
            self.painted = True
            QTimer.singleShot(0, self.report)

    def report(self) -> None:
        print(f"ready in {(time.perf_counter() - started) * 1000:.0f} ms", flush=True)
        self.app.quit()


def main() -> int:
    app = QApplication(sys.argv[:1])
    window = Window(app)
    window.resize(960, 600)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
