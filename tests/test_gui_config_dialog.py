"""The generated settings form: one editor per setting, chosen by the default's type."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QSpinBox,
)
from pytestqt.qtbot import QtBot

from gui.config_dialog import (
    ConfigDialog,
    editor_value,
    make_editor,
    readable_key,
    set_editor_value,
)
from gui.workers import WorkerPool
from registry.installer import extension_values
from registry.manifest import parse_manifest
from registry.store import Registry


def test_each_type_gets_its_editor_and_round_trips(qapp: QApplication) -> None:
    for default, kind, changed in (
        (True, QCheckBox, False),
        (3, QSpinBox, 7),
        (0.5, QDoubleSpinBox, 2.25),
        ("utf-8", QLineEdit, "latin-1"),
    ):
        editor = make_editor("key", default)
        assert isinstance(editor, kind)
        set_editor_value(editor, changed)
        assert editor_value(editor) == changed


def test_a_whole_number_too_large_for_a_spin_box_is_edited_as_text(qapp: QApplication) -> None:
    # A spin box holds a C int and would silently clamp 10**12.
    editor = make_editor("big", 10**12)
    assert isinstance(editor, QLineEdit)
    set_editor_value(editor, 10**12 + 1)
    assert editor_value(editor) == str(10**12 + 1)


def test_settings_are_labelled_in_words_not_raw_keys() -> None:
    assert readable_key("max_file_mb") == "Max file mb"
    assert readable_key("maxFileSize") == "Max file size"
    assert readable_key("punctuation") == "Punctuation"
    assert readable_key("use-tabs") == "Use tabs"


def test_a_described_setting_gets_its_title_help_range_and_choices(
    qtbot: QtBot, registry: Registry
) -> None:
    manifest = {
        "id": "example.described",
        "name": "Described",
        "version": "1.0.0",
        "config": {"max_file_mb": 8, "mode": "fast", "plain_key": True},
        "settings": {
            "max_file_mb": {
                "title": "Largest file",
                "description": "Files above this size are skipped.",
                "minimum": 1,
                "maximum": 64,
            },
            "mode": {"choices": ["fast", "thorough"]},
        },
    }
    parsed = parse_manifest(json.dumps(manifest).encode())
    registry.register_found(
        extension_values(parsed, registry.paths.extensions / parsed.id, "", []), "test"
    )
    record = registry.get_extension(parsed.id)
    assert record is not None
    pool = WorkerPool()
    dialog = ConfigDialog(registry, pool, record, registry.get_config(parsed.id))
    qtbot.addWidget(dialog)
    dialog.show()
    labels = [label.text() for label in dialog.findChildren(QLabel)]
    assert "Largest file:" in labels and "Mode:" in labels and "Plain key:" in labels
    assert "Files above this size are skipped." in labels
    size = dialog.editors["max_file_mb"]
    assert isinstance(size, QSpinBox) and (size.minimum(), size.maximum()) == (1, 64)
    mode = dialog.editors["mode"]
    assert isinstance(mode, QComboBox)
    assert [mode.itemText(i) for i in range(mode.count())] == ["fast", "thorough"]
    mode.setFocus()
    QTest.keyClick(mode, Qt.Key.Key_Down)  # the next choice, as a keyboard picks it
    size.setValue(500)  # beyond the range: held at the maximum
    with qtbot.waitSignal(dialog.saved, timeout=30_000):
        QTest.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert registry.get_config(parsed.id) == {
        "max_file_mb": 64,
        "mode": "thorough",
        "plain_key": True,
    }
    pool.wait()
