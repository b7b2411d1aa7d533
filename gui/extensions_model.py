"""The installed-extensions table: one model, many rows, no widget per row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QBrush, QFont, QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from gui import colors
from gui.table_model import Index, RecordTableModel
from gui.updates import BLOCKED, HELD, UP_TO_DATE, UPDATE, available_words, update_details
from registry.store import ExtensionRecord, ExtensionSummary

if TYPE_CHECKING:
    from registry.sources import ExtensionUpdates

COLUMNS = ("Name", "Version", "Update", "Enabled", "Installed", "Id")
NAME, VERSION, AVAILABLE, ENABLED, INSTALLED, IDENTIFIER = range(len(COLUMNS))
RecordRole = Qt.ItemDataRole.UserRole + 1
# The Update column sorts what can be updated first, then what cannot, then the unchecked.
UPDATE_ORDER = {UPDATE: 0, BLOCKED: 1, HELD: 2, UP_TO_DATE: 3}


def icon_file(record: ExtensionRecord | ExtensionSummary) -> Path | None:
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

    def icon(self, record: ExtensionRecord | ExtensionSummary) -> QIcon:
        key = (record.id, record.updated_at)
        icon = self._icons.get(key)
        if icon is None:
            path = icon_file(record)
            icon = QIcon(str(path)) if path is not None else QIcon()
            if icon.isNull():
                icon = QApplication.windowIcon()
            self._icons[key] = icon
        return icon

    def forget_others(self, records: list[ExtensionSummary]) -> None:
        keep = {(record.id, record.updated_at) for record in records}
        self._icons = {key: icon for key, icon in self._icons.items() if key in keep}


class ExtensionsModel(RecordTableModel):
    """Sorts and filters itself in Python with plain list operations.

    A QSortFilterProxyModel compares rows by calling ``data()`` back into Python for every
    comparison: with ten thousand extensions that is hundreds of thousands of calls and seconds
    of frozen window. Sorting once with a key function and filtering on a precomputed lowercase
    text keeps opening and filtering the list instant.
    """

    columns = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ExtensionSummary] = []
        self._all: list[ExtensionSummary] = []
        self._names: dict[str, str] = {}
        self._search_text: dict[str, str] = {}
        self._filter = ""
        self._updates: Mapping[str, ExtensionUpdates] = {}
        self._updates_complete = True
        self._updates_only = False
        self._sort_column = NAME
        self._sort_order = Qt.SortOrder.AscendingOrder
        self.icons = IconCache()

    # -- contents --------------------------------------------------------------------------------

    def set_records(self, records: list[ExtensionSummary]) -> None:
        self.beginResetModel()
        self._all = list(records)
        self._names = {r.id: r.name for r in records}
        self._search_text = {
            r.id: f"{r.name}\n{r.id}\n{r.version}\n{r.description}".casefold() for r in records
        }
        self.icons.forget_others(self._all)
        self._rows = self._arranged()
        self.endResetModel()

    def name_of(self, extension_id: str) -> str | None:
        """The name of an installed extension, from the rows already read."""
        return self._names.get(extension_id)

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().casefold()
        self._relayout()

    def set_updates(self, updates: Mapping[str, ExtensionUpdates], *, complete: bool) -> None:
        """What the last check for updates found, by extension id (``complete``: from every
        source, none failed)."""
        self._updates = dict(updates)
        self._updates_complete = complete
        self._relayout()

    def updates_for(self, extension_id: str) -> ExtensionUpdates | None:
        return self._updates.get(extension_id)

    def set_updates_only(self, only: bool) -> None:
        """The Updates view: only the extensions that have an update to install."""
        self._updates_only = only
        self._relayout()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort_column, self._sort_order = column, order
        self._relayout()

    def total_count(self) -> int:
        """Installed extensions, whether or not the filter shows them."""
        return len(self._all)

    def row_of(self, extension_id: str) -> int | None:
        for row, record in enumerate(self._rows):
            if record.id == extension_id:
                return row
        return None

    def record(self, row: int) -> ExtensionSummary:
        return self._rows[row]

    def _arranged(self) -> list[ExtensionSummary]:
        rows = self._all
        if self._filter:
            needle = self._filter
            rows = [r for r in rows if needle in self._search_text[r.id]]
        if self._updates_only:
            rows = [r for r in rows if self._status(r.id) == UPDATE]
        key = (
            self._update_key
            if self._sort_column == AVAILABLE
            else SORT_KEYS.get(self._sort_column, SORT_KEYS[NAME])
        )
        descending = self._sort_order == Qt.SortOrder.DescendingOrder
        return sorted(rows, key=key, reverse=descending)

    def _status(self, extension_id: str) -> str | None:
        item = self._updates.get(extension_id)
        return None if item is None else item.status

    def _update_key(self, record: ExtensionSummary) -> tuple[int, str]:
        return UPDATE_ORDER.get(
            self._status(record.id) or "", len(UPDATE_ORDER)
        ), record.name.casefold()

    def _relayout(self) -> None:
        """Re-sort/re-filter keeping the selection and current row on the same extensions."""
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        ids = [self._rows[index.row()].id if index.isValid() else None for index in old]
        self._rows = self._arranged()
        position = {record.id: row for row, record in enumerate(self._rows)}
        new = [
            self.index(position[ext_id], index.column())
            if ext_id is not None and ext_id in position
            else QModelIndex()
            for index, ext_id in zip(old, ids, strict=True)
        ]
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()

    # -- QAbstractTableModel ---------------------------------------------------------------------

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        record = self._rows[index.row()]
        column = index.column()
        if role == RecordRole:
            return record
        if role == Qt.ItemDataRole.DisplayRole:
            if column == NAME:
                return record.name
            if column == VERSION:
                return record.version
            if column == AVAILABLE:
                item = self._updates.get(record.id)
                return available_words(item, complete=self._updates_complete)
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
        if column == AVAILABLE:
            return self._update_data(record.id, role)
        return None

    def _update_data(self, extension_id: str, role: int) -> Any:
        """An available update stands out (bold); "Up to date" and the like are hints."""
        item = self._updates.get(extension_id)
        if item is None:
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = update_details(item, complete=self._updates_complete)
            if item.offer is not None:
                lines.append(f"From the source {item.offer.source}.")
            if item.origin_note:
                lines.append(item.origin_note)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.FontRole and item.status == UPDATE:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and item.status != UPDATE:
            return QBrush(colors.hint_color(QGuiApplication.palette()))
        return None


def _version_key(record: ExtensionSummary) -> tuple[object, ...]:
    """Semantic-version order (1.10.0 after 1.9.0); unparsable versions last, as text."""
    from registry.manifest import SemVer  # only when sorting by version: keeps launch lean

    try:
        return (0, SemVer.parse(record.version))
    except ValueError:
        return (1, record.version)


SORT_KEYS: dict[int, Callable[[ExtensionSummary], Any]] = {
    NAME: lambda r: (r.name.casefold(), r.id),
    VERSION: _version_key,
    ENABLED: lambda r: (r.enabled, r.name.casefold()),
    INSTALLED: lambda r: (r.installed_at, r.name.casefold()),
    IDENTIFIER: lambda r: r.id,
}
