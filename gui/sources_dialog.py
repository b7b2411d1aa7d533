"""Tools → Update sources and preferences: where updates come from, how much of the past is
kept for rollbacks, and whether to check for updates when the app starts.

The dialog edits a copy: nothing is stored until OK, so Cancel (or Escape) leaves everything as
it was. Whatever is typed in the address box when OK is pressed is added too, and a location
that is neither a folder nor an index address is refused right under the box, in plain words,
with the dialog still open. OK writes on a worker (the registry may be busy with an install);
no source is contacted here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.workers import WorkerPool
from registry.errors import UserFacingError
from registry.store import Preferences, Registry, SourceRecord
from registry.versions import describe_age

GIB = 1024**3
KIND_WORDS = {"FOLDER": "Folder", "INDEX": "Index"}
COLUMNS = ("Location", "Kind", "Last check")
LOCATION, KIND, LAST_CHECK = range(len(COLUMNS))
KindRole = Qt.ItemDataRole.UserRole + 1


def last_check_words(source: SourceRecord | None) -> str:
    if source is None:
        return "Added with OK"
    if source.checked_at is None:
        return "Never"
    failed = "Failed " if source.last_error else ""
    return f"{failed}{describe_age(source.checked_at)}".capitalize()


class SourcesDialog(QDialog):
    saved = Signal()

    def __init__(self, registry: Registry, pool: WorkerPool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.pool = pool
        self.setWindowTitle("Update sources and preferences")
        self.setObjectName("sourcesDialog")
        self.setMinimumWidth(520)
        self.stored_sources = {source.location: source for source in registry.list_sources()}
        self.stored_preferences = registry.preferences()

        self.sources_list = QTreeWidget()
        self.sources_list.setObjectName("sourcesList")
        self.sources_list.setAccessibleName("Update sources")
        self.sources_list.setHeaderLabels(COLUMNS)
        self.sources_list.setRootIsDecorated(False)
        self.sources_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.sources_list.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(LOCATION, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(KIND, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(LAST_CHECK, QHeaderView.ResizeMode.ResizeToContents)

        self.address_edit = QLineEdit()
        self.address_edit.setObjectName("sourceAddress")
        self.address_edit.setPlaceholderText("A folder, an index.json, or an https:// address")
        self.address_edit.setAccessibleName("Folder or address of a source to add")
        self.address_edit.textChanged.connect(self._hide_error)
        self.add_button = QPushButton("Add")
        self.add_button.setAccessibleName("Add the typed folder or address")
        # Return anywhere in the dialog means OK, which adds what is typed as well.
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(self.add_typed)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setAutoDefault(False)
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAutoDefault(False)
        self.remove_button.setAccessibleName("Remove the selected source")
        self.remove_button.clicked.connect(self.remove_selected)
        for location, source in self.stored_sources.items():
            self._add_item(location, source.kind, source)
        self.sources_list.itemSelectionChanged.connect(self._update_remove_button)

        self.error_label = QLabel()
        self.error_label.setObjectName("sourceError")
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(colors.style(colors.error_color(self.palette())))
        self.error_label.hide()

        address_line = QHBoxLayout()
        address_line.addWidget(self.address_edit, 1)
        address_line.addWidget(self.add_button)
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.add_folder_button)
        list_buttons.addStretch(1)
        list_buttons.addWidget(self.remove_button)
        sources_box = QGroupBox("Where to look for updates")
        sources_layout = QVBoxLayout(sources_box)
        sources_layout.addWidget(self.sources_list, 1)
        sources_layout.addLayout(list_buttons)
        sources_layout.addLayout(address_line)
        sources_layout.addWidget(self.error_label)

        preferences = self.stored_preferences
        self.keep_versions_spin = QSpinBox()
        self.keep_versions_spin.setObjectName("keepVersions")
        self.keep_versions_spin.setRange(0, 100)
        self.keep_versions_spin.setValue(preferences.keep_versions)
        self.keep_versions_spin.setSuffix(" per extension")
        self.keep_versions_spin.setAccessibleName("Earlier versions kept per extension")
        self.keep_size_spin = QDoubleSpinBox()
        self.keep_size_spin.setObjectName("keepSize")
        self.keep_size_spin.setRange(0, 1024)
        self.keep_size_spin.setDecimals(2)
        self.keep_size_spin.setSingleStep(0.25)
        self.keep_size_spin.setSuffix(" GiB")
        self.keep_size_spin.setValue(preferences.keep_bytes / GIB)
        self.keep_size_spin.setAccessibleName("Space the earlier versions may use together")
        # Unchanged unless the person changes it: a size the command line set in other units
        # must not be rounded just by pressing OK.
        self._shown_keep_size = self.keep_size_spin.value()
        self.check_at_launch_box = QCheckBox("Check for updates when the app starts")
        self.check_at_launch_box.setObjectName("checkAtLaunch")
        self.check_at_launch_box.setChecked(preferences.check_at_launch)
        keep_hint = QLabel(
            "Kept versions are what Roll back goes back to. Lowering these removes the oldest "
            "kept versions when you press OK; the installed version is always kept."
        )
        keep_hint.setWordWrap(True)
        keep_hint.setStyleSheet(colors.style(colors.hint_color(self.palette())))

        preferences_box = QGroupBox("Preferences")
        preferences_form = QFormLayout(preferences_box)
        preferences_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        preferences_form.addRow("Keep earlier versions:", self.keep_versions_spin)
        preferences_form.addRow("Using at most:", self.keep_size_spin)
        preferences_form.addRow(keep_hint)
        preferences_form.addRow(self.check_at_launch_box)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setDefault(True)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(sources_box, 1)
        layout.addWidget(preferences_box)
        layout.addWidget(self.buttons)
        self._update_remove_button()
        # Most often the person has a folder or an address to type.
        self.address_edit.setFocus()

    # -- the list --------------------------------------------------------------------------------

    def locations(self) -> dict[str, str]:
        """The sources as they will be after OK: location -> kind."""
        items = [
            self.sources_list.topLevelItem(row)
            for row in range(self.sources_list.topLevelItemCount())
        ]
        return {
            item.text(LOCATION): item.data(LOCATION, KindRole) for item in items if item is not None
        }

    def _add_item(self, location: str, kind: str, source: SourceRecord | None) -> QTreeWidgetItem:
        item = QTreeWidgetItem([location, KIND_WORDS.get(kind, kind), last_check_words(source)])
        item.setData(LOCATION, KindRole, kind)
        item.setToolTip(LOCATION, location)
        if source is not None and source.last_error:
            item.setToolTip(LAST_CHECK, source.last_error)
            item.setForeground(LAST_CHECK, QBrush(colors.error_color(self.palette())))
        self.sources_list.addTopLevelItem(item)
        return item

    def add(self, text: str) -> bool:
        """Add a folder or an address to the list; False (and the reason under the address
        box) when it is not one."""
        from registry.sources import classify  # not at launch: it brings urllib

        try:
            location, kind = classify(text)
        except UserFacingError as error:
            self._show_error(str(error))
            return False
        if location in self.locations():
            self._show_error(f"{location} is in the list already.")
            return False
        self.sources_list.setCurrentItem(
            self._add_item(location, kind, self.stored_sources.get(location))
        )
        self._hide_error()
        return True

    def add_typed(self) -> bool:
        text = self.address_edit.text()
        if not text.strip():
            self._show_error("Type a folder or an address first, or use Add folder….")
            return False
        if not self.add(text):
            self.address_edit.setFocus()
            return False
        self.address_edit.clear()
        return True

    def choose_folder(self) -> None:
        settings = QSettings()
        start = str(settings.value("sources/lastDir", str(Path.home())))
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of extension zips", start)
        if folder:
            settings.setValue("sources/lastDir", folder)
            self.add(folder)

    def remove_selected(self) -> None:
        for item in self.sources_list.selectedItems():
            self.sources_list.takeTopLevelItem(self.sources_list.indexOfTopLevelItem(item))
        self._update_remove_button()

    def _update_remove_button(self) -> None:
        self.remove_button.setEnabled(bool(self.sources_list.selectedItems()))

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    def _hide_error(self) -> None:
        self.error_label.hide()

    # -- OK --------------------------------------------------------------------------------------

    def preferences(self) -> Preferences:
        size = self.keep_size_spin.value()
        keep_bytes = (
            self.stored_preferences.keep_bytes
            if size == self._shown_keep_size
            else round(size * GIB)
        )
        return dataclasses.replace(
            self.stored_preferences,
            keep_versions=self.keep_versions_spin.value(),
            keep_bytes=keep_bytes,
            check_at_launch=self.check_at_launch_box.isChecked(),
        )

    def save(self) -> None:
        if self.address_edit.text().strip() and not self.add_typed():
            return
        wanted = self.locations()
        added = [(loc, kind) for loc, kind in wanted.items() if loc not in self.stored_sources]
        removed = [location for location in self.stored_sources if location not in wanted]
        preferences = self.preferences()
        changed_preferences = preferences != self.stored_preferences
        if not added and not removed and not changed_preferences:
            self.accept()
            return
        registry = self.registry

        def work() -> None:
            for location in removed:
                registry.remove_source(location)
            for location, kind in added:
                registry.add_source(location, kind)
            if changed_preferences:
                from registry.versions import prune

                registry.set_preferences(preferences)
                prune(registry)

        self.buttons.setEnabled(False)
        self.pool.start(work, registry=registry, on_success=self._saved, on_failure=self._refused)

    def _saved(self, _result: object) -> None:
        self.buttons.setEnabled(True)
        self.saved.emit()
        self.accept()

    def _refused(self, message: str, _details: str) -> None:
        self.buttons.setEnabled(True)
        self._show_error(message)
