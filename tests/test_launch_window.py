"""Launching the window: migrations first, no view before them, clear failure dialogs."""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from gui import messages
from gui.app import LaunchController, ensure_application
from gui.main_window import EMPTY_STATE_TEXT, MainWindow
from migrations.runner import latest_version
from registry.errors import MigrationError
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Registry
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def application(qapp: QApplication) -> QApplication:
    return ensure_application()


def close_controller(controller: LaunchController) -> None:
    if controller.window is not None:
        controller.window.close()
        controller.window.deleteLater()
    if controller.registry is not None:
        controller.registry.close()


def test_no_view_exists_before_migrations_finish(qtbot: QtBot, paths: DataPaths) -> None:
    entered = threading.Event()
    release = threading.Event()

    def blocked_open(data: DataPaths) -> Registry:
        entered.set()
        assert release.wait(timeout=60)
        return open_data_folder(data)

    controller = LaunchController(paths, opener=blocked_open)
    controller.start()
    qtbot.waitUntil(entered.is_set)
    QApplication.processEvents()
    assert QApplication.topLevelWidgets() == []
    assert not paths.database.exists() or controller.window is None

    with qtbot.waitSignal(controller.window_shown, timeout=30_000):
        release.set()
    try:
        window = controller.window
        assert isinstance(window, MainWindow)
        qtbot.waitUntil(window.isVisible)
        assert window.registry.schema_version() == latest_version()
    finally:
        close_controller(controller)


def test_window_shows_empty_state_schema_and_data_dir(qtbot: QtBot, paths: DataPaths) -> None:
    controller = LaunchController(paths)
    with qtbot.waitSignal(controller.window_shown, timeout=30_000):
        controller.start()
    try:
        window = controller.window
        assert window is not None
        assert window.list_stack.currentWidget() is window.empty_label
        assert window.empty_label.text() == EMPTY_STATE_TEXT
        assert f"Registry schema version {latest_version()}" in window.about_text()
        assert str(paths.root) in window.data_dir_label.text()
        # An operation can be created and read back the moment the window is up.
        install_id = window.registry.create_operation("x.zip")
        assert window.registry.get_operation(install_id).status == "INSTALLING"
    finally:
        close_controller(controller)


def test_migration_failure_shows_a_dialog_and_builds_no_view(
    qtbot: QtBot, paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(
        messages, "show_error", lambda parent, title, text, details="": shown.append((title, text))
    )

    def failing_open(data: DataPaths) -> Registry:
        raise MigrationError("Upgrading the registry to version 2 failed: disk I/O error.")

    monkeypatch.setattr(QApplication, "exit", staticmethod(lambda code=0: None))
    controller = LaunchController(paths, opener=failing_open)
    with qtbot.waitSignal(controller.finished, timeout=30_000) as finished:
        controller.start()
    assert finished.args == [1]
    assert shown == [
        (
            "Extension Manager cannot start",
            "Upgrading the registry to version 2 failed: disk I/O error.",
        )
    ]
    assert controller.window is None
    assert [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)] == []


def test_window_size_and_splitter_are_remembered(qtbot: QtBot, paths: DataPaths) -> None:
    first = LaunchController(paths)
    with qtbot.waitSignal(first.window_shown, timeout=30_000):
        first.start()
    assert first.window is not None
    first.window.resize(780, 500)
    first.window.move(11, 37)
    first.window.splitter.setSizes([300, 464])
    qtbot.waitUntil(lambda: first.window is not None and first.window.pos().x() == 11)
    sizes = first.window.splitter.sizes()
    position = first.window.pos()
    assert sizes != [0, 0]
    close_controller(first)

    second = LaunchController(paths)
    with qtbot.waitSignal(second.window_shown, timeout=30_000):
        second.start()
    try:
        assert second.window is not None
        assert (second.window.width(), second.window.height()) == (780, 500)
        assert second.window.pos() == position
        assert second.window.splitter.sizes() == sizes
    finally:
        close_controller(second)


def test_the_window_says_what_opening_the_registry_did(qtbot: QtBot, v1_paths: DataPaths) -> None:
    # A v1 registry (upgraded at this launch) with an install left behind by a dead process.
    with sqlite3.connect(v1_paths.database) as connection:
        connection.execute(
            "INSERT INTO extension_installs (extension_id, archive_path, status, started_at)"
            " VALUES ('example.gone', '/downloads/gone.zip', 'INSTALLING', '2026-01-01')"
        )
    connection.close()
    controller = LaunchController(v1_paths)
    with qtbot.waitSignal(controller.window_shown, timeout=30_000):
        controller.start()
    try:
        window = controller.window
        assert window is not None
        notes = window.launch_notes.text().splitlines()
        assert len(notes) == 2
        assert notes[0].startswith(
            f"Registry upgraded from schema 1 to {latest_version()} (backup: "
        )
        assert str(v1_paths.backups) in notes[0]
        assert notes[1] == "An install of example.gone was interrupted and rolled back."
        assert window.statusBar().currentMessage() == " ".join(notes)
        window.show_activity()
        assert window.launch_notes.isVisible()
    finally:
        close_controller(controller)


def test_smoke_test_launch_prints_ready_and_creates_the_tables(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--smoke-test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ready in ") and result.stdout.strip().endswith(" ms")
    assert (tmp_path / "registry.db").exists()


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "status", "--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr


def test_unexpected_exception_is_shown_logged_to_a_file_and_the_app_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import main
    from gui.app import install_exception_hook

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(
        messages, "show_error", lambda parent, title, text, details="": shown.append((title, text))
    )
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    level_before = root.level
    log_file = main.setup_logging(verbose=False, log_dir=tmp_path / "logs")
    try:
        install_exception_hook()
        try:
            raise RuntimeError("a slot broke")
        except RuntimeError as error:
            sys.excepthook(type(error), error, error.__traceback__)
    finally:
        # setup_logging lowers the root level to DEBUG: later tests must not capture every
        # query peewee logs.
        root.setLevel(level_before)
        for handler in root.handlers[:]:
            if handler not in handlers_before:
                handler.close()
                root.removeHandler(handler)
    assert shown and shown[0][0] == "Unexpected error"
    assert "a slot broke" in shown[0][1] and "keeps running" in shown[0][1]
    assert log_file is not None and "RuntimeError: a slot broke" in log_file.read_text()
