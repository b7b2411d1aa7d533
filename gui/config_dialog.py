"""An extension's settings as a form generated from its manifest's defaults.

The default's type picks the editor (bool → check box, int → spin box, float → decimal spin
box, str → line edit), so the form cannot produce a value of the wrong type; the registry still
checks every value on save, and its refusal is shown in the dialog with nothing stored.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
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

Editor = QCheckBox | QSpinBox | QDoubleSpinBox | QLineEdit


def readable_key(key: str) -> str:
    """``max_file_mb`` → "Max file mb", ``maxFileSize`` → "Max file size": a label a person
    can read, for settings whose manifest gives no title."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ").replace("-", " ")
    words = " ".join(words.split()).lower()
    return words[:1].upper() + words[1:] if words else key


def make_editor(key: str, default: ConfigValue) -> Editor:
    editor: Editor
    if isinstance(default, bool):
        editor = QCheckBox()
    elif isinstance(default, int) and abs(default) <= INT_LIMIT:
        editor = QSpinBox()
        editor.setRange(-INT_LIMIT, INT_LIMIT)
    elif isinstance(default, float):
        editor = QDoubleSpinBox()
        editor.setRange(-FLOAT_LIMIT, FLOAT_LIMIT)
        editor.setDecimals(4)
    else:
        editor = QLineEdit()
    editor.setObjectName(f"setting-{key}")
    editor.setAccessibleName(readable_key(key))
    editor.setToolTip(f"Stored as '{key}'")
    return editor


def set_editor_value(editor: Editor, value: ConfigValue) -> None:
    if isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, QSpinBox) and isinstance(value, int):
        editor.setValue(value)
    elif isinstance(editor, QDoubleSpinBox) and isinstance(value, int | float):
        editor.setValue(float(value))
    elif isinstance(editor, QLineEdit):
        editor.setText(str(value))


def editor_value(editor: Editor) -> ConfigValue:
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
        for key, default in self.defaults.items():
            editor = make_editor(key, default)
            set_editor_value(editor, values.get(key, default))
            self.editors[key] = editor
            form.addRow(f"{readable_key(key)}:", editor)

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
