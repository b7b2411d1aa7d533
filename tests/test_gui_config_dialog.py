"""The generated settings form: one editor per setting, chosen by the default's type."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QCheckBox, QDoubleSpinBox, QLineEdit, QSpinBox

from gui.config_dialog import editor_value, make_editor, readable_key, set_editor_value


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
