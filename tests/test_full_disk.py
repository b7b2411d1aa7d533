"""A disk that fills up, or turns read-only, in the middle of an install: real filesystems, no
patched functions. A small tmpfs fills for real (another program writes a file until the disk
says ENOSPC, at the chosen step); an ext4 image mounted ``errors=remount-ro`` turns read-only
under the open registry when the kernel is told it hit an error, as a failing disk does.

Each must end in one plain sentence saying what happened and how much room is needed, the
history recording that sentence (not "interrupted"), and the previous version intact."""

from __future__ import annotations

import json
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from gui.app import ensure_application
from gui.main_window import MainWindow
from registry import open_registry
from registry.installer import NEW_VERSION_MOVED_IN, Installer, InstallOptions
from registry.paths import DataPaths
from registry.reserve import RESERVE_BYTES
from registry.vocabulary import OperationStatus
from tests.conftest import run_cli
from tests.disks import small_disk_on
from tests.power_cut import can_mount, ext4_image
from tests.test_gui_window import (
    close_for_good,
    drop,
    focus_default_button,
    press,
    visible_confirm_dialog,
    wait_finished,
)

EXTENSION_ID = "test.fills"
TMPFS_SIZE = "8m"  # 8 MiB


def extension_zip(path: Path, version: str, size: int = 1024 * 1024) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        manifest = {"id": EXTENSION_ID, "name": "Fills", "version": version}
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("payload.bin", random.Random(version).randbytes(size))
    return path


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Write a file in ``folder`` until the disk has ``leave`` bytes free, as any program may."""
    filler = folder / f"filler-{len(list(folder.glob('filler-*')))}"
    # Unbuffered: a write the full disk refuses is not retried when the file is closed (the
    # install may be writing at the same time, so the disk can fill between two checks).
    with filler.open("wb", buffering=0) as fh:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave:
                fh.write(b"\0" * min(65536, max(4096, leave or 65536)))
        except OSError:
            pass  # ENOSPC: full
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk_on(tmp_path / "disk", size=TMPFS_SIZE) as disk:
        yield disk.path


def test_a_disk_that_fills_during_extraction_is_recorded_as_full(
    small_disk: Path, tmp_path: Path
) -> None:
    archive = extension_zip(tmp_path / "fills.zip", "1.0.0")
    data = small_disk / "data"
    registry = open_registry(data)
    assert registry.paths.space_reserve.stat().st_size == RESERVE_BYTES
    fillers: list[Path] = []

    def another_program_fills_the_disk(_install_id: int, step: str) -> None:
        if step == "Extracting files":
            fillers.append(fill_disk(small_disk))

    with registry:
        result = Installer(registry, on_step=another_program_fills_the_disk).install(archive)
        assert fillers, "the disk was not filled"
        assert result.status == OperationStatus.FAILED
        assert result.error is not None
        assert "not enough disk space" in result.error and "1.0 MiB" in result.error
        recorded = registry.get_operation(result.install_id)
        # Recorded, on a disk still full, thanks to the reserve it gave up.
        assert (recorded.status, recorded.error) == (OperationStatus.FAILED, result.error)
        assert not registry.paths.space_reserve.exists()
        assert registry.list_extensions() == []
        assert list(registry.paths.staging.iterdir()) == []
    fillers[0].unlink()
    with open_registry(data) as reopened:
        assert reopened.get_operation(result.install_id).error == result.error
        assert reopened.paths.space_reserve.stat().st_size == RESERVE_BYTES


def test_the_command_line_says_one_sentence_on_a_full_disk(
    small_disk: Path, tmp_path: Path
) -> None:
    archive = extension_zip(tmp_path / "fills.zip", "1.0.0")
    data = small_disk / "data"
    assert run_cli(data, "status").returncode == 0
    filler = fill_disk(small_disk, leave=200 * 1024)
    result = run_cli(data, "install", str(archive), "--yes")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "not enough disk space" in lines[0] and "Free some space" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    filler.unlink()
    history = run_cli(data, "history", "--json")
    assert history.returncode == 0, history.stderr
    (operation,) = json.loads(history.stdout)
    assert operation["status"] == "FAILED"
    assert "not enough disk space" in operation["error"]


cannot_mount = can_mount()


@pytest.mark.skipif(cannot_mount is not None, reason=cannot_mount or "")
def test_a_disk_turning_read_only_mid_upgrade_keeps_the_old_version(tmp_path: Path) -> None:
    old = extension_zip(tmp_path / "old.zip", "1.0.0")
    new = extension_zip(tmp_path / "new.zip", "2.0.0", size=300 * 1024)
    with ext4_image(tmp_path, size_mib=32, options="loop,errors=remount-ro") as disk:
        data = disk.mount_point / "data"
        with open_registry(data) as registry:
            assert Installer(registry).install(old).status == OperationStatus.COMPLETED

            def the_disk_fails(_install_id: int, step: str) -> None:
                if step == NEW_VERSION_MOVED_IN:
                    disk.turn_read_only()

            result = Installer(registry, on_step=the_disk_fails).install(
                new, options=InstallOptions()
            )
            assert result.status == OperationStatus.FAILED
            assert result.error is not None and "read-only" in result.error
            assert "Traceback" not in result.error and "Error" not in result.error
        disk.unmount()
        disk.mount()
        with open_registry(data) as registry:
            extension = registry.get_extension(EXTENSION_ID)
            assert extension is not None and extension.version == "1.0.0"
            payload = DataPaths(data).extensions / EXTENSION_ID / "payload.bin"
            assert payload.read_bytes() == random.Random("1.0.0").randbytes(1024 * 1024)
            assert registry.get_operation(result.install_id).status == OperationStatus.FAILED


def confirm_with_return(qtbot: QtBot, window: MainWindow) -> None:
    dialog = visible_confirm_dialog(qtbot, window)
    focus_default_button(qtbot, dialog)
    press(Qt.Key.Key_Return)


def test_the_window_shows_a_full_disk_in_the_row_and_the_history(
    small_disk: Path, tmp_path: Path, qtbot: QtBot
) -> None:
    """Dropped on the window, confirmed with Return in the real dialog, on a disk that has
    room for the registry but not for the extension's files."""
    archive = extension_zip(tmp_path / "fills.zip", "1.0.0")
    ensure_application()
    with open_registry(small_disk / "data") as registry:
        window = MainWindow(registry)
        qtbot.addWidget(window)
        window.show()
        fill_disk(small_disk, leave=200 * 1024)
        drop(window, [archive])
        confirm_with_return(qtbot, window)
        wait_finished(qtbot, window, 1)
        operation = window.install_panel.operations[0]
        assert operation.install_id is not None
        record = registry.get_operation(operation.install_id)
        assert record.status == OperationStatus.FAILED and record.error is not None
        assert "not enough disk space" in record.error and "Unexpected" not in record.error
        assert operation.row.error_label.text() == record.error
        assert operation.row.error_label.isVisibleTo(window)
        close_for_good(qtbot, window)


@pytest.mark.skipif(cannot_mount is not None, reason=cannot_mount or "")
@pytest.mark.parametrize("moment", ["Extracting files", NEW_VERSION_MOVED_IN])
def test_the_window_says_the_disk_turned_read_only(
    tmp_path: Path, qtbot: QtBot, moment: str
) -> None:
    archive = extension_zip(tmp_path / "fills.zip", "1.0.0")
    ensure_application()
    with (
        ext4_image(tmp_path, size_mib=32, options="loop,errors=remount-ro") as disk,
        open_registry(disk.mount_point / "data") as registry,
    ):

        def the_disk_fails(_install_id: int, step: str) -> None:
            if step == moment:
                disk.turn_read_only()

        window = MainWindow(registry, installer=Installer(registry, on_step=the_disk_fails))
        qtbot.addWidget(window)
        window.show()
        drop(window, [archive])
        confirm_with_return(qtbot, window)
        wait_finished(qtbot, window, 1)
        shown = window.install_panel.operations[0].row.error_label.text()
        assert "read-only" in shown and "Unexpected" not in shown
        assert "Error" not in shown and "errno" not in shown.lower()
        close_for_good(qtbot, window)
