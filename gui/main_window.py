"""The main window: installed extensions and their details, the activity, live operations,
and updates from the sources.

Every way of installing — the file dialog, a drop, files given on the command line or handed
over by a second launch — ends in ``install_files``. The window reads the registry on the GUI
thread (short reads only); every write runs on a worker of ``self.pool``, and a check for
updates (which contacts the sources) on a thread of its own (``gui.updates``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import PySide6
from PySide6.QtCore import QSettings, Qt, QTimer, Signal, qVersion
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QPaintEvent,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from cli import desktop_entry
from gui import colors, messages, warm_up
from gui.activity_view import ActivityView
from gui.details_pane import DetailsPane
from gui.extensions_model import (
    AVAILABLE,
    ENABLED,
    IDENTIFIER,
    INSTALLED,
    NAME,
    VERSION,
    Arrangement,
    ExtensionsModel,
)
from gui.install_panel import InstallPanel
from gui.launch import FIRST_PAGE
from gui.transfer_dialog import Transfers
from gui.updates import UpdateChecks, UpdatesBar
from gui.version_details import read_version_facts
from gui.workers import LONG_WORKERS, SHORT_WORKERS, WorkerPool
from registry.compatibility import misfit
from registry.installer import Installer
from registry.paths import default_log_dir
from registry.store import (
    SQLITE_VERSION,
    ExtensionRecord,
    ExtensionSummary,
    OperationRecord,
    Registry,
)
from registry.version import APP_VERSION
from registry.vocabulary import OperationKind, OperationStatus, kind_of

if TYPE_CHECKING:
    # Imported where they are used, not at launch: the single-instance server (and QtNetwork)
    # comes once the window is up, a settings dialog or the file manager when asked for.
    from gui.config_dialog import ConfigDialog
    from gui.doctor_dialog import DoctorDialog
    from gui.single_instance import InstanceServer
    from gui.sources_dialog import SourcesDialog

EMPTY_STATE_TEXT = "Drop an extension .zip here or use Install from file…"
ZIP_FILTER = "Extension archives (*.zip)"
# Long enough to be read after the window appears; the Activity tab keeps the notes.
LAUNCH_NOTES_SHOWN_MS = 20_000
SKIPPED_SHOWN_MS = 15_000
DONE_SHOWN_MS = 5000
# The reason recorded when the person holds an extension from the window.
HELD_BY_YOU = "Held by you"
# How long typing in the Activity filter pauses before the history is read again.
ACTIVITY_FILTER_DELAY_MS = 150
# The share of the screen's free area the window may take at most.
SCREEN_SHARE = 0.9
# While quitting, how often to look whether the stopped workers are done (one frame).
STOP_POLL_MS = 16
DROP_HIGHLIGHT = (
    "QFrame#dropArea { border: 2px dashed palette(highlight); "
    "background-color: palette(alternate-base); }"
)


def local_paths(urls: list[PySide6.QtCore.QUrl]) -> list[Path]:
    return [Path(url.toLocalFile()) for url in urls if url.isLocalFile()]


def is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def is_installable(path: Path) -> bool:
    """An archive, or a folder (packed into one by the installer)."""
    return is_zip(path) or path.is_dir()


def accept_as_copy(event: QDropEvent | QDragMoveEvent) -> None:
    """The app reads the dropped files and leaves them where they are: it tells the source so,
    since a source that is told "move" may delete its file after the drop."""
    event.setDropAction(Qt.DropAction.CopyAction)
    event.accept()


class MainWindow(QMainWindow):
    first_painted = Signal()

    def __init__(
        self,
        registry: Registry,
        initial_extensions: list[ExtensionSummary] | None = None,
        *,
        installer: Installer | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self._painted = False
        self._closed = False
        self.drop_active = False
        self.instance_server: InstanceServer | None = None
        self.config_dialog: ConfigDialog | None = None
        self.doctor_dialog: DoctorDialog | None = None
        self.sources_dialog: SourcesDialog | None = None
        self._stop_timer: QTimer | None = None
        self._launch_check_considered = False
        # While every extension is being read on a worker: the ids changed meanwhile.
        self._changed_while_reading: set[str] | None = None
        self._list_reads = 0
        self._every_extension_after_paint = False
        self.setWindowTitle("Extension Manager")
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)

        self.pool = WorkerPool(self, threads=SHORT_WORKERS)
        self.long_pool = WorkerPool(self, threads=LONG_WORKERS)
        self.installer = installer or Installer(registry)
        self.update_checks = UpdateChecks(registry, self)
        self.update_checks.started.connect(self._on_check_started)
        self.update_checks.reported.connect(self._on_updates_reported)
        self.update_checks.failed.connect(self._on_check_failed)

        self.extensions_model = ExtensionsModel()

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter extensions (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAccessibleName("Filter installed extensions")
        self.filter_edit.textChanged.connect(self._apply_filter)

        self.table = QTableView()
        self.table.setObjectName("extensionsTable")
        self.table.setAccessibleName("Installed extensions")
        self.table.setModel(self.extensions_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Tab moves on to the details and their buttons; arrows move within the list.
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        # Widths from the longest text each column shows, measured once: ResizeToContents would
        # measure rows on every layout, which costs tens of milliseconds with many extensions.
        metrics = self.table.fontMetrics()
        samples = {
            VERSION: "10.10.10-rc.1",
            AVAILABLE: "10.1.0 available",
            ENABLED: "Enabled",
            INSTALLED: "2026-12-31 23:59",
        }
        for column, sample in samples.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, metrics.horizontalAdvance(sample) + 24)
        self.table.setColumnHidden(IDENTIFIER, True)
        # Shown once a check for updates has found something to say.
        self.table.setColumnHidden(AVAILABLE, True)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)

        self.empty_label = QLabel(EMPTY_STATE_TEXT)
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet(
            colors.style(colors.hint_color(self.palette())) + " font-size: 15px; padding: 24px;"
        )

        self.list_stack = QStackedWidget()
        self.list_stack.addWidget(self.empty_label)
        self.list_stack.addWidget(self.table)

        list_panel = QWidget()
        list_layout = QVBoxLayout(list_panel)
        list_layout.setContentsMargins(0, 6, 0, 0)
        self.install_button = QPushButton("Install from file…")
        self.install_button.setAccessibleName("Install extensions from .zip files")
        self.install_button.setToolTip("Or drop .zip files anywhere on the window (Ctrl+O)")
        self.install_button.clicked.connect(self.choose_files)
        filter_line = QHBoxLayout()
        filter_line.addWidget(self.filter_edit, 1)
        filter_line.addWidget(self.install_button)
        list_layout.addLayout(filter_line)
        list_layout.addWidget(self.list_stack)

        self.activity_view = ActivityView(registry, self.extensions_model.name_of, self.pool)
        # What opening the registry did this time (an upgrade, a recovery), above the history.
        self.launch_notes = QLabel()
        self.launch_notes.setObjectName("launchNotes")
        self.launch_notes.setTextFormat(Qt.TextFormat.PlainText)
        self.launch_notes.setWordWrap(True)
        self.launch_notes.setAccessibleName("What happened when the registry was opened")
        self.launch_notes.hide()
        self.activity_filter = QLineEdit()
        self.activity_filter.setPlaceholderText("Filter the history: file, extension, status…")
        self.activity_filter.setClearButtonEnabled(True)
        self.activity_filter.setAccessibleName("Filter the history of operations")
        # One read of the registry when typing pauses, not one per keystroke.
        self._activity_filter_timer = QTimer(self)
        self._activity_filter_timer.setSingleShot(True)
        self._activity_filter_timer.setInterval(ACTIVITY_FILTER_DELAY_MS)
        self._activity_filter_timer.timeout.connect(
            lambda: self.activity_view.activity_model.set_filter(self.activity_filter.text())
        )
        self.activity_filter.textChanged.connect(self._activity_filter_timer.start)
        self.activity_page = QWidget()
        activity_layout = QVBoxLayout(self.activity_page)
        activity_layout.setContentsMargins(0, 6, 0, 0)
        activity_layout.addWidget(self.launch_notes)
        activity_layout.addWidget(self.activity_filter)
        activity_layout.addWidget(self.activity_view, 1)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.addTab(list_panel, "Extensions")
        self.tabs.addTab(self.activity_page, "Activity")
        self.tabs.setAccessibleName("Extensions and activity")

        self.details = DetailsPane()
        self.details.enable_requested.connect(self.set_enabled)
        self.details.uninstall_requested.connect(self.uninstall)
        self.details.configure_requested.connect(self.configure)
        self.details.open_folder_requested.connect(lambda path: self.open_folder(Path(path)))
        self.details.update_requested.connect(self.update_extension)
        self.details.rollback_requested.connect(self.roll_back)
        self.details.hold_requested.connect(self.set_held)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.tabs)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([560, 400])

        self.install_panel = InstallPanel(registry, self.installer, self.pool, self.long_pool)
        self.install_panel.operation_finished.connect(self._on_operation_finished)
        self.install_panel.external_change.connect(self.refresh_extensions)

        self._build_update_actions()
        self.updates_bar = UpdatesBar(
            self.check_updates_action,
            self.show_updates_action,
            self.update_action,
            self.update_all_action,
            self.sources_action,
        )

        self.drop_area = QFrame()
        self.drop_area.setObjectName("dropArea")
        central_layout = QVBoxLayout(self.drop_area)
        central_layout.setContentsMargins(6, 6, 6, 0)
        central_layout.addWidget(self.updates_bar)
        central_layout.addWidget(self.splitter, 1)
        central_layout.addWidget(self.install_panel)
        self.setCentralWidget(self.drop_area)

        self.data_dir_label = QLabel()
        self.statusBar().addPermanentWidget(self.data_dir_label)

        self._build_actions()
        QShortcut(QKeySequence.StandardKey.Find, self, self._focus_filter)

        self.resize(960, 600)
        self.restore_geometry()
        self.refresh(initial_extensions)
        self._show_update_state()
        self.show_launch_notes(registry.launch.messages())

    # -- menus and shortcuts ---------------------------------------------------------------------

    def _build_update_actions(self) -> None:
        """The actions the updates bar shows too (made before it; the menus come later)."""
        self.check_updates_action = QAction("Check for &updates", self)
        self.check_updates_action.setShortcut(QKeySequence("Ctrl+U"))
        self.check_updates_action.setToolTip("Look in the update sources for newer versions")
        self.check_updates_action.triggered.connect(self.check_for_updates)
        self.sources_action = QAction("Update &sources and preferences…", self)
        self.sources_action.setShortcut(QKeySequence("Ctrl+,"))
        self.sources_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.sources_action.triggered.connect(self.edit_sources)
        self.show_updates_action = QAction("Only &updates", self)
        self.show_updates_action.setCheckable(True)
        self.show_updates_action.setToolTip("Show only the extensions that have an update")
        self.show_updates_action.toggled.connect(self._show_only_updates)
        self.update_action = QAction("&Update", self)
        self.update_action.setToolTip("Update the selected extension to the version available")
        self.update_action.triggered.connect(self._update_selected)
        self.update_all_action = QAction("Update &all", self)
        self.update_all_action.setToolTip("Update every extension that has an update")
        self.update_all_action.triggered.connect(self.update_all)
        self.rollback_action = QAction("&Roll back…", self)
        self.rollback_action.triggered.connect(self._roll_back_shown)
        self.hold_action = QAction("&Hold", self)
        self.hold_action.triggered.connect(self._toggle_held)

    def _build_actions(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        self.install_action = QAction("&Install from file…", self)
        self.install_action.setShortcut(QKeySequence.StandardKey.Open)
        self.install_action.triggered.connect(self.choose_files)
        file_menu.addAction(self.install_action)
        file_menu.addSeparator()
        self.transfers = Transfers(self, self.registry, self.installer, self.pool, self.long_pool)
        self.transfers.status.connect(self._show_transfer_status)
        self.transfers.imported.connect(self._on_imported)
        self.transfers.following.connect(self.install_panel.follow)
        self.export_action = QAction("&Export installed set…", self)
        self.export_action.setToolTip("Write the extensions, versions and settings to a file")
        self.export_action.triggered.connect(lambda: self.transfers.export(bundle=False))
        self.export_bundle_action = QAction("Export with &archives…", self)
        self.export_bundle_action.setToolTip(
            "Write a zip holding the installed set and every extension's archive"
        )
        self.export_bundle_action.triggered.connect(lambda: self.transfers.export(bundle=True))
        self.import_action = QAction("I&mport…", self)
        self.import_action.setToolTip("Bring this data folder to an exported set or bundle")
        self.import_action.triggered.connect(self.transfers.import_)
        for action in (self.export_action, self.export_bundle_action, self.import_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        extension_menu = menu_bar.addMenu("&Extension")
        self.toggle_action = QAction("&Disable", self)
        self.toggle_action.triggered.connect(self.details._toggle_enabled)
        self.configure_action = QAction("&Configure…", self)
        self.configure_action.triggered.connect(self.details._configure)
        self.open_folder_action = QAction("&Open folder", self)
        self.open_folder_action.triggered.connect(self.details._open_folder)
        self.uninstall_action = QAction("&Uninstall…", self)
        self.uninstall_action.setShortcut(QKeySequence(Qt.Key.Key_Delete))
        # Only while the list has focus: Delete in the filter box deletes text.
        self.uninstall_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.uninstall_action.triggered.connect(self.details._uninstall)
        self.table.addAction(self.uninstall_action)
        for action in (self.toggle_action, self.configure_action, self.open_folder_action):
            extension_menu.addAction(action)
        extension_menu.addSeparator()
        for action in (
            self.update_action,
            self.update_all_action,
            self.rollback_action,
            self.hold_action,
        ):
            extension_menu.addAction(action)
        extension_menu.addSeparator()
        extension_menu.addAction(self.uninstall_action)

        view_menu = menu_bar.addMenu("&View")
        extensions_action = QAction("&Extensions", self)
        extensions_action.setShortcut(QKeySequence("Ctrl+1"))
        extensions_action.triggered.connect(lambda: self.tabs.setCurrentIndex(0))
        self.activity_action = QAction("&Activity", self)
        self.activity_action.setShortcut(QKeySequence("Ctrl+H"))
        self.activity_action.triggered.connect(self.show_activity)
        refresh_action = QAction("&Refresh", self)
        refresh_action.setShortcut(QKeySequence(Qt.Key.Key_F5))
        refresh_action.triggered.connect(self.refresh)
        for action in (
            extensions_action,
            self.show_updates_action,
            self.activity_action,
            refresh_action,
        ):
            view_menu.addAction(action)

        tools_menu = menu_bar.addMenu("&Tools")
        tools_menu.addAction(self.check_updates_action)
        tools_menu.addAction(self.sources_action)
        tools_menu.addSeparator()
        check_action = QAction("&Check registry…", self)
        check_action.triggered.connect(self.check_registry)
        tools_menu.addAction(check_action)

        self.help_menu = help_menu = menu_bar.addMenu("&Help")
        self.desktop_entry_action = QAction("Add to applications &menu", self)
        self.desktop_entry_action.setVisible(desktop_entry.SUPPORTED)
        self.desktop_entry_action.triggered.connect(self.add_to_applications_menu)
        help_menu.addAction(self.desktop_entry_action)
        help_menu.addSeparator()
        about_action = QAction("&About Extension Manager", self)
        about_action.setMenuRole(QAction.MenuRole.AboutRole)
        about_action.triggered.connect(self.show_about)
        help_menu.addAction(about_action)
        self._update_actions()

    def _apply_filter(self, text: str) -> None:
        self._apply_view(lambda: self.extensions_model.set_filter(text))

    def _apply_view(self, change: Callable[[], None]) -> None:
        """Filter the list; a selected extension the list then hides is no longer selected:
        the details and every action must not go on showing or acting on what the person
        cannot see."""
        change()
        shown = self.details.record
        if shown is not None and self.selected_extension_id() != shown.id:
            self.table.clearSelection()
            self._show_details(None)

    def _focus_filter(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def _update_actions(self) -> None:
        record = self.details.record
        for action in (
            self.toggle_action,
            self.configure_action,
            self.open_folder_action,
            self.uninstall_action,
        ):
            action.setEnabled(record is not None)
        if record is not None:
            self.toggle_action.setText("&Disable" if record.enabled else "&Enable")
            self.configure_action.setEnabled(bool(record.config_defaults))
        self.hold_action.setEnabled(record is not None)
        self.hold_action.setText("&Release" if record is not None and record.held else "&Hold")
        rollback = self.details.versions.rollback_button
        self.rollback_action.setEnabled(record is not None and rollback.isEnabled())
        self.update_action.setEnabled(record is not None and self._offer_for(record.id))
        self.update_all_action.setEnabled(self._updatable() != [])

    # -- reading the registry --------------------------------------------------------------------

    def refresh(self, extensions: list[ExtensionSummary] | None = None) -> None:
        """Re-read the extensions and the schema version from the registry (``extensions``:
        a list just read elsewhere, e.g. by the launch while Qt was loading). A large registry
        shows its first ``FIRST_PAGE`` extensions by name at once, and all of them as soon as a
        worker has read and sorted them."""
        selected = self.selected_extension_id()
        if extensions is None:
            extensions = self.registry.list_extension_summaries(limit=FIRST_PAGE)
        self.extensions_model.set_records(extensions)
        if len(extensions) >= FIRST_PAGE:
            if self._painted:
                self._read_every_extension(selected)
            else:
                self._every_extension_after_paint = True
        self._show_list(selected)
        self.activity_view.refresh()

    def _show_list(self, selected: str | None) -> None:
        self._show_table_or_empty_state()
        self.data_dir_label.setText(f"Data: {self.registry.paths.root}")
        # Re-selecting updates the details through selectionChanged; otherwise show the empty or
        # changed selection here (one read of the full record either way, not two).
        if selected is None or not self.select_extension(selected):
            self._show_details(self.selected_record())

    def _after_first_paint(self) -> None:
        if self._every_extension_after_paint:
            self._every_extension_after_paint = False
            self._read_every_extension(self.selected_extension_id())
        warm_up.after_first_paint()

    def _show_table_or_empty_state(self) -> None:
        has_rows = self.extensions_model.total_count() > 0
        self.list_stack.setCurrentWidget(self.table if has_rows else self.empty_label)

    def _read_every_extension(self, selected: str | None) -> None:
        """Read and sort every extension on a worker (half a second at a hundred thousand),
        then show them all. What changes meanwhile is read again once they are in; a read
        asked for while another runs replaces it."""
        self._list_reads += 1
        generation = self._list_reads
        if self._changed_while_reading is None:
            self._changed_while_reading = set()
        registry, arrange = self.registry, self.extensions_model.arranger()

        def read() -> Arrangement:
            return arrange(registry.list_extension_summaries())

        def show(arrangement: Arrangement) -> None:
            if generation != self._list_reads or self._closed:
                return
            changed, self._changed_while_reading = self._changed_while_reading or set(), None
            still_selected = self.selected_extension_id() or selected
            self.extensions_model.adopt(arrangement)
            self._show_list(still_selected)
            if changed:
                self.refresh_extensions(changed)

        def failed(message: str, _details: str) -> None:
            if generation == self._list_reads:
                self._changed_while_reading = None
                self.statusBar().showMessage(f"Not every extension could be read: {message}")

        self.pool.start(read, registry=registry, on_success=show, on_failure=failed)

    def refresh_extensions(self, extension_ids: Iterable[str | None]) -> None:
        """Re-read only these extensions (an operation or a change ended for them): their rows
        are put in place one by one, and the details if one of them is shown. Reading the
        whole list again would stall the window for tens of milliseconds at ten thousand
        extensions, once per finished operation."""
        ids = {extension_id for extension_id in extension_ids if extension_id}
        if self._changed_while_reading is not None:
            self._changed_while_reading |= ids
        if ids:
            changed = self.registry.extension_summaries(ids)
            removed = ids - {record.id for record in changed}
            self.extensions_model.update_records(changed, removed)
            self._show_table_or_empty_state()
            selected = self.selected_extension_id()
            shown = self.details.record
            if selected in ids or (shown is not None and shown.id in ids) or selected is None:
                self._show_details(self.selected_record())
        self.activity_view.refresh()

    def show_launch_notes(self, lines: list[str]) -> None:
        """Tell the person what opening the registry did before the window appeared."""
        if not lines:
            return
        self.launch_notes.setText("\n".join(lines))
        self.launch_notes.setStyleSheet("padding: 6px; background-color: palette(alternate-base);")
        self.launch_notes.show()
        self.statusBar().showMessage(" ".join(lines), LAUNCH_NOTES_SHOWN_MS)

    def selected_record(self) -> ExtensionRecord | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        # The list holds summaries; the details need the full record, one row's read.
        return self.registry.get_extension(self.extensions_model.record(rows[0].row()).id)

    def selected_extension_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.extensions_model.record(rows[0].row()).id if rows else None

    def select_extension(self, extension_id: str) -> bool:
        row = self.extensions_model.row_of(extension_id)
        if row is None:
            return False
        index = self.extensions_model.index(row, NAME)
        self.table.selectRow(index.row())
        self.table.setCurrentIndex(index)
        return True

    def _on_selection_changed(self, *_ranges: object) -> None:
        self._show_details(self.selected_record())

    def _show_details(self, record: ExtensionRecord | None) -> None:
        if record is None:
            self.details.show_record(None)
        else:
            icon = self.extensions_model.icons.icon(record)
            facts = read_version_facts(self.registry, record, self.update_checks)
            self.details.show_record(record, icon, facts)
        self._update_actions()

    def _on_operation_finished(self, record: OperationRecord, title: str) -> None:
        if self._closed:
            return
        self.refresh_extensions([record.extension_id])
        if record.status != OperationStatus.COMPLETED:
            return
        removed = record.kind == OperationKind.UNINSTALL
        # What was just installed is what the person wants to look at next.
        if not removed and record.extension_id and self.selected_extension_id() is None:
            self.select_extension(record.extension_id)
        version = record.from_version if removed else record.to_version
        done = f"{kind_of(record.kind).done} {title} {version or ''}".rstrip()
        self.statusBar().showMessage(f"{done}.", DONE_SHOWN_MS)
        # What is installed changed: so may what is offered (without asking the sources).
        self.update_checks.redecide()

    # -- installing ------------------------------------------------------------------------------

    def install_files(self, paths: list[Path]) -> int:
        """Start one install per archive or folder; returns how many started. Files given
        together are confirmed together, in one dialog, once each has been read.

        Files that are not existing .zip files or folders are skipped and named: beside
        archives, in the status bar (the archives' confirmation comes next); on their own, in a
        message.
        """
        unique = list(dict.fromkeys(path.absolute() for path in paths))
        not_zips = [path for path in unique if not is_installable(path)]
        missing = [path for path in unique if is_zip(path) and not path.exists()]
        archives = [path for path in unique if path not in not_zips and path not in missing]
        parts = []
        if not_zips:
            names = ", ".join(path.name or str(path) for path in not_zips)
            parts.append(f"Not extension archives (.zip files) or folders: {names}.")
        if missing:
            names = ", ".join(str(path) for path in missing)
            parts.append(f"Cannot be found: {names}.")
        if parts and not archives:
            parts.append("Nothing was installed. Choose or drop .zip files or folders.")
            messages.show_error(self, "Cannot install these files", " ".join(parts))
            return 0
        if parts:
            self.statusBar().showMessage("Skipped: " + " ".join(parts), SKIPPED_SHOWN_MS)
        self.install_panel.start_installs(archives)
        return len(archives)

    def choose_files(self) -> None:
        settings = QSettings()
        start_dir = str(settings.value("install/lastDir", str(Path.home())))
        names, _filter = QFileDialog.getOpenFileNames(
            self, "Install extensions", start_dir, ZIP_FILTER
        )
        if not names:
            return
        paths = [Path(name) for name in names]
        settings.setValue("install/lastDir", str(paths[0].parent))
        self.install_files(paths)

    def receive_files(self, paths: list[Path]) -> None:
        """Files handed over by a second launch: come to the front, then install them."""
        if self.isMinimized():
            self.showNormal()
        self.raise_()
        self.activateWindow()
        if paths:
            self.install_files(paths)

    def attach_instance_server(self, server: InstanceServer) -> None:
        self.instance_server = server
        server.files_received.connect(self.receive_files)

    # -- drag and drop ---------------------------------------------------------------------------

    def _set_drop_active(self, active: bool) -> None:
        self.drop_active = active
        self.drop_area.setStyleSheet(DROP_HIGHLIGHT if active else "")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        paths = local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if not paths:
            event.ignore()
            return
        # Accept any local files, so that a drop of the wrong kind can be explained; highlight
        # only when there is something installable.
        accept_as_copy(event)
        self._set_drop_active(any(is_installable(path) for path in paths))

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        accept_as_copy(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._set_drop_active(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_drop_active(False)
        paths = local_paths(event.mimeData().urls())
        accept_as_copy(event)
        self.install_files(paths)

    # -- managing --------------------------------------------------------------------------------

    def set_enabled(self, extension_id: str, enabled: bool) -> None:
        """Turn an extension on or off. One that does not fit this app is turned on only if
        the person says so when asked, and that choice is recorded as an override."""
        registry = self.registry
        record = registry.get_extension(extension_id)
        if record is not None and not enabled:
            self._turn_off(record)
            return
        needs = misfit(record, APP_VERSION) if record is not None and enabled else None
        if record is None or needs is None:
            self._change_extension(
                [extension_id], lambda: registry.set_enabled(extension_id, enabled)
            )
            return
        if not messages.ask(
            self,
            f"Turn on {record.name} anyway?",
            f"{record.name} {record.version} needs {needs}, and this is Extension Manager "
            f"{APP_VERSION}: it may not work. Turn it on anyway? Your choice is recorded in the "
            "Activity, and kept until the app's version changes.",
            "Turn on anyway",
        ):
            return
        self._change_extension(
            [extension_id],
            lambda: registry.override_compatibility(extension_id, APP_VERSION, f"it needs {needs}"),
        )

    def _turn_off(self, record: ExtensionRecord) -> None:
        """Turn off ``record``; the extensions that are on and need it are named first, and
        turned off with it (before it) only if the person says so (Cancel is the default)."""
        from registry.relations import names, removal_refusal

        registry = self.registry
        refused = removal_refusal(registry, record.id, turning_off=True)
        together = refused[1] if refused is not None else []
        if together:
            verb = "need" if len(together) > 1 else "needs"
            confirm = "Turn off both" if len(together) == 1 else f"Turn off all {len(together) + 1}"
            if not messages.ask(
                self,
                f"Turn off {record.name}?",
                f"{names(together)} {verb} {record.name}. Turning off {record.name} turns off "
                f"{names(together)} too, first; you can turn them on again later.",
                confirm,
            ):
                return
        ids = [other.id for other in together] + [record.id]

        def change() -> None:
            for extension_id in ids:
                registry.set_enabled(extension_id, False)

        self._change_extension(ids, change)

    def _show_transfer_status(self, text: str, timeout: int) -> None:
        if text:
            self.statusBar().showMessage(text, timeout)
        else:
            self.statusBar().clearMessage()

    def _on_imported(self, _report: object) -> None:
        """An import installed, changed or turned on and off what it had to: read it all again."""
        if self._closed:
            return
        # The import's rows end now, before its summary reaches the status bar (after this).
        self.install_panel.poll()
        self.refresh()
        self.update_checks.redecide()

    def set_held(self, extension_id: str, held: bool) -> None:
        """Hold: no update is offered until released (a rollback holds by itself)."""
        registry = self.registry

        def change() -> None:
            if held:
                registry.hold(extension_id, HELD_BY_YOU)
            else:
                registry.release(extension_id)

        self._change_extension([extension_id], change, then=self.update_checks.redecide)

    def _change_extension(
        self,
        extension_ids: list[str],
        change: Callable[[], object],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write one change to these extensions on a worker; the details' buttons wait. Only
        their rows are read again afterwards."""
        self.details.set_busy(True)

        def done(_result: object) -> None:
            self.details.set_busy(False)
            self.refresh_extensions(extension_ids)
            if then is not None:
                then()

        def failed(message: str, details: str) -> None:
            self.details.set_busy(False)
            messages.show_error(self, "Could not change the extension", message, details)
            self.refresh_extensions(extension_ids)

        self.pool.start(change, registry=self.registry, on_success=done, on_failure=failed)

    def _toggle_held(self) -> None:
        record = self.details.record
        if record is not None:
            self.set_held(record.id, not record.held)

    def _roll_back_shown(self) -> None:
        if self.details.record is not None:
            self.roll_back(self.details.record.id)

    def roll_back(self, extension_id: str) -> None:
        """Back to the kept version the installed one replaced: confirmed like an install."""
        record = self.registry.get_extension(extension_id)
        if record is None:
            self.refresh_extensions([extension_id])
            return
        if self._busy_with(record.id, record.name):
            return
        self.install_panel.start_rollback(record.id, record.name)

    def _busy_with(self, extension_id: str, name: str) -> bool:
        """Say so when an operation on this extension is under way (a second would fail)."""
        if not self.install_panel.is_running_for(extension_id):
            return False
        self.statusBar().showMessage(
            f"{name} is being changed already; try again when that has finished.",
            SKIPPED_SHOWN_MS,
        )
        return True

    # -- updates ---------------------------------------------------------------------------------

    def check_for_updates(self) -> None:
        """Contact the sources on the checks' own thread; the window stays usable."""
        if self.update_checks.running:
            return
        if not self.registry.list_sources():
            self.updates_bar.show_no_sources()
            return
        self.update_checks.check()

    def _show_update_state(self) -> None:
        """The updates bar once there is something to say: a source to check, or a check."""
        checks = self.update_checks
        if checks.running:
            self.updates_bar.show_checking()
        elif checks.report is not None:
            self.updates_bar.show_report(checks)
        elif self.registry.list_sources():
            self.updates_bar.show_not_checked()
        else:
            self.updates_bar.hide()

    def _on_check_started(self) -> None:
        self.check_updates_action.setEnabled(False)
        self.updates_bar.show_checking()

    def _on_check_failed(self, message: str) -> None:
        self.check_updates_action.setEnabled(True)
        self.updates_bar.show_failure(message)

    def _on_updates_reported(self, _report: object) -> None:
        checks = self.update_checks
        self.check_updates_action.setEnabled(True)
        self.extensions_model.set_updates(checks.by_extension(), complete=checks.complete)
        self.table.setColumnHidden(AVAILABLE, checks.unreadable)
        self.updates_bar.show_report(checks)
        self._show_details(self.selected_record())

    def _offer_for(self, extension_id: str) -> bool:
        item = self.update_checks.for_extension(extension_id)
        return item is not None and item.offer is not None

    def _updatable(self) -> list[str]:
        report = self.update_checks.report
        if report is None or self.update_checks.unreadable:
            return []
        return [item.extension_id for item in report.available]

    def _show_only_updates(self, only: bool) -> None:
        self.tabs.setCurrentIndex(0)
        self._apply_view(lambda: self.extensions_model.set_updates_only(only))

    def _update_selected(self) -> None:
        extension_id = self.selected_extension_id()
        if extension_id is not None:
            self.update_extension(extension_id)

    def update_extension(self, extension_id: str) -> bool:
        """Download the version the last check offers, confirm it, install it."""
        item = self.update_checks.for_extension(extension_id)
        if item is None or item.offer is None:
            self.statusBar().showMessage(
                "No update is known for it: check for updates first (Ctrl+U).", SKIPPED_SHOWN_MS
            )
            return False
        if self._busy_with(extension_id, item.name):
            return False
        self.install_panel.start_update(item)
        return True

    def update_all(self) -> int:
        """Start every update the last check offers (each is confirmed in turn)."""
        return sum(1 for extension_id in self._updatable() if self.update_extension(extension_id))

    def edit_sources(self) -> None:
        from gui.sources_dialog import SourcesDialog  # rarely opened: not at launch

        if self.sources_dialog is not None:
            self.sources_dialog.raise_()
            self.sources_dialog.activateWindow()
            return
        dialog = SourcesDialog(self.registry, self.pool, self)
        dialog.saved.connect(self._on_sources_saved)
        self._open_dialog(dialog, "sources_dialog")

    def _on_sources_saved(self) -> None:
        self.statusBar().showMessage(
            "Sources and preferences saved. Check for updates (Ctrl+U) to see what the sources "
            "offer.",
            DONE_SHOWN_MS,
        )
        # Fewer kept versions may leave less to roll back to.
        self._show_details(self.selected_record())
        self._show_update_state()

    def uninstall(self, extension_id: str) -> None:
        """Ask first (Cancel is the default). The installed extensions that need this one are
        named and can go with it, each before what it needs; settings the person chose are
        kept for a later install of the same id unless they untick that."""
        from registry.relations import names, removal_refusal
        from registry.transfer import chosen_settings

        registry = self.registry
        record = registry.get_extension(extension_id)
        if record is None:
            self.refresh_extensions([extension_id])
            return
        refused = removal_refusal(registry, extension_id)
        together = refused[1] if refused is not None else []
        going = [*together, record]
        if any(self._busy_with(other.id, other.name) for other in going):
            return
        if together:
            verb = "need" if len(together) > 1 else "needs"
            text = (
                f"{names(together)} {verb} {record.name}. Uninstalling {record.name} "
                f"uninstalls {names(together)} too, first. Their files are removed; the install "
                "history is kept."
            )
            confirm = "Uninstall both" if len(going) == 2 else f"Uninstall all {len(going)}"
        else:
            text = (
                f"{record.name} {record.version} will be removed with its files. Its install "
                "history is kept."
            )
            confirm = "Uninstall"
        title = f"Uninstall {record.name}?"
        if any(chosen_settings(registry, other) for other in going):
            whose = "its" if len(going) == 1 else "their"
            confirmed, keep = messages.ask_with_option(
                self, title, text, confirm, f"Keep {whose} settings for a later install"
            )
        else:
            confirmed, keep = messages.ask(self, title, text, confirm), True
        if confirmed:
            self._uninstall_in_turn([(other.id, other.name) for other in going], keep)

    # What is still to be uninstalled after the operation under way: (id, name, keep settings).
    _pending_uninstalls: tuple[tuple[str, str, bool], ...] = ()
    _following_uninstalls = False

    def _uninstall_in_turn(self, going: list[tuple[str, str]], keep_settings: bool) -> None:
        """One uninstall after the other, each its own operation: the next starts once the one
        before has completed, since the installer refuses to remove what an installed
        extension still needs."""
        if not self._following_uninstalls:
            self._following_uninstalls = True
            self.install_panel.operation_finished.connect(self._on_uninstall_finished)
        self._pending_uninstalls = tuple((id_, name, keep_settings) for id_, name in going)
        self._start_next_uninstall()

    def _start_next_uninstall(self) -> None:
        extension_id, name, keep_settings = self._pending_uninstalls[0]
        self.install_panel.start_uninstall(extension_id, name, keep_settings=keep_settings)

    def _on_uninstall_finished(self, record: OperationRecord, _title: str) -> None:
        pending = self._pending_uninstalls
        if not pending or record.kind != OperationKind.UNINSTALL:
            return
        if record.extension_id != pending[0][0]:
            return
        self._pending_uninstalls = pending[1:]
        if not self._pending_uninstalls or self._closed:
            return
        if record.status == OperationStatus.COMPLETED:
            self._start_next_uninstall()
            return
        left = ", ".join(name for _id, name, _keep in self._pending_uninstalls)
        self._pending_uninstalls = ()
        self.statusBar().showMessage(
            f"{pending[0][1]} was not uninstalled, so {left} stayed installed: it needs it. "
            "The Activity says why.",
            SKIPPED_SHOWN_MS,
        )

    def configure(self, extension_id: str) -> None:
        record = self.registry.get_extension(extension_id)
        if record is None:
            self.refresh_extensions([extension_id])
            return
        from gui.config_dialog import ConfigDialog

        dialog = ConfigDialog(
            self.registry, self.pool, record, self.registry.get_config(extension_id), self
        )
        dialog.saved.connect(lambda saved_id: self.refresh_extensions([saved_id]))
        self._open_dialog(dialog, "config_dialog")

    def open_folder(self, path: Path) -> None:
        def failed(reason: str) -> None:
            messages.show_error(
                self,
                "Cannot open the folder",
                f"The folder could not be shown: {reason}. It is {path}; open it in your file "
                "manager, or copy its path from the Folder field (right-click, Copy).",
            )

        from gui import desktop

        desktop.open_folder(path, failed, self)

    def show_activity(self) -> None:
        self.tabs.setCurrentWidget(self.activity_page)

    def check_registry(self) -> None:
        from gui.doctor_dialog import DoctorDialog  # the doctor is rarely used: not at launch

        dialog = DoctorDialog(self.registry, self.pool, self)
        dialog.repaired.connect(self.refresh)
        self._open_dialog(dialog, "doctor_dialog")
        dialog.check()

    def _open_dialog(self, dialog: QDialog, attribute: str) -> None:
        """Open ``dialog`` window-modal, deleted when closed; the window's ``attribute`` holds
        it while it is open (and says None afterwards)."""
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda: setattr(self, attribute, None))
        setattr(self, attribute, dialog)
        dialog.open()

    def add_to_applications_menu(self) -> None:
        """Write the launcher and icons on a worker (it runs the desktop's cache tools), then
        say what was done."""
        action = self.desktop_entry_action
        action.setEnabled(False)

        def done(outcome: desktop_entry.Outcome) -> None:
            action.setEnabled(True)
            lines = "\n".join(outcome.done)
            if outcome.error is not None:
                messages.show_error(
                    self, "Could not add the app to the applications menu", outcome.error, lines
                )
                return
            messages.show_info(
                self,
                "Added to the applications menu",
                "Extension Manager is in your applications menu and among the “Open with” "
                "choices for .zip files; a default you chose for zips stays the default.\n\n"
                f"{lines}\n\nTo take it out again: 'extension-manager desktop-entry remove'.",
            )

        def failed(message: str, details: str) -> None:
            action.setEnabled(True)
            messages.show_error(
                self, "Could not add the app to the applications menu", message, details
            )

        self.pool.start(desktop_entry.install, on_success=done, on_failure=failed)

    def about_text(self) -> str:
        return (
            f"Extension Manager {APP_VERSION}\n\n"
            f"Qt {qVersion()} (PySide6 {PySide6.__version__})\n"
            f"SQLite {SQLITE_VERSION}\n"
            f"Python {platform.python_version()}\n\n"
            f"Registry schema version {self.registry.schema_version()}\n"
            f"Data folder: {self.registry.paths.root}\n"
            f"Log files: {default_log_dir()}"
        )

    def show_about(self) -> None:
        messages.show_info(self, "About Extension Manager", self.about_text())

    # -- persistence of size, position and splitter ---------------------------------------------

    def restore_geometry(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter = settings.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self._fit_on_screen()

    def _fit_on_screen(self) -> None:
        """Never larger than the screen's free area (at 2x scaling the default size is not)."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        width = min(self.width(), int(available.width() * SCREEN_SHARE))
        height = min(self.height(), int(available.height() * SCREEN_SHARE))
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
            self.move(
                available.x() + (available.width() - width) // 2,
                available.y() + (available.height() - height) // 2,
            )

    def save_geometry(self) -> None:
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/splitter", self.splitter.saveState())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._closed:
            self.install_panel.start_scanning()
            self._check_at_launch()

    def _check_at_launch(self) -> None:
        """Once, after the window is up, and only if the person asked for it: otherwise no
        source is ever contacted until they check."""
        if self._launch_check_considered:
            return
        self._launch_check_considered = True
        if self.registry.preferences().check_at_launch:
            QTimer.singleShot(0, self, self.check_for_updates)

    def closeEvent(self, event: QCloseEvent) -> None:
        running = self.install_panel.active_count
        if not self._closed and self._stop_timer is None and (running or self.update_checks.busy):
            if running and not self._ask_to_stop(running):
                event.ignore()
                return
            # Stop without waiting here: the window goes at once, the workers roll back on
            # their own (a check for updates cannot be stopped: it ends within its timeout),
            # and the window really closes (ending the app) when they are done.
            event.ignore()
            self.save_geometry()
            self.hide()
            self.transfers.stop()
            self.install_panel.stop_all()
            self._stop_timer = QTimer(self)
            self._stop_timer.setInterval(STOP_POLL_MS)
            self._stop_timer.timeout.connect(self._close_when_stopped)
            self._stop_timer.start()
            return
        if not self._closed:
            self._closed = True
            if self._stop_timer is None:
                self.save_geometry()
            if self.instance_server is not None:
                self.instance_server.close()
            # Cancel what can be cancelled and wait: no worker may outlive the window.
            self.transfers.stop()
            self.install_panel.shutdown()
            self.update_checks.wait()
        super().closeEvent(event)

    @property
    def closed(self) -> bool:
        """Closed for good: every worker has returned (quitting may first stop them)."""
        return self._closed

    def _ask_to_stop(self, running: int) -> bool:
        what = "1 install or uninstall is" if running == 1 else f"{running} operations are"
        return messages.ask(
            self,
            "Stop and quit?",
            f"{what} not finished. Stop and quit? Whatever has not finished is rolled back, "
            "so nothing is changed.",
            "Stop and quit",
        )

    def _close_when_stopped(self) -> None:
        stopped = not self.install_panel.busy and not self.update_checks.busy
        if stopped and self._stop_timer is not None:
            self._stop_timer.stop()
            self.close()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            # After the paint and what waits for it (a launch reports it is ready): the rest of
            # the list and the warm-up hold the interpreter a while, and nothing on screen
            # should wait for them.
            QTimer.singleShot(0, self._after_first_paint)
            self.first_painted.emit()
