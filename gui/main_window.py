"""The main window: installed extensions (model/view), an empty state, and the status bar."""

from __future__ import annotations

from PySide6.QtCore import QSettings, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QPaintEvent, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui.extensions_model import IDENTIFIER, ExtensionsModel
from registry.store import Registry

EMPTY_STATE_TEXT = "Drop an extension .zip here or use Install from file…"


class MainWindow(QMainWindow):
    first_painted = Signal()

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self._painted = False
        self.setWindowTitle("Extension Manager")
        self.setObjectName("MainWindow")

        self.extensions_model = ExtensionsModel()
        self.proxy_model = QSortFilterProxyModel(self)
        self.proxy_model.setSourceModel(self.extensions_model)
        self.proxy_model.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy_model.setFilterKeyColumn(-1)
        self.proxy_model.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter extensions (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setAccessibleName("Filter installed extensions")
        self.filter_edit.textChanged.connect(self.proxy_model.setFilterFixedString)

        self.table = QTableView()
        self.table.setObjectName("extensionsTable")
        self.table.setAccessibleName("Installed extensions")
        self.table.setModel(self.proxy_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnHidden(IDENTIFIER, True)

        self.empty_label = QLabel(EMPTY_STATE_TEXT)
        self.empty_label.setObjectName("emptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: palette(mid); font-size: 15px; padding: 24px;")

        self.list_stack = QStackedWidget()
        self.list_stack.addWidget(self.empty_label)
        self.list_stack.addWidget(self.table)

        list_panel = QWidget()
        list_layout = QVBoxLayout(list_panel)
        list_layout.setContentsMargins(6, 6, 6, 6)
        list_layout.addWidget(self.filter_edit)
        list_layout.addWidget(self.list_stack)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(list_panel)
        self.setCentralWidget(self.splitter)

        self.schema_label = QLabel()
        self.data_dir_label = QLabel()
        self.statusBar().addWidget(self.schema_label)
        self.statusBar().addPermanentWidget(self.data_dir_label)

        QShortcut(QKeySequence.StandardKey.Find, self, self.filter_edit.setFocus)
        QShortcut(QKeySequence(Qt.Key.Key_F5), self, self.refresh)

        self.resize(960, 600)
        self.restore_geometry()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the extensions and the schema version from the registry."""
        self.extensions_model.set_records(self.registry.list_extensions())
        has_rows = self.extensions_model.rowCount() > 0
        self.list_stack.setCurrentWidget(self.table if has_rows else self.empty_label)
        self.schema_label.setText(f"Schema version {self.registry.schema_version()}")
        self.data_dir_label.setText(f"Data: {self.registry.paths.root}")

    # -- persistence of size, position and splitter ---------------------------------------------

    def restore_geometry(self) -> None:
        settings = QSettings()
        geometry = settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter = settings.value("window/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)

    def save_geometry(self) -> None:
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/splitter", self.splitter.saveState())

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_geometry()
        super().closeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()
