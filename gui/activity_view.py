"""Every operation the registry remembers, newest first (model/view, loaded page by page).

A registry can hold a hundred thousand operation records; the view loads the newest page when it
is first shown and more as the person scrolls down (``canFetchMore``/``fetchMore``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QBrush, QGuiApplication, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from gui import colors
from gui.table_model import Index, RecordTableModel
from registry.errors import RegistryError
from registry.store import OperationRecord, Registry
from registry.vocabulary import OperationKind, OperationStatus, change_text, kind_of, status_words

log = logging.getLogger(__name__)
NameOf = Callable[[str], str | None]


# The last column holds why an operation failed, or the note of one that changed an extension
# without a file (turned off because it does not fit the app, turned on anyway).
COLUMNS = ("Time", "File", "Extension", "Change", "Status", "Details")
TIME, FILE, EXTENSION, CHANGE, STATUS, DETAILS = range(len(COLUMNS))
PAGE_SIZE = 500
# A rollback installs the kept copy (archives/<sha256>.zip): its name says nothing to a person.
KEPT_COPY = "Kept copy"


def change_words(record: OperationRecord) -> str:
    """ "Upgrade 1.0.0 → 1.1.0"; "Turn off 1.0.0" where the version stays what it was."""
    if record.from_version == record.to_version:
        return change_text(record.kind, None, record.to_version)
    return record.change


def file_words(record: OperationRecord) -> str:
    if not record.archive_path:
        return ""
    if kind_of(record.kind) == OperationKind.ROLLBACK:
        return KEPT_COPY
    return Path(record.archive_path).name


class ActivityModel(RecordTableModel):
    columns = COLUMNS

    def __init__(self, registry: Registry, name_of: NameOf) -> None:
        super().__init__()
        self.registry = registry
        # The names of installed extensions, from the list the window already holds.
        self.name_of = name_of
        self._rows: list[OperationRecord] = []
        self._filter = ""
        self._more = False
        self.loaded = False

    def reload(self) -> None:
        """Re-read as many of the newest operations as are shown now (at least a page)."""
        wanted = max(PAGE_SIZE, len(self._rows))
        try:
            records = self.registry.list_operations(limit=wanted, matching=self._filter)
        except RegistryError as error:
            log.warning("could not read the activity: %s", error)
            return
        self.beginResetModel()
        self._rows = records
        self._more = len(records) == wanted
        self.loaded = True
        self.endResetModel()

    def set_filter(self, text: str) -> None:
        """Show only the operations matching ``text`` (read from the registry, page by page)."""
        if text.strip() != self._filter:
            self._filter = text.strip()
            self.reload()

    def record(self, row: int) -> OperationRecord:
        return self._rows[row]

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self._more

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if parent.isValid() or not self._rows:
            return
        shown = len(self._rows)
        try:
            extra = self.registry.list_operations(
                limit=PAGE_SIZE, before_id=self._rows[-1].install_id, matching=self._filter
            )
        except RegistryError as error:
            log.warning("could not read more activity: %s", error)
            return
        self._more = len(extra) == PAGE_SIZE
        if extra:
            self.beginInsertRows(QModelIndex(), shown, shown + len(extra) - 1)
            self._rows.extend(extra)
            self.endInsertRows()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        record = self._rows[index.row()]
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if column == TIME:
                return record.started_at[:19].replace("T", " ")
            if column == FILE:
                if role == Qt.ItemDataRole.ToolTipRole:
                    return record.archive_path or None
                return file_words(record)
            if column == EXTENSION:
                # Its name while it is installed; an uninstalled one is known by its id.
                extension_id = record.extension_id or ""
                if role == Qt.ItemDataRole.ToolTipRole:
                    return extension_id or None
                return self.name_of(extension_id) or extension_id
            if column == CHANGE:
                return change_words(record)
            if column == STATUS:
                return status_words(record.status)
            if column == DETAILS:
                return record.error or ""
        if role == Qt.ItemDataRole.ForegroundRole and column == STATUS:
            palette = QGuiApplication.palette()
            if record.status == OperationStatus.FAILED:
                return QBrush(colors.error_color(palette))
            if record.status == OperationStatus.COMPLETED:
                return QBrush(colors.success_color(palette))
        return None


class ActivityView(QTableView):
    """Loads on first show; afterwards ``refresh()`` re-reads (cheaply skipped while hidden)."""

    def __init__(self, registry: Registry, name_of: NameOf, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("activityView")
        self.setAccessibleName("Activity: every install, update, rollback and uninstall")
        self.activity_model = ActivityModel(registry, name_of)
        self.setModel(self.activity_model)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # Wide enough for what each column typically holds, measured in this font (so at any
        # scale); longer names and files show in full in their tooltips.
        metrics = self.fontMetrics()
        for column, sample in (
            (TIME, "2026-12-31 23:59:59"),
            (FILE, "an-extension-1.10.2.zip"),
            (EXTENSION, "An Extension Name"),
            (CHANGE, "Roll back 10.1.0 → 10.2.0"),
            (STATUS, "Uninstalling"),
        ):
            self.setColumnWidth(column, metrics.horizontalAdvance(sample) + 24)
        self._stale = True

    def refresh(self) -> None:
        if self.isVisible():
            self.activity_model.reload()
            self._stale = False
        else:
            self._stale = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.activity_model.reload()
            self._stale = False
