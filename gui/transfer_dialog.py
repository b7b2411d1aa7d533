"""File → Export and Import: the installed set as a file, and bringing this data folder to one.

Exporting writes on a worker and says in the status bar what it wrote. Importing is the same
three steps as an install: a worker reads the file, checks a bundle's archives and plans the
import (``registry.transfer``); the GUI thread shows that one plan and asks once; a worker of
the long pool runs it, each install an operation the Activity keeps. Nothing waits on a person
off the GUI thread, and every failure is a message in plain words, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui import colors, messages
from gui.workers import WorkerPool
from registry.installer import CancelToken, Installer
from registry.store import Registry

if TYPE_CHECKING:
    from registry.transfer import (
        EntryOutcome,
        ImportPlan,
        ImportReport,
        InstalledSet,
        PlannedEntry,
    )

SET_FILTER = "Installed set (*.json)"
BUNDLE_FILTER = "Bundle with archives (*.zip)"
IMPORT_FILTER = "Exported sets and bundles (*.json *.zip);;All files (*)"
LAST_DIR_KEY = "transfer/lastDir"
SHOWN_MS = 15_000
# What each action is called in the plan (ImportAction's values).
ACTION_WORDS = {
    "nothing": "Already as in the file",
    "install": "Install",
    "upgrade": "Upgrade",
    "downgrade": "Downgrade (older than installed)",
    "reinstall": "Reinstall (another archive of the same version)",
    "settings": "Settings",
    "enabled": "Turn on or off",
    "refused": "Refused",
}
EXTENSION, VERSION, ACTION, DETAILS = range(4)


def details_of(planned: PlannedEntry) -> str:
    """What the plan says of an entry beyond its action and version: why it is refused, its
    settings, whether it ends up turned off."""
    entry = planned.entry
    if planned.reason:
        return planned.reason
    parts = []
    if planned.settings is not None:
        shown = ", ".join(f"{key} = {value!r}" for key, value in entry.settings.items())
        parts.append(f"settings: {shown or 'the defaults'}")
    elif entry.settings and planned.action.installs:
        parts.append(f"{len(entry.settings)} changed setting(s)")
    if planned.enabled_change or (planned.action.installs and not entry.enabled):
        parts.append("then turned on" if entry.enabled else "then turned off")
    return "; ".join(parts)


class ImportPlanDialog(QDialog):
    """The one plan an import shows: per extension of the file, what will happen to it here.
    Import or Cancel; Cancel is the default when the plan would downgrade anything."""

    answered = Signal(bool)

    def __init__(self, plan: ImportPlan, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plan = plan
        source = plan.source
        self.setWindowTitle(f"Import {source.file.name}")
        self.setObjectName("importPlanDialog")
        kind = "bundle" if source.is_bundle else "installed set"
        written = f", exported {source.exported_at[:10]}" if source.exported_at else ""
        self.heading = QLabel(
            f"To bring this data folder to the {kind} {source.file.name}{written}:"
        )
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)

        self.tree = QTreeWidget()
        self.tree.setObjectName("importPlan")
        self.tree.setAccessibleName("What the import does to each extension")
        self.tree.setHeaderLabels(["Extension", "Version", "What happens", "Details"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.tree.setWordWrap(True)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(EXTENSION, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(VERSION, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(ACTION, QHeaderView.ResizeMode.ResizeToContents)
        warning = colors.error_color(self.palette())
        for planned in plan.entries:
            entry = planned.entry
            version = entry.version
            if planned.installed_version and planned.installed_version != entry.version:
                version = f"{planned.installed_version} → {entry.version}"
            item = QTreeWidgetItem(
                [
                    entry.name or entry.id,
                    version,
                    ACTION_WORDS.get(str(planned.action), str(planned.action)),
                    details_of(planned),
                ]
            )
            item.setToolTip(EXTENSION, entry.id)
            item.setToolTip(DETAILS, planned.describe())
            if str(planned.action) in ("refused", "downgrade"):
                item.setForeground(ACTION, warning)
            self.tree.addTopLevelItem(item)

        changes = len(plan.changes)
        refused = len(plan.refused)
        summary = [f"{changes} change(s)" if changes else "Nothing to change"]
        if refused:
            summary.append(f"{refused} refused (nothing is done for them)")
        if plan.left_alone:
            left = ", ".join(plan.left_alone)
            summary.append(f"installed here and not in the file, left as they are: {left}")
        self.summary = QLabel("; ".join(summary) + ".")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)

        self.buttons = QDialogButtonBox()
        self.import_button = QPushButton("Import")
        self.import_button.setEnabled(changes > 0)
        self.buttons.addButton(self.import_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        if changes == 0:
            self.cancel_button.setText("Close")
        downgrades = any(str(p.action) == "downgrade" for p in plan.entries)
        default = self.import_button if changes and not downgrades else self.cancel_button
        default.setDefault(True)
        self.default_button = default
        self.import_button.setAutoDefault(default is self.import_button)
        self.cancel_button.setAutoDefault(default is self.cancel_button)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.finished.connect(
            lambda result: self.answered.emit(result == QDialog.DialogCode.Accepted)
        )

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        metrics = self.fontMetrics()
        rows = min(max(len(plan.entries), 3), 12)
        width = metrics.horizontalAdvance("x") * 110
        height = metrics.height() * (rows * 2 + 10)
        # Never wider or taller than the screen's free area (at 2x scaling it would be).
        screen = (parent.screen() if parent is not None else None) or self.screen()
        if screen is not None:
            available = screen.availableGeometry()
            width = min(width, int(available.width() * 0.9))
            height = min(height, int(available.height() * 0.9))
        self.resize(width, height)

    @classmethod
    def ask(
        cls, parent: QWidget | None, plan: ImportPlan, on_answer: Callable[[bool], None]
    ) -> ImportPlanDialog:
        """Show the plan window-modal; ``on_answer`` gets True for Import. The seam tests
        may replace (they drive the real one too)."""
        dialog = cls(plan, parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.answered.connect(on_answer)
        dialog.open()
        # Return answers with the default button, not with whatever row has the focus.
        dialog.default_button.setFocus()
        return dialog


class ImportSignals(QObject):
    """Emitted from the import's worker; lives on the GUI thread, so receivers run there."""

    outcome = Signal(object)
    # An install of the import was recorded: the entry, its operation's id.
    operation = Signal(object, int)


class Transfers(QObject):
    """Export and import for a window: file dialogs, workers, the plan, what to say after."""

    # The import ran to its end (its report), so what is installed may have changed.
    imported = Signal(object)
    # Something for the status bar: text and how long to show it.
    status = Signal(str, int)
    # An install of the import began: its operation id, its title, the import's cancel token.
    following = Signal(int, str, object)

    def __init__(
        self,
        parent: QWidget,
        registry: Registry,
        installer: Installer,
        pool: WorkerPool,
        long_pool: WorkerPool,
    ) -> None:
        super().__init__(parent)
        self.window = parent
        self.registry = registry
        self.installer = installer
        self.pool = pool
        self.long_pool = long_pool
        self.busy = False
        self.plan_dialog: ImportPlanDialog | None = None
        self.cancel = CancelToken()
        self._signals = ImportSignals()
        self._signals.outcome.connect(self._on_outcome)
        self._signals.operation.connect(self._on_operation)
        self._done_count = 0
        self._total = 0

    # -- choosing files ------------------------------------------------------------------------

    def _start_dir(self) -> str:
        return str(QSettings().value(LAST_DIR_KEY, str(Path.home())))

    def _remember(self, path: Path) -> None:
        QSettings().setValue(LAST_DIR_KEY, str(path.parent))

    def choose_export_file(self, bundle: bool) -> Path | None:
        """The file to write (a native dialog; tests replace ``QFileDialog.getSaveFileName``)."""
        suffix = ".zip" if bundle else ".json"
        name = "extensions-bundle.zip" if bundle else "extensions.json"
        chosen, _filter = QFileDialog.getSaveFileName(
            self.window,
            "Export with archives" if bundle else "Export installed set",
            str(Path(self._start_dir()) / name),
            BUNDLE_FILTER if bundle else SET_FILTER,
        )
        if not chosen:
            return None
        path = Path(chosen)
        if path.suffix.lower() != suffix:
            path = path.with_name(path.name + suffix)
        self._remember(path)
        return path

    def choose_import_file(self) -> Path | None:
        chosen, _filter = QFileDialog.getOpenFileName(
            self.window, "Import installed set", self._start_dir(), IMPORT_FILTER
        )
        if not chosen:
            return None
        path = Path(chosen)
        self._remember(path)
        return path

    def _refuse_while_busy(self) -> bool:
        if self.busy:
            self.status.emit(
                "An export or import is under way; wait until it has finished.", SHOWN_MS
            )
        return self.busy

    # -- export --------------------------------------------------------------------------------

    def export(self, bundle: bool) -> None:
        if self._refuse_while_busy():
            return
        file = self.choose_export_file(bundle)
        if file is not None:
            self.export_to(file, bundle)

    def export_to(self, file: Path, bundle: bool) -> None:
        """Write the set (or a bundle, which copies every kept archive) on a long worker."""
        from registry.transfer import export_bundle, export_set

        registry = self.registry
        write = export_bundle if bundle else export_set
        self.busy = True
        self.status.emit(f"Exporting to {file}…", 0)

        def done(written: InstalledSet) -> None:
            self.busy = False
            archives = " with their archives" if bundle else ""
            self.status.emit(
                f"Exported {len(written.entries)} extension(s){archives} to {file}.", SHOWN_MS
            )

        def failed(message: str, details: str) -> None:
            self.busy = False
            self.status.emit("", 0)
            messages.show_error(self.window, "Could not export", message, details)

        self.long_pool.start(
            lambda: write(registry, file), registry=registry, on_success=done, on_failure=failed
        )

    # -- import --------------------------------------------------------------------------------

    def import_(self) -> None:
        if self._refuse_while_busy():
            return
        file = self.choose_import_file()
        if file is not None:
            self.import_from(file)

    def import_from(self, file: Path) -> None:
        """Read and check the file and plan the import on a worker, then show the plan."""
        from registry.transfer import plan_import, read_set

        registry = self.registry
        cancel = self.cancel = CancelToken()
        self.busy = True
        self.status.emit(f"Reading {file}…", 0)

        def failed(message: str, details: str) -> None:
            self.busy = False
            self.status.emit("", 0)
            messages.show_error(self.window, f"Cannot import {file.name}", message, details)

        self.long_pool.start(
            lambda: plan_import(registry, read_set(file), cancel=cancel),
            registry=registry,
            on_success=self._show_plan,
            on_failure=failed,
        )

    def _show_plan(self, plan: ImportPlan) -> None:
        self.status.emit("", 0)

        def answered(accepted: bool) -> None:
            self.plan_dialog = None
            if accepted and plan.changes:
                self._run(plan)
            else:
                self.busy = False
                self.status.emit("Nothing was imported.", SHOWN_MS)

        self.plan_dialog = ImportPlanDialog.ask(self.window, plan, answered)

    def _run(self, plan: ImportPlan) -> None:
        from registry.transfer import run_import

        # A token per import: one stopped from its row's Cancel must not stop the next.
        self.cancel = CancelToken()
        registry, installer, cancel = self.registry, self.installer, self.cancel
        signals = self._signals
        self._done_count = 0
        self._total = len(plan.entries)
        self.status.emit(f"Importing {plan.source.file.name}…", 0)

        def done(report: ImportReport) -> None:
            self.busy = False
            self._report(plan, report)

        def failed(message: str, details: str) -> None:
            self.busy = False
            self.status.emit("", 0)
            self.imported.emit(None)
            messages.show_error(
                self.window, f"The import of {plan.source.file.name} stopped", message, details
            )

        self.long_pool.start(
            lambda: run_import(
                registry,
                plan,
                installer=installer,
                cancel=cancel,
                on_operation=signals.operation.emit,
                on_outcome=signals.outcome.emit,
            ),
            registry=registry,
            on_success=done,
            on_failure=failed,
        )

    def _on_operation(self, planned: PlannedEntry, install_id: int) -> None:
        self.following.emit(install_id, planned.entry.name, self.cancel)

    def _on_outcome(self, outcome: EntryOutcome) -> None:
        self._done_count += 1
        self.status.emit(
            f"Importing: {outcome.planned.entry.id} ({self._done_count} of {self._total})…", 0
        )

    def _report(self, plan: ImportPlan, report: ImportReport) -> None:
        self.imported.emit(report)
        name = plan.source.file.name
        changed = [o for o in report.outcomes if o.done and o.planned.changes]
        failed = [o for o in report.outcomes if not o.done]
        text = f"Imported {name}: {len(changed)} extension(s) changed"
        if failed:
            text += f", {len(failed)} not as in the file"
        self.status.emit(text + ".", SHOWN_MS)
        if failed:
            messages.show_error(
                self.window,
                f"Part of {name} was not imported",
                f"{len(failed)} of {len(report.outcomes)} extension(s) are not as in the file; "
                "the rest are. The Activity has each install's history.",
                "\n".join(f"{o.planned.entry.id}: {o.message}" for o in failed),
            )

    def stop(self) -> None:
        """Ask a running import to stop between steps (closing the window)."""
        self.cancel.cancel()
