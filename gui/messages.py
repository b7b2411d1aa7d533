"""Every message box the app shows goes through here, so tests can replace one seam. Commands
a message names are written the way this installation runs them (``cli.invocation``)."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QMessageBox, QPushButton, QWidget

from cli.invocation import runnable


def show_error(parent: QWidget | None, title: str, text: str, details: str = "") -> None:
    box = QMessageBox(
        QMessageBox.Icon.Critical, title, runnable(text), QMessageBox.StandardButton.Ok, parent
    )
    if details:
        box.setDetailedText(details)
    box.exec()


def show_info(parent: QWidget | None, title: str, text: str) -> None:
    QMessageBox.information(parent, title, runnable(text))


def _question(
    parent: QWidget | None, title: str, text: str, answers: list[str]
) -> tuple[QMessageBox, list[QPushButton]]:
    """A question box with ``answers`` and Cancel, which is the default: Return says no."""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        title,
        runnable(text),
        QMessageBox.StandardButton.NoButton,
        parent,
    )
    buttons = [box.addButton(label, QMessageBox.ButtonRole.AcceptRole) for label in answers]
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return box, buttons


def ask(parent: QWidget | None, title: str, text: str, confirm_label: str = "OK") -> bool:
    box, [confirm] = _question(parent, title, text, [confirm_label])
    box.exec()
    return box.clickedButton() is confirm


def choose(parent: QWidget | None, title: str, text: str, choices: list[str]) -> int | None:
    """One question with several answers: the index of the chosen one, or None for Cancel."""
    box, buttons = _question(parent, title, text, choices)
    box.exec()
    clicked = box.clickedButton()
    for index, button in enumerate(buttons):
        if clicked is button:
            return index
    return None


def ask_with_option(
    parent: QWidget | None,
    title: str,
    text: str,
    confirm_label: str,
    option_label: str,
    option_checked: bool = True,
) -> tuple[bool, bool]:
    """A question with one check box under it (ticked or not to begin with): whether the
    person confirmed, and how they left the box. Cancel is the default, so Return confirms
    nothing."""
    box, [confirm] = _question(parent, title, text, [confirm_label])
    option = QCheckBox(option_label)
    option.setChecked(option_checked)
    box.setCheckBox(option)
    box.exec()
    return box.clickedButton() is confirm, option.isChecked()
