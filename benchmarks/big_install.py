"""A large install against its floors: a 1 GiB, 20,000-file zip and 20,000 files of 1 KiB.

    python benchmarks/big_install.py [--json] [--quick] [--runs N] [--small-runs N] [--work DIR]

Measured side by side, run after run (medians), on zips built here in a temporary folder and
deleted afterwards:

- the whole CLI install (``main.py --data-dir NEW install --yes ZIP``, a fresh data folder each
  run) against ``python -m zipfile -e``, against Info-ZIP ``unzip -q``, and against
  ``zipfile -e`` followed by ``sync``: the install flushes every file and folder before it
  reports done, the extractors do not, so the last floor is what a power-cut-proof extraction
  costs on this disk;
- files per second for 20,000 files of 1 KiB, the app's and ``zipfile -e``'s;
- peak resident memory of the real window (offscreen) installing the large zip, against the
  window's own resident memory once idle.

With ``--json`` each result is printed as one JSON object per line with the keys ``name, app,
floor, unit, ratio, target, met, note`` (``target`` is null where the issue sets none).
``--quick`` uses a 100 MiB, 2,000-file zip and fewer runs. Nothing here is part of the test
suite; nothing is cached in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MAIN = str(REPO_ROOT / "main.py")
# Measure what a person runs: bytecode cached, offscreen.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"} | {
    "QT_QPA_PLATFORM": "offscreen"
}
MiB = 1024 * 1024
MEMORY_BUDGET_MIB = 100.0


@dataclass
class Result:
    name: str
    app: float
    floor: float
    unit: str
    target: float | None
    note: str = ""
    # For most results the ratio app/floor is compared with the target; an absolute one
    # compares app itself with the target, in its unit (the memory the install adds).
    absolute: bool = False

    @property
    def ratio(self) -> float:
        return self.app / self.floor if self.floor else float("inf")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.absolute:
            return self.app <= self.target
        return self.ratio <= self.target

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "app": round(self.app, 3),
            "floor": round(self.floor, 3),
            "unit": self.unit,
            "ratio": round(self.ratio, 3),
            "target": f"{self.target:g} {self.unit}" if self.absolute else self.target,
            "met": self.met,
            "note": self.note,
        }

    def line(self) -> str:
        if self.target is None:
            verdict = "no target"
        elif self.absolute:
            verdict = f"<= {self.target:g} {self.unit} ({'met' if self.met else 'MISSED'})"
        else:
            verdict = f"<= {self.target:.2f}x ({'met' if self.met else 'MISSED'})"
        return (
            f"{self.name}: {self.app:,.1f} {self.unit} vs {self.floor:,.1f} {self.unit} = "
            f"{self.ratio:.2f}x, {verdict}" + (f"  [{self.note}]" if self.note else "")
        )


# -- the archives -----------------------------------------------------------------------------


def _text_block(rng: random.Random, size: int) -> bytes:
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for _ in range(500)]
    block = b" ".join(rng.choice(words) for _ in range(size // 8 + 1))
    return block[:size]


def make_zip(path: Path, files: int, total_bytes: int, extension_id: str) -> Path:
    """A deterministic, deflated extension of ``files`` files (the manifest included) adding up
    to about ``total_bytes``: every other file random (incompressible), the rest text-like (words
    drawn from a fixed vocabulary, taken from a shared block at a random offset)."""
    rng = random.Random(1234)
    payload = files - 1
    file_size = max(1, total_bytes // payload)
    text = _text_block(rng, 4 * MiB + file_size)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(
            "manifest.json",
            json.dumps({"id": extension_id, "name": "Big payload", "version": "1.0.0"}),
        )
        for index in range(payload):
            if index % 2:
                data = rng.randbytes(file_size)
            else:
                start = rng.randrange(4 * MiB)
                data = text[start : start + file_size]
            archive.writestr(f"data/{index // 100:03d}/part-{index:05d}.bin", data)
    return path


# -- timing -----------------------------------------------------------------------------------


def _settle() -> None:
    """Write back what earlier runs left dirty, so that no run pays for another's data."""
    os.sync()


def timed(command: list[str], then_sync: bool = False) -> float:
    _settle()
    started = time.perf_counter()
    subprocess.run(command, check=True, env=ENV, capture_output=True)
    if then_sync:
        os.sync()
    return time.perf_counter() - started


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def measure_extractions(work: Path, archive: Path, runs: int, with_unzip: bool) -> dict[str, float]:
    """Median seconds of each way to unpack ``archive``, interleaved run after run.

    What the runs write is removed only after the last one: ext4 does not reuse an inode freed
    within the last minute or so, and with thousands of them just freed, every file created
    meanwhile pays for a scan of the inode tables (``recently_deleted``), several times the
    cost of the file itself on this disk. Removing between runs would charge each run for its
    predecessor's files.
    """
    written: list[Path] = []
    unzip = shutil.which("unzip") if with_unzip else None
    times: dict[str, list[float]] = {"app": [], "zipfile": [], "zipfile+sync": []}
    if unzip:
        times["unzip"] = []

    def app(run: int) -> float:
        data = work / f"data-{run}"
        written.append(data)
        return timed([PYTHON, MAIN, "--data-dir", str(data), "install", "--yes", str(archive)])

    def extractor(
        name: str, command: Callable[[Path], list[str]], then_sync: bool = False
    ) -> Callable[[int], float]:
        def run(index: int) -> float:
            target = work / f"{name}-{index}"
            written.append(target)
            return timed(command(target), then_sync)

        return run

    ways: dict[str, Callable[[int], float]] = {
        "zipfile": extractor(
            "zipfile", lambda t: [PYTHON, "-m", "zipfile", "-e", str(archive), str(t)]
        ),
        "app": app,
        "zipfile+sync": extractor(
            "zipfile-sync",
            lambda t: [PYTHON, "-m", "zipfile", "-e", str(archive), str(t)],
            then_sync=True,
        ),
    }
    if unzip:
        ways["unzip"] = extractor("unzip", lambda t: [unzip, "-q", str(archive), "-d", str(t)])
    # Warm the page cache with the archive, and the interpreter's bytecode, before timing.
    with archive.open("rb") as fh:
        while fh.read(8 * MiB):
            pass
    try:
        app(-1)
        for run in range(runs):
            order = list(ways.items())
            if run % 2:
                order.reverse()
            for name, way in order:
                times[name].append(way(run))
    finally:
        for path in written:
            remove(path)
    return {name: statistics.median(values) for name, values in times.items()}


# -- memory -----------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(data_dir: Path, archive: Path) -> int:
    """Open the real window offscreen, let it idle, then install ``archive`` through it (the
    confirmation answered at once); print idle and peak resident memory as JSON."""
    sys.path.insert(0, str(REPO_ROOT))
    from PySide6.QtCore import QEventLoop, QTimer

    from gui.app import ensure_application
    from gui.confirm_dialog import ConfirmDialog
    from gui.main_window import MainWindow
    from registry import open_registry
    from registry.store import OperationRecord

    app = ensure_application()
    registry = open_registry(data_dir)
    window = MainWindow(registry)
    window.show()
    ConfirmDialog.ask = staticmethod(  # type: ignore[method-assign, assignment, unused-ignore]
        lambda parent, plan, on_answer: on_answer(True)
    )
    loop = QEventLoop()
    QTimer.singleShot(1000, loop.quit)
    loop.exec()
    idle_kib = _status_kib("VmRSS")

    # The kernel's high-water mark, reset now; a sampler as a cross-check.
    hwm_reset = True
    try:
        with Path("/proc/self/clear_refs").open("w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        hwm_reset = False
    sampled = [idle_kib]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            sampled.append(_status_kib("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    finished: list[OperationRecord] = []

    def on_finished(record: OperationRecord, _title: str) -> None:
        finished.append(record)
        loop.quit()

    window.install_panel.operation_finished.connect(on_finished)
    sampler.start()
    started = time.perf_counter()
    window.install_files([archive])
    loop.exec()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    hwm_kib = _status_kib("VmHWM") if hwm_reset else 0
    if not finished or finished[0].status != "COMPLETED":
        print(f"install did not complete: {finished}", file=sys.stderr)
        return 1
    window.close()
    registry.close()
    app.quit()
    print(
        json.dumps(
            {
                "idle_kib": idle_kib,
                "peak_kib": max(max(sampled), hwm_kib),
                "sampled_kib": max(sampled),
                "hwm_kib": hwm_kib,
                "seconds": elapsed,
            }
        )
    )
    return 0


def measure_memory(work: Path, archive: Path) -> dict[str, float]:
    data = work / "memory-data"
    try:
        _settle()
        result = subprocess.run(
            [PYTHON, __file__, "--memory-child", str(data), str(archive)],
            check=True,
            env=ENV,
            capture_output=True,
            text=True,
        )
    finally:
        remove(data)
    values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


# -- the report -------------------------------------------------------------------------------


def run(work: Path, quick: bool, runs: int, small_runs: int) -> list[Result]:
    big_files, big_bytes = (2_000, 100 * MiB) if quick else (20_000, 1024 * MiB)
    big_label = f"{big_bytes // MiB:,} MiB, {big_files:,}-file zip"
    small_files = 2_000 if quick else 20_000
    big = make_zip(work / "big.zip", big_files, big_bytes - 1024, "bench.big")
    small = make_zip(work / "small.zip", small_files, (small_files - 1) * 1024, "bench.small")
    results: list[Result] = []

    big_times = measure_extractions(work, big, runs, with_unzip=True)
    app_s = big_times["app"]
    note = f"medians of {runs} interleaved runs; zip file {big.stat().st_size / MiB:,.0f} MiB"
    results.append(
        Result(
            f"Install of a {big_label}, whole CLI command vs python -m zipfile -e",
            app_s * 1000,
            big_times["zipfile"] * 1000,
            "ms",
            1.0,
            note,
        )
    )
    if "unzip" in big_times:
        results.append(
            Result(
                "The same install vs Info-ZIP unzip -q",
                app_s * 1000,
                big_times["unzip"] * 1000,
                "ms",
                None,
                note,
            )
        )
    results.append(
        Result(
            "The same install vs python -m zipfile -e followed by sync (both on the disk)",
            app_s * 1000,
            big_times["zipfile+sync"] * 1000,
            "ms",
            None,
            note + "; the install flushes every file and folder, zipfile -e does not",
        )
    )

    small_times = measure_extractions(work, small, small_runs, with_unzip=False)
    results.append(
        Result(
            f"Files per second, {small_files:,} files of 1 KiB, whole CLI install vs zipfile -e",
            small_files / small_times["app"],
            small_files / small_times["zipfile"],
            "files/s",
            None,
            f"medians of {small_runs} interleaved runs; higher is better; zipfile -e then sync: "
            f"{small_files / small_times['zipfile+sync']:,.0f} files/s",
        )
    )
    remove(work / "small.zip")

    memory = measure_memory(work, big)
    results.append(
        Result(
            f"Resident memory the window adds at its peak while installing the {big_label}, vs "
            "the idle window's",
            (memory["peak_kib"] - memory["idle_kib"]) / 1024,
            memory["idle_kib"] / 1024,
            "MiB",
            MEMORY_BUDGET_MIB,
            f"peak {memory['peak_kib'] / 1024:,.1f} MiB (VmHWM after clear_refs, and VmRSS "
            "sampled every 5 ms)",
            absolute=True,
        )
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--quick", action="store_true", help="100 MiB / 2,000 files, fewer runs")
    parser.add_argument("--runs", type=int, help="runs of the large zip (default 3, quick 1)")
    parser.add_argument("--small-runs", type=int, help="runs of the 1 KiB zip (default 5, quick 2)")
    parser.add_argument("--work", type=Path, help="folder for the temporary files")
    parser.add_argument("--memory-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)
    runs = args.runs or (1 if args.quick else 3)
    small_runs = args.small_runs or (2 if args.quick else 5)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="big-install-", dir=args.work))
    try:
        results = run(work, args.quick, runs, small_runs)
    finally:
        remove(work)
    for result in results:
        print(json.dumps(result.as_json()) if args.json else result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
