"""Longest GUI-thread stall of the real window while something happens in the registry.

    python benchmarks/gui_stall.py install DATA_DIR ZIP
    python benchmarks/gui_stall.py drop DATA_DIR ZIP [ZIP ...]
    python benchmarks/gui_stall.py cli DATA_DIR ZIP --cycles N
        ->  prints one JSON object: {"stall_ms": ..., "idle_ms": ..., "seconds": ...}

``install``: the window installs one (large) zip, as after a drop of it. ``drop``: several zips
dropped together (``window.install_files``, as a drop calls it), the batch confirmation answered
yes at once, until every one of them has finished. ``cli``: the window idles while a separate
command-line process installs ZIP and uninstalls it again, ``--cycles`` times; the window
notices the other process's changes and shows them.

A 1 ms precise heartbeat timer runs on the GUI thread; the longest gap between two beats, minus
the interval, is the longest time the thread could not react. The idle figure is the same
measurement with the window open and nothing running, so that timer jitter on a busy machine is
visible next to the result. ``--profile FILE`` writes a cProfile of the measured part;
``--stacks MS`` prints where the GUI thread was while the beat was more than MS ms late
(``GUI_STALL_RAW=1``: faulthandler's dumps of every thread, as written).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# PySide6 6.12 on Python 3.11 (where None is not yet immortal) drops one reference to None at
# every call of a Qt method that returns nothing. The app gains references faster than that
# loses them, but these measuring loops mostly wait in the event loop and could bring None's
# count to zero (a crash of the interpreter). A million references keep it far from zero; the
# script ends with os._exit, so they are never released either.
NONE_RESERVE = (None,) * 1_000_000
sys.path.insert(0, str(REPO_ROOT))

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer  # noqa: E402

from gui.app import ensure_application  # noqa: E402
from gui.confirm_dialog import ConfirmDialog  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from registry import open_registry  # noqa: E402
from registry.store import OperationRecord  # noqa: E402


class Heartbeat:
    """A 1 ms beat on the GUI thread. With ``watch``, every beat re-arms a faulthandler timer:
    when the beat is more than ``watch`` ms late, faulthandler's own thread (which needs no
    GIL, so it also sees a stall inside Qt's C++ called from Python) writes every thread's
    stack; ``report`` sums up the GUI thread's."""

    def __init__(self, watch: float = 0.0) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(1)
        self.timer.timeout.connect(self.beat)
        self.last = 0.0
        self.longest = 0.0
        self.watch = watch / 1000
        self.dumps = tempfile.TemporaryFile("w+") if watch else None  # noqa: SIM115

    def start(self) -> None:
        self.longest = 0.0
        self.timer.start()
        self.beat()
        self.longest = 0.0

    def beat(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now
        if self.dumps is not None:
            faulthandler.dump_traceback_later(self.watch, file=self.dumps)

    def stop(self) -> float:
        """The longest stall since ``start``, in milliseconds (a final gap counts too)."""
        self.beat()
        self.timer.stop()
        if self.dumps is not None:
            faulthandler.cancel_dump_traceback_later()
        return max(0.0, self.longest - 0.001) * 1000

    def report(self, top: int = 6) -> str:
        """The GUI thread's stacks at the late beats (the innermost frame and the app's own
        frames, most recent first), the most frequent first."""
        if self.dumps is None:
            return ""
        self.dumps.seek(0)
        if os.environ.get("GUI_STALL_RAW"):
            return self.dumps.read()
        counts: collections.Counter[str] = collections.Counter()
        gui = f"{threading.main_thread().ident:#018x}"
        for dump in self.dumps.read().split("Timeout (")[1:]:
            for block in dump.split("\n\n"):
                lines = [line for line in block.splitlines() if line.strip()]
                heads = [at for at, line in enumerate(lines) if "hread 0x" in line]
                if not heads or gui not in lines[heads[0]]:
                    continue
                frames = [line for line in lines[heads[0] + 1 :] if "/benchmarks/" not in line]
                app = [line for line in frames if str(REPO_ROOT) in line and "/.venv/" not in line]
                inner = frames[:1] if frames and frames[0] not in app else []
                stack = "\n".join(inner + app[:10]) or "(in the event loop: Qt's own code)"
                counts[stack] += 1
        return "\n".join(
            f"--- {count} stalls over {self.watch * 1000:.0f} ms ---\n{stack}"
            for stack, count in counts.most_common(top)
        )


def wait(loop: QEventLoop, ms: int) -> None:
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def answer_yes_at_once() -> None:
    """The person says yes at once, to one file's dialog and to a batch's alike: the stall
    being measured is the work's, not a dialog's."""

    def ask(
        _parent: object, _plan: object, on_answer: Callable[[bool], None], *_notes: str
    ) -> None:
        on_answer(True)

    ConfirmDialog.ask = staticmethod(ask)  # type: ignore[method-assign, assignment, unused-ignore]


def manifest_id(archive: Path) -> str:
    with zipfile.ZipFile(archive) as source:
        return str(json.loads(source.read("manifest.json"))["id"])


class CommandLoop:
    """Another process installing and uninstalling, on a thread that only waits for it."""

    def __init__(self, data_dir: Path, archive: Path, cycles: int) -> None:
        main = str(REPO_ROOT / "main.py")
        extension_id = manifest_id(archive)
        base = [sys.executable, main, "--data-dir", str(data_dir)]
        self.commands = [
            [*base, "install", "--yes", str(archive)],
            [*base, "uninstall", "--yes", extension_id],
        ] * cycles
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for command in self.commands:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                self.error = f"{command[4:]} failed: {result.stderr.strip()[-500:]}"
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=("install", "drop", "cli"))
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("archives", type=Path, nargs="+")
    parser.add_argument("--cycles", type=int, default=5, help="cli: install/uninstall cycles")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured part")
    parser.add_argument(
        "--stacks",
        type=float,
        metavar="MS",
        default=0.0,
        help="print to stderr where the GUI thread was while the beat was over MS ms late",
    )
    args = parser.parse_args()

    app = ensure_application()
    registry = open_registry(args.data_dir)
    window = MainWindow(registry)
    window.show()
    answer_yes_at_once()
    heartbeat = Heartbeat()
    loop = QEventLoop()
    wait(loop, 500)  # the first paint and whatever the window does once shown

    heartbeat.start()
    wait(loop, 1000)
    idle_ms = heartbeat.stop()
    heartbeat = Heartbeat(args.stacks)

    finished: list[OperationRecord] = []
    expected = len(args.archives) if args.scenario != "cli" else 0

    def on_finished(record: OperationRecord, _title: str) -> None:
        finished.append(record)
        if len(finished) >= expected:
            loop.quit()

    window.install_panel.operation_finished.connect(on_finished)
    profile = cProfile.Profile() if args.profile else None
    commands: CommandLoop | None = None
    guard = QObject()
    if profile is not None:
        profile.enable()
    started = time.perf_counter()
    heartbeat.start()
    if args.scenario == "cli":
        commands = CommandLoop(args.data_dir, args.archives[0], args.cycles)
        poll = QTimer(guard)
        poll.setInterval(50)
        poll.timeout.connect(lambda: None if commands.thread.is_alive() else loop.quit())
        commands.thread.start()
        poll.start()
        loop.exec()
        poll.stop()
        wait(loop, 1500)  # the window notices the last change and shows it
    else:
        window.install_files(args.archives)
        QTimer.singleShot(600_000, loop.quit)
        loop.exec()
    stall_ms = heartbeat.stop()
    seconds = time.perf_counter() - started
    if profile is not None:
        profile.disable()
        profile.dump_stats(str(args.profile))
    if args.stacks:
        print(heartbeat.report(), file=sys.stderr)

    failed = [record for record in finished if record.status != "COMPLETED"]
    if commands is not None and commands.error:
        print(commands.error, file=sys.stderr)
        return 1
    if len(finished) < expected or failed:
        print(f"{len(finished)} of {expected} finished; not completed: {failed}", file=sys.stderr)
        return 1
    window.close()
    registry.close()
    print(json.dumps({"stall_ms": stall_ms, "idle_ms": idle_ms, "seconds": seconds}), flush=True)
    app.quit()
    return 0


if __name__ == "__main__":
    # Exit without tearing Qt's objects down one by one: only the measurement counts.
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
