"""Text the app colours itself stays readable (4.5:1) on a light and on a dark palette."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget
from pytestqt.qtbot import QtBot

from gui import colors
from gui.app import ensure_application
from gui.details_pane import DetailsPane
from gui.install_panel import OperationRow
from gui.main_window import MainWindow
from registry.store import Registry


@pytest.fixture(params=["light", "dark"])
def palette(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[QPalette]:
    app = ensure_application()
    before = app.palette()
    chosen = app.style().standardPalette() if request.param == "light" else colors.dark_palette()
    app.setPalette(chosen)
    yield chosen
    app.setPalette(before)


def text_colour(label: QLabel) -> QColor:
    found = re.search(r"color:\s*(#[0-9a-fA-F]{6})", label.styleSheet())
    assert found, f"{label.objectName() or label.text()!r} sets no colour of its own"
    return QColor(found.group(1))


def assert_readable(label: QLabel, on: QWidget) -> None:
    background = on.palette().color(QPalette.ColorRole.Window)
    ratio = colors.contrast(text_colour(label), background)
    assert ratio >= colors.MINIMUM_CONTRAST, (label.text(), round(ratio, 2))


def test_placeholder_text_is_made_readable_on_its_field(palette: QPalette) -> None:
    fixed = colors.with_readable_placeholders(palette)
    ratio = colors.contrast(
        fixed.color(QPalette.ColorRole.PlaceholderText), fixed.color(QPalette.ColorRole.Base)
    )
    assert ratio >= colors.MINIMUM_CONTRAST


def test_the_colours_themselves_are_readable(palette: QPalette) -> None:
    background = palette.color(QPalette.ColorRole.Window)
    for colour in (
        colors.error_color(palette),
        colors.success_color(palette),
        colors.hint_color(palette),
    ):
        assert colors.contrast(colour, background) >= colors.MINIMUM_CONTRAST


def test_errors_and_hints_in_the_window_are_readable(
    palette: QPalette, qtbot: QtBot, registry: Registry, tmp_path: Path
) -> None:
    row = OperationRow("broken.zip", cancellable=True)
    qtbot.addWidget(row)
    row.show_failure("'broken.zip' is not a zip archive.")
    assert_readable(row.error_label, row)
    assert_readable(row.change_label, row)

    details = DetailsPane()
    qtbot.addWidget(details)
    assert_readable(details.placeholder, details)

    window = MainWindow(registry)
    qtbot.addWidget(window)
    assert_readable(window.empty_label, window)
