"""Many files at once and installing from inside, in the window: the real batch and single
confirmations answered with real keys and clicks, and what lands in the registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QApplication,
    QPushButton,
    QStyle,
    QStyleOptionViewItem,
    QWidget,
)
from pytestqt.qtbot import QtBot

from gui import messages
from gui.app import ensure_application
from gui.batch_dialog import NAME, BatchDialog
from gui.confirm_dialog import ConfirmDialog
from gui.main_window import MainWindow
from registry.installer import Installer
from registry.store import Registry
from registry.vocabulary import OperationStatus
from tests.test_gui_window import (
    WAIT_MS,
    close_for_good,
    drag_enter,
    drop,
    mime_for,
    press,
    visible_confirm_dialog,
    wait_finished,
)
from tests.zipcraft import make_zip, minimal_manifest

CONFIGURED = {"greeting": "hello", "count": 3}


@pytest.fixture(autouse=True)
def application(qapp: QApplication) -> Iterator[QApplication]:
    yield ensure_application()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture(autouse=True)
def stop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the window while something runs asks first: say yes (not what is tested)."""
    monkeypatch.setattr(messages, "ask", lambda *args, **kwargs: True)


@pytest.fixture
def window(qtbot: QtBot, registry: Registry) -> Iterator[MainWindow]:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    yield main_window
    close_for_good(qtbot, main_window)


def extension(path: Path, extension_id: str, version: str = "1.0.0", **fields: Any) -> Path:
    name = fields.pop("name", extension_id.split(".")[-1].title())
    manifest = minimal_manifest(id=extension_id, name=name, version=version, **fields)
    return make_zip(path, {"manifest.json": manifest, "main.py": b"print('hi')\n"})


def several(tmp_path: Path, count: int) -> list[Path]:
    names = ["alpha", "bravo", "charlie", "delta", "echo"][:count]
    return [extension(tmp_path / f"{name}.zip", f"example.{name}") for name in names]


def batch_dialog(qtbot: QtBot, window: MainWindow) -> BatchDialog:
    """Wait until the install panel shows the batch dialog with the focus in it."""
    panel = window.install_panel
    qtbot.waitUntil(
        lambda: panel.batch_dialog is not None and panel.batch_dialog.isVisible(),
        timeout=WAIT_MS,
    )
    dialog = panel.batch_dialog
    assert dialog is not None
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.table)
    return dialog


def click(widget: QWidget, at: QPoint | None = None) -> None:
    where = at if at is not None else widget.rect().center()
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, where)


def click_tick(dialog: BatchDialog, install_id: int) -> None:
    """Click the tick box of a file's row, where the style draws it."""
    table = dialog.table
    item = table.item(dialog.row_of(install_id), NAME)
    assert item is not None
    option = QStyleOptionViewItem()
    option.rect = table.visualItemRect(item)
    option.features |= QStyleOptionViewItem.ViewItemFeature.HasCheckIndicator
    option.state |= QStyle.StateFlag.State_Enabled
    box = table.style().subElementRect(
        QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, table
    )
    click(table.viewport(), box.center())


def statuses(registry: Registry) -> dict[str, str]:
    """Each file's last operation status, by file name."""
    result: dict[str, str] = {}
    for record in reversed(registry.list_operations()):
        result[Path(record.archive_path).name] = record.status
    return result


def installed(registry: Registry) -> set[str]:
    return {record.id for record in registry.list_extensions()}


def plan_ids(dialog: BatchDialog) -> dict[str, int]:
    return {plan.manifest.id: plan.install_id for plan in dialog.choice.plans}


# -- one confirmation for many files ---------------------------------------------------------


def test_five_files_with_one_bad_are_one_dialog_four_installs_and_one_reason(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    files = several(tmp_path, 4)
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"this is not a zip at all")
    drop(window, [*files[:2], bad, *files[2:]])
    # A row per file, made a few per event-loop turn.
    qtbot.waitUntil(lambda: len(window.install_panel.operations) == 5, timeout=WAIT_MS)
    dialog = batch_dialog(qtbot, window)
    # The one dialog: no single confirmation is shown beside it.
    assert window.install_panel.confirm_dialog is None
    assert dialog.table.rowCount() == 4
    assert all(dialog.is_shown(install_id) for install_id in plan_ids(dialog).values())
    assert dialog.install_button.text() == "Install 4"
    assert dialog.refused_label.isVisible()
    assert "broken.zip" in dialog.refused_label.text()
    assert dialog.default_button is dialog.install_button
    press(Qt.Key.Key_Return)  # the table has the focus: Return presses Install
    wait_finished(qtbot, window, 5)
    assert installed(registry) == {
        "example.alpha",
        "example.bravo",
        "example.charlie",
        "example.delta",
    }
    done = statuses(registry)
    assert done.pop("broken.zip") == OperationStatus.FAILED
    assert set(done.values()) == {OperationStatus.COMPLETED}
    failed = [r for r in registry.list_operations() if r.status == OperationStatus.FAILED]
    assert len(failed) == 1 and failed[0].error


def test_a_row_unticked_with_the_mouse_is_cancelled_and_the_others_install(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    files = several(tmp_path, 4)
    drop(window, files)
    dialog = batch_dialog(qtbot, window)
    bravo = plan_ids(dialog)["example.bravo"]
    click_tick(dialog, bravo)
    assert bravo not in dialog.choice.ticked
    assert dialog.install_button.text() == "Install 3"
    click_tick(dialog, bravo)  # and back
    assert dialog.install_button.text() == "Install 4"
    click_tick(dialog, bravo)
    assert dialog.install_button.text() == "Install 3"
    click(dialog.install_button)
    wait_finished(qtbot, window, 4)
    assert installed(registry) == {"example.alpha", "example.charlie", "example.delta"}
    assert statuses(registry) == {
        "alpha.zip": OperationStatus.COMPLETED,
        "bravo.zip": OperationStatus.CANCELLED,
        "charlie.zip": OperationStatus.COMPLETED,
        "delta.zip": OperationStatus.COMPLETED,
    }


def test_escape_installs_nothing_and_cancels_every_file(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    drop(window, several(tmp_path, 3))
    batch_dialog(qtbot, window)
    press(Qt.Key.Key_Escape)
    wait_finished(qtbot, window, 3)
    assert installed(registry) == set()
    assert set(statuses(registry).values()) == {OperationStatus.CANCELLED}
    assert list(registry.paths.staging.iterdir()) == []


def test_tab_and_space_tick_with_the_keyboard(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    drop(window, several(tmp_path, 2))
    dialog = batch_dialog(qtbot, window)
    press(Qt.Key.Key_Down)
    press(Qt.Key.Key_Space)  # unticks the second row
    assert len(dialog.choice.ticked) == 1
    assert dialog.install_button.text() == "Install 1"
    press(Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is dialog.install_button
    press(Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is dialog.cancel_button
    press(Qt.Key.Key_Backtab)
    press(Qt.Key.Key_Space)  # presses Install
    wait_finished(qtbot, window, 2)
    assert installed(registry) == {"example.alpha"}


def test_what_is_needed_installs_first_and_unticking_it_holds_back_what_needs_it(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    needed = extension(tmp_path / "a.zip", "example.a", "1.3.0")
    needing = extension(tmp_path / "b.zip", "example.b", requires={"example.a": "^1.2"})
    drop(window, [needing, needed])  # in the wrong order on purpose
    dialog = batch_dialog(qtbot, window)
    ids = plan_ids(dialog)
    assert dialog.is_shown(ids["example.b"]) and not dialog.refused_label.isVisible()
    notes = dialog.table.item(dialog.row_of(ids["example.b"]), 3)
    assert notes is not None and "Needs example.a ^1.2" in notes.text()
    click_tick(dialog, ids["example.a"])
    # B moves down to "not installed", saying why; and back when A is ticked again.
    assert not dialog.is_shown(ids["example.b"])
    assert dialog.refused_label.isVisible() and "b.zip" in dialog.refused_label.text()
    assert "example.a" in dialog.refused_label.text()
    assert dialog.install_button.text() == "Install"
    assert not dialog.install_button.isEnabled()
    click_tick(dialog, ids["example.a"])
    assert dialog.is_shown(ids["example.b"]) and not dialog.refused_label.isVisible()
    assert dialog.install_button.text() == "Install 2"
    click(dialog.install_button)
    wait_finished(qtbot, window, 2)
    assert installed(registry) == {"example.a", "example.b"}
    done = sorted(registry.list_operations(), key=lambda record: record.ended_at or "")
    assert [record.extension_id for record in done] == ["example.a", "example.b"]


def test_installing_without_what_is_needed_refuses_it_with_the_reason(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    needed = extension(tmp_path / "a.zip", "example.a", "1.3.0")
    needing = extension(tmp_path / "b.zip", "example.b", requires={"example.a": "^1.2"})
    other = extension(tmp_path / "c.zip", "example.c")
    drop(window, [needing, needed, other])
    dialog = batch_dialog(qtbot, window)
    click_tick(dialog, plan_ids(dialog)["example.a"])
    assert dialog.install_button.text() == "Install 1"
    click(dialog.install_button)
    wait_finished(qtbot, window, 3)
    assert installed(registry) == {"example.c"}
    by_file = {Path(r.archive_path).name: r for r in registry.list_operations()}
    assert by_file["a.zip"].status == OperationStatus.CANCELLED
    assert by_file["b.zip"].status == OperationStatus.FAILED
    assert "example.a" in (by_file["b.zip"].error or "")


def test_with_a_downgrade_ticked_return_says_no(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    newer = extension(tmp_path / "hello-1.1.zip", "example.hello", "1.1.0")
    assert Installer(registry).install(newer, confirm=lambda plan: True).status == "COMPLETED"
    older = extension(tmp_path / "hello-1.0.zip", "example.hello", "1.0.0")
    drop(window, [older, *several(tmp_path, 1)])
    dialog = batch_dialog(qtbot, window)
    assert dialog.default_button is dialog.cancel_button
    assert not dialog.install_button.isDefault()
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    assert {r.id: r.version for r in registry.list_extensions()} == {"example.hello": "1.1.0"}
    # Unticking the downgrade makes Install the default again.
    drop(window, [older, tmp_path / "alpha.zip"])
    dialog = batch_dialog(qtbot, window)
    click_tick(dialog, plan_ids(dialog)["example.hello"])
    assert dialog.default_button is dialog.install_button
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 2)
    assert installed(registry) == {"example.hello", "example.alpha"}
    record = registry.get_extension("example.hello")
    assert record is not None and record.version == "1.1.0"


def test_one_good_file_with_a_refused_one_is_confirmed_in_the_batch_dialog(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"not a zip")
    drop(window, [*several(tmp_path, 1), bad])
    dialog = batch_dialog(qtbot, window)
    assert "broken.zip" in dialog.refused_label.text()
    assert dialog.install_button.text() == "Install 1"
    click(dialog.install_button)
    wait_finished(qtbot, window, 2)
    assert installed(registry) == {"example.alpha"}


# -- install from inside ---------------------------------------------------------------------


def zip_of_zips(tmp_path: Path) -> Path:
    inner = extension(tmp_path / "real.zip", "example.hello", name="Hello World")
    return make_zip(tmp_path / "download.zip", {"Plugin/real.zip": inner.read_bytes()})


def test_a_refused_zip_of_zips_offers_its_inner_extension_on_its_row(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    outer = zip_of_zips(tmp_path)
    drop(window, [outer])
    wait_finished(qtbot, window, 1)
    (operation,) = window.install_panel.operations
    assert operation.record is not None and operation.record.status == OperationStatus.FAILED
    assert "Plugin/real.zip" in operation.row.error_label.text()
    (button,) = operation.row.offer_buttons
    assert button.text() == "Install Hello World 1.0.0 from Plugin/real.zip"
    qtbot.waitUntil(button.isVisible)
    click(button)
    dialog = visible_confirm_dialog(qtbot, window)
    assert dialog.plan.from_member == "Plugin/real.zip"
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.default_button)
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 1)
    assert installed(registry) == {"example.hello"}
    last = registry.list_operations(limit=1)[0]
    assert (last.status, last.from_member) == (OperationStatus.COMPLETED, "Plugin/real.zip")
    assert Path(last.archive_path) == outer


def test_the_batch_dialog_installs_from_inside_a_refused_file(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    outer = zip_of_zips(tmp_path)
    drop(window, [outer, *several(tmp_path, 1)])
    dialog = batch_dialog(qtbot, window)
    assert "download.zip" in dialog.refused_label.text()
    assert "Plugin/real.zip" in dialog.refused_label.text()
    (button,) = dialog.offer_buttons
    assert button.text() == "Install Hello World 1.0.0 from Plugin/real.zip"
    assert dialog.install_button.text() == "Install 1"
    click(button)
    # Planned on a row of its own, then a row of the table, ticked.
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 2, timeout=WAIT_MS)
    assert dialog.install_button.text() == "Install 2"
    assert not dialog.refused_label.isVisible()
    notes = dialog.table.item(1, 3)
    assert notes is not None and "From inside download.zip: Plugin/real.zip" in notes.text()
    click(dialog.install_button)
    wait_finished(qtbot, window, 2)
    assert installed(registry) == {"example.hello", "example.alpha"}


# -- folders ---------------------------------------------------------------------------------


def test_a_dropped_folder_is_highlighted_and_installs(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    folder = tmp_path / "my-extension"
    folder.mkdir()
    (folder / "manifest.json").write_bytes(
        minimal_manifest(id="example.folder", name="From a Folder")
    )
    (folder / "main.py").write_text("print('hi')\n")
    drag_enter(window, mime_for([folder]))
    assert window.drop_active
    drop(window, [folder])
    dialog = visible_confirm_dialog(qtbot, window)
    assert dialog.plan.manifest.id == "example.folder"
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.default_button)
    press(Qt.Key.Key_Return)
    wait_finished(qtbot, window, 1)
    assert installed(registry) == {"example.folder"}
    assert (registry.paths.extensions / "example.folder" / "main.py").is_file()


# -- settings kept at an uninstall -----------------------------------------------------------


@pytest.mark.parametrize("restore", [True, False])
def test_the_settings_kept_at_an_uninstall_are_restored_unless_unticked(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path, restore: bool
) -> None:
    archive = extension(tmp_path / "c.zip", "example.conf", config=CONFIGURED)
    installer = Installer(registry)
    assert installer.install(archive, confirm=lambda plan: True).status == "COMPLETED"
    registry.set_config("example.conf", {"greeting": "bonjour", "count": 9})
    assert installer.uninstall("example.conf").status == "COMPLETED"
    drop(window, [archive])
    dialog = visible_confirm_dialog(qtbot, window)
    box = dialog.restore_box
    assert box is not None and box.isChecked()
    assert box.text() == "Restore the settings kept when version 1.0.0 was uninstalled"
    if not restore:
        click(box)
        assert not box.isChecked()
    default = dialog.default_button
    assert isinstance(default, QPushButton)
    click(default)
    wait_finished(qtbot, window, 1)
    expected = {"greeting": "bonjour", "count": 9} if restore else CONFIGURED
    assert registry.get_config("example.conf") == expected


def test_the_batch_dialog_says_kept_settings_are_restored(
    qtbot: QtBot, window: MainWindow, registry: Registry, tmp_path: Path
) -> None:
    archive = extension(tmp_path / "c.zip", "example.conf", config=CONFIGURED)
    installer = Installer(registry)
    assert installer.install(archive, confirm=lambda plan: True).status == "COMPLETED"
    registry.set_config("example.conf", {"greeting": "bonjour", "count": 9})
    assert installer.uninstall("example.conf").status == "COMPLETED"
    drop(window, [archive, *several(tmp_path, 1)])
    dialog = batch_dialog(qtbot, window)
    notes = dialog.table.item(dialog.row_of(plan_ids(dialog)["example.conf"]), 3)
    assert notes is not None
    assert "Restores the settings kept when 1.0.0 was uninstalled" in notes.text()
    click(dialog.install_button)
    wait_finished(qtbot, window, 2)
    assert registry.get_config("example.conf") == {"greeting": "bonjour", "count": 9}


def test_closing_the_window_with_the_batch_dialog_open_installs_nothing(
    qtbot: QtBot, registry: Registry, tmp_path: Path
) -> None:
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    drop(main_window, several(tmp_path, 3))
    batch_dialog(qtbot, main_window)
    close_for_good(qtbot, main_window)
    assert installed(registry) == set()
    assert set(statuses(registry).values()) == {OperationStatus.CANCELLED}


def test_a_stand_in_for_the_confirmation_answers_the_batch_too(
    qtbot: QtBot,
    window: MainWindow,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answered: list[object] = []

    def yes(parent: QWidget | None, plan: object, on_answer: Any, *notes: str) -> None:
        answered.append(plan)
        on_answer(True)

    monkeypatch.setattr(ConfirmDialog, "ask", staticmethod(yes))
    drop(window, several(tmp_path, 3))
    wait_finished(qtbot, window, 3)
    assert len(answered) == 1
    assert installed(registry) == {"example.alpha", "example.bravo", "example.charlie"}
