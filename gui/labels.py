"""Labels for values in the details: text that wraps, and paths or hashes that cannot, and the
form that holds them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import QFormLayout, QLabel, QSizePolicy


class ElidedValue(QLabel):
    """A path or a hash, which has no place to wrap: shortened with "…" where it does not fit
    (in the middle for paths, which differ at both ends), never cut through a character. The
    whole value is the tooltip, and "Copy" in the context menu copies all of it."""

    def __init__(self, name: str, mode: Qt.TextElideMode) -> None:
        super().__init__()
        self.setObjectName(name)
        self.setAccessibleName(name)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._mode = mode
        self._full: str = ""
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        copy = QAction("Copy", self)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(self._full))
        self.addAction(copy)

    def full_text(self) -> str:
        return self._full

    def set_value(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(self.width(), 1))
        if shown != self.text():
            self.setText(shown)


def value_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAccessibleName(name)
    return label


def value_form() -> QFormLayout:
    """Labels on the left, values taking the rest of the width and wrapping under their label
    when the pane is too narrow for both."""
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    return form
