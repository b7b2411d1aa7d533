"""The few colours the app adds to the palette, chosen against it so that text stays readable
(WCAG's 4.5:1 contrast for normal text) in a light and in a dark palette alike."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

MINIMUM_CONTRAST = 4.5
# Material's error reds: the dark one on light backgrounds, the light one on dark backgrounds.
ERROR_ON_LIGHT = QColor("#b3261e")
ERROR_ON_DARK = QColor("#ffb4ab")
SUCCESS_ON_LIGHT = QColor("#146c2e")
SUCCESS_ON_DARK = QColor("#7fd99a")
DISABLED_ON_DARK = "#80868b"


def _channel(value: float) -> float:
    return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4


def luminance(color: QColor) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    return (
        0.2126 * _channel(color.redF())
        + 0.7152 * _channel(color.greenF())
        + 0.0722 * _channel(color.blueF())
    )


def contrast(first: QColor, second: QColor) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _background(palette: QPalette) -> QColor:
    return palette.color(QPalette.ColorRole.Window)


def is_dark(palette: QPalette) -> bool:
    return luminance(_background(palette)) < 0.2


def error_color(palette: QPalette) -> QColor:
    return ERROR_ON_DARK if is_dark(palette) else ERROR_ON_LIGHT


def success_color(palette: QPalette) -> QColor:
    return SUCCESS_ON_DARK if is_dark(palette) else SUCCESS_ON_LIGHT


def hint_color(palette: QPalette) -> QColor:
    """Secondary text: the palette's placeholder colour where it is readable, else the text
    colour moved only as far toward the background as stays readable."""
    background = _background(palette)
    text = palette.color(QPalette.ColorRole.WindowText)
    placeholder = palette.color(QPalette.ColorRole.PlaceholderText)
    if contrast(placeholder, background) >= MINIMUM_CONTRAST:
        return placeholder
    for step in range(10, -1, -1):
        share = step / 10 * 0.6  # at most 60 % of the way to the background
        mixed = QColor.fromRgbF(
            text.redF() + (background.redF() - text.redF()) * share,
            text.greenF() + (background.greenF() - text.greenF()) * share,
            text.blueF() + (background.blueF() - text.blueF()) * share,
        )
        if contrast(mixed, background) >= MINIMUM_CONTRAST:
            return mixed
    return text


def dark_palette() -> QPalette:
    """A dark palette like many desktops' dark themes (for screenshots and tests), including
    their too-faint placeholder grey."""
    palette = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, "#202124"),
        (QPalette.ColorRole.WindowText, "#e8eaed"),
        (QPalette.ColorRole.Base, "#171717"),
        (QPalette.ColorRole.AlternateBase, "#2a2a2a"),
        (QPalette.ColorRole.Text, "#e8eaed"),
        (QPalette.ColorRole.Button, "#303134"),
        (QPalette.ColorRole.ButtonText, "#e8eaed"),
        (QPalette.ColorRole.Highlight, "#8ab4f8"),
        (QPalette.ColorRole.Link, "#8ab4f8"),
        (QPalette.ColorRole.HighlightedText, "#202124"),
        (QPalette.ColorRole.PlaceholderText, "#5f6368"),
        (QPalette.ColorRole.Mid, "#3c4043"),
    ):
        palette.setColor(role, QColor(color))
    # Greyed out where nothing can be done (a Roll back with nothing kept): as such themes do,
    # and unlike the text of what can be pressed.
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(DISABLED_ON_DARK))
    return palette


def with_readable_placeholders(palette: QPalette) -> QPalette:
    """``palette`` with its placeholder text (the filter box's hint) made readable on the
    field's background if the theme's own grey is too faint."""
    base = palette.color(QPalette.ColorRole.Base)
    placeholder = palette.color(QPalette.ColorRole.PlaceholderText)
    if contrast(placeholder, base) >= MINIMUM_CONTRAST:
        return palette
    fixed = QPalette(palette)
    on_base = QPalette(palette)
    on_base.setColor(QPalette.ColorRole.Window, base)
    on_base.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.Text))
    fixed.setColor(QPalette.ColorRole.PlaceholderText, hint_color(on_base))
    return fixed


def style(color: QColor) -> str:
    """A style sheet rule setting the text colour."""
    return f"color: {color.name()};"
