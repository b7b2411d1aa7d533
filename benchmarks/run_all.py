"""Every performance ratio of DESIGN.md and issue 13 in one table, measured side by side.

    python benchmarks/run_all.py [--quick] [--json] [--write-readme] [--only GROUP ...]

Each comparison interleaves the app and its floor run after run and takes medians, so that a
busy machine slows both alike. The app runs from compiled bytecode, as after an install. Nothing
here is part of the test suite.

Output: without ``--json``, one progress line per measurement and then a Markdown table. With
``--json``, stdout has one JSON object per line, one per measurement, and nothing else (progress
goes to stderr)::

    {"name": str, "app": number, "floor": number, "unit": "ms" | "MiB" | ...,
     "ratio": app / floor, "target": number | str | null, "met": bool | null, "note": str}

``target`` is a number when the goal is a ratio (met: ``ratio <= target``); a string such as
``"16 ms"`` when the goal is an absolute limit on ``app`` in its unit (met: ``app <= 16``), the
floor then being what the same measurement gives with nothing happening; null (and ``met``
null) where no target is set.

``--write-readme`` replaces the table in README.md's Performance section (between its marker
comments) with this run's, under a line naming the machine: cores, Python, the load average at
the start and end of the run, and the date (``make bench BENCH_ARGS=--write-readme``).

Groups (``--only``): launch, install, stall, big, migration, download, big_install.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import readme_table  # noqa: E402
from benchmarks.bench_data import (  # noqa: E402
    make_payload_zip,
    make_small_zip,
    make_small_zips,
    populate,
    registry_folder,
)
from registry.paths import DataPaths  # noqa: E402
from registry.startup import open_data_folder  # noqa: E402

PYTHON = sys.executable
MAIN = str(REPO_ROOT / "main.py")
BENCHMARKS = REPO_ROOT / "benchmarks"
BARE_WINDOW = str(BENCHMARKS / "bare_window.py")
# Measure what a person runs: bytecode cached, as after any install (some shells and CI images
# set PYTHONDONTWRITEBYTECODE, which would make every launch recompile the app).
OFFSCREEN = {
    key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"
} | {"QT_QPA_PLATFORM": "offscreen"}
# The registry sizes of issue 13: a large one and a big one (extensions, operations).
LARGE = (10_000, 100_000)
BIG = (100_000, 1_000_000)
LARGE_LABEL = "10,000 extensions + 100,000 operations"
BIG_LABEL = "100,000 extensions + 1,000,000 operations"
# One frame: the limit for a keystroke's wait and for any stall of the GUI thread.
FRAME = "16 ms"


@dataclass
class Result:
    name: str
    measured: float
    floor: float
    unit: str
    # A ratio limit (a number), an absolute limit on ``measured`` ("16 ms"), or none.
    target: float | str | None
    note: str = ""
    # Rows merged from another script carry their own ratio and verdict.
    given_ratio: float | None = None
    given_met: bool | None = None

    @property
    def ratio(self) -> float:
        if self.given_ratio is not None:
            return self.given_ratio
        return self.measured / self.floor if self.floor else float("inf")

    @property
    def met(self) -> bool | None:
        if self.given_met is not None or self.target is None:
            return self.given_met
        if isinstance(self.target, str):
            return self.measured <= float(self.target.split()[0])
        return self.ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "name": self.name,
            "app": round(self.measured, 3),
            "floor": round(self.floor, 3),
            "unit": self.unit,
            "ratio": round(ratio, 3) if ratio != float("inf") else None,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Result:
        return cls(
            str(row["name"]),
            float(row["app"]),
            float(row["floor"]),
            str(row.get("unit") or ""),
            row.get("target"),
            str(row.get("note") or ""),
            given_ratio=None if row.get("ratio") is None else float(row["ratio"]),
            given_met=row.get("met"),
        )


class Progress:
    """Progress lines: on stdout, or on stderr when stdout carries the JSON."""

    to_stderr = False

    @classmethod
    def say(cls, message: str) -> None:
        print(message, file=sys.stderr if cls.to_stderr else sys.stdout, flush=True)


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env or OFFSCREEN, capture_output=True)
    return time.perf_counter() - started


def until_ready(command: list[str]) -> float:
    """From starting the process to its 'ready in' line: the window is on screen then; the
    interpreter's teardown afterwards is nobody's wait."""
    started = time.perf_counter()
    with subprocess.Popen(
        command, env=OFFSCREEN, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        elapsed = time.perf_counter() - started
        _rest, errors = child.communicate()
    if child.returncode != 0 or not line.startswith("ready in"):
        said = [text for text in errors.splitlines() if "propagateSizeHints" not in text]
        raise RuntimeError(
            f"{command} did not become ready (exit {child.returncode}): {line!r}; "
            f"it said: {' | '.join(said[-8:])}"
        )
    return elapsed


def interleaved(
    runs: int, app: Callable[[int], float], floor: Callable[[int], float], *, warm_up: bool = False
) -> tuple[float, float]:
    """Medians of ``runs`` runs of each, taken in turn."""
    app_s, (floor_s,) = interleaved_many(runs, app, [floor], warm_up=warm_up)
    return app_s, floor_s


def interleaved_many(
    runs: int,
    app: Callable[[int], float],
    floors: list[Callable[[int], float]],
    *,
    warm_up: bool = False,
) -> tuple[float, list[float]]:
    """Like ``interleaved`` with several floors; ``warm_up``: one untimed run of each first
    (the first launch on a folder reads it from the disk, later ones from the page cache)."""
    if warm_up:
        for measure in [*floors, app]:
            measure(-1)
    app_times: list[float] = []
    floor_times: list[list[float]] = [[] for _ in floors]
    for run in range(runs):
        for times, floor in zip(floor_times, floors, strict=True):
            times.append(floor(run))
        app_times.append(app(run))
    return statistics.median(app_times), [statistics.median(times) for times in floor_times]


def launch_of(paths: DataPaths) -> Callable[[int], float]:
    return lambda _run: until_ready([PYTHON, MAIN, "--data-dir", str(paths.root), "--smoke-test"])


def bare_window(_run: int) -> float:
    return until_ready([PYTHON, BARE_WINDOW])


def bench_launch(work: Path, cache: Path, runs: int) -> list[Result]:
    """A fresh data folder (every migration) and an existing large registry, each against the
    bare window; the large registry also against an empty one."""

    def fresh(run: int) -> float:
        folder = work / f"launch-{run}"
        elapsed = until_ready([PYTHON, MAIN, "--data-dir", str(folder), "--smoke-test"])
        shutil.rmtree(folder, ignore_errors=True)
        return elapsed

    empty = registry_folder(cache, work / "launch-empty", 0, 0)
    large = registry_folder(cache, work / "launch-large", *LARGE)
    fresh_s, (bare_s,) = interleaved_many(runs, fresh, [bare_window], warm_up=True)
    large_s, (bare2_s, empty_s) = interleaved_many(
        runs, launch_of(large), [bare_window, launch_of(empty)], warm_up=True
    )
    return [
        Result(
            "Launch, fresh data dir (all migrations) vs bare PySide6 window",
            fresh_s * 1000,
            bare_s * 1000,
            "ms",
            1.25,
        ),
        Result(
            f"Launch, existing registry of {LARGE_LABEL} vs bare PySide6 window",
            large_s * 1000,
            bare2_s * 1000,
            "ms",
            1.5,
        ),
        Result(
            f"Window open, {LARGE_LABEL} vs empty registry",
            large_s * 1000,
            empty_s * 1000,
            "ms",
            1.5,
        ),
    ]


def bench_install(work: Path, runs: int, size_mib: int) -> Result:
    archive = make_payload_zip(work / "payload.zip", size_mib)

    def app(run: int) -> float:
        data = Path(tempfile.mkdtemp(prefix=f"install-{run}-", dir=work))
        return timed([PYTHON, MAIN, "--data-dir", str(data), "install", "--yes", str(archive)])

    def floor(run: int) -> float:
        target = work / f"unzip-{run}"
        elapsed = timed([PYTHON, "-m", "zipfile", "-e", str(archive), str(target)])
        shutil.rmtree(target)
        return elapsed

    app_s, floor_s = interleaved(runs, app, floor)
    return Result(
        f"Install of a {size_mib} MiB, 2,000-file zip, whole CLI command vs python -m zipfile -e",
        app_s * 1000,
        floor_s * 1000,
        "ms",
        1.25,
    )


def bench_install_in_app(work: Path, runs: int, size_mib: int) -> list[Result]:
    archive = work / "payload.zip"
    script = str(REPO_ROOT / "benchmarks" / "install_once.py")

    def once(mode: str) -> Callable[[int], float]:
        def run(index: int) -> float:
            target = work / f"{mode}-inapp-{index}"
            result = subprocess.run(
                [PYTHON, script, mode, str(archive), str(target)],
                check=True,
                env=OFFSCREEN,
                capture_output=True,
                text=True,
            )
            shutil.rmtree(target)
            return float(result.stdout)

        return run

    app_s, floor_s = interleaved(runs, once("install"), once("zipfile"))
    durable_app_s, synced_floor_s = interleaved(runs, once("install"), once("zipfile-sync"))
    return [
        Result(
            "Install of the same zip in the running app vs zipfile extractall",
            app_s * 1000,
            floor_s * 1000,
            "ms",
            1.25,
        ),
        # The install flushes every file before it reports done (a power cut loses nothing);
        # extractall does not, so this pair shows what that guarantee costs.
        Result(
            "The same install vs zipfile extractall followed by sync (both on the disk)",
            durable_app_s * 1000,
            synced_floor_s * 1000,
            "ms",
            1.25,
        ),
    ]


def window_script(script: str, *arguments: str) -> dict[str, Any]:
    """Run one of the window scripts (offscreen) and return the JSON it prints."""
    result = subprocess.run(
        [PYTHON, str(BENCHMARKS / script), *arguments],
        check=False,
        env=OFFSCREEN,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} {arguments[:1]} failed: {result.stderr.strip()[-800:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def bench_gui_stall(work: Path, cache: Path, runs: int, size_mib: int, cycles: int) -> list[Result]:
    """Longest gap between 1 ms heartbeats on the GUI thread (gui_stall.py), medians of
    ``runs``: during an install on an empty registry and, with the large registry, during an
    install, a drop of 20 small zips, and another process's installs and uninstalls."""
    archive = make_payload_zip(work / "stall.zip", size_mib)
    drops = make_small_zips(work / "drops", 20)
    loop_zip = make_small_zip(work / "cli-loop.zip", "bench.cli-loop")

    def medians(
        size: tuple[int, int], scenario: str, *arguments: Path | str
    ) -> tuple[float, float]:
        stalls, idles = [], []
        for run in range(runs):
            data = registry_folder(cache, work / f"stall-{scenario}-{run}", *size)
            try:
                measured = window_script(
                    "gui_stall.py", scenario, str(data.root), *map(str, arguments)
                )
            finally:
                shutil.rmtree(data.root, ignore_errors=True)
            stalls.append(float(measured["stall_ms"]))
            idles.append(float(measured["idle_ms"]))
        return statistics.median(stalls), statistics.median(idles)

    measured = [
        (
            f"Longest GUI-thread stall during a {size_mib} MiB install, empty registry, "
            "vs idle window",
            medians((0, 0), "install", archive),
            "DESIGN.md: under 50 ms, stretch 16 ms",
        ),
        (
            f"Longest GUI-thread stall during a {size_mib} MiB install, {LARGE_LABEL}, "
            "vs idle window",
            medians(LARGE, "install", archive),
            "",
        ),
        (
            f"Longest GUI-thread stall while a drop of 20 small zips installs, {LARGE_LABEL}, "
            "vs idle window",
            medians(LARGE, "drop", *drops),
            "batch confirmed at once; until all 20 have finished",
        ),
        (
            "Longest GUI-thread stall of the idle window while another process installs and "
            f"uninstalls ({cycles} times), {LARGE_LABEL}, vs idle window",
            medians(LARGE, "cli", loop_zip, "--cycles", str(cycles)),
            "main.py install --yes, then uninstall --yes, in a loop",
        ),
    ]
    note = f"median of {runs} runs" if runs > 1 else "one run"
    return [
        Result(name, stall, idle, "ms", FRAME, note="; ".join(filter(None, (extra, note))))
        for name, (stall, idle), extra in measured
    ]


def bench_big(work: Path, cache: Path, runs: int, pages: int) -> list[Result]:
    """The big registry: the window's launch against an empty registry, and (scale_gui.py) a
    filter keystroke and scrolling the activity."""
    empty = registry_folder(cache, work / "big-empty", 0, 0)
    big = registry_folder(cache, work / "big-full", *BIG)
    open_s, empty_s = interleaved(runs, launch_of(big), launch_of(empty), warm_up=True)
    measured = [
        window_script("scale_gui.py", str(big.root), "--pages", str(pages))
        for _ in range(max(1, runs // 2))
    ]
    shutil.rmtree(big.root, ignore_errors=True)
    typed = [float(ms) for m in measured for ms in m["keystrokes_ms"]]
    repaint = [float(ms) for m in measured for ms in m["repaint_ms"]]
    word = len(measured[0]["keystrokes_ms"]) // 2
    return [
        Result(
            f"Window open, {BIG_LABEL} vs empty registry",
            open_s * 1000,
            empty_s * 1000,
            "ms",
            2.0,
        ),
        Result(
            f"Filter keystroke in the extensions list, {BIG_LABEL}: median vs a bare repaint "
            "of the list",
            statistics.median(typed),
            statistics.median(repaint),
            "ms",
            FRAME,
            note=f"{len(typed)} keystrokes (a {word}-letter word typed and deleted); "
            "key event until the list is painted again",
        ),
        Result(
            f"Slowest of those filter keystrokes vs the slowest bare repaint, {BIG_LABEL}",
            max(typed),
            max(repaint),
            "ms",
            FRAME,
        ),
        Result(
            f"Longest GUI-thread stall scrolling the Activity to the bottom {pages} times "
            f"(a page of operations fetched each time), {BIG_LABEL}, vs idle window",
            statistics.median(float(m["scroll_stall_ms"]) for m in measured),
            statistics.median(float(m["idle_ms"]) for m in measured),
            "ms",
            FRAME,
            note=f"median of {len(measured)} runs" if len(measured) > 1 else "one run",
        ),
    ]


def bench_migration(work: Path, runs: int) -> Result:
    from tests.fixtures.make_fixtures import make_version_1

    source = work / "v1-large.db"
    make_version_1(source)
    connection = sqlite3.connect(source)
    with connection:
        connection.execute("DELETE FROM extension_configs")
        connection.execute("DELETE FROM extensions")
        connection.execute("DELETE FROM extension_installs")
    connection.close()
    populate(source, 10_000, 100_000)

    def migrate(run: int) -> float:
        paths = DataPaths(work / f"migrate-{run}")
        paths.root.mkdir()
        shutil.copyfile(source, paths.database)
        started = time.perf_counter()
        open_data_folder(paths).close()
        return time.perf_counter() - started

    def copy(run: int) -> float:
        started = time.perf_counter()
        shutil.copyfile(source, work / f"copy-{run}.db")
        return time.perf_counter() - started

    app_s, floor_s = interleaved(runs, migrate, copy)
    return Result(
        "Migrate a 100,000-operation v1 registry (verified backup + upgrade) vs a file copy",
        app_s * 1000,
        floor_s * 1000,
        "ms",
        None,
        note="no floor set; reported to watch",
    )


def bench_download(work: Path, runs: int, size_mib: int) -> list[Result]:
    """An update's download step (size and SHA-256 checked as the bytes come) vs a plain urllib
    download of the same file, both from a loopback HTTP server."""
    import hashlib
    import socket
    import urllib.request

    from registry.sources import Offer, download

    folder = work / "served"
    folder.mkdir()
    archive = make_payload_zip(folder / "payload.zip", size_mib)
    data = archive.read_bytes()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/payload.zip"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        offer = Offer(
            "bench.payload", "1.0.0", len(data), hashlib.sha256(data).hexdigest(), url, ""
        )

        def app(run: int) -> float:
            target = work / f"download-{run}.zip"
            started = time.perf_counter()
            download(offer, target, lambda _received: None, lambda: False)
            elapsed = time.perf_counter() - started
            target.unlink()
            return elapsed

        def floor(run: int) -> float:
            target = work / f"urllib-{run}.zip"
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as response, target.open("wb") as out:
                shutil.copyfileobj(response, out)
            elapsed = time.perf_counter() - started
            target.unlink()
            return elapsed

        app_s, floor_s = interleaved(runs, app, floor)
    finally:
        server.terminate()
        server.wait()
    mib = len(data) / 1024 / 1024
    kept = _kept_archive_share(work, archive)
    return [
        Result(
            f"Download of a {mib:.0f} MiB zip from a loopback HTTP server (size and SHA-256 "
            f"checked) vs urllib: {mib / app_s:.0f} vs {mib / floor_s:.0f} MiB/s",
            app_s * 1000,
            floor_s * 1000,
            "ms",
            None,
            note="no floor set in DESIGN.md; reported to watch",
        ),
        kept,
    ]


def _kept_archive_share(work: Path, archive: Path) -> Result:
    """Disk the kept archive adds to an installed extension: its zip, next to its files."""
    from registry.installer import Installer

    paths = DataPaths(work / "kept-data")
    with open_data_folder(paths) as registry:
        Installer(registry).install(archive)
        kept = sum(p.stat().st_size for p in paths.archives.iterdir())
        installed = sum(
            p.stat().st_size for p in (paths.extensions / "bench.payload").rglob("*") if p.is_file()
        )
    return Result(
        "Disk used by the kept archive vs the installed files of the same extension",
        kept / 1024 / 1024,
        installed / 1024 / 1024,
        "MiB",
        None,
        note="the price of a rollback; bounded by the keep_versions/keep_bytes preferences",
    )


def bench_big_install(work: Path, quick: bool) -> list[Result]:
    """benchmarks/big_install.py's rows (a 1 GiB, 20,000-file install), when it is there."""
    script = BENCHMARKS / "big_install.py"
    if not script.exists():
        Progress.say("benchmarks/big_install.py is not there yet: its rows are skipped")
        return []
    folder = work / "big-install"
    folder.mkdir()
    command = [PYTHON, str(script), "--json", "--work", str(folder)]
    result = subprocess.run(
        [*command, *(["--quick"] if quick else [])],
        check=False,
        env=OFFSCREEN,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(folder, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"big_install.py failed: {result.stderr.strip()[-800:]}")
    return [
        Result.from_json(json.loads(line))
        for line in result.stdout.splitlines()
        if line.startswith("{")
    ]


GROUPS = ("launch", "install", "stall", "big", "migration", "download", "big_install")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller zips")
    parser.add_argument("--json", action="store_true", help="one JSON object per measurement")
    parser.add_argument(
        "--write-readme", action="store_true", help="put this run's table in README.md"
    )
    parser.add_argument("--only", nargs="+", choices=GROUPS, metavar="GROUP", help="run only these")
    args = parser.parse_args()
    Progress.to_stderr = args.json
    groups = set(args.only or GROUPS)
    load_start = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    runs = 3 if args.quick else 7
    size = 20 if args.quick else 100
    sources = ["main.py", "cli", "gui", "registry", "migrations", "assets", "benchmarks"]
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", *sources], cwd=REPO_ROOT, check=True, env=OFFSCREEN
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="em-bench-") as temp:
        work = Path(temp)
        # The populated registries, built once in the run and copied for each use.
        cache = work / "registries"
        benches: dict[str, Callable[[], list[Result]]] = {
            "launch": lambda: bench_launch(work, cache, runs),
            "install": lambda: [
                bench_install(work, runs + 2, size),
                *bench_install_in_app(work, runs, size),
            ],
            "stall": lambda: bench_gui_stall(
                work, cache, 1 if args.quick else 3, size, 3 if args.quick else 10
            ),
            "big": lambda: bench_big(work, cache, 3 if args.quick else 5, 20),
            "migration": lambda: [bench_migration(work, 3)],
            "download": lambda: bench_download(work, runs, size),
            "big_install": lambda: bench_big_install(work, args.quick),
        }
        failed: list[str] = []
        for group, bench in benches.items():
            if group not in groups:
                continue
            try:
                measured = bench()
            except (RuntimeError, subprocess.CalledProcessError) as error:
                # One measurement that went wrong is reported; the others still run.
                Progress.say(f"{group}: FAILED: {error}")
                failed.append(group)
                continue
            for result in measured:
                verdict = {True: "met", False: "MISSED", None: "no target"}[result.met]
                Progress.say(
                    f"{result.name}: {result.measured:.1f} {result.unit} vs {result.floor:.1f} "
                    f"{result.unit} ({result.ratio:.2f}x, {verdict})"
                )
                if args.json:
                    print(json.dumps(result.as_json(), ensure_ascii=False), flush=True)
                results.append(result)
    machine = readme_table.machine_line(load_start, os.getloadavg(), started, quick=args.quick)
    if failed:
        machine += f" Not measured in this run (it failed; see its output): {', '.join(failed)}."
    if not args.json:
        print(f"\n{machine}\n")
        print(readme_table.render([r.as_json() for r in results]))
    if args.write_readme:
        readme_table.write(REPO_ROOT / "README.md", [r.as_json() for r in results], machine)
        Progress.say("README.md: the Performance table now shows this run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
