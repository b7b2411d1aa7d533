"""The installed-extensions table: one model, many rows, no widget per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from registry.store import ExtensionRecord

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Name", "Version", "Enabled", "Installed", "Id")
NAME, VERSION, ENABLED, INSTALLED, IDENTIFIER = range(len(COLUMNS))
RecordRole = Qt.ItemDataRole.UserRole + 1


def icon_file(record: ExtensionRecord) -> Path | None:
    """The extension's icon inside its own folder; a path that escapes the folder is ignored."""
    if not record.icon_path:
        return None
    folder = Path(record.install_path)
    candidate = folder / record.icon_path
    try:
        if not candidate.resolve().is_relative_to(folder.resolve()):
            return None
    except OSError:
        return None
    return candidate if candidate.is_file() else None


class IconCache:
    """One QIcon per extension version, read from disk once; the app icon when there is none."""

    def __init__(self) -> None:
        self._icons: dict[tuple[str, str], QIcon] = {}

    def icon(self, record: ExtensionRecord) -> QIcon:
        key = (record.id, record.updated_at)
        icon = self._icons.get(key)
        if icon is None:
            path = icon_file(record)
            icon = QIcon(str(path)) if path is not None else QIcon()
            if icon.isNull():
                icon = QApplication.windowIcon()
            self._icons[key] = icon
        return icon

    def forget_others(self, records: list[ExtensionRecord]) -> None:
        keep = {(record.id, record.updated_at) for record in records}
        self._icons = {key: icon for key, icon in self._icons.items() if key in keep}


class ExtensionsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self._records: list[ExtensionRecord] = []
        self.icons = IconCache()

    def set_records(self, records: list[ExtensionRecord]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.icons.forget_others(self._records)
        self.endResetModel()

    def row_of(self, extension_id: str) -> int | None:
        for row, record in enumerate(self._records):
            if record.id == extension_id:
                return row
        return None

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
        if role == Qt.ItemDataRole.DecorationRole and column == NAME:
            return self.icons.icon(record)
        if role == Qt.ItemDataRole.ToolTipRole and column == NAME:
            return record.description or record.id
        return None
