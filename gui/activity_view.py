"""Every operation the registry remembers, newest first (model/view, loaded page by page).

A registry can hold a hundred thousand operation records; the view loads the newest page when it
is first shown and more as the person scrolls down (``canFetchMore``/``fetchMore``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex
from PySide6.QtGui import QBrush, QGuiApplication, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from gui import colors
from gui.table_model import DISPLAY, FOREGROUND, TOOLTIP, Index, RecordTableModel
from gui.workers import WorkerPool
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
# The reads of ``ActivityModel``: the newest page(s) again, what changed on top, the next page.
RELOAD, RECENT, MORE = "reload", "recent", "more"
ANSWERED_ROLES = frozenset({DISPLAY, TOOLTIP, FOREGROUND})


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
    """The history, read page by page. With a worker pool every read runs on it, one at a time
    (a filter that matches little makes SQLite look through every operation, a million of them
    in a large registry); what is asked for meanwhile runs after it."""

    columns = COLUMNS

    def __init__(self, registry: Registry, name_of: NameOf, pool: WorkerPool | None = None) -> None:
        super().__init__()
        self.registry = registry
        # The names of installed extensions, from the list the window already holds.
        self.name_of = name_of
        self.pool = pool
        self._rows: list[OperationRecord] = []
        self._filter = ""
        self._more = False
        self.loaded = False
        self._reading = False
        self._wanted: set[str] = set()

    def reload(self) -> None:
        """Re-read as many of the newest operations as are shown now (at least a page)."""
        self._ask(RELOAD)

    def refresh_recent(self) -> None:
        """Bring the shown history up to date without reading it all again: the operations
        newer than the newest shown are put on top, and the shown ones that were still running
        are read again (a page or two of history can be on screen, the rest is unchanged)."""
        self._ask(RECENT if self.loaded and self._rows else RELOAD)

    def set_filter(self, text: str) -> None:
        """Show only the operations matching ``text`` (read from the registry, page by page)."""
        if text.strip() != self._filter:
            self._filter = text.strip()
            self.reload()

    @property
    def reading(self) -> bool:
        """A read is running or asked for."""
        return self._reading or bool(self._wanted)

    # -- reading, one read at a time -------------------------------------------------------------

    def _ask(self, read: str) -> None:
        self._wanted.add(read)
        if not self._reading:
            self._next()

    def _next(self) -> None:
        wanted, self._wanted = self._wanted, set()
        if RELOAD in wanted:
            read, self._wanted = RELOAD, set()
        elif RECENT in wanted:
            read, self._wanted = RECENT, wanted - {RECENT}
        elif MORE in wanted and self._rows:
            read = MORE
        else:
            return
        if read == RECENT and not self._rows:
            read = RELOAD
        matching = self._filter
        readers = {RELOAD: self._reload, RECENT: self._recent, MORE: self._more_rows}
        work, apply = readers[read](matching)

        def done(result: Any) -> None:
            self._reading = False
            # Typed on while this was read: what it read is for a filter no longer shown.
            if matching == self._filter:
                apply(result)
            else:
                self._wanted.add(RELOAD)
            self._next()

        def failed(message: str, _details: str) -> None:
            self._reading = False
            log.warning("could not read the activity: %s", message)
            self._next()

        self._reading = True
        if self.pool is None:
            try:
                result = work()
            except RegistryError as error:
                failed(str(error), "")
            else:
                done(result)
            return
        self.pool.start(work, registry=self.registry, on_success=done, on_failure=failed)

    def _reload(self, matching: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        wanted = max(PAGE_SIZE, len(self._rows))

        def apply(records: list[OperationRecord]) -> None:
            self.beginResetModel()
            self._rows = records
            self._more = len(records) == wanted
            self.loaded = True
            self.endResetModel()

        return lambda: self.registry.list_operations(limit=wanted, matching=matching), apply

    def _recent(self, matching: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        registry, newest = self.registry, self._rows[0].install_id
        running = [record.install_id for record in self._rows if record.active]

        def work() -> tuple[list[OperationRecord], dict[int, OperationRecord]]:
            newer = registry.list_operations(since_id=newest, matching=matching)
            return newer, registry.get_operations(running)

        def apply(result: tuple[list[OperationRecord], dict[int, OperationRecord]]) -> None:
            newer, current = result
            for row, record in enumerate(self._rows):
                fresh = current.get(record.install_id) if record.active else None
                if fresh is not None and fresh != record:
                    self._rows[row] = fresh
                    self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            if newer:
                self.beginInsertRows(QModelIndex(), 0, len(newer) - 1)
                self._rows[:0] = newer
                self.endInsertRows()

        return work, apply

    def _more_rows(self, matching: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
        oldest = self._rows[-1].install_id

        def apply(extra: list[OperationRecord]) -> None:
            self._more = len(extra) == PAGE_SIZE
            if extra:
                shown = len(self._rows)
                self.beginInsertRows(QModelIndex(), shown, shown + len(extra) - 1)
                self._rows.extend(extra)
                self.endInsertRows()

        return (
            lambda: self.registry.list_operations(
                limit=PAGE_SIZE, before_id=oldest, matching=matching
            ),
            apply,
        )

    def record(self, row: int) -> OperationRecord:
        return self._rows[row]

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self._more and not self.reading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not parent.isValid() and self._rows:
            self._ask(MORE)

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if role not in ANSWERED_ROLES or not index.isValid():
            return None
        record = self._rows[index.row()]
        column = index.column()
        if role == FOREGROUND:
            if column == STATUS:
                palette = QGuiApplication.palette()
                if record.status == OperationStatus.FAILED:
                    return QBrush(colors.error_color(palette))
                if record.status == OperationStatus.COMPLETED:
                    return QBrush(colors.success_color(palette))
            return None
        if column == TIME:
            return record.started_at[:19].replace("T", " ")
        if column == FILE:
            if role == TOOLTIP:
                return record.archive_path or None
            return file_words(record)
        if column == EXTENSION:
            # Its name while it is installed; an uninstalled one is known by its id.
            extension_id = record.extension_id or ""
            if role == TOOLTIP:
                return extension_id or None
            return self.name_of(extension_id) or extension_id
        if column == CHANGE:
            return change_words(record)
        if column == STATUS:
            return status_words(record.status)
        if column == DETAILS:
            return record.error or ""
        return None


class ActivityView(QTableView):
    """Loads on first show; afterwards ``refresh()`` reads what changed (skipped while hidden)."""

    def __init__(
        self,
        registry: Registry,
        name_of: NameOf,
        pool: WorkerPool | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("activityView")
        self.setAccessibleName("Activity: every install, update, rollback and uninstall")
        self.activity_model = ActivityModel(registry, name_of, pool)
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
            self.activity_model.refresh_recent()
            self._stale = False
        else:
            self._stale = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.activity_model.refresh_recent()
            self._stale = False
