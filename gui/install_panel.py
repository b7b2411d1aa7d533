"""Live rows for install and uninstall operations, fed by the registry.

Each row shows what the registry's operation record says: a worker writes progress into the
record, and a timer on the GUI thread re-reads the records of active rows (reads only, short,
autocommit) — the same numbers the command line would see for the same operation. Worker signals
only nudge the timer to read sooner. Operations started by another process (the command line)
are found by a slower scan of the active operations and get a row too.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui.confirm_dialog import ConfirmDialog
from gui.workers import ConfirmBridge, ConfirmRequest, WorkerPool
from registry.errors import RegistryError
from registry.installer import (
    CancelToken,
    Installer,
    InstallPlan,
)
from registry.store import (
    OperationRecord,
    Registry,
    process_is_alive,
)

log = logging.getLogger(__name__)

ACTIVE_POLL_MS = 60
# The panel grows with its rows up to this height, then scrolls.
MAX_ROWS_HEIGHT = 230
EXTERNAL_SCAN_MS = 500
# A finished success needs no action: its row goes away by itself after a moment.
COMPLETED_ROW_LINGER_MS = 4000

DONE_WORDS = {
    "INSTALL": "Installed",
    "UPGRADE": "Upgraded",
    "REINSTALL": "Reinstalled",
    "DOWNGRADE": "Downgraded",
    "UNINSTALL": "Uninstalled",
}


def change_text(record: OperationRecord) -> str:
    """'Upgrade 1.0.0 → 1.1.0' and friends, from what the record knows so far."""
    kind = record.kind.capitalize()
    if record.from_version and record.to_version:
        return f"{kind} {record.from_version} → {record.to_version}"
    if record.to_version:
        return f"{kind} {record.to_version}"
    if record.from_version:
        return f"{kind} {record.from_version}"
    return kind


class OperationRow(QFrame):
    """One operation: name, a determinate bar, the current step, Cancel / Dismiss."""

    cancel_clicked = Signal()
    dismiss_clicked = Signal()

    def __init__(self, title: str, *, cancellable: bool) -> None:
        super().__init__()
        self.setObjectName("operationRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title_label = QLabel(title)
        self.title_label.setObjectName("operationTitle")
        self.title_label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        self.change_label = QLabel()
        self.change_label.setTextFormat(Qt.TextFormat.PlainText)
        self.change_label.setStyleSheet("color: palette(mid);")
        self.step_label = QLabel("Waiting to start")
        self.step_label.setTextFormat(Qt.TextFormat.PlainText)
        self.step_label.setAccessibleName("Current step")

        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.bar.setAccessibleName(f"Progress of {title}")
        self.bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.error_label = QLabel()
        self.error_label.setObjectName("operationError")
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #b3261e;")
        self.error_label.hide()

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName(f"Cancel {title}")
        self.cancel_button.setVisible(cancellable)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setAccessibleName(f"Dismiss {title}")
        self.dismiss_button.hide()
        self.dismiss_button.clicked.connect(self.dismiss_clicked)

        heading = QHBoxLayout()
        heading.addWidget(self.title_label)
        heading.addWidget(self.change_label)
        heading.addStretch(1)
        heading.addWidget(self.step_label)

        bar_line = QHBoxLayout()
        bar_line.addWidget(self.bar, 1)
        bar_line.addWidget(self.cancel_button)
        bar_line.addWidget(self.dismiss_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addLayout(heading)
        layout.addLayout(bar_line)
        layout.addWidget(self.error_label)

    def set_title(self, title: str) -> None:
        if self.title_label.text() != title:
            self.title_label.setText(title)
            self.bar.setAccessibleName(f"Progress of {title}")
            self.cancel_button.setAccessibleName(f"Cancel {title}")
            self.dismiss_button.setAccessibleName(f"Dismiss {title}")

    def set_progress(self, value: int) -> None:
        # The registry already refuses to lower progress; a late read must not either.
        if value > self.bar.value():
            self.bar.setValue(value)

    def show_record(self, record: OperationRecord) -> None:
        self.change_label.setText(change_text(record))
        self.set_progress(record.progress)
        if record.status == "COMPLETED":
            self.set_progress(100)
            self.step_label.setText(DONE_WORDS.get(record.kind, "Done"))
            self.cancel_button.hide()
            self.dismiss_button.show()
        elif record.status == "FAILED":
            self.show_failure(record.error or "The operation failed.")
        elif not self.cancel_button.isEnabled():
            self.step_label.setText(f"Cancelling… ({record.current_step})")
        else:
            self.step_label.setText(record.current_step)

    def show_failure(self, message: str) -> None:
        self.step_label.setText("Failed")
        self.error_label.setText(message)
        self.error_label.show()
        self.bar.setEnabled(False)
        self.cancel_button.hide()
        self.dismiss_button.show()

    def show_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.step_label.setText("Cancelling…")


@dataclass(eq=False)
class Operation:
    """What the panel knows about one row; ``install_id`` is None until the worker has
    recorded the operation (the worker makes that write, not the GUI thread)."""

    row: OperationRow
    kind: str  # INSTALL or UNINSTALL (an install's exact kind is only known from the record)
    archive_path: str = ""
    extension_id: str | None = None
    name: str | None = None
    install_id: int | None = None
    cancel: CancelToken | None = None
    external: bool = False
    final: bool = False
    record: OperationRecord | None = None
    relay: _OperationSignals | None = field(default=None, repr=False)


class _OperationSignals(QObject):
    """Per-operation signal, emitted by the worker once its registry row exists."""

    begun = Signal(int)


class InstallPanel(QWidget):
    """The list of operation rows, the polling timers and the workers that run operations."""

    operation_finished = Signal(object)  # OperationRecord, once per operation
    rows_changed = Signal()
    # Another process finished an operation this panel never showed (it started and ended
    # between two scans): what is installed may have changed.
    external_change = Signal()

    def __init__(
        self,
        registry: Registry,
        installer: Installer,
        pool: WorkerPool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("installPanel")
        self.registry = registry
        self.installer = installer
        self.pool = pool
        self.bridge = ConfirmBridge(self)
        self.bridge.requested.connect(self._on_confirm_requested)
        self.operations: list[Operation] = []
        self._ignored_ids: set[int] = set()
        self._confirm_queue: deque[ConfirmRequest] = deque()
        self._confirming = False
        self._closed = False
        self._newest_seen_id: int | None = None

        self.heading = QLabel("Operations")
        heading_font = self.heading.font()
        heading_font.setBold(True)
        self.heading.setFont(heading_font)

        self._rows_widget = QWidget()
        self._rows_layout = QVBoxLayout(self._rows_widget)
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self._rows_layout.setSpacing(4)
        self._rows_layout.addStretch(1)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(self._rows_widget)
        self.scroll_area.setAccessibleName("Install and uninstall operations")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addWidget(self.heading)
        layout.addWidget(self.scroll_area)
        # As tall as its rows need; the extensions list takes the rest.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.hide()

        self._active_timer = QTimer(self)
        self._active_timer.setInterval(ACTIVE_POLL_MS)
        self._active_timer.timeout.connect(self.poll)
        self._scan_timer = QTimer(self)
        self._scan_timer.setInterval(EXTERNAL_SCAN_MS)
        self._scan_timer.timeout.connect(self.scan_external)

    # -- starting operations ---------------------------------------------------------------------

    def start_scanning(self) -> None:
        """Begin watching for operations started elsewhere (call once the window is up)."""
        self.scan_external()
        self._scan_timer.start()

    def start_install(self, path: Path) -> Operation:
        path = path.absolute()
        cancel = CancelToken()
        operation = self._add(
            Operation(
                OperationRow(path.name, cancellable=True),
                "INSTALL",
                archive_path=str(path),
                cancel=cancel,
            )
        )
        relay = self._relay_for(operation)
        installer, confirm = self.installer, self.bridge.confirm_for(cancel)

        def work() -> OperationRecord:
            install_id = installer.begin(path)
            relay.begun.emit(install_id)
            return installer.install(path, confirm=confirm, cancel=cancel, install_id=install_id)

        self._run(operation, work)
        return operation

    def start_uninstall(self, extension_id: str, name: str) -> Operation:
        operation = self._add(
            Operation(
                OperationRow(name, cancellable=False),
                "UNINSTALL",
                extension_id=extension_id,
                name=name,
            )
        )
        relay = self._relay_for(operation)
        registry, installer = self.registry, self.installer

        def work() -> OperationRecord:
            install_id = registry.create_operation(
                kind="UNINSTALL", status="UNINSTALLING", extension_id=extension_id
            )
            relay.begun.emit(install_id)
            return installer.uninstall(extension_id, install_id=install_id)

        self._run(operation, work)
        return operation

    def _relay_for(self, operation: Operation) -> _OperationSignals:
        relay = _OperationSignals(self)
        relay.begun.connect(lambda install_id: self._on_begun(operation, install_id))
        operation.relay = relay
        return relay

    def _run(self, operation: Operation, work: object) -> None:
        assert callable(work)
        self.pool.start(
            work,
            registry=self.registry,
            on_success=lambda record: self._on_worker_finished(operation, record),
            on_failure=lambda message, _details: self._on_worker_failed(operation, message),
        )

    def _add(self, operation: Operation) -> Operation:
        self.operations.append(operation)
        row = operation.row
        row.cancel_clicked.connect(lambda: self.cancel(operation))
        row.dismiss_clicked.connect(lambda: self.dismiss(operation))
        self._rows_layout.insertWidget(self._rows_layout.count() - 1, row)
        self.show()
        self._fit_height()
        self.rows_changed.emit()
        return operation

    def _fit_height(self) -> None:
        # Summed by hand: a row added a moment ago is only shown by the layout on the next
        # event-loop turn, so the container's own size hint does not count it yet.
        heights = [operation.row.sizeHint().height() for operation in self.operations]
        wanted = sum(heights) + self._rows_layout.spacing() * max(0, len(heights) - 1)
        self.scroll_area.setFixedHeight(min(wanted, MAX_ROWS_HEIGHT))

    # -- worker signals --------------------------------------------------------------------------

    def _on_begun(self, operation: Operation, install_id: int) -> None:
        if self._closed:
            return
        operation.install_id = install_id
        self.poll()
        self._active_timer.start()

    def _on_worker_finished(self, operation: Operation, record: OperationRecord) -> None:
        if self._closed:
            return
        operation.install_id = record.install_id
        self._apply(operation, record)

    def _on_worker_failed(self, operation: Operation, message: str) -> None:
        if self._closed:
            return
        if operation.install_id is not None:
            # The registry has the row: show what it says if it says the operation ended.
            self.poll()
            if operation.final:
                return
        operation.final = True
        operation.row.show_failure(message)
        self._fit_height()

    # -- reading the registry --------------------------------------------------------------------

    def poll(self) -> None:
        """Re-read the records of every unfinished operation with a registry row."""
        if self._closed:
            return
        watched = {
            op.install_id: op
            for op in self.operations
            if op.install_id is not None and not op.final
        }
        if not watched:
            self._active_timer.stop()
            return
        try:
            records = self.registry.get_operations(watched)
        except RegistryError as error:
            # Busy or briefly unreadable: the next tick tries again.
            log.warning("could not read operations: %s", error)
            return
        for install_id, operation in watched.items():
            record = records.get(install_id)
            if record is not None:
                self._apply(operation, record)
        if not any(op.install_id is not None and not op.final for op in self.operations):
            self._active_timer.stop()

    def scan_external(self) -> None:
        """Add rows for active operations this window did not start (e.g. the command line)."""
        if self._closed:
            return
        try:
            active = self.registry.list_operations(active_only=True)
        except RegistryError as error:
            log.warning("could not list active operations: %s", error)
            return
        known = {op.install_id for op in self.operations} | self._ignored_ids
        self._notice_finished_elsewhere(known)
        added = False
        for record in reversed(active):  # oldest first, so rows keep their start order
            if record.install_id in known or self._is_own_pending(record):
                continue
            if not process_is_alive(record.owner_pid, record.owner_started):
                continue  # a crashed process's leftover: Tools → Check registry repairs it
            name = Path(record.archive_path).name if record.archive_path else ""
            title = record.extension_id or name or f"Operation {record.install_id}"
            operation = self._add(
                Operation(
                    OperationRow(title, cancellable=False),
                    record.kind,
                    archive_path=record.archive_path,
                    extension_id=record.extension_id,
                    install_id=record.install_id,
                    external=True,
                )
            )
            operation.row.setToolTip("Started by another Extension Manager (for example the CLI)")
            self._apply(operation, record)
            added = True
        if added:
            self._active_timer.start()

    def _notice_finished_elsewhere(self, known: set[int | None]) -> None:
        try:
            if self._newest_seen_id is None:
                newest = self.registry.list_operations(limit=1)
                self._newest_seen_id = newest[0].install_id if newest else 0
                return
            recent = self.registry.list_operations(since_id=self._newest_seen_id)
        except RegistryError as error:
            log.warning("could not list recent operations: %s", error)
            return
        if not recent:
            return
        self._newest_seen_id = max(record.install_id for record in recent)
        if any(
            not record.active and record.install_id not in known and record.owner_pid != os.getpid()
            for record in recent
        ):
            self.external_change.emit()

    def _is_own_pending(self, record: OperationRecord) -> bool:
        """A row our worker has just created, whose ``begun`` signal is still on its way."""
        if record.owner_pid != os.getpid():
            return False
        for operation in self.operations:
            if operation.install_id is not None or operation.external:
                continue
            if record.kind == "UNINSTALL" and operation.kind == "UNINSTALL":
                if operation.extension_id == record.extension_id:
                    return True
            elif operation.kind == "INSTALL" and operation.archive_path == record.archive_path:
                return True
        return False

    def _apply(self, operation: Operation, record: OperationRecord) -> None:
        operation.record = record
        if record.extension_id and operation.extension_id != record.extension_id:
            operation.extension_id = record.extension_id
            if operation.name is None:
                installed = self._installed_name(record.extension_id)
                operation.name = installed
        title = operation.name or operation.extension_id
        if title:
            operation.row.set_title(title)
        operation.row.show_record(record)
        if not record.active and not operation.final:
            self._fit_height()
            operation.final = True
            if record.status == "COMPLETED":
                QTimer.singleShot(
                    COMPLETED_ROW_LINGER_MS, operation.row, lambda: self.dismiss(operation)
                )
            self.operation_finished.emit(record)

    def _installed_name(self, extension_id: str) -> str | None:
        try:
            installed = self.registry.get_extension(extension_id)
        except RegistryError:
            return None
        return installed.name if installed is not None else None

    # -- user actions ----------------------------------------------------------------------------

    def cancel(self, operation: Operation) -> None:
        if operation.cancel is None or operation.final:
            return
        operation.cancel.cancel()
        operation.row.show_cancelling()

    def dismiss(self, operation: Operation) -> None:
        if not operation.final or operation not in self.operations:
            return
        self.operations.remove(operation)
        if operation.install_id is not None:
            self._ignored_ids.add(operation.install_id)
        operation.row.hide()
        self._rows_layout.removeWidget(operation.row)
        operation.row.deleteLater()
        if not self.operations:
            self.hide()
        else:
            self._fit_height()
        self.rows_changed.emit()

    def row_for(self, install_id: int) -> OperationRow | None:
        for operation in self.operations:
            if operation.install_id == install_id:
                return operation.row
        return None

    def note_plan(self, plan: InstallPlan) -> None:
        """The manifest is read: name the row after the extension from now on."""
        for operation in self.operations:
            if operation.install_id == plan.install_id:
                operation.name = plan.manifest.name
                operation.extension_id = plan.manifest.id
                operation.row.set_title(plan.manifest.name)

    @property
    def active_count(self) -> int:
        return sum(1 for op in self.operations if not op.final)

    # -- confirmation ----------------------------------------------------------------------------

    def _on_confirm_requested(self, request: ConfirmRequest) -> None:
        """Show one confirmation at a time; requests that arrive meanwhile wait their turn."""
        self._confirm_queue.append(request)
        if self._confirming:
            return
        self._confirming = True
        try:
            while self._confirm_queue:
                pending = self._confirm_queue.popleft()
                if self._closed or pending.answered or pending.cancel.cancelled:
                    pending.answer(False)
                    continue
                self.note_plan(pending.plan)
                accepted = ConfirmDialog.ask(self.window(), pending.plan)
                pending.answer(accepted)
        finally:
            self._confirming = False

    # -- closing ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel everything that can be cancelled and wait for every worker to return."""
        self._closed = True
        self._active_timer.stop()
        self._scan_timer.stop()
        for operation in self.operations:
            if operation.cancel is not None:
                operation.cancel.cancel()
        while self._confirm_queue:
            self._confirm_queue.popleft().answer(False)
        self.pool.wait()
