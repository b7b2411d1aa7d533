"""The versions part of the details: where the installed version came from, the update a check
found, the hold, the kept versions, and the rollback a kept version allows.

The window reads the facts (``read_version_facts``, a few short reads) and the section only
shows them and says which button was pressed, like the rest of the pane.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.labels import ElidedValue, value_form, value_label
from gui.table_model import Index, RecordTableModel
from gui.updates import UPDATE, UpdateChecks, update_details
from registry.errors import UserFacingError
from registry.sizes import format_size
from registry.store import ExtensionRecord, KeptVersionRecord, Registry
from registry.versions import describe_age, rollback_target

if TYPE_CHECKING:
    from registry.sources import ExtensionUpdates


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What the section shows about one installed extension."""

    installed_sha256: str
    kept: tuple[KeptVersionRecord, ...]  # newest install first
    missing: frozenset[str]  # kept archives (by SHA-256) whose file is gone
    rollback_to: KeptVersionRecord | None
    no_rollback_because: str | None  # why there is nothing to roll back to, in plain words
    updates: ExtensionUpdates | None  # None: nothing is known (``checks.unknown_words``)
    checks: UpdateChecks


def read_version_facts(
    registry: Registry, record: ExtensionRecord, checks: UpdateChecks
) -> VersionFacts:
    kept = tuple(registry.list_kept_versions(record.id))
    missing = frozenset(
        version.archive_sha256
        for version in kept
        if not registry.paths.kept_archive(version.archive_sha256).is_file()
    )
    # The registry's own choice of what a rollback goes back to, or its reason for none.
    try:
        target, because = rollback_target(registry, record.id), None
    except UserFacingError as error:
        target, because = None, str(error)
    updates = checks.for_extension(record.id)
    return VersionFacts(record.archive_sha256, kept, missing, target, because, updates, checks)


def file_name(origin: str) -> str:
    """The last part of a path or an address: what a person recognises a file by."""
    path = unquote(urlsplit(origin).path) if "://" in origin else origin
    return Path(path).name or origin


def rollback_words(target: KeptVersionRecord) -> str:
    return f"Roll back to {target.version} (installed {describe_age(target.installed_at)})"


KEPT_COLUMNS = ("Version", "Installed", "Size", "From")
KEPT_VERSION, KEPT_INSTALLED, KEPT_SIZE, KEPT_FROM = range(len(KEPT_COLUMNS))


class KeptVersionsModel(RecordTableModel):
    """The kept versions of one extension (a handful: the preferences bound them)."""

    columns = KEPT_COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[KeptVersionRecord] = []
        self._installed = ""
        self._missing: frozenset[str] = frozenset()

    def set_facts(self, facts: VersionFacts) -> None:
        self.beginResetModel()
        self._rows = list(facts.kept)
        self._installed = facts.installed_sha256
        self._missing = facts.missing
        self.endResetModel()

    def record(self, row: int) -> KeptVersionRecord:
        return self._rows[row]

    def is_installed(self, row: int) -> bool:
        return self._rows[row].archive_sha256 == self._installed

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        version = self._rows[index.row()]
        column = index.column()
        missing = version.archive_sha256 in self._missing
        if role == Qt.ItemDataRole.DisplayRole:
            if column == KEPT_VERSION:
                installed = " (installed)" if self.is_installed(index.row()) else ""
                return f"{version.version}{installed}"
            if column == KEPT_INSTALLED:
                return describe_age(version.installed_at)
            if column == KEPT_SIZE:
                return "Archive missing" if missing else format_size(version.archive_size)
            if column == KEPT_FROM:
                return file_name(version.origin) if version.origin else "Not recorded"
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == KEPT_INSTALLED:
                return version.installed_at[:16].replace("T", " ")
            if column == KEPT_FROM:
                source = (
                    f"\nFrom the source {version.origin_source}" if version.origin_source else ""
                )
                return f"{version.origin}{source}" or None
        if role == Qt.ItemDataRole.FontRole and self.is_installed(index.row()):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and missing and column == KEPT_SIZE:
            return QBrush(colors.error_color(QGuiApplication.palette()))
        return None


class KeptVersionsView(QTableView):
    """As tall as its rows: it sits in the details' scroll area, which scrolls instead."""

    def __init__(self, model: KeptVersionsModel) -> None:
        super().__init__()
        self.setObjectName("keptVersions")
        self.setAccessibleName("Kept versions")
        self.setModel(model)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTabKeyNavigation(False)
        self.setWordWrap(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        rows = self.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(KEPT_FROM, QHeaderView.ResizeMode.Stretch)
        model.modelReset.connect(self._fit_height)

    def _fit_height(self) -> None:
        # Rows of the style's fixed height: known before the view is laid out or shown.
        rows = self.model().rowCount() * self.verticalHeader().defaultSectionSize()
        header = self.horizontalHeader().sizeHint().height()
        self.setFixedHeight(header + rows + 2 * self.frameWidth())


class VersionsSection(QWidget):
    """Origin, update, hold, kept versions and rollback of the extension shown."""

    update_clicked = Signal()
    rollback_clicked = Signal()
    hold_clicked = Signal(bool)  # True: hold it, False: release it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("versionsSection")
        # Only as tall as its rows: space the pane has to spare goes to the README.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.facts: VersionFacts | None = None
        self._held = False

        heading = QLabel("Versions")
        heading_font = heading.font()
        heading_font.setBold(True)
        heading.setFont(heading_font)

        self.origin_label = ElidedValue("Origin", Qt.TextElideMode.ElideMiddle)
        self.source_label = ElidedValue("Update source", Qt.TextElideMode.ElideMiddle)
        self.update_label = value_label("Update")
        self.update_button = QPushButton("Update")
        self.update_button.setObjectName("updateButton")
        self.update_button.clicked.connect(self.update_clicked)
        self.hold_label = value_label("Hold")
        self.hold_button = QPushButton("Hold")
        self.hold_button.setObjectName("holdButton")
        self.hold_button.clicked.connect(lambda: self.hold_clicked.emit(not self._held))

        form = value_form()
        form.addRow("Origin:", self.origin_label)
        form.addRow("Source:", self.source_label)
        form.addRow("Update:", self.update_label)
        form.addRow("Hold:", self.hold_label)
        # Under the form, not beside its values: a wrapped value nested beside a button is
        # given too little height by the form layout.
        actions = QHBoxLayout()
        actions.addWidget(self.update_button)
        actions.addWidget(self.hold_button)
        actions.addStretch(1)

        self.kept_model = KeptVersionsModel()
        self.kept_view = KeptVersionsView(self.kept_model)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.setObjectName("rollbackButton")
        self.rollback_button.clicked.connect(self.rollback_clicked)
        rollback_line = QHBoxLayout()
        rollback_line.addWidget(self.rollback_button)
        rollback_line.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.addWidget(heading)
        layout.addLayout(form)
        layout.addLayout(actions)
        layout.addWidget(self.kept_view)
        layout.addLayout(rollback_line)

    def show_facts(self, record: ExtensionRecord, facts: VersionFacts) -> None:
        self.facts = facts
        self.origin_label.set_value(record.origin or "Not recorded")
        self.source_label.set_value(record.origin_source or "None (installed from a file)")
        self._show_update(facts)
        self._show_hold(record)
        self.kept_model.set_facts(facts)
        self.kept_view.setVisible(bool(facts.kept))
        target = facts.rollback_to
        if target is not None:
            self.rollback_button.setText(rollback_words(target))
            self.rollback_button.setEnabled(True)
            self.rollback_button.setToolTip(
                f"Install {target.version} again from its kept copy, with the settings it had "
                "then; it is held there until you release it."
            )
        else:
            self.rollback_button.setText("Roll back")
            self.rollback_button.setEnabled(False)
            self.rollback_button.setToolTip(facts.no_rollback_because or "")
        self.rollback_button.setAccessibleDescription(self.rollback_button.toolTip())

    def set_busy(self, busy: bool) -> None:
        self.hold_button.setEnabled(not busy)

    def _show_update(self, facts: VersionFacts) -> None:
        updates = facts.updates
        if updates is None:
            self.update_label.setText(facts.checks.unknown_words())
            self.update_button.hide()
            return
        details = update_details(updates, complete=facts.checks.complete)
        self.update_label.setText("\n".join(details))
        offer = updates.offer
        self.update_button.setVisible(updates.status == UPDATE and offer is not None)
        if offer is not None:
            self.update_button.setText(f"Update to {offer.version}")
            self.update_button.setToolTip(updates.origin_note or f"From {offer.source}")

    def _show_hold(self, record: ExtensionRecord) -> None:
        self._held = record.held
        if record.held and record.held_at is not None:
            reason = record.hold_reason or "Held by you"
            self.hold_label.setText(f"Held {describe_age(record.held_at)}: {reason}.")
            self.hold_button.setText("Release")
            self.hold_button.setToolTip("Offer updates for it again")
        else:
            self.hold_label.setText("Not held: updates are offered.")
            self.hold_button.setText("Hold")
            self.hold_button.setToolTip("Offer no updates for it until you release it")
