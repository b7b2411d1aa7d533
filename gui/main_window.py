"""The main window: installed extensions and their details, the activity, live operations.

Every way of installing — the file dialog, a drop, files given on the command line or handed
over by a second launch — ends in ``install_files``. The window reads the registry on the GUI
thread (short reads only); every write runs on a worker of ``self.pool``.
"""

from __future__ import annotations

import platform
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
from gui import colors, desktop, messages
from gui.activity_view import ActivityView
from gui.config_dialog import ConfigDialog
from gui.details_pane import DetailsPane
from gui.extensions_model import ENABLED, IDENTIFIER, INSTALLED, NAME, VERSION, ExtensionsModel
from gui.install_panel import InstallPanel
from gui.single_instance import InstanceServer
from gui.workers import LONG_WORKERS, SHORT_WORKERS, WorkerPool
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
    from gui.doctor_dialog import DoctorDialog

EMPTY_STATE_TEXT = "Drop an extension .zip here or use Install from file…"
ZIP_FILTER = "Extension archives (*.zip)"
# Long enough to be read after the window appears; the Activity tab keeps the notes.
LAUNCH_NOTES_SHOWN_MS = 20_000
SKIPPED_SHOWN_MS = 15_000
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
        self._stop_timer: QTimer | None = None
        self.setWindowTitle("Extension Manager")
        self.setObjectName("MainWindow")
        self.setAcceptDrops(True)

        self.pool = WorkerPool(self, threads=SHORT_WORKERS)
        self.long_pool = WorkerPool(self, threads=LONG_WORKERS)
        self.installer = installer or Installer(registry)

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
        samples = {VERSION: "10.10.10-beta.10", ENABLED: "Enabled", INSTALLED: "2026-12-31 23:59"}
        for column, sample in samples.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(column, metrics.horizontalAdvance(sample) + 24)
        self.table.setColumnHidden(IDENTIFIER, True)
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

        self.activity_view = ActivityView(registry, self.extensions_model.name_of)
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

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.tabs)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([560, 400])

        self.install_panel = InstallPanel(registry, self.installer, self.pool, self.long_pool)
        self.install_panel.operation_finished.connect(self._on_operation_finished)
        self.install_panel.external_change.connect(self.refresh)

        self.drop_area = QFrame()
        self.drop_area.setObjectName("dropArea")
        central_layout = QVBoxLayout(self.drop_area)
        central_layout.setContentsMargins(6, 6, 6, 0)
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
        self.show_launch_notes(registry.launch.messages())

    # -- menus and shortcuts ---------------------------------------------------------------------

    def _build_actions(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        self.install_action = QAction("&Install from file…", self)
        self.install_action.setShortcut(QKeySequence.StandardKey.Open)
        self.install_action.triggered.connect(self.choose_files)
        file_menu.addAction(self.install_action)
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
        for action in (extensions_action, self.activity_action, refresh_action):
            view_menu.addAction(action)

        tools_menu = menu_bar.addMenu("&Tools")
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
        self.extensions_model.set_filter(text)
        # A selected extension the filter hides is no longer selected: the details and every
        # action must not go on showing or acting on what the person cannot see.
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

    # -- reading the registry --------------------------------------------------------------------

    def refresh(self, extensions: list[ExtensionSummary] | None = None) -> None:
        """Re-read the extensions and the schema version from the registry (``extensions``:
        a list just read elsewhere, e.g. by the launch while Qt was loading)."""
        selected = self.selected_extension_id()
        if extensions is None:
            extensions = self.registry.list_extension_summaries()
        self.extensions_model.set_records(extensions)
        has_rows = self.extensions_model.total_count() > 0
        self.list_stack.setCurrentWidget(self.table if has_rows else self.empty_label)
        self.data_dir_label.setText(f"Data: {self.registry.paths.root}")
        # Re-selecting updates the details through selectionChanged; otherwise show the empty or
        # changed selection here (one read of the full record either way, not two).
        if selected is None or not self.select_extension(selected):
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
        icon = self.extensions_model.icons.icon(record) if record is not None else None
        self.details.show_record(record, icon)
        self._update_actions()

    def _on_operation_finished(self, record: OperationRecord, title: str) -> None:
        if self._closed:
            return
        self.refresh()
        if record.status != OperationStatus.COMPLETED:
            return
        removed = record.kind == OperationKind.UNINSTALL
        # What was just installed is what the person wants to look at next.
        if not removed and record.extension_id and self.selected_extension_id() is None:
            self.select_extension(record.extension_id)
        version = record.from_version if removed else record.to_version
        done = f"{kind_of(record.kind).done} {title} {version or ''}".rstrip()
        self.statusBar().showMessage(f"{done}.", 5000)

    # -- installing ------------------------------------------------------------------------------

    def install_files(self, paths: list[Path]) -> int:
        """Start one install per archive; returns how many started.

        Files that are not existing .zip files are skipped and named: beside archives, in the
        status bar (the archives' confirmations come next); on their own, in a message.
        """
        unique = list(dict.fromkeys(path.absolute() for path in paths))
        not_zips = [path for path in unique if not is_zip(path)]
        missing = [path for path in unique if is_zip(path) and not path.is_file()]
        archives = [path for path in unique if path not in not_zips and path not in missing]
        parts = []
        if not_zips:
            names = ", ".join(path.name or str(path) for path in not_zips)
            parts.append(f"Not extension archives (.zip files): {names}.")
        if missing:
            names = ", ".join(str(path) for path in missing)
            parts.append(f"Cannot be found: {names}.")
        if parts and not archives:
            parts.append("Nothing was installed. Choose or drop .zip files.")
            messages.show_error(self, "Cannot install these files", " ".join(parts))
            return 0
        if parts:
            self.statusBar().showMessage("Skipped: " + " ".join(parts), SKIPPED_SHOWN_MS)
        for path in archives:
            self.install_panel.start_install(path)
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
        self._set_drop_active(any(is_zip(path) for path in paths))

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
        registry = self.registry
        self.details.set_busy(True)

        def done(_result: object) -> None:
            self.details.set_busy(False)
            self.refresh()

        def failed(message: str, details: str) -> None:
            self.details.set_busy(False)
            messages.show_error(self, "Could not change the extension", message, details)
            self.refresh()

        self.pool.start(
            lambda: registry.set_enabled(extension_id, enabled),
            registry=registry,
            on_success=done,
            on_failure=failed,
        )

    def uninstall(self, extension_id: str) -> None:
        record = self.registry.get_extension(extension_id)
        if record is None:
            self.refresh()
            return
        if not messages.ask(
            self,
            f"Uninstall {record.name}?",
            f"{record.name} {record.version} will be removed, with its files and settings. "
            "Its install history is kept.",
            "Uninstall",
        ):
            return
        self.install_panel.start_uninstall(record.id, record.name)

    def configure(self, extension_id: str) -> None:
        record = self.registry.get_extension(extension_id)
        if record is None:
            self.refresh()
            return
        dialog = ConfigDialog(
            self.registry, self.pool, record, self.registry.get_config(extension_id), self
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.saved.connect(lambda _id: self.refresh())
        dialog.destroyed.connect(lambda: setattr(self, "config_dialog", None))
        self.config_dialog = dialog
        dialog.open()

    def open_folder(self, path: Path) -> None:
        def failed(reason: str) -> None:
            messages.show_error(
                self,
                "Cannot open the folder",
                f"The folder could not be shown: {reason}. It is {path}; open it in your file "
                "manager, or copy its path from the Folder field (right-click, Copy).",
            )

        desktop.open_folder(path, failed, self)

    def show_activity(self) -> None:
        self.tabs.setCurrentWidget(self.activity_page)

    def check_registry(self) -> None:
        from gui.doctor_dialog import DoctorDialog  # the doctor is rarely used: not at launch

        dialog = DoctorDialog(self.registry, self.pool, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.repaired.connect(self.refresh)
        dialog.destroyed.connect(lambda: setattr(self, "doctor_dialog", None))
        self.doctor_dialog = dialog
        dialog.open()
        dialog.check()

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

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed and self._stop_timer is None and self.install_panel.active_count:
            if not self._ask_to_stop(self.install_panel.active_count):
                event.ignore()
                return
            # Stop without waiting here: the window goes at once, the workers roll back on
            # their own, and the window really closes (ending the app) when they are done.
            event.ignore()
            self.save_geometry()
            self.hide()
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
            self.install_panel.shutdown()
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
        if not self.install_panel.busy and self._stop_timer is not None:
            self._stop_timer.stop()
            self.close()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()
