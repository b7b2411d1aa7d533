"""Once the window is on screen, what the first install and dialogs need is imported on a
thread of its own, and what exists then is frozen out of the garbage collector's walks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

AFTER_THE_FIRST_PAINT = """
import gc, json, sys, threading, time
from pathlib import Path
from gui.app import ensure_application
from gui.main_window import MainWindow
from gui import warm_up
from registry import open_registry

app = ensure_application()
registry = open_registry(Path(sys.argv[1]))
missing_before = [name for name in warm_up.MODULES if name not in sys.modules]
window = MainWindow(registry)
window.show()
def warm_up_thread():
    return next((t for t in threading.enumerate() if t.name == "warm-up"), None)

# The warm-up starts on the event loop's next turn after the first paint.
deadline = time.monotonic() + 60
while not warm_up._started.is_set() and time.monotonic() < deadline:
    app.processEvents()
thread = warm_up_thread()
if thread is not None:
    thread.join(60)
print(json.dumps({
    "missing_before": missing_before,
    "missing_after": [name for name in warm_up.MODULES if name not in sys.modules],
    "frozen": gc.get_freeze_count(),
    "again": warm_up.after_first_paint() is not None,
}))
window.close()
registry.close()
"""


def test_the_first_paint_imports_what_installs_need_and_freezes_the_launch(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", AFTER_THE_FIRST_PAINT, str(tmp_path / "data")],
        cwd=REPO_ROOT,
        env=os.environ | {"QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(result.stdout)
    # Not imported to open the window, all imported after its first paint, and only once.
    assert "registry.manifest" in seen["missing_before"]
    assert "gui.config_dialog" in seen["missing_before"]
    assert seen["missing_after"] == []
    assert seen["frozen"] > 0
    assert seen["again"] is False
