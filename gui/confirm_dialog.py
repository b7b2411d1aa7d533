"""The one confirmation shown before an install writes anything.

It combines what the person needs to decide: which extension, which version change, who made
it, what it can do and what it asks permission for. It is opened window-modal and answers
through a callback, so no thread (not even the GUI thread, in a nested event loop) waits on the
person. Several files dropped or chosen together are confirmed at once by a ``BatchDialog``,
reached through the same ``ConfirmDialog.ask``: tests that are about something else replace
that one seam and answer every confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.batch_dialog import BatchChoice, BatchDialog
from registry.installer import InstallPlan
from registry.sizes import format_size
from registry.vocabulary import OperationKind


def _label(text: str, *, rich: bool = False) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ConfirmDialog(QDialog):
    def __init__(
        self, plan: InstallPlan, parent: QWidget | None = None, notes: Sequence[str] = ()
    ) -> None:
        super().__init__(parent)
        self.plan = plan
        manifest = plan.manifest
        verb = plan.kind.verb
        hint = colors.hint_color(self.palette()).name()
        self.setWindowTitle(f"{verb} {manifest.name}?")
        self.setObjectName("confirmDialog")
        self.setMinimumWidth(460)

        heading = _label(
            f"<span style='font-size:15pt; font-weight:600'>{escape(manifest.name)}</span>"
            f"<br><span style='color:{hint}'>{escape(manifest.id)} · version "
            f"{escape(str(manifest.version))}</span>",
            rich=True,
        )
        self.change_label = _label(plan.change)
        change_font = self.change_label.font()
        change_font.setBold(True)
        self.change_label.setFont(change_font)
        if plan.kind == OperationKind.DOWNGRADE:
            self.change_label.setStyleSheet(colors.style(colors.error_color(self.palette())))
        # What else the person should know before saying yes: that an update replaces a zip
        # installed by hand, that a rollback holds the extension afterwards.
        if plan.kind == OperationKind.ROLLBACK:
            notes = [
                *notes,
                "Afterwards it is held: no update is offered for it until you release it.",
            ]
        self.notes_label = _label("\n".join(notes))
        self.notes_label.setObjectName("confirmNotes")
        self.notes_label.setStyleSheet("padding: 6px; background-color: palette(alternate-base);")
        self.notes_label.setVisible(bool(notes))

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        if manifest.description:
            form.addRow("Description:", _label(manifest.description))
        form.addRow("Author:", _label(manifest.author or "Not given"))
        form.addRow("Licence:", _label(manifest.license or "Not given"))
        if manifest.homepage:
            form.addRow("Homepage:", _label(manifest.homepage))
        form.addRow(
            "Capabilities:",
            _label(", ".join(manifest.capabilities) if manifest.capabilities else "None"),
        )
        if plan.permissions:
            items = "".join(
                f"<li>{escape(words)} <span style='color:{hint}'>({escape(name)})</span></li>"
                for name, words in plan.permissions
            )
            self.permissions_label = _label(
                f"It asks permission to:<ul style='margin:0'>{items}</ul>", rich=True
            )
        else:
            self.permissions_label = _label("It asks for no permissions.")
        form.addRow("Permissions:", self.permissions_label)
        if plan.config_added:
            form.addRow("New settings:", _label(", ".join(plan.config_added)))
        if plan.config_removed:
            form.addRow("Settings removed:", _label(", ".join(plan.config_removed)))
        form.addRow(
            "Contents:", _label(f"{plan.file_count} files, {format_size(plan.total_bytes)}")
        )
        if plan.kind == OperationKind.ROLLBACK:
            form.addRow("File:", _label(f"Kept copy of {plan.origin or 'the version then'}"))
        else:
            form.addRow("File:", _label(plan.origin or str(plan.archive_path)))
        if plan.origin_source:
            form.addRow("Source:", _label(plan.origin_source))
        if plan.from_member:
            form.addRow("From inside:", _label(plan.from_member))
        # Settings kept when this id was uninstalled come back unless the person says not to.
        self.restore_box: QCheckBox | None = None
        if plan.kept_settings is not None:
            self.restore_box = QCheckBox(
                f"Restore the settings kept when version {plan.kept_settings.version} "
                "was uninstalled"
            )
            self.restore_box.setChecked(plan.restores_kept_settings)
            self.restore_box.setToolTip("Unticked, it starts from the default settings")

        self.buttons = QDialogButtonBox()
        self.accept_button = self.buttons.addButton(verb, QDialogButtonBox.ButtonRole.AcceptRole)
        self.accept_button.setAccessibleName(f"{verb} {manifest.name}")
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel; nothing is changed")
        # Going back to an older version is the one choice that should not be a reflex: Cancel
        # is the default and has the focus, so Return (which presses the focused button) and
        # Space both say no.
        if plan.kind == OperationKind.DOWNGRADE:
            self.default_button = cancel
            self.accept_button.setAutoDefault(False)
        else:
            self.default_button = self.accept_button
        self.default_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.change_label)
        layout.addWidget(self.notes_label)
        layout.addLayout(form)
        if self.restore_box is not None:
            layout.addWidget(self.restore_box)
        layout.addWidget(self.buttons)

    @property
    def chosen_plan(self) -> InstallPlan:
        """The plan as the person answered it (with the kept settings put back or not)."""
        if self.restore_box is None:
            return self.plan
        return self.plan.with_kept_settings(self.restore_box.isChecked())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.default_button.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    @classmethod
    def ask(
        cls,
        parent: QWidget | None,
        plan: InstallPlan | BatchChoice,
        on_answer: Callable[[bool], None],
        *notes: str,
    ) -> ConfirmDialog | BatchDialog | None:
        """Show the plan window-modal and return at once; ``on_answer(True)`` means go ahead.
        Closing the dialog in any way other than the accept button is a no. ``notes`` are
        said under the change, in plain sentences. Given a ``BatchChoice`` (several files), the
        batch dialog is shown instead; the person's ticks are in the choice."""
        if isinstance(plan, BatchChoice):
            return BatchDialog.ask(parent, plan, on_answer)
        dialog = cls(plan, parent, notes)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(
            lambda result: on_answer(result == QDialog.DialogCode.Accepted.value)
        )
        dialog.open()
        return dialog
