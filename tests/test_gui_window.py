"""The window's install, manage and history flows, driven like a person would: real dialogs,
real key presses, on the real X11 platform (a virtual screen, see ``tests/conftest.py``)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from examples.build_examples import build_all
from gui import desktop, messages
from gui.app import LaunchController, ensure_application
from gui.config_dialog import ConfigDialog
from gui.confirm_dialog import ConfirmDialog
from gui.install_panel import OperationRow
from gui.main_window import MainWindow
from registry import open_registry
from registry.installer import COMMITTED, Installer, InstallPlan
from registry.paths import DataPaths, default_log_dir
from registry.store import Registry
from registry.version import APP_VERSION
from registry.vocabulary import OperationKind, OperationStatus
from tests.conftest import REPO_ROOT

HELLO = "example.hello-world"
WORDS = "example.word-count"
WAIT_MS = 30_000


@pytest.fixture(autouse=True)
def application(qapp: QApplication) -> Iterator[QApplication]:
    yield ensure_application()
    # pytest-qt closes and deleteLater()s the widgets; a deferred delete only happens in an
    # event loop, so do it now: no window of this test may outlive it as a top-level widget.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


class Seams:
    """What the dialogs would have shown, and what the person answers."""

    def __init__(self) -> None:
        self.plans: list[InstallPlan] = []
        self.answer = True
        self.errors: list[tuple[str, str]] = []
        self.infos: list[tuple[str, str]] = []
        self.questions: list[str] = []
        self.ask_answer = True
        self.on_confirm: list[object] = []

    def confirm(
        self, parent: QWidget | None, plan: InstallPlan, on_answer: Callable[[bool], None]
    ) -> None:
        self.plans.append(plan)
        for hook in self.on_confirm:
            assert callable(hook)
            hook(plan)
        on_answer(self.answer)


@pytest.fixture(autouse=True)
def seams(monkeypatch: pytest.MonkeyPatch) -> Seams:
    seams = Seams()
    monkeypatch.setattr(ConfirmDialog, "ask", staticmethod(seams.confirm))
    monkeypatch.setattr(
        messages,
        "show_error",
        lambda parent, title, text, details="": seams.errors.append((title, text)),
    )
    monkeypatch.setattr(
        messages, "show_info", lambda parent, title, text: seams.infos.append((title, text))
    )

    def ask(parent: QWidget | None, title: str, text: str, confirm_label: str = "OK") -> bool:
        seams.questions.append(title)
        return seams.ask_answer

    monkeypatch.setattr(messages, "ask", ask)
    return seams


@pytest.fixture
def zips(tmp_path: Path) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path / "zips")}


@pytest.fixture
def window(qtbot: QtBot, registry: Registry) -> Iterator[MainWindow]:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    yield main_window
    close_for_good(qtbot, main_window)


def close_for_good(qtbot: QtBot, window: MainWindow) -> None:
    """Close as a person does (saying yes to stopping what runs) and wait until it is gone."""
    window.close()
    qtbot.waitUntil(lambda: window.closed, timeout=WAIT_MS)
    assert not window.install_panel.busy


def mime_for(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return mime


def drag_enter(window: MainWindow, mime: QMimeData) -> QDragEnterEvent:
    event = QDragEnterEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, event)
    return event


def drop(window: MainWindow, paths: list[Path]) -> None:
    """What a real drag does: enter, then drop (QTest cannot start a real drag)."""
    mime = mime_for(paths)
    drag_enter(window, mime)
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, event)


def wait_finished(qtbot: QtBot, window: MainWindow, count: int | None = None) -> None:
    def check() -> None:
        operations = window.install_panel.operations
        if count is not None:
            assert len([op for op in operations if op.install_id is not None]) >= count
        assert operations
        assert all(op.final for op in operations)
        assert not window.pool.busy and not window.long_pool.busy

    qtbot.waitUntil(check, timeout=WAIT_MS)


def installed(registry: Registry, extension_id: str) -> bool:
    return registry.get_extension(extension_id) is not None


# -- installing ------------------------------------------------------------------------------


def test_drop_of_one_zip_installs_it(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    drop(window, [zips["hello-world"]])
    assert not window.drop_active
    wait_finished(qtbot, window, 1)
    record = registry.get_extension(HELLO)
    assert record is not None and record.version == "1.0.0"
    assert (registry.paths.extensions / HELLO / "manifest.json").is_file()
    # The list shows it, with the extension's own icon.
    qtbot.waitUntil(lambda: window.extensions_model.rowCount() == 1)
    assert window.list_stack.currentWidget() is window.table
    icon = window.extensions_model.data(
        window.extensions_model.index(0, 0), Qt.ItemDataRole.DecorationRole
    )
    assert not icon.isNull()


def test_drop_of_several_zips_installs_each(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    drop(window, [zips["hello-world"], zips["word-count"]])
    assert len(window.install_panel.operations) == 2
    wait_finished(qtbot, window, 2)
    assert installed(registry, HELLO) and installed(registry, WORDS)
    statuses = {op.status for op in registry.list_operations()}
    assert statuses == {"COMPLETED"}


def test_drag_enter_with_a_zip_highlights_the_window(
    window: MainWindow, zips: dict[str, Path], tmp_path: Path
) -> None:
    mime = mime_for([zips["hello-world"]])
    event = drag_enter(window, mime)
    assert event.isAccepted()
    assert window.drop_active
    assert "dashed" in window.drop_area.styleSheet()
    QApplication.sendEvent(window, QDragLeaveEvent())
    assert not window.drop_active
    assert window.drop_area.styleSheet() == ""

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    drag_enter(window, mime_for([text]))
    assert not window.drop_active


def test_a_drop_of_only_other_files_is_refused_and_names_them(
    window: MainWindow, registry: Registry, seams: Seams, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    drop(window, [text, tmp_path / "gone.zip"])
    assert len(seams.errors) == 1
    _title, message = seams.errors[0]
    assert "notes.txt" in message and "gone.zip" in message
    assert "Nothing was installed" in message
    assert window.install_panel.operations == []
    assert registry.count_operations() == 0
    assert not window.drop_active


def test_a_mixed_drop_installs_the_archives_and_names_what_it_skipped(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    seams: Seams,
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    drop(window, [zips["hello-world"], text])
    assert seams.errors == []
    assert window.statusBar().currentMessage().startswith("Skipped: ")
    assert "notes.txt" in window.statusBar().currentMessage()
    wait_finished(qtbot, window, 1)
    assert installed(registry, HELLO)
    assert registry.count_operations() == 1


def test_drops_are_taken_as_copies(window: MainWindow, zips: dict[str, Path]) -> None:
    mime = mime_for([zips["hello-world"]])
    # The source offers a move and proposes it; the window answers copy, at every stage.
    for kind in (QDragEnterEvent, QDropEvent):
        event = kind(
            QPointF(50, 50),
            Qt.DropAction.MoveAction | Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        event.setDropAction(Qt.DropAction.MoveAction)
        QApplication.sendEvent(window, event)
        assert event.isAccepted() and event.dropAction() == Qt.DropAction.CopyAction
    assert zips["hello-world"].is_file()


def test_a_drop_while_a_confirmation_is_open_waits_its_turn(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = open_real_dialog(qtbot, window, zips["word-count"], monkeypatch)
    drop(window, [zips["hello-world"]])
    qtbot.waitUntil(lambda: len(window.install_panel.operations) == 2, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.install_panel.queued_confirmations == 1, timeout=WAIT_MS)
    assert window.install_panel.confirm_dialog is first
    focus_default_button(qtbot, first)
    press(Qt.Key.Key_Return)  # yes to Word Count
    qtbot.waitUntil(
        lambda: (
            window.install_panel.confirm_dialog is not None
            and window.install_panel.confirm_dialog is not first
            and window.install_panel.confirm_dialog.isVisible()
        ),
        timeout=WAIT_MS,
    )
    second = window.install_panel.confirm_dialog
    assert second is not None and second.plan.manifest.id == HELLO
    focus_default_button(qtbot, second)
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    assert installed(registry, WORDS) and installed(registry, HELLO)


def test_install_from_file_dialog(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def fake_dialog(*args: object) -> tuple[list[str], str]:
        asked.append(str(args[3]))
        return [str(zips["hello-world"]), str(zips["word-count"])], str(args[3])

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(fake_dialog))
    assert window.install_action.shortcut().toString() == "Ctrl+O"
    window.install_action.trigger()
    assert asked == ["Extension archives (*.zip)"]
    wait_finished(qtbot, window, 2)
    assert installed(registry, HELLO) and installed(registry, WORDS)


def test_command_line_files_are_installed_once_the_window_is_up(
    qtbot: QtBot, paths: DataPaths, zips: dict[str, Path]
) -> None:
    controller = LaunchController(paths, files=[zips["word-count"]])
    with qtbot.waitSignal(controller.window_shown, timeout=WAIT_MS):
        controller.start()
    window = controller.window
    assert window is not None
    try:
        wait_finished(qtbot, window, 1)
        assert installed(window.registry, WORDS)
    finally:
        window.close()
        window.deleteLater()
        assert controller.registry is not None
        controller.registry.close()


# -- confirmation ----------------------------------------------------------------------------


def test_confirmation_shows_the_plan_and_upgrade(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], seams: Seams
) -> None:
    window.install_files([zips["hello-world"]])
    wait_finished(qtbot, window, 1)
    window.install_files([zips["hello-world-1.1"]])
    qtbot.waitUntil(lambda: len(seams.plans) == 2, timeout=WAIT_MS)
    wait_finished(qtbot, window, 2)
    first, second = seams.plans
    assert first.kind == "INSTALL" and first.manifest.id == HELLO
    assert second.kind == "UPGRADE" and second.change == "Upgrade 1.0.0 → 1.1.0"
    assert second.config_removed == ("repeat",) and second.config_added == ("punctuation",)
    record = registry.get_extension(HELLO)
    assert record is not None and record.version == "1.1.0"


def test_confirmation_cancel_changes_nothing(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], seams: Seams
) -> None:
    seams.answer = False
    operation = window.install_panel.start_install(zips["hello-world"])
    wait_finished(qtbot, window, 1)
    assert operation.install_id is not None
    record = registry.get_operation(operation.install_id)
    assert record.status == "CANCELLED"
    assert record.error is not None and record.error.startswith("Cancelled")
    assert operation.row.error_label.text() == record.error
    assert not installed(registry, HELLO)
    assert not (registry.paths.extensions / HELLO).exists()


# The dialog itself, as a person answers it: real key presses on the focused widget.
REAL_ASK = ConfirmDialog.__dict__["ask"]


def open_real_dialog(
    qtbot: QtBot, window: MainWindow, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> ConfirmDialog:
    monkeypatch.setattr(ConfirmDialog, "ask", REAL_ASK)
    window.install_panel.start_install(archive)
    dialog = visible_confirm_dialog(qtbot, window)
    focus_default_button(qtbot, dialog)
    return dialog


def visible_confirm_dialog(qtbot: QtBot, window: MainWindow) -> ConfirmDialog:
    """Wait until the install panel shows its confirmation dialog, and return it."""
    qtbot.waitUntil(
        lambda: (
            window.install_panel.confirm_dialog is not None
            and window.install_panel.confirm_dialog.isVisible()
        ),
        timeout=WAIT_MS,
    )
    dialog = window.install_panel.confirm_dialog
    assert dialog is not None
    return dialog


def focus_default_button(qtbot: QtBot, dialog: ConfirmDialog) -> None:
    """Bring the dialog to the front and wait until its default button has the focus."""
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.default_button)


def press(key: Qt.Key) -> None:
    """A key press goes to whatever has the focus, as a real keyboard's does."""
    focused = QApplication.focusWidget()
    assert focused is not None
    QTest.keyClick(focused, key)


def test_an_open_confirmation_holds_no_worker_and_no_connection(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dialog = open_real_dialog(qtbot, window, zips["word-count"], monkeypatch)
    # The person takes their time: let the window's timers run a good while meanwhile.
    qtbot.wait(1500)
    assert dialog.isVisible()
    assert window.pool.running_threads == 0 and window.long_pool.running_threads == 0
    assert not window.pool.busy and not window.long_pool.busy
    # The GUI thread's own read connection at most, and no transaction held open on it.
    assert registry.open_connections <= 1
    assert not registry.database.in_transaction()
    (operation,) = window.install_panel.operations
    assert operation.install_id is not None
    waiting = registry.get_operation(operation.install_id)
    assert (waiting.status, waiting.progress, waiting.current_step) == (
        "INSTALLING",
        0,
        "Waiting for confirmation",
    )
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 1)
    assert installed(registry, WORDS)


def test_return_on_a_downgrade_says_no(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upgrade = open_real_dialog(qtbot, window, zips["hello-world-1.1"], monkeypatch)
    assert upgrade.default_button is upgrade.accept_button
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 1)
    downgrade = open_real_dialog(qtbot, window, zips["hello-world"], monkeypatch)
    assert downgrade.accept_button.text() == "Downgrade"
    assert downgrade.default_button is not downgrade.accept_button
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    record = registry.get_extension(HELLO)
    assert record is not None and record.version == "1.1.0"
    last = registry.list_operations(limit=1)[0]
    assert (last.kind, last.status, last.error) == (
        "DOWNGRADE",
        "CANCELLED",
        "Cancelled: nothing was changed.",
    )


def test_escape_on_the_confirmation_installs_nothing(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_real_dialog(qtbot, window, zips["word-count"], monkeypatch)
    press(Qt.Key.Key_Escape)
    wait_finished(qtbot, window, 1)
    assert not installed(registry, WORDS)
    assert registry.list_operations(limit=1)[0].error == "Cancelled: nothing was changed."
    assert list(registry.paths.staging.iterdir()) == []


def test_confirm_dialog_words_and_button(zips: dict[str, Path], qtbot: QtBot) -> None:
    from registry.installer import InstallPlan as Plan
    from registry.manifest import parse_manifest

    with zipfile.ZipFile(zips["word-count"]) as archive:
        manifest = parse_manifest(archive.read("manifest.json"))
    plan = Plan(
        1,
        zips["word-count"],
        manifest,
        OperationKind.DOWNGRADE,
        "2.0.0",
        4,
        2048,
    )
    dialog = ConfirmDialog(plan)
    qtbot.addWidget(dialog)
    assert dialog.accept_button.text() == "Downgrade"
    assert "Read files on your computer" in dialog.permissions_label.text()
    assert dialog.change_label.text() == plan.change
    assert "Downgrade" in dialog.windowTitle()


# -- progress, failure, cancel ---------------------------------------------------------------


def big_zip(path: Path, megabytes: int = 24) -> Path:
    manifest = b'{"id": "example.big", "name": "Big", "version": "1.0.0"}'
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", manifest)
        for number in range(megabytes):
            archive.writestr(f"data/{number:03d}.bin", os.urandom(1024 * 1024))
    return path


def watch_bar(window: MainWindow, values: list[int]) -> None:
    """Record every value each new row's bar shows, from the moment the row exists."""

    def attach() -> None:
        for operation in window.install_panel.operations:
            bar = operation.row.bar
            if not bar.property("watched"):
                bar.setProperty("watched", True)
                bar.valueChanged.connect(values.append)

    window.install_panel.rows_changed.connect(attach)


def test_progress_is_monotonic_and_ends_at_the_registry_value(
    qtbot: QtBot, registry: Registry, tmp_path: Path, seams: Seams
) -> None:
    # The install stops just before its swap until the row has shown that step's progress,
    # so the bar is seen between 0 and 100 however fast this machine's disk is.
    shown_before_swap = threading.Event()

    def hold_before_swap(install_id: int, step: str) -> None:
        if step == "Putting the new version in place":
            assert shown_before_swap.wait(WAIT_MS / 1000)

    window = MainWindow(registry, installer=Installer(registry, on_step=hold_before_swap))
    qtbot.addWidget(window)
    window.show()
    values: list[int] = []
    watch_bar(window, values)

    def wait_for_row(plan: InstallPlan) -> None:
        # While the person decides, the row shows what the registry says: waiting, at 0 %.
        row = window.install_panel.row_for(plan.install_id)
        assert row is not None
        qtbot.waitUntil(
            lambda: row.step_label.text() == "Waiting for confirmation", timeout=WAIT_MS
        )
        assert row.bar.value() == 0

    seams.on_confirm.append(wait_for_row)
    operation = window.install_panel.start_install(big_zip(tmp_path / "big.zip"))
    try:
        qtbot.waitUntil(lambda: operation.row.bar.value() == 95, timeout=WAIT_MS)
        shown_before_swap.set()
        wait_finished(qtbot, window, 1)
    finally:
        shown_before_swap.set()
        window.close()
    assert operation.install_id is not None
    record = registry.get_operation(operation.install_id)
    assert record.status == "COMPLETED"
    assert values == sorted(set(values)), values
    assert 95 in values
    assert values[-1] == 100 == record.progress
    assert operation.row.bar.value() == record.progress


def test_failure_stays_in_its_row_with_the_registry_error(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip archive at all" * 10)
    drop(window, [garbage])
    wait_finished(qtbot, window, 1)
    operation = window.install_panel.operations[0]
    assert operation.install_id is not None
    record = registry.get_operation(operation.install_id)
    assert record.status == "FAILED" and record.error
    row: OperationRow = operation.row
    assert row.error_label.text() == record.error
    assert row.error_label.isVisibleTo(window)
    assert row.dismiss_button.isVisibleTo(window)
    assert not row.cancel_button.isVisibleTo(window)
    row.dismiss_button.click()
    assert window.install_panel.operations == []
    assert window.install_panel.isHidden()
    # A dismissed failure is not picked up again as somebody else's operation.
    window.install_panel.scan_external()
    assert window.install_panel.operations == []


def test_cancel_from_the_row_ends_failed_cancelled(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], seams: Seams
) -> None:
    def press_cancel(plan: InstallPlan) -> None:
        row = window.install_panel.row_for(plan.install_id)
        assert row is not None and row.cancel_button.isVisibleTo(window)
        row.cancel_button.click()

    seams.on_confirm.append(press_cancel)
    seams.answer = True  # even a yes after the cancel must not install
    operation = window.install_panel.start_install(zips["word-count"])
    wait_finished(qtbot, window, 1)
    assert operation.install_id is not None
    record = registry.get_operation(operation.install_id)
    assert record.status == "CANCELLED"
    assert record.error == "Cancelled: nothing was changed."
    assert operation.row.error_label.text() == record.error
    assert not installed(registry, WORDS)


def test_window_close_cancels_a_waiting_install(
    qtbot: QtBot, registry: Registry, zips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    reached: list[InstallPlan] = []

    def never_answered(
        parent: QWidget | None, plan: InstallPlan, on_answer: Callable[[bool], None]
    ) -> None:
        reached.append(plan)
        main_window.close()  # the person closes the window instead of answering

    monkeypatch.setattr(ConfirmDialog, "ask", staticmethod(never_answered))
    operation = main_window.install_panel.start_install(zips["hello-world"])
    qtbot.waitUntil(lambda: bool(reached), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: main_window.closed, timeout=WAIT_MS)
    assert operation.install_id is not None
    assert registry.get_operation(operation.install_id).status == "CANCELLED"
    assert not installed(registry, HELLO)


REAL_MESSAGES_ASK = messages.ask


def answer_question(button_text: str | None) -> None:
    """Once the question box is up and has the focus: press Return (its default button is
    Cancel), or click the button ``button_text``. Polled, since the box blocks the caller."""
    timer = QTimer()

    def respond() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox) or not box.isVisible():
            return
        focused = QApplication.focusWidget()
        if focused is None or focused.window() is not box:
            box.activateWindow()
            return
        timer.stop()
        if button_text is None:
            press(Qt.Key.Key_Return)
        else:
            (button,) = [b for b in box.buttons() if b.text() == button_text]
            QTest.mouseClick(button, Qt.MouseButton.LeftButton)

    timer.timeout.connect(respond)
    timer.start(10)
    ANSWERING.append(timer)


# Keeps each answering timer alive until it has answered.
ANSWERING: list[QTimer] = []


def test_quitting_during_an_install_asks_then_stops_without_waiting(
    qtbot: QtBot,
    registry: Registry,
    zips: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(messages, "ask", REAL_MESSAGES_ASK)
    armed, release = threading.Event(), threading.Event()

    def hold_while_extracting(install_id: int, step: str) -> None:
        if step == "Extracting files" and armed.is_set():
            assert release.wait(WAIT_MS / 1000)

    window = MainWindow(registry, installer=Installer(registry, on_step=hold_while_extracting))
    qtbot.addWidget(window)
    window.show()
    assert window.install_panel.start_install(zips["hello-world"])
    wait_finished(qtbot, window, 1)
    armed.set()
    operation = window.install_panel.start_install(big_zip(tmp_path / "big.zip"))
    qtbot.waitUntil(lambda: operation.row.step_label.text() == "Extracting files", timeout=WAIT_MS)
    try:
        answer_question(None)  # Return: Cancel is the default
        window.close()
        assert window.isVisible() and not window.closed
        answer_question("Stop and quit")
        window.close()
        # The window went at once, while the install is still held inside its worker.
        assert not window.isVisible() and window.install_panel.busy and not window.closed
    finally:
        release.set()
    qtbot.waitUntil(lambda: window.closed, timeout=WAIT_MS)
    assert operation.install_id is not None
    record = registry.get_operation(operation.install_id)
    assert (record.status, record.error) == ("CANCELLED", "Cancelled: nothing was changed.")
    assert [(e.id, e.version) for e in registry.list_extensions()] == [(HELLO, "1.0.0")]
    assert list(registry.paths.staging.iterdir()) == []


def test_closing_while_installs_are_recorded_and_planned_leaves_none_waiting(
    qtbot: QtBot, registry: Registry, zips: dict[str, Path], tmp_path: Path
) -> None:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    archives = [*zips.values(), big_zip(tmp_path / "big.zip")]
    for archive in archives:
        main_window.install_panel.start_install(archive)
    # At once: some are being recorded, some planned, some waiting.
    close_for_good(qtbot, main_window)
    assert main_window.install_panel.operations
    assert registry.list_operations(active_only=True) == []
    assert len(registry.list_operations()) == len(archives)
    assert not main_window.pool.busy and not main_window.long_pool.busy


# -- managing --------------------------------------------------------------------------------


def install_examples(qtbot: QtBot, window: MainWindow, zips: dict[str, Path], *names: str) -> None:
    window.install_files([zips[name] for name in names])
    wait_finished(qtbot, window, len(names))
    qtbot.waitUntil(lambda: window.extensions_model.rowCount() == len(names), timeout=WAIT_MS)


def test_the_filter_never_leaves_actions_on_a_hidden_extension(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install_examples(qtbot, window, zips, "word-count", "hello-world")
    assert window.select_extension(WORDS)
    assert window.details.record is not None and window.details.record.id == WORDS
    window.filter_edit.setFocus()
    QTest.keyClicks(window.filter_edit, "hello")
    assert window.extensions_model.rowCount() == 1
    assert window.details.record is None
    for action in (window.toggle_action, window.configure_action, window.uninstall_action):
        assert not action.isEnabled()
    # Delete on the list now has nothing to act on: Word Count is still installed.
    window.table.setFocus()
    QTest.keyClick(window.table, Qt.Key.Key_Delete)
    assert installed(registry, WORDS)


def test_tab_goes_from_the_list_to_the_details_buttons(
    qtbot: QtBot, window: MainWindow, zips: dict[str, Path]
) -> None:
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    window.activateWindow()
    window.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.table)
    reached = []
    for _ in range(12):
        press(Qt.Key.Key_Tab)
        reached.append(QApplication.focusWidget())
    assert window.details.enable_button in reached
    assert window.details.uninstall_button in reached


def test_details_show_the_selected_extension(
    qtbot: QtBot, window: MainWindow, zips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    details = window.details
    assert details.name_label.text() == "Word Count"
    assert "Read files on your computer" in details.permissions_label.text()
    assert "example.org/extensions/word-count" in details.homepage_label.text()
    assert details.path_label.full_text().endswith(WORDS)
    assert len(details.sha_label.full_text()) == 64
    opened: list[Path] = []

    def fake_open(path: Path, on_failure: Callable[[str], None], parent: object) -> None:
        opened.append(path)

    monkeypatch.setattr(desktop, "open_folder", fake_open)
    details.open_folder_button.click()
    assert opened == [Path(details.path_label.full_text())]


def test_uninstall_removes_the_row_and_the_folder(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], seams: Seams
) -> None:
    install_examples(qtbot, window, zips, "hello-world")
    folder = registry.paths.extensions / HELLO
    assert folder.is_dir()
    assert window.select_extension(HELLO)
    window.table.setFocus()
    window.uninstall_action.trigger()
    assert seams.questions == ["Uninstall Hello World?"]
    qtbot.waitUntil(lambda: window.extensions_model.rowCount() == 0, timeout=WAIT_MS)
    wait_finished(qtbot, window)
    assert not installed(registry, HELLO)
    assert not folder.exists()
    last = registry.list_operations(limit=1)[0]
    assert (last.kind, last.status, last.extension_id) == ("UNINSTALL", "COMPLETED", HELLO)


def test_uninstall_refused_in_the_question_keeps_everything(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], seams: Seams
) -> None:
    install_examples(qtbot, window, zips, "hello-world")
    seams.ask_answer = False
    window.select_extension(HELLO)
    window.details.uninstall_button.click()
    assert installed(registry, HELLO)
    assert registry.count_operations() == 1


def test_enable_and_disable_are_stored(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install_examples(qtbot, window, zips, "hello-world")
    window.select_extension(HELLO)
    assert window.details.enable_button.text() == "Disable"
    window.details.enable_button.click()
    qtbot.waitUntil(lambda: registry.get_extension(HELLO).enabled is False)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: window.details.enable_button.text() == "Enable")
    window.details.enable_button.click()
    qtbot.waitUntil(lambda: registry.get_extension(HELLO).enabled is True)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: not window.pool.busy)


def test_config_edit_is_stored_and_an_invalid_value_refused(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_examples(qtbot, window, zips, "word-count")
    window.select_extension(WORDS)
    window.details.configure_button.click()
    dialog = window.config_dialog
    assert isinstance(dialog, ConfigDialog)
    assert set(dialog.editors) == {"count_blank_lines", "max_file_mb", "encoding"}
    dialog.editors["count_blank_lines"].setProperty("checked", True)
    dialog.editors["max_file_mb"].setProperty("value", 25)
    dialog.editors["encoding"].setProperty("text", "latin-1")
    with qtbot.waitSignal(dialog.saved, timeout=WAIT_MS):
        dialog.save_button.click()
    assert registry.get_config(WORDS) == {
        "count_blank_lines": True,
        "max_file_mb": 25,
        "encoding": "latin-1",
    }

    window.details.configure_button.click()
    second = window.config_dialog
    assert isinstance(second, ConfigDialog) and second is not dialog
    assert second.values()["max_file_mb"] == 25
    monkeypatch.setattr(second, "values", lambda: {"max_file_mb": "lots"})
    second.save_button.click()
    qtbot.waitUntil(lambda: second.error_label.isVisibleTo(second), timeout=WAIT_MS)
    assert "max_file_mb" in second.error_label.text()
    assert "whole number" in second.error_label.text()
    assert registry.get_config(WORDS)["max_file_mb"] == 25
    second.restore_defaults()
    assert second.editors["max_file_mb"].property("value") == 10
    second.reject()


# -- history, other processes, tools ---------------------------------------------------------


def test_activity_lists_operations_newest_first(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], tmp_path: Path
) -> None:
    install_examples(qtbot, window, zips, "hello-world")
    garbage = tmp_path / "broken.zip"
    garbage.write_bytes(b"nope")
    window.install_files([garbage])
    wait_finished(qtbot, window, 2)
    window.install_files([zips["word-count"]])
    wait_finished(qtbot, window, 3)
    window.activity_action.trigger()
    assert window.tabs.currentWidget() is window.activity_page
    model = window.activity_view.activity_model
    qtbot.waitUntil(lambda: model.rowCount() == 3)
    ids = [model.record(row).install_id for row in range(model.rowCount())]
    assert ids == sorted(ids, reverse=True)
    files = [model.data(model.index(row, 1)) for row in range(3)]
    assert files == ["word-count.zip", "broken.zip", "hello-world.zip"]
    assert model.data(model.index(1, 4)) == "Failed"
    assert model.data(model.index(1, 5)) == model.record(1).error
    assert model.data(model.index(0, 3)) == "Install 1.2.0"
    # Installed extensions by name (their id in the tooltip); an unknown one stays empty.
    assert model.data(model.index(0, 2)) == "Word Count"
    assert model.data(model.index(0, 2), Qt.ItemDataRole.ToolTipRole) == WORDS
    assert model.data(model.index(1, 2)) == ""

    # The filter reads the matching history from the registry, by file, name or message.
    def shown_is(expected: list[int]) -> bool:
        return [model.record(row).install_id for row in range(model.rowCount())] == expected

    hello, broken, words = sorted(ids)
    for typed, expected in (
        ("BROKEN", [broken]),
        ("word count", [words]),
        ("zip archive", [broken]),
        ("", [words, broken, hello]),
    ):
        window.activity_filter.clear()
        QTest.keyClicks(window.activity_filter, typed)
        qtbot.waitUntil(functools.partial(shown_is, expected), timeout=WAIT_MS)


OTHER_PROCESS = """
import sys
from pathlib import Path
from registry import open_registry
from registry.vocabulary import OperationStatus

with open_registry(Path(sys.argv[1])) as registry:
    install_id = registry.create_operation("/somewhere/else/cli-install.zip")
    registry.update_operation(install_id, current_step="Extracting files", progress=40)
    print(install_id, flush=True)
    sys.stdin.readline()
    registry.finish_operation(install_id, OperationStatus.FAILED, "The CLI was told to stop.")
"""


def test_an_operation_from_another_process_appears(
    qtbot: QtBot, window: MainWindow, registry: Registry
) -> None:
    # Another process records an operation through the registry, as the command line does.
    with subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(registry.paths.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    ) as other:
        assert other.stdin is not None and other.stdout is not None
        install_id = int(other.stdout.readline())
        qtbot.waitUntil(lambda: window.install_panel.row_for(install_id) is not None, timeout=5000)
        row = window.install_panel.row_for(install_id)
        assert row is not None
        qtbot.waitUntil(lambda: row.bar.value() == 40)
        assert row.step_label.text() == "Extracting files"
        assert not row.cancel_button.isVisibleTo(window)
        other.stdin.write("stop\n")
        other.stdin.close()
        assert other.wait(timeout=30) == 0
    qtbot.waitUntil(lambda: row.error_label.text() == "The CLI was told to stop.")


def test_the_idle_scan_reads_operations_only_after_another_connection_commits(
    window: MainWindow, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    window.install_panel.scan_external()  # whatever the window's start left unread
    reads: list[object] = []
    listing = registry.list_operations

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return listing(*args, **kwargs)

    monkeypatch.setattr(registry, "list_operations", counted)
    for _tick in range(3):
        window.install_panel.scan_external()
    assert reads == []
    # A commit from another connection (here a second registry object on the same file).
    with open_registry(registry.paths.root) as other:
        other.finish_operation(
            other.create_operation("/elsewhere/a.zip"), OperationStatus.FAILED, "stopped"
        )
    window.install_panel.scan_external()
    assert reads, "a commit elsewhere must be looked at"
    reads.clear()
    window.install_panel.scan_external()
    assert reads == []


def test_check_registry_finds_and_repairs_an_orphan_folder(
    qtbot: QtBot, window: MainWindow, registry: Registry
) -> None:
    orphan = registry.paths.extensions / "nobody.registered"
    orphan.mkdir(parents=True)
    window.check_registry()
    dialog = window.doctor_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.findings_list.count() == 1, timeout=WAIT_MS)
    assert dialog.repair_button.isEnabled()
    with qtbot.waitSignal(dialog.repaired, timeout=WAIT_MS):
        dialog.repair_button.click()
    assert not orphan.exists()
    assert dialog.findings_list.count() == 0
    assert "Moved unregistered folder" in dialog.done_label.text()
    dialog.close()


def test_about_names_every_version(window: MainWindow, seams: Seams) -> None:
    import sqlite3

    import PySide6
    from PySide6.QtCore import qVersion

    window.show_about()
    (title, text), *_ = seams.infos
    assert title == "About Extension Manager"
    for version in (APP_VERSION, PySide6.__version__, qVersion(), sqlite3.sqlite_version):
        assert version in text


def test_shortcuts(window: MainWindow) -> None:
    actions = {action.text(): action for action in window.findChildren(type(window.install_action))}
    shortcuts = {text: action.shortcut().toString() for text, action in actions.items()}
    assert shortcuts["&Install from file…"] == "Ctrl+O"
    assert shortcuts["&Quit"] == "Ctrl+Q"
    assert shortcuts["&Uninstall…"] == "Del"
    assert shortcuts["&Refresh"] == "F5"
    assert shortcuts["&Activity"] == "Ctrl+H"


def test_the_install_button_opens_the_file_dialog_and_the_new_install_is_selected(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def pick(*args: object) -> tuple[list[str], str]:
        return [str(zips["word-count"])], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(pick))
    assert window.install_button.isVisible()
    QTest.mouseClick(window.install_button, Qt.MouseButton.LeftButton)
    wait_finished(qtbot, window, 1)
    qtbot.waitUntil(lambda: window.selected_extension_id() == WORDS, timeout=WAIT_MS)
    assert window.details.name_label.text() == "Word Count"
    assert window.details.license_label.text() == "MIT"
    assert window.statusBar().currentMessage() == "Installed Word Count 1.2.0."
    assert str(default_log_dir()) in window.about_text()


def test_dismissing_a_finished_row_while_its_worker_cleans_up_is_harmless(
    qtbot: QtBot, registry: Registry, zips: dict[str, Path]
) -> None:
    # The registry says "Upgraded" as soon as it commits; the worker then still removes the old
    # version. A row dismissed in between must not be touched when the worker reports back.
    release = threading.Event()

    def hold_after_commit(install_id: int, step: str) -> None:
        if step == COMMITTED:
            assert release.wait(WAIT_MS / 1000)

    window = MainWindow(registry, installer=Installer(registry, on_step=hold_after_commit))
    qtbot.addWidget(window)
    window.show()
    try:
        first = window.install_panel.start_install(zips["hello-world"])
        qtbot.waitUntil(lambda: first.final, timeout=WAIT_MS)
        release.set()
        wait_finished(qtbot, window, 1)
        release.clear()
        upgrade = window.install_panel.start_install(zips["hello-world-1.1"])
        qtbot.waitUntil(lambda: upgrade.final, timeout=WAIT_MS)
        assert window.long_pool.busy  # the worker is still held after its commit
        QTest.mouseClick(upgrade.row.dismiss_button, Qt.MouseButton.LeftButton)
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    finally:
        release.set()
    # Busy ends with the worker's last signal, after its report reached the dismissed row.
    qtbot.waitUntil(lambda: not window.install_panel.busy, timeout=WAIT_MS)
    assert upgrade not in window.install_panel.operations
    record = registry.get_extension(HELLO)
    assert record is not None and record.version == "1.1.0"
    close_for_good(qtbot, window)


def test_the_details_show_the_extensions_own_readme_and_load_nothing_it_points_to(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path], tmp_path: Path
) -> None:
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    readme = window.details.readme_view
    assert readme.isVisibleTo(window)
    assert readme.toPlainText().startswith("Word Count")
    assert "Count words" in readme.toPlainText()
    # Then its licence text, from the LICENSE file beside it.
    assert "Licence" in readme.toPlainText() and "MIT License" in readme.toPlainText()
    # Whatever a README refers to, on the network or on this disk, is never loaded.
    for target in ("https://example.com/tracker.png", "/etc/hostname", "icon.png"):
        assert readme.loadResource(2, QUrl(target)) is None


def test_long_values_are_shortened_whole_and_copied_whole(
    qtbot: QtBot, window: MainWindow, zips: dict[str, Path]
) -> None:
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    sha = window.details.sha_label
    full = sha.full_text()
    sha.resize(sha.fontMetrics().horizontalAdvance(full) // 2, sha.height())
    qtbot.waitUntil(lambda: sha.text() != full)
    shown = sha.text()
    assert shown.endswith("…") and full.startswith(shown[:-1])
    assert sha.fontMetrics().horizontalAdvance(shown) <= sha.width()
    assert sha.toolTip() == full
    (copy,) = sha.actions()
    copy.trigger()
    assert QApplication.clipboard().text() == full


def test_open_folder_says_so_when_no_file_manager_opens_it(
    qtbot: QtBot,
    window: MainWindow,
    zips: dict[str, Path],
    seams: Seams,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # xdg-open as it behaves on a system without a file manager: it runs, then exits 3.
    tools = tmp_path / "bin"
    tools.mkdir()
    xdg_open = tools / "xdg-open"
    xdg_open.write_text("#!/bin/sh\necho 'xdg-open: no method available for opening' >&2\nexit 3\n")
    xdg_open.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    QTest.mouseClick(window.details.open_folder_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(seams.errors), timeout=WAIT_MS)
    ((title, message),) = seams.errors
    assert title == "Cannot open the folder"
    assert "no file manager could open it" in message
    assert window.details.path_label.full_text() in message


def test_delete_asks_first_and_return_keeps_the_extension(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(messages, "ask", REAL_MESSAGES_ASK)
    install_examples(qtbot, window, zips, "word-count")
    assert window.select_extension(WORDS)
    window.activateWindow()
    window.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.table, timeout=WAIT_MS)
    answer_question(None)  # Return: Cancel is the default
    QTest.keyClick(window.table, Qt.Key.Key_Delete)
    assert installed(registry, WORDS)
    assert all(op.kind != "UNINSTALL" for op in registry.list_operations())
    window.activateWindow()
    window.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.table, timeout=WAIT_MS)
    answer_question("Uninstall")
    QTest.keyClick(window.table, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: not installed(registry, WORDS), timeout=WAIT_MS)
    # The uninstall's row finishes before the window closes: otherwise closing asks whether
    # to stop it, and nobody is there to answer.
    wait_finished(qtbot, window)
    assert not (registry.paths.extensions / WORDS).exists()
    assert registry.list_operations(limit=1)[0].kind == "UNINSTALL"
