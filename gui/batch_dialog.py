"""The one confirmation for several files dropped or chosen together.

A row per file that can be installed, ticked, with what the single confirmation would say in
brief (the version change, the permissions, what it needs, what it breaks, settings put back);
below, the files that will not be installed and why. Unticking a row arranges the batch again,
so a file that needs an unticked one moves down to "not installed" and back when it is ticked
again. Like ``ConfirmDialog`` it is opened window-modal and answers through a callback; it is
reached through ``ConfirmDialog.ask``, the one seam for every confirmation before an install.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtGui import QKeyEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from registry.installer import Batch, InstallPlan
from registry.store import InnerOffer, OperationRecord
from registry.vocabulary import OperationKind

Arrange = Callable[[Sequence[InstallPlan]], Batch]

# The table grows with its rows up to this many, then scrolls.
MAX_SHOWN_ROWS = 8


class BatchChoice:
    """What the person is deciding: every planned file, which of them are ticked, and how the
    ticked ones arrange (``batch``). The dialog edits it; whoever opened the dialog reads it once
    the answer is yes. Left as made, it means "install what can be installed"."""

    def __init__(
        self,
        plans: Sequence[InstallPlan],
        refused: Sequence[OperationRecord],
        arrange: Arrange,
    ) -> None:
        self.plans = list(plans)
        self.refused = list(refused)
        self._arrange = arrange
        self.ticked = {plan.install_id for plan in self.plans}
        self.batch = arrange(self.plans)

    def set_ticked(self, install_id: int, ticked: bool) -> None:
        if (install_id in self.ticked) == ticked:
            return
        if ticked:
            self.ticked.add(install_id)
        else:
            self.ticked.discard(install_id)
        self.batch = self._arrange(self.chosen)

    def add(self, plan: InstallPlan, instead_of: OperationRecord | None = None) -> None:
        """One more planned file (taken from inside a refused one, which it replaces), ticked."""
        if instead_of in self.refused:
            self.refused.remove(instead_of)
        self.plans.append(plan)
        self.ticked.add(plan.install_id)
        self.batch = self._arrange(self.chosen)

    @property
    def chosen(self) -> list[InstallPlan]:
        return [plan for plan in self.plans if plan.install_id in self.ticked]

    @property
    def unticked(self) -> list[InstallPlan]:
        return [plan for plan in self.plans if plan.install_id not in self.ticked]

    def held_reason(self, install_id: int) -> str | None:
        for plan, reason in self.batch.held_back:
            if plan.install_id == install_id:
                return reason
        return None

    def arranged(self, install_id: int) -> InstallPlan | None:
        """The plan as the batch would install it (with what it breaks next to the others)."""
        for plan in self.batch.ready:
            if plan.install_id == install_id:
                return plan
        return None

    @property
    def has_downgrade(self) -> bool:
        return any(plan.kind == OperationKind.DOWNGRADE for plan in self.batch.ready)


def plan_notes(plan: InstallPlan) -> list[str]:
    """What a person should know about one file besides its version change and permissions."""
    notes = []
    if plan.from_member:
        notes.append(f"From inside {plan.archive_name}: {plan.from_member}")
    if plan.requires:
        notes.append(
            "Needs " + ", ".join(f"{other} {wanted}" for other, wanted in plan.requires.items())
        )
    if plan.kept_settings is not None:
        version = plan.kept_settings.version
        if plan.restores_kept_settings:
            notes.append(f"Restores the settings kept when {version} was uninstalled")
        else:
            notes.append(f"Starts from the default settings (those of {version} are not restored)")
    notes.extend(f"Breaks: {words}" for words in plan.breaks)
    return notes


def _file_name(record: OperationRecord) -> str:
    return (
        Path(record.archive_path).name if record.archive_path else f"Operation {record.install_id}"
    )


class _TickTable(QTableWidget):
    """The files to install: Space ticks or unticks the current row, whichever cell has the
    focus (a table's own Space only works on the tick box's cell)."""

    toggled = Signal(int)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and self.currentRow() >= 0:
            self.toggled.emit(self.currentRow())
            event.accept()
            return
        super().keyPressEvent(event)


NAME, CHANGE, PERMISSIONS, NOTES = range(4)
HEADERS = ("Extension", "Change", "Permissions", "Notes")


class BatchDialog(QDialog):
    # The person asked to install an extension found inside a refused file.
    inside_requested = Signal(object, object)  # OperationRecord, InnerOffer

    def __init__(self, choice: BatchChoice, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choice = choice
        self.setObjectName("batchDialog")
        self.setWindowTitle("Install these extensions?")
        self.setMinimumWidth(640)
        self._error_style = colors.style(colors.error_color(self.palette()))
        self._hint = colors.hint_color(self.palette())

        self.heading = QLabel()
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.heading.setWordWrap(True)
        heading_font = self.heading.font()
        heading_font.setPointSizeF(heading_font.pointSizeF() * 1.25)
        heading_font.setBold(True)
        self.heading.setFont(heading_font)

        self.table = _TickTable(0, len(HEADERS))
        self.table.setObjectName("batchTable")
        self.table.setAccessibleName("Files to install: Space ticks or unticks the current one")
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(CHANGE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PERMISSIONS, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NOTES, QHeaderView.ResizeMode.Stretch)
        self.table.toggled.connect(self._toggle_row)
        self.table.itemChanged.connect(self._on_item_changed)

        self.refused_heading = QLabel("Not installed")
        refused_font = self.refused_heading.font()
        refused_font.setBold(True)
        self.refused_heading.setFont(refused_font)
        self.refused_label = QLabel()
        self.refused_label.setObjectName("batchRefused")
        self.refused_label.setTextFormat(Qt.TextFormat.RichText)
        self.refused_label.setWordWrap(True)
        self.refused_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.offer_buttons: list[QPushButton] = []
        self._asked: dict[tuple[str, str], tuple[OperationRecord, QPushButton]] = {}
        offers_line = QHBoxLayout()
        for record in choice.refused:
            for offer in record.offers:
                offers_line.addWidget(self._offer_button(record, offer))
        offers_line.addStretch(1)

        self.buttons = QDialogButtonBox()
        self.install_button = self.buttons.addButton(
            "Install", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        assert self.cancel_button is not None
        self.cancel_button.setAccessibleName("Cancel; nothing is installed")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.default_button: QPushButton = self.install_button

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.table)
        layout.addWidget(self.refused_heading)
        layout.addWidget(self.refused_label)
        layout.addLayout(offers_line)
        layout.addStretch(1)
        layout.addWidget(self.buttons)

        self._install_ids: list[int] = []
        for plan in choice.plans:
            self._add_row(plan)
        self._show_choice()
        if self.table.rowCount():
            self.table.setCurrentCell(0, NAME, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _offer_button(self, record: OperationRecord, offer: InnerOffer) -> QPushButton:
        button = QPushButton(f"Install {offer.name} {offer.version} from {offer.member}")
        button.setAccessibleName(
            f"Install {offer.name} {offer.version} from {offer.member} inside {_file_name(record)}"
        )

        def clicked() -> None:
            button.setEnabled(False)
            button.setText(f"Reading {offer.member}…")
            self._asked[(record.archive_path, offer.member)] = (record, button)
            self.inside_requested.emit(record, offer)

        button.clicked.connect(clicked)
        self.offer_buttons.append(button)
        return button

    def add_plan(self, plan: InstallPlan) -> None:
        """A file taken from inside a refused one has been planned: it joins the table."""
        asked = self._asked.pop((plan.origin, plan.from_member or ""), None)
        record = None
        if asked is not None:
            record, button = asked
            button.hide()
        self.choice.add(plan, instead_of=record)
        self._add_row(plan)
        self._show_choice()

    def _add_row(self, plan: InstallPlan) -> None:
        row = self.table.rowCount()
        self.table.blockSignals(True)
        self.table.insertRow(row)
        self._install_ids.append(plan.install_id)
        name = QTableWidgetItem(plan.manifest.name)
        name.setFlags(
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsUserCheckable
        )
        name.setCheckState(Qt.CheckState.Checked)
        name.setToolTip(f"{plan.manifest.id} · {plan.archive_name}")
        change = QTableWidgetItem(plan.change)
        if plan.kind == OperationKind.DOWNGRADE:
            change.setForeground(colors.error_color(self.palette()))
        permissions = QTableWidgetItem(", ".join(plan.manifest.permissions) or "None")
        permissions.setToolTip("\n".join(words for _name, words in plan.permissions))
        for column, item in ((NAME, name), (CHANGE, change), (PERMISSIONS, permissions)):
            if column != NAME:
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.table.setItem(row, column, item)
        notes = QTableWidgetItem()
        notes.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        self.table.setItem(row, NOTES, notes)
        self.table.blockSignals(False)

    def row_of(self, install_id: int) -> int:
        return self._install_ids.index(install_id)

    def is_shown(self, install_id: int) -> bool:
        return not self.table.isRowHidden(self.row_of(install_id))

    # -- the person's choice ---------------------------------------------------------------------

    def _toggle_row(self, row: int) -> None:
        item = self.table.item(row, NAME)
        assert item is not None
        ticked = item.checkState() == Qt.CheckState.Checked
        item.setCheckState(Qt.CheckState.Unchecked if ticked else Qt.CheckState.Checked)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != NAME:
            return
        install_id = self._install_ids[item.row()]
        self.choice.set_ticked(install_id, item.checkState() == Qt.CheckState.Checked)
        self._show_choice()

    def _show_choice(self) -> None:
        """Show what the choice now says: which rows go ahead, which are held back and why."""
        choice = self.choice
        self.table.blockSignals(True)
        for row, install_id in enumerate(self._install_ids):
            held = choice.held_reason(install_id)
            self.table.setRowHidden(row, held is not None)
            plan = choice.arranged(install_id) or next(
                plan for plan in choice.plans if plan.install_id == install_id
            )
            notes = plan_notes(plan)
            if install_id not in choice.ticked:
                notes.insert(0, "Not ticked: it will not be installed")
            cell = self.table.item(row, NOTES)
            assert cell is not None
            cell.setText("\n".join(notes))
        self.table.blockSignals(False)
        self.table.resizeRowsToContents()
        self._fit_table()

        lines = [
            f"<li><b>{escape(plan.archive_name)}</b>: {escape(reason)}</li>"
            for plan, reason in choice.batch.held_back
        ] + [
            f"<li><b>{escape(_file_name(record))}</b>: "
            f"{escape(record.error or 'It could not be read.')}</li>"
            for record in choice.refused
        ]
        self.refused_label.setText(f"<ul style='margin:0'>{''.join(lines)}</ul>")
        self.refused_heading.setVisible(bool(lines))
        self.refused_label.setVisible(bool(lines))

        count = len(choice.batch.ready)
        files = len(choice.plans) + len(choice.refused)
        self.heading.setText(
            f"{count} of {files} files will be installed"
            if count != files
            else f"All {files} files will be installed"
        )
        self.install_button.setText(f"Install {count}" if count else "Install")
        self.install_button.setAccessibleName(
            f"Install the {count} ticked extensions" if count else "Nothing is ticked"
        )
        self.install_button.setEnabled(count > 0)
        # Going back to an older version should not be a reflex: with a downgrade ticked, Return
        # (the default button) says no, as in the single confirmation.
        wanted = self.install_button if count and not choice.has_downgrade else self.cancel_button
        if wanted is not self.default_button:
            self.default_button.setDefault(False)
            self.default_button.setAutoDefault(False)
            self.default_button = wanted
        self.default_button.setDefault(True)

    def _fit_table(self) -> None:
        shown = [row for row in range(self.table.rowCount()) if not self.table.isRowHidden(row)]
        rows = sum(self.table.rowHeight(row) for row in shown[:MAX_SHOWN_ROWS])
        frame = self.table.frameWidth() * 2
        # As tall as its rows (up to a few), so what is ticked is seen without scrolling.
        header = self.table.horizontalHeader().sizeHint().height()
        self.table.setFixedHeight(
            header + max(rows, self.table.verticalHeader().defaultSectionSize()) + frame
        )

    def showEvent(self, event: QShowEvent) -> None:
        # Wrapped labels ask for their height at a narrow width: size for the real one.
        layout = self.layout()
        if layout is not None and layout.hasHeightForWidth():
            self.resize(self.width(), max(layout.totalHeightForWidth(self.width()), 1))
        super().showEvent(event)
        target = self.table if self.table.rowCount() else self.default_button
        target.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    @classmethod
    def ask(
        cls,
        parent: QWidget | None,
        choice: BatchChoice,
        on_answer: Callable[[bool], None],
    ) -> BatchDialog:
        """Show the choice window-modal and return at once; ``on_answer(True)`` means install
        what ``choice`` now says. Closing the dialog any other way than Install is a no. The
        caller connects ``inside_requested`` to plan what a refused file offers, and hands the
        plan to ``add_plan``."""
        dialog = cls(choice, parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(
            lambda result: on_answer(result == QDialog.DialogCode.Accepted.value)
        )
        dialog.open()
        return dialog
