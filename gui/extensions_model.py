"""The installed-extensions table: one model, many rows, no widget per row."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from registry.store import ExtensionRecord

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Name", "Version", "Enabled", "Installed", "Id")
NAME, VERSION, ENABLED, INSTALLED, IDENTIFIER = range(len(COLUMNS))
RecordRole = Qt.ItemDataRole.UserRole + 1


class ExtensionsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self._records: list[ExtensionRecord] = []

    def set_records(self, records: list[ExtensionRecord]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.endResetModel()

    def record(self, row: int) -> ExtensionRecord:
        return self._records[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        record = self._records[index.row()]
        column = index.column()
        if role == RecordRole:
            return record
        if role == Qt.ItemDataRole.DisplayRole:
            if column == NAME:
                return record.name
            if column == VERSION:
                return record.version
            if column == ENABLED:
                return "Yes" if record.enabled else "No"
            if column == INSTALLED:
                return record.installed_at[:16].replace("T", " ")
            if column == IDENTIFIER:
                return record.id
        if role == Qt.ItemDataRole.ToolTipRole and column == NAME:
            return record.description or record.id
        return None
