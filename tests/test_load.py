"""Load and soak: several command-line installs writing to one registry at once while a reader
(or the real window) polls it, and hundreds of operations in one process without leaks.

The window and the command line share the registry file; the design promises that neither sees
"database is locked", that progress read from another process never goes backwards, and that a
long-running window does not accumulate file descriptors, threads, memory or stray files.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import random
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from gui import messages
from gui.app import ensure_application
from gui.main_window import MainWindow
from registry.doctor import diagnose, installed_files
from registry.installer import Installer
from registry.store import OperationRecord, Registry
from registry.version import APP_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent

WRITERS = 4
INSTALLS_PER_WRITER = 10
# How long the reader lets the writers run between two rounds of reads; the window polls every
# 60 ms, so reading more often than it does makes the test the harsher reader of the two.
READ_INTERVAL_S = 0.005
READ_INTERVAL_MS = 5
WAIT_MS = 100_000
CYCLES = 500
MIB = 1024 * 1024


# -- archives --------------------------------------------------------------------------------


def write_extension(path: Path, extension_id: str, version: str, payload: bytes) -> Path:
    manifest = {"id": extension_id, "name": extension_id.title(), "version": version}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("README.md", f"# {extension_id} {version}\n")
        archive.writestr("data/payload.bin", payload)
    return path


@pytest.fixture(scope="module")
def load_archives(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Forty distinct extensions; an incompressible payload makes extraction take a moment,
    so readers catch operations mid-way rather than only before and after."""
    folder = tmp_path_factory.mktemp("load-archives")
    noise = random.Random(20240601)
    return [
        write_extension(
            folder / f"load-{number:02d}.zip",
            f"load.ext{number:02d}",
            "1.0.0",
            noise.randbytes(48 * 1024),
        )
        for number in range(WRITERS * INSTALLS_PER_WRITER)
    ]


def extension_id_of(archive: Path) -> str:
    with zipfile.ZipFile(archive) as opened:
        return str(json.loads(opened.read("manifest.json"))["id"])


# -- writers: the command line in separate processes -------------------------------------------


@dataclass
class Writer:
    process: subprocess.Popen[bytes]
    archives: list[Path]
    stdout: Path
    stderr: Path

    @property
    def finished(self) -> bool:
        return self.process.poll() is not None


def launch_writers(data_dir: Path, archives: list[Path], logs: Path) -> list[Writer]:
    """Start every writer before any of them can finish, so their installs overlap."""
    logs.mkdir(exist_ok=True)
    writers = []
    for index in range(WRITERS):
        batch = archives[index * INSTALLS_PER_WRITER : (index + 1) * INSTALLS_PER_WRITER]
        stdout, stderr = logs / f"writer-{index}.out", logs / f"writer-{index}.err"
        # Output goes to files, not pipes: nobody reads a pipe while the reader loop runs.
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO_ROOT / "main.py"),
                    "--data-dir",
                    str(data_dir),
                    "install",
                    "--yes",
                    "--json",
                    *map(str, batch),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
            )
        writers.append(Writer(process, batch, stdout, stderr))
    return writers


@contextlib.contextmanager
def running(writers_factory: Callable[[], list[Writer]]) -> Iterator[list[Writer]]:
    """No writer may outlive the test, whatever fails."""
    writers = writers_factory()
    try:
        yield writers
    finally:
        for writer in writers:
            if writer.process.poll() is None:
                writer.process.kill()
            writer.process.wait()


def wait_for_a_writer(writers: list[Writer]) -> None:
    """Block until the first unfinished writer exits, or for one read interval at most."""
    for writer in writers:
        if not writer.finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                writer.process.wait(timeout=READ_INTERVAL_S)
            return


def check_writers(writers: list[Writer]) -> None:
    for writer in writers:
        stderr = writer.stderr.read_text(errors="replace")
        assert "locked" not in stderr.lower(), stderr
        assert "busy" not in stderr.lower(), stderr
        assert writer.process.returncode == 0, stderr
        results = json.loads(writer.stdout.read_text())
        assert [r["status"] for r in results] == ["COMPLETED"] * INSTALLS_PER_WRITER, results
        assert [r["extension_id"] for r in results] == [extension_id_of(a) for a in writer.archives]
        assert {r["progress"] for r in results} == {100}


# -- the reader: what the window does, as often as possible ------------------------------------


@dataclass
class Observer:
    """Reads the registry the way the window does and remembers everything it saw, in order."""

    registry: Registry
    seen: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    watched: set[int] = field(default_factory=set)
    extension_counts: list[int] = field(default_factory=list)
    rounds: int = 0
    active_sightings: int = 0

    def read(self) -> None:
        self.rounds += 1
        for record in self.registry.list_operations(active_only=True):
            self._note(record)
            self.active_sightings += 1
            self.watched.add(record.install_id)
        if self.watched:
            for record in self.registry.get_operations(self.watched).values():
                self._note(record)
                if not record.active:
                    self.watched.discard(record.install_id)
        self.extension_counts.append(len(self.registry.list_extensions()))

    def _note(self, record: OperationRecord) -> None:
        self.seen.setdefault(record.install_id, []).append((record.status, record.progress))

    def check(self) -> None:
        # Without sightings of running operations the monotonicity check would be empty.
        assert self.active_sightings > 0
        assert not self.watched, "operations still active after every writer exited"
        for install_id, sightings in self.seen.items():
            progress = [value for _status, value in sightings]
            assert progress == sorted(progress), (install_id, sightings)
            statuses = [status for status, _value in sightings]
            if "COMPLETED" in statuses:
                first_done = statuses.index("COMPLETED")
                assert set(statuses[first_done:]) == {"COMPLETED"}, (install_id, sightings)
            assert sightings[-1] == ("COMPLETED", 100), (install_id, sightings)
        assert self.extension_counts == sorted(self.extension_counts)


def check_registry(registry: Registry, archives: list[Path]) -> None:
    expected_ids = sorted(extension_id_of(a) for a in archives)
    extensions = registry.list_extensions()
    assert sorted(e.id for e in extensions) == expected_ids
    operations = registry.list_operations()
    assert len(operations) == len(archives)
    assert {(op.kind, op.status, op.progress) for op in operations} == {
        ("INSTALL", "COMPLETED", 100)
    }
    for extension in extensions:
        files = installed_files(registry.paths.extensions / extension.id)
        assert files == dict(extension.files or ()), extension.id
        assert files["data/payload.bin"] == 48 * 1024
    assert list(registry.paths.staging.iterdir()) == []
    assert list(registry.paths.trash.iterdir()) == []
    assert diagnose(registry) == []


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_command_lines_install_at_once_while_a_reader_polls(
    registry: Registry,
    load_archives: list[Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    observer = Observer(registry)
    observer.read()
    started = time.perf_counter()
    with running(
        lambda: launch_writers(registry.paths.root, load_archives, tmp_path / "logs")
    ) as writers:
        while not all(writer.finished for writer in writers):
            observer.read()
            wait_for_a_writer(writers)
    elapsed = time.perf_counter() - started
    observer.read()

    check_writers(writers)
    observer.check()
    check_registry(registry, load_archives)
    print(
        f"\n{WRITERS}x{INSTALLS_PER_WRITER} concurrent installs: {elapsed:.2f} s, "
        f"{observer.rounds} read rounds, {observer.active_sightings} active sightings of "
        f"{len(observer.seen)} operations"
    )
    record_property("concurrent_installs_seconds", round(elapsed, 3))
    record_property("reader_rounds", observer.rounds)
    record_property("reader_active_sightings", observer.active_sightings)


@pytest.fixture
def application(qapp: QApplication) -> Iterator[QApplication]:
    yield ensure_application()
    # The window is closed and deleteLater()ed by pytest-qt; no event loop runs after the test
    # to perform that deletion, so do it here: no top-level widget may outlive the test.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.mark.slow
def test_four_command_lines_install_at_once_while_the_window_watches(
    application: QApplication,
    qtbot: QtBot,
    registry: Registry,
    load_archives: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable[[str, object], None],
) -> None:
    errors: list[tuple[object, ...]] = []
    monkeypatch.setattr(messages, "show_error", lambda *args: errors.append(args))
    caplog.set_level(logging.WARNING)
    window = MainWindow(registry)
    qtbot.addWidget(window)
    window.show()

    # The reader runs on the GUI thread between the window's own timers, as a view would.
    observer = Observer(registry)
    timer = QTimer()
    timer.setInterval(READ_INTERVAL_MS)
    timer.timeout.connect(observer.read)
    timer.start()
    try:
        with running(
            lambda: launch_writers(registry.paths.root, load_archives, tmp_path / "logs")
        ) as writers:
            qtbot.waitUntil(lambda: all(w.finished for w in writers), timeout=WAIT_MS)
    finally:
        timer.stop()
    observer.read()

    check_writers(writers)
    observer.check()
    check_registry(registry, load_archives)

    window.refresh()
    qtbot.waitUntil(
        lambda: window.extensions_model.rowCount() == len(load_archives), timeout=WAIT_MS
    )
    panel = window.install_panel
    qtbot.waitUntil(lambda: all(op.final for op in panel.operations), timeout=WAIT_MS)
    # Rows the panel picked up from the other processes must end as the registry says.
    for operation in panel.operations:
        assert operation.external
        assert operation.record is not None and operation.record.status == "COMPLETED"
        assert operation.row.bar.value() == 100
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    print(f"\nthe window showed {len(panel.operations)} external operation rows")
    record_property("window_external_rows", len(panel.operations))
    window.close()


def test_window_lists_an_extension_installed_elsewhere_between_two_scans(
    application: QApplication,
    qtbot: QtBot,
    registry: Registry,
    load_archives: list[Path],
) -> None:
    window = MainWindow(registry)
    qtbot.addWidget(window)
    window.show()
    assert window.extensions_model.rowCount() == 0
    # The command line runs start to finish while the window's event loop cannot turn: exactly
    # what happens when a short install falls between two scans, but deterministic.
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "main.py"),
            "--data-dir",
            str(registry.paths.root),
            "install",
            "--yes",
            str(load_archives[0]),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(registry.list_extensions()) == 1
    # Several scan periods: the registry says one extension is installed; so should the window.
    try:
        qtbot.waitUntil(lambda: window.extensions_model.rowCount() == 1, timeout=3000)
    finally:
        window.close()


@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int
    os_threads: int
    rss: int
    leftovers: tuple[str, ...]


# What belongs in the data folder whatever happened: the database, its lock, the backups, the
# kept archives (checked on their own: bounded by the preferences), and the three working
# folders (which must be empty between operations).
STANDING = frozenset(
    {
        "registry.db",
        "registry.db-wal",
        "registry.db-shm",
        "registry.lock",
        "registry.lock.gate",
        "registry.reserve",
        "backups",
        "archives",
    }
)
WORK_FOLDERS = frozenset({"extensions", "staging", "trash"})


def usage(root: Path) -> Usage:
    gc.collect()
    process = psutil.Process()
    leftovers = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if relative.parts[0] in STANDING or (relative.name in WORK_FOLDERS and path.parent == root):
            continue
        leftovers.append(relative.as_posix())
    return Usage(
        fds=process.num_fds(),
        threads=threading.active_count(),
        os_threads=process.num_threads(),
        rss=process.memory_info().rss,
        leftovers=tuple(sorted(leftovers)),
    )


@pytest.mark.slow
def test_hundreds_of_install_upgrade_uninstall_cycles_leak_nothing(
    registry: Registry,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    extension_id = "soak.cycle"
    payload = random.Random(7).randbytes(4096)
    first = write_extension(tmp_path / "cycle-1.0.0.zip", extension_id, "1.0.0", payload)
    second = write_extension(tmp_path / "cycle-1.1.0.zip", extension_id, "1.1.0", payload[::-1])
    installer = Installer(registry, APP_VERSION)

    def cycle() -> None:
        install = installer.install(first)
        upgrade = installer.install(second)
        uninstall = installer.uninstall(extension_id)
        assert [install.kind, upgrade.kind, uninstall.kind] == ["INSTALL", "UPGRADE", "UNINSTALL"]
        for record in (install, upgrade, uninstall):
            assert record.status == "COMPLETED", record.error

    # One cycle first: imports, the schema validator and peewee's caches are made on first use
    # and kept on purpose; they are not leaks.
    cycle()
    before = usage(registry.paths.root)
    started = time.perf_counter()
    for _ in range(CYCLES):
        cycle()
    elapsed = time.perf_counter() - started
    after = usage(registry.paths.root)

    per_cycle_ms = elapsed / CYCLES * 1000
    report = {
        "cycles": CYCLES,
        "seconds": round(elapsed, 2),
        "ms_per_cycle": round(per_cycle_ms, 2),
        "fds_before": before.fds,
        "fds_after": after.fds,
        "threads_before": before.threads,
        "threads_after": after.threads,
        "os_threads_before": before.os_threads,
        "os_threads_after": after.os_threads,
        "rss_mib_before": round(before.rss / MIB, 1),
        "rss_mib_after": round(after.rss / MIB, 1),
        "leftover_files": len(after.leftovers),
    }
    print("\n" + ", ".join(f"{key}={value}" for key, value in report.items()))
    for key, value in report.items():
        record_property(key, value)

    assert before.leftovers == after.leftovers == ()
    # Every cycle keeps the two archives again, and no more: one file per content.
    kept = sorted(path.name for path in registry.paths.archives.iterdir())
    assert kept == sorted(
        f"{hashlib.sha256(z.read_bytes()).hexdigest()}.zip" for z in (first, second)
    )
    assert after.fds - before.fds <= 5
    assert after.threads - before.threads <= 2
    assert after.os_threads - before.os_threads <= 2
    assert after.rss - before.rss <= 50 * MIB

    operations = 3 * (CYCLES + 1)
    assert registry.count_operations() == operations
    assert (
        registry.scalar(
            "SELECT COUNT(*) FROM extension_installs WHERE status = 'COMPLETED' AND progress = 100"
        )
        == operations
    )
    assert registry.list_extensions() == []
    assert registry.scalar("SELECT COUNT(*) FROM extension_configs") == 0
    assert registry.list_operations(active_only=True) == []
    assert diagnose(registry) == []
    assert list(registry.paths.extensions.iterdir()) == []
