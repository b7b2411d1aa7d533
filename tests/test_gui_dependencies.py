"""The window's side of what extensions need of each other, of settings kept at an uninstall,
and of File → Export and Import — driven like a person would: the real question boxes and the
real import plan, answered with real keys and clicks on the real X11 platform (a virtual
screen, see ``tests/conftest.py``). Every test asserts what lands in the registry.

Only the choice of a path in the file dialogs is replaced: a native file dialog is the
platform's, not what these tests are about."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from examples.build_examples import build_all
from gui.main_window import MainWindow
from gui.transfer_dialog import ImportPlanDialog
from registry.installer import Installer
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Registry
from registry.vocabulary import OperationKind, OperationStatus
from tests import test_gui_versions as versions_tests
from tests import test_gui_window as window_tests
from tests.test_gui_window import WAIT_MS, close_for_good, wait_finished
from tests.zipcraft import make_zip, minimal_manifest

application = window_tests.application
window = window_tests.window
HELLO = "example.hello-world"
WORDS = "example.word-count"
TOOLS = "example.word-tools"
# Error boxes fail the test; the quit question of a window with work running says yes.
no_unanswered_boxes = versions_tests.no_unanswered_boxes


@pytest.fixture
def zips(tmp_path: Path) -> dict[str, Path]:
    built = {path.stem: path for path in build_all(tmp_path / "zips")}
    built["word-tools"] = make_zip(
        tmp_path / "zips" / "word-tools.zip",
        {
            "manifest.json": minimal_manifest(
                id=TOOLS, name="Word Tools", requires={HELLO: ">=1.0.0"}
            )
        },
    )
    return built


def install(registry: Registry, archive: Path) -> None:
    record = Installer(registry).install(archive)
    assert record.status == OperationStatus.COMPLETED, record.error


def installed(registry: Registry, extension_id: str) -> bool:
    return registry.get_extension(extension_id) is not None


class Answer:
    """What the question box said, once answered."""

    def __init__(self) -> None:
        self.text = ""
        self.buttons: list[str] = []
        self.option: str | None = None


# Keeps each answering timer alive until it has answered.
ANSWERING: list[QTimer] = []


def answer_box(button_text: str | None, *, untick: bool = False) -> Answer:
    """Once a question box is up and has the focus: untick its check box with a click if
    asked to, then press Return (Cancel is the default) or click the button ``button_text``.
    Polled, since the box blocks the caller."""
    answer = Answer()
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
        answer.text = box.text()
        answer.buttons = [button.text() for button in box.buttons()]
        check = box.checkBox()
        answer.option = check.text() if check is not None else None
        if untick:
            assert check is not None and check.isChecked()
            QTest.mouseClick(check, Qt.MouseButton.LeftButton)
            assert not check.isChecked()
        if button_text is None:
            QTest.keyClick(QApplication.focusWidget() or box, Qt.Key.Key_Return)
        else:
            (button,) = [b for b in box.buttons() if b.text() == button_text]
            QTest.mouseClick(button, Qt.MouseButton.LeftButton)

    timer.timeout.connect(respond)
    timer.start(10)
    ANSWERING.append(timer)
    return answer


def press_delete(qtbot: QtBot, window: MainWindow, extension_id: str) -> None:
    """Select the extension and press Delete in the list, as a person does."""
    assert window.select_extension(extension_id)
    window.activateWindow()
    window.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.table, timeout=WAIT_MS)
    QTest.keyClick(window.table, Qt.Key.Key_Delete)


def click(widget: QWidget) -> None:
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


# -- settings kept at an uninstall ---------------------------------------------------------------


def test_uninstall_keeps_the_settings_when_ticked_and_a_reinstall_restores_them(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    registry.save_config(HELLO, {"greeting": "Hi"})
    window.refresh()
    answer = answer_box("Uninstall")
    press_delete(qtbot, window, HELLO)
    assert answer.option == "Keep its settings for a later install"
    qtbot.waitUntil(lambda: not installed(registry, HELLO), timeout=WAIT_MS)
    wait_finished(qtbot, window)
    kept = registry.kept_settings(HELLO)
    assert kept is not None and kept.settings == {"greeting": "Hi"}

    install(registry, zips["hello-world"])
    assert registry.get_config(HELLO)["greeting"] == "Hi"


def test_uninstall_unticked_removes_the_settings(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    registry.save_config(HELLO, {"greeting": "Hi"})
    window.refresh()
    answer_box("Uninstall", untick=True)
    press_delete(qtbot, window, HELLO)
    qtbot.waitUntil(lambda: not installed(registry, HELLO), timeout=WAIT_MS)
    wait_finished(qtbot, window)
    assert registry.kept_settings(HELLO) is None

    install(registry, zips["hello-world"])
    assert registry.get_config(HELLO)["greeting"] == "Hello"


def test_return_on_the_uninstall_question_uninstalls_nothing(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    registry.save_config(HELLO, {"greeting": "Hi"})
    window.refresh()
    answer = answer_box(None)  # Return: Cancel is the default
    press_delete(qtbot, window, HELLO)
    assert not ANSWERING[-1].isActive(), "the question was asked and answered"
    assert answer.buttons == ["Uninstall", "Cancel"]
    assert installed(registry, HELLO)
    assert all(op.kind != OperationKind.UNINSTALL for op in registry.list_operations())
    assert registry.get_config(HELLO)["greeting"] == "Hi"


# -- what others need ----------------------------------------------------------------------------


def test_uninstalling_what_another_needs_names_it_and_cancel_keeps_both(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    install(registry, zips["word-tools"])
    window.refresh()
    answer = answer_box("Cancel")
    press_delete(qtbot, window, HELLO)
    assert not ANSWERING[-1].isActive()
    assert answer.text.startswith("Word Tools needs Hello World.")
    assert "Uninstall both" in answer.buttons
    assert installed(registry, HELLO) and installed(registry, TOOLS)
    assert all(op.kind != OperationKind.UNINSTALL for op in registry.list_operations())


def test_uninstall_both_removes_the_one_that_needs_it_first_each_its_own_operation(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    install(registry, zips["word-tools"])
    window.refresh()
    answer_box("Uninstall both")
    press_delete(qtbot, window, HELLO)
    qtbot.waitUntil(lambda: not installed(registry, HELLO), timeout=WAIT_MS)
    wait_finished(qtbot, window, 2)
    assert not installed(registry, TOOLS)
    uninstalls = [op for op in registry.list_operations() if op.kind == OperationKind.UNINSTALL]
    # Newest first: Word Tools went before what it needs.
    assert [(op.extension_id, op.status) for op in uninstalls] == [
        (HELLO, OperationStatus.COMPLETED),
        (TOOLS, OperationStatus.COMPLETED),
    ]
    assert window.extensions_model.rowCount() == 0


def test_turning_off_what_another_needs_asks_and_turns_off_both(
    qtbot: QtBot, window: MainWindow, registry: Registry, zips: dict[str, Path]
) -> None:
    install(registry, zips["hello-world"])
    install(registry, zips["word-tools"])
    window.refresh()
    assert window.select_extension(HELLO)
    details = window.details
    window.activateWindow()

    answer = answer_box(None)  # Return: Cancel is the default
    click(details.enable_button)
    assert not ANSWERING[-1].isActive()
    assert answer.text.startswith("Word Tools needs Hello World.")
    assert "Turn off both" in answer.buttons
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)
    assert all(record.enabled for record in registry.list_extensions())

    answer_box("Turn off both")
    click(details.enable_button)
    qtbot.waitUntil(
        lambda: not any(record.enabled for record in registry.list_extensions()), timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: details.enable_button.text() == "Enable", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=WAIT_MS)


# -- export and import ---------------------------------------------------------------------------


def state(registry: Registry) -> list[tuple[str, str, bool, dict[str, object]]]:
    return [
        (record.id, record.version, record.enabled, dict(registry.get_config(record.id)))
        for record in registry.list_extensions()
    ]


def plan_rows(dialog: ImportPlanDialog) -> list[list[str]]:
    """The plan as the person reads it: per extension, each column's text."""
    tree = dialog.tree
    items = [tree.topLevelItem(row) for row in range(tree.topLevelItemCount())]
    return [[item.text(column) for column in range(4)] for item in items if item is not None]


def choose_path(monkeypatch: pytest.MonkeyPatch, name: str, path: Path) -> None:
    """The path a person would pick in the file dialog ``name`` (see the module's note)."""
    monkeypatch.setattr(QFileDialog, name, staticmethod(lambda *args, **kwargs: (str(path), "")))


@pytest.mark.parametrize("bundle", [False, True], ids=["set", "bundle"])
def test_export_then_import_into_an_empty_data_folder_through_the_window(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bundle: bool,
) -> None:
    install(registry, zips["hello-world"])
    install(registry, zips["word-count"])
    registry.save_config(HELLO, {"greeting": "Hi"})
    registry.set_enabled(WORDS, False)
    window.refresh()
    exported = tmp_path / ("set.zip" if bundle else "set.json")
    choose_path(monkeypatch, "getSaveFileName", exported)
    (window.export_bundle_action if bundle else window.export_action).trigger()
    qtbot.waitUntil(lambda: not window.transfers.busy, timeout=WAIT_MS)
    assert exported.is_file()
    assert "Exported 2 extension(s)" in window.statusBar().currentMessage()

    # A JSON set names archives this data folder keeps: the other folder needs them too.
    other_paths = DataPaths(tmp_path / "other")
    with open_data_folder(other_paths) as other:
        if not bundle:
            for record in registry.list_extensions():
                kept = other.paths.kept_archive(record.archive_sha256)
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(registry.paths.kept_archive(record.archive_sha256).read_bytes())
        other_window = MainWindow(other)
        qtbot.addWidget(other_window)
        other_window.show()
        try:
            choose_path(monkeypatch, "getOpenFileName", exported)
            # Connected after the window's own slot, so the row is there when this runs.
            followed: dict[int, bool] = {}
            other_window.transfers.following.connect(
                lambda install_id, _title, _cancel: followed.__setitem__(
                    install_id, other_window.install_panel.row_for(install_id) is not None
                )
            )
            other_window.import_action.trigger()
            qtbot.waitUntil(lambda: other_window.transfers.plan_dialog is not None, timeout=WAIT_MS)
            dialog = other_window.transfers.plan_dialog
            assert dialog is not None
            qtbot.waitUntil(dialog.isVisible, timeout=WAIT_MS)
            rows = {row[0]: row[2] for row in plan_rows(dialog)}
            assert rows == {"Hello World": "Install", "Word Count": "Install"}
            assert dialog.import_button.isDefault()
            assert not dialog.cancel_button.isDefault()
            click(dialog.import_button)
            qtbot.waitUntil(lambda: not other_window.transfers.busy, timeout=WAIT_MS)
            assert state(other) == state(registry)
            assert other_window.extensions_model.rowCount() == 2
            assert (
                other_window.statusBar()
                .currentMessage()
                .startswith(f"Imported {exported.name}: 2 extension(s) changed")
            )
            installs = [op for op in other.list_operations() if op.kind == OperationKind.INSTALL]
            assert len(installs) == 2
            assert all(op.status == OperationStatus.COMPLETED for op in installs)
            # Each install of the import had its own row in the panel, like a dropped file's.
            assert set(followed) == {op.install_id for op in installs}
            assert all(followed.values())
        finally:
            close_for_good(qtbot, other_window)


def test_an_import_that_downgrades_defaults_to_cancel_and_return_changes_nothing(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    zips: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(registry, zips["hello-world"])  # 1.0.0
    exported = tmp_path / "old.zip"
    window.transfers.export_to(exported, bundle=True)
    qtbot.waitUntil(lambda: not window.transfers.busy, timeout=WAIT_MS)
    install(registry, zips["hello-world-1.1"])
    window.refresh()
    choose_path(monkeypatch, "getOpenFileName", exported)
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.transfers.plan_dialog is not None, timeout=WAIT_MS)
    dialog = window.transfers.plan_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible, timeout=WAIT_MS)
    assert plan_rows(dialog)[0][:3] == [
        "Hello World",
        "1.1.0 → 1.0.0",
        "Downgrade (older than installed)",
    ]
    assert dialog.cancel_button.isDefault()
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.cancel_button, timeout=WAIT_MS)
    QTest.keyClick(QApplication.focusWidget() or dialog, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.transfers.busy, timeout=WAIT_MS)
    record = registry.get_extension(HELLO)
    assert record is not None and record.version == "1.1.0"
