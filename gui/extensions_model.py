"""The installed-extensions table: one model, many rows, no widget per row."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QBrush, QFont, QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from gui import colors
from gui.table_model import DECORATION, DISPLAY, FONT, FOREGROUND, TOOLTIP, Index, RecordTableModel
from gui.updates import BLOCKED, HELD, UP_TO_DATE, UPDATE, available_words, update_details
from registry.store import ExtensionRecord, ExtensionSummary

if TYPE_CHECKING:
    from registry.sources import ExtensionUpdates

COLUMNS = ("Name", "Version", "Update", "Enabled", "Installed", "Id")
NAME, VERSION, AVAILABLE, ENABLED, INSTALLED, IDENTIFIER = range(len(COLUMNS))
RecordRole = Qt.ItemDataRole.UserRole + 1
ANSWERED_ROLES = frozenset({DISPLAY, DECORATION, TOOLTIP, FONT, FOREGROUND, int(RecordRole)})
# The Update column sorts what can be updated first, then what cannot, then the unchecked.
UPDATE_ORDER = {UPDATE: 0, BLOCKED: 1, HELD: 2, UP_TO_DATE: 3}
RECENT_FILTERS = 8


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

    def forget_others(self, records: Mapping[str, ExtensionSummary]) -> None:
        """Keep only the icons of these extensions' versions (one look per icon kept, not per
        extension: the cache holds what was painted, the list may hold a hundred thousand)."""
        self._icons = {
            key: icon
            for key, icon in self._icons.items()
            if (record := records.get(key[0])) is not None and record.updated_at == key[1]
        }


@dataclass(frozen=True, slots=True)
class Arrangement:
    """Every extension by id, all of them in one order, and their search texts in that order."""

    by_id: dict[str, ExtensionSummary]
    ordered: list[ExtensionSummary]
    texts: list[str]
    sorted_as: tuple[int, bool, int]


class ExtensionsModel(RecordTableModel):
    """Sorts and filters itself in Python with plain list operations.

    A QSortFilterProxyModel compares rows by calling ``data()`` back into Python for every
    comparison: with ten thousand extensions that is hundreds of thousands of calls and seconds
    of frozen window. Here every extension is sorted once with a key function (``_ordered``);
    the shown rows are the ones of that order that pass the filter, so a keystroke only tests
    precomputed lowercase text, and a changed extension moves to its place by binary search
    (``update_records``) instead of the list being sorted again.
    """

    columns = COLUMNS

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ExtensionSummary] = []
        # The search text of each shown row, at the same index.
        self._rows_text: list[str] = []
        self._all: dict[str, ExtensionSummary] = {}
        # Every extension in the current sort order, and its search text at the same index.
        self._ordered: list[ExtensionSummary] = []
        self._ordered_text: list[str] = []
        self._filter = ""
        # What the last few filter texts showed, for as long as nothing else changes: deleting
        # what was just typed shows the earlier rows again without looking through them all.
        self._recent_filters: dict[str, tuple[list[ExtensionSummary], list[str]]] = {}
        self._updates: Mapping[str, ExtensionUpdates] = {}
        self._updates_complete = True
        self._updates_only = False
        self._sort_column = NAME
        self._sort_order = Qt.SortOrder.AscendingOrder
        self.icons = IconCache()

    # -- contents --------------------------------------------------------------------------------

    def set_records(self, records: list[ExtensionSummary]) -> None:
        self.adopt(self.arranger()(records))

    def arranger(self) -> Callable[[list[ExtensionSummary]], Arrangement]:
        """What sorts a list of extensions the way this model shows them, and makes their
        search texts: plain Python, so a worker can run it on a large list and the GUI thread
        only ``adopt``s the result."""
        sort_key, descending, sorted_as = self._sort_key(), self._descending, self._sorted_as()

        def arrange(records: list[ExtensionSummary]) -> Arrangement:
            ordered = sorted(records, key=sort_key, reverse=descending)
            texts = [_search_text(record) for record in ordered]
            return Arrangement({r.id: r for r in records}, ordered, texts, sorted_as)

        return arrange

    def adopt(self, arrangement: Arrangement) -> None:
        """Show these extensions instead of the ones shown (a reset: the caller re-selects)."""
        if arrangement.sorted_as != self._sorted_as():
            # Sorted another way meanwhile (the person clicked a header): sort it here.
            arrangement = self.arranger()(list(arrangement.by_id.values()))
        self.beginResetModel()
        self._recent_filters.clear()
        self._all = arrangement.by_id
        self.icons.forget_others(arrangement.by_id)
        self._ordered, self._ordered_text = arrangement.ordered, arrangement.texts
        self._rows, self._rows_text = self._shown()
        self.endResetModel()

    def update_records(self, changed: list[ExtensionSummary], removed: Iterable[str] = ()) -> None:
        """Put these extensions' new summaries in place and take the removed ones out, row by
        row: the view keeps its selection and scroll position, and nothing else is re-read."""
        self._recent_filters.clear()
        for extension_id in removed:
            old = self._all.pop(extension_id, None)
            if old is not None:
                self._take_out(old)
        for record in changed:
            old = self._all.get(record.id)
            self._all[record.id] = record
            if old is None:
                self._put_in(record)
            else:
                self._replace(old, record)

    def name_of(self, extension_id: str) -> str | None:
        """The name of an installed extension, from the rows already read."""
        record = self._all.get(extension_id)
        return record.name if record is not None else None

    def set_filter(self, text: str) -> None:
        previous, needle = self._filter, text.strip().casefold()
        self._filter = needle
        shown = self._recent_filters.get(needle)
        if shown is None:
            # More letters typed: the matches are among the rows shown now.
            narrowing = bool(previous) and previous in needle
            shown = _matching(needle, self._rows, self._rows_text) if narrowing else self._shown()
            self._recent_filters[needle] = shown
            while len(self._recent_filters) > RECENT_FILTERS:
                del self._recent_filters[next(iter(self._recent_filters))]
        # Copies: the shown rows change in place as extensions change, the remembered ones not.
        self._relayout((list(shown[0]), list(shown[1])))

    def set_updates(self, updates: Mapping[str, ExtensionUpdates], *, complete: bool) -> None:
        """What the last check for updates found, by extension id (``complete``: from every
        source, none failed)."""
        self._updates = dict(updates)
        self._updates_complete = complete
        self._recent_filters.clear()
        if self._sort_column == AVAILABLE:
            self._sort_all()
        self._relayout()

    def updates_for(self, extension_id: str) -> ExtensionUpdates | None:
        return self._updates.get(extension_id)

    def set_updates_only(self, only: bool) -> None:
        """The Updates view: only the extensions that have an update to install."""
        self._updates_only = only
        self._recent_filters.clear()
        self._relayout()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort_column, self._sort_order = column, order
        self._recent_filters.clear()
        self._sort_all()
        self._relayout()

    def total_count(self) -> int:
        """Installed extensions, whether or not the filter shows them."""
        return len(self._all)

    def row_of(self, extension_id: str) -> int | None:
        record = self._all.get(extension_id)
        if record is None:
            return None
        row = self._position(self._rows, record)
        return row if row < len(self._rows) and self._rows[row].id == extension_id else None

    def record(self, row: int) -> ExtensionSummary:
        return self._rows[row]

    # -- order and filter ------------------------------------------------------------------------

    def _sort_key(self) -> Callable[[ExtensionSummary], tuple[Any, ...]]:
        """The sort key, unique (the id decides between equals) so that every extension has
        exactly one place; one plain function, since sorting calls it for every row."""
        if self._sort_column == NAME:
            return _name_key
        base = (
            self._update_key
            if self._sort_column == AVAILABLE
            else SORT_KEYS.get(self._sort_column, SORT_KEYS[NAME])
        )
        return lambda record: (base(record), record.id)

    @property
    def _descending(self) -> bool:
        return self._sort_order == Qt.SortOrder.DescendingOrder

    def _sort_all(self) -> None:
        arranged = self.arranger()(list(self._all.values()))
        self._ordered, self._ordered_text = arranged.ordered, arranged.texts

    def _sorted_as(self) -> tuple[int, bool, int]:
        """What the order depends on: the column, the direction, and for the Update column
        the check's findings."""
        return self._sort_column, self._descending, id(self._updates)

    def _position(self, rows: list[ExtensionSummary], record: ExtensionSummary) -> int:
        """Where ``record`` is, or would go, in ``rows`` (which are in the current order)."""
        sort_key, descending = self._sort_key(), self._descending
        key = sort_key(record)
        low, high = 0, len(rows)
        while low < high:
            middle = (low + high) // 2
            other = sort_key(rows[middle])
            if (other > key) if descending else (other < key):
                low = middle + 1
            else:
                high = middle
        return low

    def _passes(self, record: ExtensionSummary) -> bool:
        if self._filter and self._filter not in _search_text(record):
            return False
        return not self._updates_only or self._status(record.id) == UPDATE

    def _shown(self) -> tuple[list[ExtensionSummary], list[str]]:
        """The rows the filter and the Updates view let through, with their search texts."""
        rows, texts = _matching(self._filter, self._ordered, self._ordered_text)
        if self._updates_only:
            kept = [at for at, r in enumerate(rows) if self._status(r.id) == UPDATE]
            rows, texts = [rows[at] for at in kept], [texts[at] for at in kept]
        return rows, texts

    def _status(self, extension_id: str) -> str | None:
        item = self._updates.get(extension_id)
        return None if item is None else item.status

    def _update_key(self, record: ExtensionSummary) -> tuple[int, str]:
        return UPDATE_ORDER.get(
            self._status(record.id) or "", len(UPDATE_ORDER)
        ), record.name.casefold()

    def _relayout(self, shown: tuple[list[ExtensionSummary], list[str]] | None = None) -> None:
        """Show ``shown`` (rows and their texts; default: what the filter lets through)
        keeping the selection and current row on the same extensions."""
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        ids = [self._rows[index.row()].id if index.isValid() else None for index in old]
        self._rows, self._rows_text = self._shown() if shown is None else shown
        new = []
        for index, extension_id in zip(old, ids, strict=True):
            row = self.row_of(extension_id) if extension_id is not None else None
            new.append(self.index(row, index.column()) if row is not None else QModelIndex())
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()

    # -- one extension changed -------------------------------------------------------------------

    def _take_out(self, record: ExtensionSummary) -> None:
        at = self._position(self._ordered, record)
        del self._ordered[at], self._ordered_text[at]
        row = self._position(self._rows, record)
        if row < len(self._rows) and self._rows[row].id == record.id:
            self._remove_row(row)

    def _put_in(self, record: ExtensionSummary) -> None:
        at = self._position(self._ordered, record)
        self._ordered.insert(at, record)
        self._ordered_text.insert(at, _search_text(record))
        if self._passes(record):
            self._insert_row(record)

    def _replace(self, old: ExtensionSummary, new: ExtensionSummary) -> None:
        """A changed extension stays the same row for the view (moved if its place changed),
        so a selected one stays selected."""
        at = self._position(self._ordered, old)
        del self._ordered[at], self._ordered_text[at]
        at = self._position(self._ordered, new)
        self._ordered.insert(at, new)
        self._ordered_text.insert(at, _search_text(new))
        row = self._position(self._rows, old)
        shown = row < len(self._rows) and self._rows[row].id == old.id
        if not shown:
            if self._passes(new):
                self._insert_row(new)
            return
        if not self._passes(new):
            self._remove_row(row)
            return
        del self._rows[row]
        target = self._position(self._rows, new)
        self._rows.insert(row, old)
        text = _search_text(new)
        if target != row:
            # Qt counts the destination before the row leaves: one more when moving down.
            destination = target + 1 if target > row else target
            self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), destination)
            del self._rows[row], self._rows_text[row]
            self._rows.insert(target, new)
            self._rows_text.insert(target, text)
            self.endMoveRows()
        else:
            self._rows[row], self._rows_text[row] = new, text
        self.dataChanged.emit(self.index(target, 0), self.index(target, len(self.columns) - 1))

    def _insert_row(self, record: ExtensionSummary) -> None:
        row = self._position(self._rows, record)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.insert(row, record)
        self._rows_text.insert(row, _search_text(record))
        self.endInsertRows()

    def _remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._rows[row], self._rows_text[row]
        self.endRemoveRows()

    # -- QAbstractTableModel ---------------------------------------------------------------------

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        # Painting asks every visible cell for seven roles, each a call into Python that may
        # wait for the interpreter while workers run: the roles nothing answers return first.
        if role not in ANSWERED_ROLES or not index.isValid():
            return None
        record = self._rows[index.row()]
        column = index.column()
        if role == DISPLAY:
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
            return None
        if role == RecordRole:
            return record
        if column == NAME:
            if role == DECORATION:
                return self.icons.icon(record)
            if role == TOOLTIP:
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


def _search_text(record: ExtensionSummary) -> str:
    return f"{record.name}\n{record.id}\n{record.version}\n{record.description}".casefold()


def _matching(
    needle: str, rows: list[ExtensionSummary], texts: list[str]
) -> tuple[list[ExtensionSummary], list[str]]:
    """The rows whose search text contains ``needle``, in their order, with their texts."""
    if not needle:
        return list(rows), list(texts)
    # The test runs in C (map/compress), not as one Python step per row: at a hundred thousand
    # extensions that is the difference between a keystroke inside one frame or two.
    hits = list(map(operator.contains, texts, itertools.repeat(needle)))
    return list(itertools.compress(rows, hits)), list(itertools.compress(texts, hits))


def _version_key(record: ExtensionSummary) -> tuple[object, ...]:
    """Semantic-version order (1.10.0 after 1.9.0); unparsable versions last, as text."""
    from registry.manifest import SemVer  # only when sorting by version: keeps launch lean

    try:
        return (0, SemVer.parse(record.version))
    except ValueError:
        return (1, record.version)


def _name_key(record: ExtensionSummary) -> tuple[str, str]:
    return record.name.casefold(), record.id


SORT_KEYS: dict[int, Callable[[ExtensionSummary], Any]] = {
    NAME: _name_key,
    VERSION: _version_key,
    ENABLED: lambda r: (r.enabled, r.name.casefold()),
    INSTALLED: lambda r: (r.installed_at, r.name.casefold()),
    IDENTIFIER: lambda r: r.id,
}
