"""An extension's settings as a form generated from its manifest's defaults.

The default's type picks the editor (bool → check box, int → spin box, float → decimal spin
box, str → line edit), so the form cannot produce a value of the wrong type; the manifest's
``settings`` may add a title, a description (shown under the editor), a range for a number and
choices (a list to pick from). The registry still checks every value on save, and its refusal
is shown in the dialog with nothing stored.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.workers import WorkerPool
from registry.store import ConfigValue, ExtensionRecord, Registry

INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
FLOAT_LIMIT = 1e12

Editor = QCheckBox | QSpinBox | QDoubleSpinBox | QLineEdit | QComboBox


def readable_key(key: str) -> str:
    """``max_file_mb`` → "Max file mb", ``maxFileSize`` → "Max file size": a label a person
    can read, for settings whose manifest gives no title."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ").replace("-", " ")
    words = " ".join(words.split()).lower()
    return words[:1].upper() + words[1:] if words else key


def make_editor(
    key: str, default: ConfigValue, description: dict[str, Any] | None = None
) -> Editor:
    """The editor for one setting; ``description`` is the manifest's ``settings`` entry (its
    choices make a list to pick from, its range bounds a number)."""
    info = description or {}
    choices = info.get("choices")
    low, high = info.get("minimum"), info.get("maximum")
    editor: Editor
    if isinstance(choices, list) and not isinstance(default, bool):
        editor = QComboBox()
        for choice in choices:
            editor.addItem(str(choice), choice)
    elif isinstance(default, bool):
        editor = QCheckBox()
    elif isinstance(default, int) and abs(default) <= INT_LIMIT:
        editor = QSpinBox()
        editor.setRange(
            max(-INT_LIMIT, math.ceil(low)) if isinstance(low, int | float) else -INT_LIMIT,
            min(INT_LIMIT, math.floor(high)) if isinstance(high, int | float) else INT_LIMIT,
        )
    elif isinstance(default, float):
        editor = QDoubleSpinBox()
        editor.setRange(
            float(low) if isinstance(low, int | float) else -FLOAT_LIMIT,
            float(high) if isinstance(high, int | float) else FLOAT_LIMIT,
        )
        editor.setDecimals(4)
    else:
        editor = QLineEdit()
    editor.setObjectName(f"setting-{key}")
    editor.setAccessibleName(str(info.get("title") or readable_key(key)))
    help_text = str(info.get("description") or "")
    editor.setAccessibleDescription(help_text)
    editor.setToolTip(f"{help_text}\n(stored as '{key}')".strip())
    return editor


def set_editor_value(editor: Editor, value: ConfigValue) -> None:
    if isinstance(editor, QComboBox):
        index = editor.findData(value)
        if index >= 0:
            editor.setCurrentIndex(index)
    elif isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, QSpinBox) and isinstance(value, int):
        editor.setValue(value)
    elif isinstance(editor, QDoubleSpinBox) and isinstance(value, int | float):
        editor.setValue(float(value))
    elif isinstance(editor, QLineEdit):
        editor.setText(str(value))


def editor_value(editor: Editor) -> ConfigValue:
    if isinstance(editor, QComboBox):
        chosen: ConfigValue = editor.currentData()
        return chosen
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, QSpinBox | QDoubleSpinBox):
        return editor.value()
    return editor.text()


class ConfigDialog(QDialog):
    saved = Signal(str)  # extension id

    def __init__(
        self,
        registry: Registry,
        pool: WorkerPool,
        extension: ExtensionRecord,
        values: dict[str, ConfigValue],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.registry = registry
        self.pool = pool
        self.extension = extension
        self.defaults = extension.config_defaults
        self.setWindowTitle(f"Settings of {extension.name}")
        self.setObjectName("configDialog")
        self.setMinimumWidth(380)

        self.editors: dict[str, Editor] = {}
        form = QFormLayout()
        descriptions = extension.setting_descriptions
        for key, default in self.defaults.items():
            info = descriptions.get(key, {})
            editor = make_editor(key, default, info)
            set_editor_value(editor, values.get(key, default))
            self.editors[key] = editor
            form.addRow(f"{info.get('title') or readable_key(key)}:", self._with_help(editor, info))

        self.error_label = QLabel()
        self.error_label.setObjectName("configError")
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(colors.style(colors.error_color(self.palette())))
        self.error_label.hide()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.restore_button = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        self.restore_button.clicked.connect(self.restore_defaults)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        if not self.defaults:
            layout.addWidget(QLabel("This extension has no settings."))
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    def _with_help(self, editor: Editor, info: dict[str, Any]) -> QWidget:
        """The editor, with the setting's description under it when the manifest gives one."""
        description = info.get("description")
        if not description:
            return editor
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(editor)
        help_label = QLabel(str(description))
        help_label.setObjectName(f"help-{editor.objectName()}")
        help_label.setTextFormat(Qt.TextFormat.PlainText)
        help_label.setWordWrap(True)
        help_label.setStyleSheet(colors.style(colors.hint_color(self.palette())))
        column.addWidget(help_label)
        return holder

    def values(self) -> dict[str, ConfigValue]:
        values = {key: editor_value(editor) for key, editor in self.editors.items()}
        for key, value in values.items():
            # Whole numbers too large for a spin box are typed as text; text that is not a
            # number stays text, and the registry refuses it with a message naming the setting.
            default = self.defaults[key]
            is_whole = isinstance(default, int) and not isinstance(default, bool)
            if is_whole and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                values[key] = int(value)
        return values

    def restore_defaults(self) -> None:
        """Only the form changes; nothing is stored until Save."""
        for key, editor in self.editors.items():
            set_editor_value(editor, self.defaults[key])

    def save(self) -> None:
        values = self.values()
        registry, extension_id = self.registry, self.extension.id
        self.error_label.hide()
        self.buttons.setEnabled(False)
        # A write, so it runs on a worker: another process may hold the write lock for a while.
        self.pool.start(
            lambda: registry.save_config(extension_id, values),
            registry=registry,
            on_success=self._saved,
            on_failure=self._refused,
        )

    def _saved(self, _result: object) -> None:
        self.buttons.setEnabled(True)
        self.saved.emit(self.extension.id)
        self.accept()

    def _refused(self, message: str, _details: str) -> None:
        self.buttons.setEnabled(True)
        self.error_label.setText(message)
        self.error_label.show()
