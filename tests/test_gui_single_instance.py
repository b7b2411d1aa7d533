"""One window per data folder: a second launch hands its files over and exits 0."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QDir, QEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from examples.build_examples import build_all
from gui.app import ensure_application
from gui.confirm_dialog import ConfirmDialog
from gui.handoff import socket_path
from gui.main_window import MainWindow
from gui.single_instance import InstanceServer, send_to_running_instance, server_name
from registry.installer import InstallPlan
from registry.store import Registry
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def application(qapp: QApplication) -> Iterator[QApplication]:
    yield ensure_application()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def window(qtbot: QtBot, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> MainWindow:
    def yes(parent: QWidget | None, plan: InstallPlan, on_answer: Callable[[bool], None]) -> None:
        on_answer(True)

    monkeypatch.setattr(ConfirmDialog, "ask", staticmethod(yes))
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    return main_window


def test_server_names_differ_per_data_folder(tmp_path: Path) -> None:
    assert server_name(tmp_path / "a") != server_name(tmp_path / "b")
    assert server_name(tmp_path / "a") == server_name(tmp_path / "a")


def test_without_a_running_window_nothing_is_handed_over(tmp_path: Path) -> None:
    assert send_to_running_instance(tmp_path / "nobody-here", [tmp_path / "x.zip"]) is False


# The offscreen platform has no window stacking; on a desktop the window comes to the front.
@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_second_launch_hands_its_zip_to_the_running_window(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    server = InstanceServer(registry.paths.root, window)
    assert server.start()
    window.attach_instance_server(server)
    archive = build_all(tmp_path / "zips")[0]
    received: list[list[Path]] = []
    server.files_received.connect(received.append)

    # The real second launch: same data folder, a zip as argument.
    second = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "main.py"),
            "--data-dir",
            str(registry.paths.root),
            str(archive),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        qtbot.waitUntil(lambda: second.poll() is not None, timeout=60_000)
    finally:
        if second.poll() is None:
            second.kill()
        _out, errors = second.communicate()
    assert second.returncode == 0, errors
    assert received == [[archive]]
    qtbot.waitUntil(
        lambda: registry.get_extension("example.hello-world") is not None, timeout=30_000
    )
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=30_000)


def test_a_live_server_is_respected_and_a_stale_socket_replaced(
    qtbot: QtBot, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = InstanceServer(data_dir)
    assert first.start()
    second = InstanceServer(data_dir)
    assert second.start() is False  # someone answers: leave them alone
    first.close()

    # What a crash leaves behind: the socket file, with nobody listening on it.
    stale_path = Path(QDir.tempPath()) / server_name(data_dir)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))
    stale.close()
    assert stale_path.exists()
    third = InstanceServer(data_dir)
    try:
        assert third.start()
        assert third.listening
    finally:
        third.close()


def test_a_second_launch_finds_the_socket_where_qt_listens(tmp_path: Path) -> None:
    """The second launch connects with a plain socket, before Qt is loaded: it must look
    exactly where ``QLocalServer`` put its socket."""
    server = InstanceServer(tmp_path / "data")
    try:
        assert server.start()
        expected = socket_path(server.name)
        assert expected is not None
        assert expected == Path(server.server.fullServerName())
        assert expected.exists()
    finally:
        server.close()


def test_a_socket_left_by_a_crash_takes_no_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stale_path = Path(QDir.tempPath()) / server_name(data_dir)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))
    stale.close()
    try:
        assert send_to_running_instance(data_dir, [tmp_path / "x.zip"]) is False
    finally:
        stale_path.unlink()
