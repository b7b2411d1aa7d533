"""The window's versions over time — checking for updates, updating, rolling back, holding, the
update sources and preferences, and turning on an extension that does not fit the app — driven
like a person would: real key presses and clicks on the real X11 platform (a virtual screen,
see ``tests/conftest.py``). Every test asserts what lands in the registry.

The confirmation and the questions are the real dialogs here, answered with real keys."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget
from pytestqt.qtbot import QtBot

from gui import messages
from gui.confirm_dialog import ConfirmDialog
from gui.extensions_model import AVAILABLE, NAME
from gui.main_window import MainWindow
from gui.sources_dialog import SourcesDialog
from registry import compatibility
from registry.installer import Installer
from registry.sources import classify, write_index
from registry.store import Registry
from registry.version import APP_VERSION
from registry.vocabulary import OperationKind, OperationStatus
from tests import test_gui_window as window_tests
from tests.test_gui_window import (
    WAIT_MS,
    answer_question,
    close_for_good,
    focus_default_button,
    press,
    visible_confirm_dialog,
    wait_finished,
    watch_bar,
)
from tests.update_sources import NOTES, build_notes, free_port, serve_folder

# The window tests' fixtures, used here by name: the application set up as the app sets it up
# (for every test), and a window on the test's registry, shown, and closed for good afterwards.
application = window_tests.application
window = window_tests.window
STOP_AND_QUIT = "Stop and quit?"


@pytest.fixture(autouse=True)
def no_unanswered_boxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A box nobody answers would hold the test up for good: an error box is recorded and
    fails the test, and the question on closing a window with operations still running (a
    failed test's) says yes; every other question is the real one."""
    shown: list[str] = []
    monkeypatch.setattr(
        messages, "show_error", lambda parent, title, text, details="": shown.append(text)
    )
    real_ask = messages.ask

    def ask(parent: QWidget | None, title: str, text: str, confirm_label: str = "OK") -> bool:
        return title == STOP_AND_QUIT or real_ask(parent, title, text, confirm_label)

    monkeypatch.setattr(messages, "ask", ask)
    yield shown
    assert shown == []


# -- building the situation --------------------------------------------------------------------


def install(registry: Registry, archive: Path, app_version: str = APP_VERSION) -> None:
    record = Installer(registry, app_version).install(archive)
    assert record.status == OperationStatus.COMPLETED, record.error


def notes_source(registry: Registry, tmp_path: Path) -> str:
    """Notes 1.0.0 installed from a file by hand, and a folder source holding 1.1.0 and a 2.0.0
    that needs a newer app; returns the source's location as stored."""
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    folder = tmp_path / "source"
    build_notes(folder, "1.1.0")
    build_notes(folder, "2.0.0", min_app_version="3.1.0")
    location, kind = classify(str(folder))
    registry.add_source(location, kind)
    return location


def activate(qtbot: QtBot, widget: QWidget) -> None:
    """Bring the window to the front, as a click into it would, so that its shortcuts work."""
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget.window(), timeout=WAIT_MS)


def shortcut(qtbot: QtBot, widget: QWidget, key: Qt.Key) -> None:
    """Ctrl+``key`` on the focused widget of ``widget``'s window."""
    activate(qtbot, widget)
    focused = QApplication.focusWidget() or widget
    QTest.keyClick(focused, key, Qt.KeyboardModifier.ControlModifier)


def click(widget: QWidget) -> None:
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


def click_row(window: MainWindow, extension_id: str) -> None:
    row = window.extensions_model.row_of(extension_id)
    assert row is not None, f"{extension_id} is not in the list"
    rect = window.table.visualRect(window.extensions_model.index(row, NAME))
    QTest.mouseClick(window.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.selected_extension_id() == extension_id


def update_column(window: MainWindow, extension_id: str) -> str | None:
    row = window.extensions_model.row_of(extension_id)
    if row is None:
        return None
    text = window.extensions_model.data(window.extensions_model.index(row, AVAILABLE))
    return str(text)


def check_for_updates(qtbot: QtBot, window: MainWindow) -> None:
    """Ctrl+U, then wait until the check has reported."""
    shortcut(qtbot, window.table, Qt.Key.Key_U)
    qtbot.waitUntil(lambda: not window.update_checks.busy, timeout=WAIT_MS)
    qtbot.waitUntil(window.check_updates_action.isEnabled, timeout=WAIT_MS)


def answer_confirmation(qtbot: QtBot, window: MainWindow, key: Qt.Key) -> None:
    dialog = visible_confirm_dialog(qtbot, window)
    focus_default_button(qtbot, dialog)
    press(key)


# -- checking and updating ---------------------------------------------------------------------


def test_check_then_update_from_a_folder_source(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    location = notes_source(registry, tmp_path)
    window.refresh()
    assert window.table.isColumnHidden(AVAILABLE), "nothing is known before a check"
    check_for_updates(qtbot, window)
    assert not window.table.isColumnHidden(AVAILABLE)
    assert update_column(window, NOTES) == "1.1.0 available"
    assert window.updates_bar.status_label.text().startswith("1 update available")
    assert not window.updates_bar.problems_label.isVisible()

    click_row(window, NOTES)
    versions = window.details.versions
    assert "2.0.0 needs Extension Manager ≥ 3.1.0" in versions.update_label.text()
    assert versions.update_button.text() == "Update to 1.1.0"
    click(window.updates_bar.update_button)
    dialog = visible_confirm_dialog(qtbot, window)
    assert dialog.change_label.text() == "Upgrade 1.0.0 → 1.1.0"
    # It was installed from a file by hand: the confirmation says a source's version replaces it.
    assert "installed by hand" in dialog.notes_label.text()
    assert location in dialog.notes_label.text()
    answer_confirmation(qtbot, window, Qt.Key.Key_Return)
    wait_finished(qtbot, window, 1)

    record = registry.get_extension(NOTES)
    assert record is not None
    assert (record.version, record.origin_source) == ("1.1.0", location)
    last = registry.list_operations(limit=1)[0]
    assert (last.kind, last.status) == (OperationKind.UPGRADE, OperationStatus.COMPLETED)
    # Decided again without asking the source: 2.0.0 is newer but does not fit this app.
    qtbot.waitUntil(lambda: update_column(window, NOTES) == "2.0.0 does not fit", timeout=WAIT_MS)
    assert not window.update_action.isEnabled()
    assert list(registry.paths.staging.iterdir()) == []


def test_a_declined_update_changes_nothing_and_leaves_no_download(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    notes_source(registry, tmp_path)
    window.refresh()
    check_for_updates(qtbot, window)
    click_row(window, NOTES)
    click(window.details.versions.update_button)
    answer_confirmation(qtbot, window, Qt.Key.Key_Escape)
    wait_finished(qtbot, window, 1)
    record = registry.get_extension(NOTES)
    assert record is not None and record.version == "1.0.0"
    assert registry.list_operations(limit=1)[0].status == OperationStatus.CANCELLED
    assert list(registry.paths.staging.iterdir()) == []


def test_update_all_confirms_each_in_turn(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    notes_source(registry, tmp_path)
    other = "example.sketch"
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0", extension_id=other))
    build_notes(tmp_path / "source", "1.0.1", extension_id=other)
    window.refresh()
    check_for_updates(qtbot, window)
    assert window.updates_bar.status_label.text().startswith("2 updates available")
    # The Updates view lists only what can be updated.
    click(window.updates_bar.show_updates_button)
    assert window.show_updates_action.isChecked()
    assert window.extensions_model.rowCount() == 2
    click(window.updates_bar.update_all_button)
    answered: list[ConfirmDialog] = []
    for _ in range(2):
        # The next one may be up the moment the last is answered: told apart by identity.
        qtbot.waitUntil(
            lambda: window.install_panel.confirm_dialog not in (None, *answered),
            timeout=WAIT_MS,
        )
        dialog = visible_confirm_dialog(qtbot, window)
        answered.append(dialog)
        focus_default_button(qtbot, dialog)
        press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    assert {dialog.plan.manifest.id for dialog in answered} == {NOTES, other}
    versions = {e.id: e.version for e in registry.list_extensions()}
    assert versions == {NOTES: "1.1.0", other: "1.0.1"}
    # Nothing is left to update: the Updates view is empty.
    qtbot.waitUntil(lambda: window.extensions_model.rowCount() == 0, timeout=WAIT_MS)
    click(window.updates_bar.show_updates_button)
    assert window.extensions_model.rowCount() == 2


def test_an_update_over_http_shows_the_download_then_the_install_in_one_row(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    folder = tmp_path / "published"
    build_notes(folder, "1.1.0", padding=1024 * 1024)
    write_index(folder)
    shown: list[int] = []
    watch_bar(window, shown)
    # Sixteen pieces a twentieth of a second apart: the row is read many times meanwhile.
    with serve_folder(folder, chunk_bytes=64 * 1024, pause_seconds=0.05) as base:
        registry.add_source(f"{base}index.json", "INDEX")
        window.refresh()
        check_for_updates(qtbot, window)
        click_row(window, NOTES)
        click(window.updates_bar.update_button)
        (operation,) = window.install_panel.operations
        row = operation.row
        # The step and the bar come from the operation's row in the registry: its download
        # bytes while downloading.
        qtbot.waitUntil(lambda: row.step_label.text().startswith("Downloading"), timeout=WAIT_MS)
        assert re.fullmatch(r"Downloading .+ of 1\.0 MiB", row.step_label.text())
        answer_confirmation(qtbot, window, Qt.Key.Key_Return)
        wait_finished(qtbot, window, 1)
    # Filled by the download, back to empty, then filled by the install.
    restart = shown.index(0)
    assert 0 < max(shown[:restart]) <= 100 and shown[-1] == 100
    assert shown[restart:] == sorted(shown[restart:])
    assert row.step_label.text() == "Upgraded"
    record = registry.get_extension(NOTES)
    assert record is not None and record.version == "1.1.0"
    assert record.origin == f"{base}example.notes-1.1.0.zip"


# -- rolling back and holding ------------------------------------------------------------------


def test_roll_back_asks_escape_keeps_return_restores_then_release(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    registry.set_config(NOTES, {"color": "green"})
    install(registry, build_notes(tmp_path / "by-hand", "1.1.0"))
    registry.set_config(NOTES, {"color": "red"})
    window.refresh()
    click_row(window, NOTES)
    versions = window.details.versions
    button = versions.rollback_button
    assert button.isEnabled() and button.text() == "Roll back to 1.0.0 (installed today)"
    kept = [versions.kept_model.data(versions.kept_model.index(r, 0)) for r in range(2)]
    assert kept == ["1.1.0 (installed)", "1.0.0"]

    click(button)
    dialog = visible_confirm_dialog(qtbot, window)
    assert dialog.change_label.text() == "Roll back 1.1.0 → 1.0.0, with the settings it had"
    assert "held" in dialog.notes_label.text()
    answer_confirmation(qtbot, window, Qt.Key.Key_Escape)
    wait_finished(qtbot, window, 1)
    record = registry.get_extension(NOTES)
    assert record is not None and (record.version, record.held) == ("1.1.0", False)
    assert registry.get_config(NOTES) == {"color": "red"}
    last = registry.list_operations(limit=1)[0]
    assert (last.kind, last.status) == (OperationKind.ROLLBACK, OperationStatus.CANCELLED)

    click(button)
    answer_confirmation(qtbot, window, Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    record = registry.get_extension(NOTES)
    assert record is not None and (record.version, record.held) == ("1.0.0", True)
    assert registry.get_config(NOTES) == {"color": "green"}
    assert record.hold_reason is not None and "1.1.0" in record.hold_reason
    qtbot.waitUntil(lambda: versions.hold_button.text() == "Release", timeout=WAIT_MS)
    assert record.hold_reason in versions.hold_label.text()

    click(versions.hold_button)
    qtbot.waitUntil(lambda: not registry.get_extension(NOTES).held, timeout=WAIT_MS)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: versions.hold_button.text() == "Hold", timeout=WAIT_MS)
    # And hold again, by hand: a reason is recorded.
    click(versions.hold_button)
    qtbot.waitUntil(lambda: registry.get_extension(NOTES).held, timeout=WAIT_MS)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)

    # The history names the rollback in words, and the kept copy as such.
    window.activity_action.trigger()
    model = window.activity_view.activity_model
    qtbot.waitUntil(lambda: model.rowCount() == 4, timeout=WAIT_MS)
    assert model.data(model.index(0, 3)) == "Roll back 1.1.0 → 1.0.0"
    assert model.data(model.index(0, 1)) == "Kept copy"


def test_nothing_to_roll_back_to_says_why(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    window.refresh()
    click_row(window, NOTES)
    button = window.details.versions.rollback_button
    assert not button.isEnabled()
    assert "no earlier version kept" in button.toolTip()
    assert not window.rollback_action.isEnabled()

    install(registry, build_notes(tmp_path / "by-hand", "1.1.0"))
    (earlier,) = [v for v in registry.list_kept_versions(NOTES) if v.version == "1.0.0"]
    registry.paths.kept_archive(earlier.archive_sha256).unlink()
    window.refresh()
    assert not button.isEnabled()
    assert "is missing" in button.toolTip()
    size = window.details.versions.kept_model.index(1, 2)
    assert window.details.versions.kept_model.data(size) == "Archive missing"


# -- sources and preferences -------------------------------------------------------------------


def open_sources_dialog(qtbot: QtBot, window: MainWindow) -> SourcesDialog:
    """Ctrl+, and wait until the dialog has the focus (in its address box)."""
    shortcut(qtbot, window.table, Qt.Key.Key_Comma)
    qtbot.waitUntil(
        lambda: window.sources_dialog is not None and window.sources_dialog.isVisible(),
        timeout=WAIT_MS,
    )
    dialog = window.sources_dialog
    assert dialog is not None
    activate(qtbot, dialog)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.address_edit, timeout=WAIT_MS)
    return dialog


def wait_closed(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.sources_dialog is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)


def test_sources_dialog_adds_typed_folders_refuses_others_and_cancels(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for folder in (first, second, third):
        folder.mkdir()

    # Typed, then Return: added.
    dialog = open_sources_dialog(qtbot, window)
    QTest.keyClicks(dialog.address_edit, str(first))
    press(Qt.Key.Key_Return)
    wait_closed(qtbot, window)
    assert [(s.location, s.kind) for s in registry.list_sources()] == [(str(first), "FOLDER")]

    # Something that is neither a folder nor an address: said under the box, nothing added,
    # and the dialog stays; Escape then closes it.
    dialog = open_sources_dialog(qtbot, window)
    QTest.keyClicks(dialog.address_edit, str(tmp_path / "not-there"))
    press(Qt.Key.Key_Return)
    assert dialog.isVisible() and dialog.error_label.isVisible()
    assert dialog.error_label.text().startswith("There is no folder or index.json at")
    assert QApplication.focusWidget() is dialog.address_edit
    press(Qt.Key.Key_Escape)
    wait_closed(qtbot, window)
    assert [s.location for s in registry.list_sources()] == [str(first)]

    # A good folder typed, then Escape: nothing is added.
    dialog = open_sources_dialog(qtbot, window)
    QTest.keyClicks(dialog.address_edit, str(second))
    press(Qt.Key.Key_Escape)
    wait_closed(qtbot, window)
    assert [s.location for s in registry.list_sources()] == [str(first)]

    # Typed, then OK clicked; one picked with Add folder…; the first one removed.
    dialog = open_sources_dialog(qtbot, window)
    QTest.keyClicks(dialog.address_edit, str(second))
    click(dialog.add_button)
    assert dialog.address_edit.text() == ""
    picked = pytest.MonkeyPatch()
    picked.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(third))
    try:
        click(dialog.add_folder_button)
    finally:
        picked.undo()
    first_item = dialog.sources_list.topLevelItem(0)
    assert first_item is not None and first_item.text(0) == str(first)
    where = dialog.sources_list.visualItemRect(first_item).center()
    QTest.mouseClick(dialog.sources_list.viewport(), Qt.MouseButton.LeftButton, pos=where)
    click(dialog.remove_button)
    assert list(dialog.locations()) == [str(second), str(third)]
    assert registry.list_sources()[0].location == str(first), "nothing is stored before OK"
    click(dialog.ok_button)
    wait_closed(qtbot, window)
    assert [s.location for s in registry.list_sources()] == [str(second), str(third)]


def test_sources_dialog_adds_an_address_and_stores_the_preferences(
    qtbot: QtBot, window: MainWindow, registry: Registry
) -> None:
    before = registry.preferences()
    dialog = open_sources_dialog(qtbot, window)
    QTest.keyClicks(dialog.address_edit, "https://extensions.example.org/stable/")
    dialog.keep_versions_spin.setFocus()
    qtbot.waitUntil(lambda: dialog.keep_versions_spin.hasFocus())
    QTest.keyClick(dialog.keep_versions_spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(dialog.keep_versions_spin, "5")
    dialog.check_at_launch_box.setFocus()
    qtbot.waitUntil(lambda: dialog.check_at_launch_box.hasFocus())
    press(Qt.Key.Key_Space)
    press(Qt.Key.Key_Return)
    wait_closed(qtbot, window)
    (source,) = registry.list_sources()
    assert (source.location, source.kind) == (
        "https://extensions.example.org/stable/index.json",
        "INDEX",
    )
    # The size was not touched: stored exactly as it was, not rounded through the spin box.
    assert registry.preferences() == dataclasses.replace(
        before, keep_versions=5, check_at_launch=True
    )


def test_check_for_updates_without_sources_offers_to_add_one(
    qtbot: QtBot, window: MainWindow, registry: Registry
) -> None:
    shortcut(qtbot, window.table, Qt.Key.Key_U)
    bar = window.updates_bar
    assert bar.isVisible() and "no update sources" in bar.status_label.text()
    assert bar.sources_button.isVisible() and not bar.update_all_button.isVisible()
    click(bar.sources_button)
    qtbot.waitUntil(lambda: window.sources_dialog is not None, timeout=WAIT_MS)
    dialog = window.sources_dialog
    assert dialog is not None
    dialog.reject()
    wait_closed(qtbot, window)
    assert registry.list_sources() == []


# -- sources that do not answer ----------------------------------------------------------------


def test_an_unreachable_source_is_said_plainly_and_the_window_stays_usable(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    address = f"http://127.0.0.1:{free_port()}/index.json"  # nobody listens there
    registry.add_source(address, "INDEX")
    window.refresh()
    check_for_updates(qtbot, window)
    bar = window.updates_bar
    assert bar.status_label.text().startswith("No update source could be read")
    problem = registry.list_sources()[0].last_error
    assert problem is not None and problem.startswith(f"Could not reach {address}")
    assert "Traceback" not in problem and "Errno" not in problem
    # What went wrong in the bar, what to do about it in its tooltip.
    assert bar.problems_label.isVisible()
    assert bar.problems_label.full_text() == problem[: problem.index(". ") + 1]
    assert bar.problems_label.toolTip() == problem
    assert window.table.isColumnHidden(AVAILABLE), "nothing is known, so nothing is shown"
    # Everything else goes on working.
    click_row(window, NOTES)
    assert "no update source could be read" in window.details.versions.update_label.text()
    click(window.details.enable_button)
    qtbot.waitUntil(lambda: not registry.get_extension(NOTES).enabled, timeout=WAIT_MS)  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """A port that takes connections and never answers: a check waits on it until it closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/index.json", listener
    finally:
        listener.close()


def test_the_window_is_usable_while_a_check_waits_and_closes_after_it(
    qtbot: QtBot,
    registry: Registry,
    tmp_path: Path,
    silent_server: tuple[str, socket.socket],
) -> None:
    address, listener = silent_server
    install(registry, build_notes(tmp_path / "by-hand", "1.0.0"))
    registry.add_source(address, "INDEX")
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    shortcut(qtbot, main_window.table, Qt.Key.Key_U)
    assert main_window.update_checks.running
    assert main_window.updates_bar.status_label.text().startswith("Checking")
    # While the source keeps the check waiting: filter, select, turn off, all as usual.
    main_window.filter_edit.setFocus()
    QTest.keyClicks(main_window.filter_edit, "notes")
    assert main_window.extensions_model.rowCount() == 1
    click_row(main_window, NOTES)
    click(main_window.details.enable_button)
    qtbot.waitUntil(lambda: not registry.get_extension(NOTES).enabled, timeout=WAIT_MS)  # type: ignore[union-attr]
    assert main_window.update_checks.running
    # Closing waits for the check (it cannot be stopped) without keeping the window up.
    main_window.close()
    assert not main_window.isVisible() and not main_window.closed
    listener.close()  # the waiting connection is reset: the check ends with a problem
    qtbot.waitUntil(lambda: main_window.closed, timeout=WAIT_MS)
    assert registry.list_sources()[0].last_error is not None


# -- at launch ---------------------------------------------------------------------------------


def open_window(qtbot: QtBot, registry: Registry) -> MainWindow:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    return main_window


def test_no_source_is_contacted_at_launch_unless_asked(
    qtbot: QtBot, registry: Registry, tmp_path: Path
) -> None:
    notes_source(registry, tmp_path)
    main_window = open_window(qtbot, registry)
    try:
        qtbot.wait(500)  # whatever the window would do on its own, it has done by now
        assert not main_window.update_checks.running and main_window.update_checks.report is None
        assert registry.list_sources()[0].checked_at is None
        # The bar says how it works, and offers the check.
        bar = main_window.updates_bar
        assert bar.status_label.text() == "Not checked for updates yet."
        assert bar.check_button.isVisible() and not bar.update_all_button.isVisible()
        click(bar.check_button)
        qtbot.waitUntil(lambda: update_column(main_window, NOTES) == "1.1.0 available")
        assert bar.show_updates_button.isVisible() and bar.update_all_button.isVisible()
    finally:
        close_for_good(qtbot, main_window)

    registry.set_preferences(dataclasses.replace(registry.preferences(), check_at_launch=True))
    checked = registry.list_sources()[0].checked_at
    main_window = open_window(qtbot, registry)
    try:
        qtbot.waitUntil(lambda: update_column(main_window, NOTES) == "1.1.0 available")
        assert registry.list_sources()[0].checked_at != checked
    finally:
        close_for_good(qtbot, main_window)


# -- an extension that does not fit the app ----------------------------------------------------


def test_turning_on_an_extension_that_does_not_fit_asks_first(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    # Installed under an older app; this app's launch turned it off (recorded), as it does.
    archive = build_notes(tmp_path / "by-hand", "1.0.0", max_app_version=APP_VERSION)
    install(registry, archive, app_version="0.0.1")
    registry.set_state(compatibility.LAST_APP_VERSION, "0.0.1")
    assert compatibility.recheck(registry, APP_VERSION)
    needs = f"Extension Manager < {APP_VERSION}"
    window.refresh()
    click_row(window, NOTES)
    details = window.details
    assert details.enable_button.text() == "Enable"
    assert f"needs {needs}" in details.state_label.text()

    answer_question(None)  # Return: Cancel is the default
    click(details.enable_button)
    assert not window_tests.ANSWERING[-1].isActive(), "the question was asked and answered"
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)
    record = registry.get_extension(NOTES)
    assert record is not None and not record.enabled and record.compatibility_override is None
    assert registry.list_operations(limit=1)[0].kind == OperationKind.DISABLE

    answer_question("Turn on anyway")
    click(details.enable_button)
    assert not window_tests.ANSWERING[-1].isActive()
    qtbot.waitUntil(lambda: registry.get_extension(NOTES).enabled, timeout=WAIT_MS)  # type: ignore[union-attr]
    record = registry.get_extension(NOTES)
    assert record is not None and record.compatibility_override == APP_VERSION
    last = registry.list_operations(limit=1)[0]
    assert (last.kind, last.status) == (OperationKind.ENABLE, OperationStatus.COMPLETED)
    qtbot.waitUntil(lambda: details.enable_button.text() == "Disable", timeout=WAIT_MS)
    assert "turned on although it needs" in details.state_label.text()

    # The history says what happened in words: turned off, turned on, and why.
    window.activity_action.trigger()
    model = window.activity_view.activity_model
    qtbot.waitUntil(lambda: model.rowCount() == 3, timeout=WAIT_MS)
    assert [model.data(model.index(row, 3)) for row in range(2)] == [
        "Turn on 1.0.0",
        "Turn off 1.0.0",
    ]
    assert needs in model.data(model.index(0, 5))
    assert needs in model.data(model.index(1, 5))
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)
