"""Live rows for install, update, rollback and uninstall operations, fed by the registry.

An install is three steps with the person in the middle: a worker plans it (reads and checks
the archive), the GUI thread shows the confirmation (one at a time, never blocking a worker),
and a second worker run executes or declines it. No thread waits for the person's answer. An
update plans by downloading the offered zip first, and a rollback by checking the kept archive
again; both are then confirmed and executed the same way.

Several files accepted together (one drop, one choice in the file dialog) are planned each on
its own row, then confirmed together once every one is planned or refused: one ``BatchDialog``
for all of them, and each set of files that need each other installs all or nothing. A refused
archive that holds an extension further in offers, on its row, to install it from inside.

Each row shows what the registry's operation record says: a worker writes progress into the
record, and a timer on the GUI thread re-reads the records of active rows (reads only, short,
autocommit) — the same numbers the command line would see for the same operation. Worker signals
only nudge the timer to read sooner. Operations started by another process (the command line)
are found by a slower scan of the active operations and get a row too.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal
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

from gui import colors
from gui.activity_view import change_words
from gui.workers import WorkerPool
from registry.errors import RegistryError
from registry.installer import CancelToken, Installer, InstallPlan
from registry.recovery import staging_dir_for
from registry.store import InnerOffer, OperationRecord, Registry, process_is_alive
from registry.vocabulary import OperationKind, OperationStatus, kind_of

if TYPE_CHECKING:
    # The dialogs are imported when the first one is shown, not at launch.
    from gui.batch_dialog import BatchChoice, BatchDialog
    from gui.confirm_dialog import ConfirmDialog
    from registry.sources import ExtensionUpdates

log = logging.getLogger(__name__)

ACTIVE_POLL_MS = 60
# The panel grows with its rows up to this height, then scrolls.
MAX_ROWS_HEIGHT = 230
EXTERNAL_SCAN_MS = 500
# Rows of a drop made per event-loop turn: in the window each costs 3 to 4 ms to build and to
# start planning (measured), and a frame is 16.
ROWS_PER_TURN = 2
# A success or a cancel needs no action: its row goes away by itself after a moment. A failure
# stays until dismissed.
COMPLETED_ROW_LINGER_MS = 4000


class OperationRow(QFrame):
    """One operation: name, a determinate bar, the current step, Cancel / Dismiss."""

    cancel_clicked = Signal()
    dismiss_clicked = Signal()
    # A refused archive's extension further in: install it from inside (an InnerOffer).
    offer_clicked = Signal(object)

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
        self.change_label.setStyleSheet(colors.style(colors.hint_color(self.palette())))
        self.step_label = QLabel("Waiting to start")
        self.step_label.setTextFormat(Qt.TextFormat.PlainText)
        self.step_label.setAccessibleName("Current step")

        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self._downloading = False
        self.bar.setAccessibleName(f"Progress of {title}")
        self.bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.error_label = QLabel()
        self.error_label.setObjectName("operationError")
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName(f"Cancel {title}")
        self.cancel_button.setVisible(cancellable)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setAccessibleName(f"Dismiss {title}")
        self.dismiss_button.hide()
        self.dismiss_button.clicked.connect(self.dismiss_clicked)
        self.offer_buttons: list[QPushButton] = []
        self._offers_line = QHBoxLayout()

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
        layout.addLayout(self._offers_line)

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
        self.change_label.setText(change_words(record))
        if record.downloading != self._downloading:
            # An update downloads, then installs: the bar fills once for each, from the same
            # row of the registry.
            self._downloading = record.downloading
            self.bar.setValue(0)
        self.set_progress(record.shown_progress)
        if record.status == OperationStatus.COMPLETED:
            self.set_progress(100)
            self.step_label.setText(kind_of(record.kind).done)
            self.cancel_button.hide()
            self.dismiss_button.show()
        elif record.status == OperationStatus.FAILED:
            self.show_failure(record.error or "The operation failed.")
            self.show_offers(record.offers)
        elif record.status == OperationStatus.CANCELLED:
            # A choice the person made, not a problem: in the ordinary text colour.
            self.show_ended("Cancelled", record.error or "Nothing was changed.", "")
        elif not self.cancel_button.isEnabled():
            self.step_label.setText(f"Cancelling… ({record.shown_step})")
        else:
            self.step_label.setText(record.shown_step)

    def show_offers(self, offers: Sequence[InnerOffer]) -> None:
        """One button per extension found inside the refused archive."""
        if self.offer_buttons or not offers:
            return
        for offer in offers:
            button = QPushButton(f"Install {offer.name} {offer.version} from {offer.member}")
            button.setAccessibleName(f"Install {offer.name} {offer.version} from inside the file")
            button.clicked.connect(functools.partial(self.offer_clicked.emit, offer))
            self.offer_buttons.append(button)
            self._offers_line.addWidget(button)
        self._offers_line.addStretch(1)

    def show_failure(self, message: str) -> None:
        self.show_ended("Failed", message, colors.style(colors.error_color(self.palette())))

    def show_ended(self, step: str, message: str, style: str) -> None:
        self.step_label.setText(step)
        self.error_label.setText(message)
        self.error_label.setStyleSheet(style)
        self.error_label.show()
        self.bar.setEnabled(False)
        self.cancel_button.hide()
        self.dismiss_button.show()

    def show_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.step_label.setText("Cancelling…")


@dataclass(eq=False)
class Operation:
    """What the panel knows about one row; ``install_id`` is None until a worker has recorded
    the operation (the worker makes that write, not the GUI thread)."""

    row: OperationRow
    # INSTALL, UPGRADE (an update), ROLLBACK or UNINSTALL; an install's exact kind comes with
    # its record.
    kind: OperationKind
    archive_path: str = ""
    extension_id: str | None = None
    name: str | None = None
    install_id: int | None = None
    cancel: CancelToken | None = None
    external: bool = False
    final: bool = False
    record: OperationRecord | None = None
    # Planned and waiting for the person's answer.
    plan: InstallPlan | None = field(default=None, repr=False)
    # Said in the confirmation besides the plan (an update replacing a hand-installed zip).
    notes: tuple[str, ...] = ()
    # The files accepted together with this one, confirmed together.
    drop: Drop | None = field(default=None, repr=False)


@dataclass(eq=False)
class Drop:
    """Files accepted together: once every one is planned or refused, they are confirmed in
    one dialog (or, when only one was planned and none refused, in the usual one)."""

    operations: list[Operation] = field(default_factory=list)
    queued: bool = False
    # The files whose rows are still to be made (a few per event-loop turn).
    waiting: list[Path] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return not self.waiting and all(op.plan is not None or op.final for op in self.operations)


@dataclass(eq=False)
class PendingBatch:
    """A drop's planned files waiting for their one confirmation, with the refused ones."""

    operations: list[Operation]
    refused: list[OperationRecord]
    choice: BatchChoice | None = None
    # Shown while the batch dialog is open: more files it asked for from inside refused ones.
    extra: list[Operation] = field(default_factory=list)


Confirmation = Operation | PendingBatch


class InstallPanel(QWidget):
    """The list of operation rows, the polling timers and the workers that run operations."""

    # Once per operation: its final record, and what a person calls it (its name, else file).
    operation_finished = Signal(object, str)
    rows_changed = Signal()
    # Another process finished an operation this panel never showed (it started and ended
    # between two scans): what is installed may have changed.
    external_change = Signal(object)  # set[str]: the extensions other processes changed

    def __init__(
        self,
        registry: Registry,
        installer: Installer,
        pool: WorkerPool,
        long_pool: WorkerPool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("installPanel")
        self.registry = registry
        self.installer = installer
        # Short work (recording, planning, declining) and long work (extracting, removing).
        self.pool = pool
        self.long_pool = long_pool
        self.operations: list[Operation] = []
        self._ignored_ids: set[int] = set()
        self._confirm_queue: deque[Confirmation] = deque()
        self.confirming: Confirmation | None = None
        self.confirm_dialog: ConfirmDialog | None = None
        self.batch_dialog: BatchDialog | None = None
        self._closed = False
        self._newest_seen_id: int | None = None
        # ``Registry.data_version`` at the last full scan; None: never scanned.
        self._scanned_data_version: int | None = None

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
        self.scroll_area.setAccessibleName("Operations: installs, updates, rollbacks, uninstalls")

        self.dismiss_all_button = QPushButton("Dismiss all")
        self.dismiss_all_button.setAccessibleName("Dismiss every finished operation")
        self.dismiss_all_button.clicked.connect(self.dismiss_all)
        self.dismiss_all_button.hide()
        heading_line = QHBoxLayout()
        heading_line.addWidget(self.heading)
        heading_line.addStretch(1)
        heading_line.addWidget(self.dismiss_all_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addLayout(heading_line)
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

    def start_installs(self, paths: Sequence[Path]) -> list[Operation]:
        """Install files accepted together: each planned on its own row, all confirmed once."""
        if len(paths) == 1:
            return [self.start_install(paths[0])]
        drop = Drop(waiting=list(paths))
        self._start_drop_rows(drop)
        return drop.operations

    def _start_drop_rows(self, drop: Drop) -> None:
        """Make the next few rows of a drop, and the rest on the next turns of the event
        loop: a row is a dozen widgets, and twenty made at once would freeze the window for
        a few frames."""
        if self._closed:
            drop.waiting.clear()
            return
        chunk, drop.waiting = drop.waiting[:ROWS_PER_TURN], drop.waiting[ROWS_PER_TURN:]
        for path in chunk:
            drop.operations.append(self.start_install(path, drop=drop))
        if drop.waiting:
            QTimer.singleShot(0, functools.partial(self._start_drop_rows, drop))
        elif drop.operations:
            # Every file may have been read before the last rows were made.
            self._settle(drop.operations[-1])

    def start_install(
        self, path: Path, *, member: str | None = None, drop: Drop | None = None
    ) -> Operation:
        """Install an archive or a folder; ``member`` installs an inner zip or folder of the
        archive instead (one a refused plan offered)."""
        path = path.absolute()
        cancel = CancelToken()
        title = f"{member} in {path.name}" if member else path.name
        operation = Operation(
            OperationRow(title, cancellable=True),
            OperationKind.INSTALL,
            archive_path=str(path),
            cancel=cancel,
            drop=drop,
        )
        installer = self.installer
        return self._start_planned(
            operation,
            lambda: installer.begin(path),
            lambda install_id: installer.plan(install_id, path, cancel, member=member),
        )

    def install_from_inside(self, operation: Operation, offer: InnerOffer) -> Operation:
        """Install what a refused archive offered; its row makes way for the new one."""
        started = self.start_install(Path(operation.archive_path), member=offer.member)
        self.dismiss(operation)
        return started

    def start_update(self, item: ExtensionUpdates) -> Operation:
        """Download the offered version (its own bar), then confirm and install it like a
        file; the confirmation says so when it replaces a hand-installed zip."""
        offer = item.offer
        assert offer is not None, "only an extension with an offer can be updated"
        cancel = CancelToken()
        operation = Operation(
            OperationRow(item.name, cancellable=True),
            OperationKind.UPGRADE,
            archive_path=offer.url,
            extension_id=offer.extension_id,
            name=item.name,
            cancel=cancel,
            notes=(item.origin_note,) if item.origin_note else (),
        )
        installer = self.installer
        return self._start_planned(
            operation,
            lambda: installer.begin_update(offer),
            lambda install_id: installer.plan_update(install_id, offer, cancel),
            # A download may take minutes: it must not hold up the short work.
            plan_pool=self.long_pool,
        )

    def start_rollback(self, extension_id: str, name: str) -> Operation:
        """Back to the kept version the installed one replaced, confirmed like an install."""
        cancel = CancelToken()
        operation = Operation(
            OperationRow(name, cancellable=True),
            OperationKind.ROLLBACK,
            extension_id=extension_id,
            name=name,
            cancel=cancel,
        )
        installer = self.installer
        return self._start_planned(
            operation,
            lambda: installer.begin_rollback(extension_id),
            lambda install_id: installer.plan_rollback(install_id, extension_id, None, cancel),
        )

    def follow(self, install_id: int, title: str, cancel: CancelToken | None = None) -> Operation:
        """Give a row to an operation this window started outside the panel (an import's
        installs), so its progress shows like any other; ``cancel`` is what its Cancel stops."""
        operation = self._add(
            Operation(
                OperationRow(title, cancellable=cancel is not None),
                OperationKind.INSTALL,
                name=title,
                install_id=install_id,
                cancel=cancel,
            )
        )
        if not self._closed:
            self.poll()
            self._active_timer.start()
        return operation

    def is_running_for(self, extension_id: str) -> bool:
        """An operation on this extension is under way (another would only be refused)."""
        return any(op.extension_id == extension_id and not op.final for op in self.operations)

    def _start_planned(
        self,
        operation: Operation,
        begin: Callable[[], int],
        plan: Callable[[int], InstallPlan | OperationRecord],
        *,
        plan_pool: WorkerPool | None = None,
    ) -> Operation:
        """Record, then plan on a worker; the plan goes to the confirmation queue."""
        self._add(operation)

        def planned(install_id: int) -> None:
            self._run(
                operation,
                plan_pool or self.pool,
                lambda: plan(install_id),
                self._on_planned,
            )

        self._run(operation, self.pool, begin, planned, begins=True)
        return operation

    def start_uninstall(
        self, extension_id: str, name: str, keep_settings: bool = True
    ) -> Operation:
        operation = self._add(
            Operation(
                OperationRow(name, cancellable=False),
                OperationKind.UNINSTALL,
                extension_id=extension_id,
                name=name,
            )
        )
        installer = self.installer

        def uninstall(install_id: int) -> None:
            self._run(
                operation,
                self.long_pool,
                lambda: installer.uninstall(
                    extension_id, install_id=install_id, keep_settings=keep_settings
                ),
                self._on_worker_finished,
            )

        self._run(
            operation,
            self.pool,
            lambda: installer.begin_uninstall(extension_id),
            uninstall,
            begins=True,
        )
        return operation

    def _run(
        self,
        operation: Operation,
        pool: WorkerPool,
        work: Callable[[], Any],
        then: Callable[..., None],
        *,
        begins: bool = False,
    ) -> None:
        """Run one step of ``operation`` on ``pool``; ``then`` gets its result on the GUI
        thread (with the operation, unless the step ``begins`` it and returns its id)."""

        def succeeded(result: Any) -> None:
            if begins:
                if self._on_begun(operation, result):
                    then(result)
            elif operation in self.operations:
                then(operation, result)

        pool.start(
            work,
            registry=self.registry,
            on_success=succeeded,
            on_failure=lambda message, _details: self._on_worker_failed(operation, message),
        )

    def _add(self, operation: Operation) -> Operation:
        self.operations.append(operation)
        row = operation.row
        row.cancel_clicked.connect(lambda: self.cancel(operation))
        row.dismiss_clicked.connect(lambda: self.dismiss(operation))
        row.offer_clicked.connect(lambda offer: self.install_from_inside(operation, offer))
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

    def _on_begun(self, operation: Operation, install_id: int) -> bool:
        """The operation's row exists; False when the window closed meanwhile (the row is
        then ended at once, so it is not left waiting for a person who has gone)."""
        operation.install_id = install_id
        if self._closed:
            self.pool.start(lambda: self.installer.decline(install_id), registry=self.registry)
            return False
        # This row's record only: the others are polled on the timer (a drop of twenty files
        # would otherwise read and show all of them twenty times over).
        self._poll_ids({install_id: operation})
        self._active_timer.start()
        return True

    def _on_planned(self, operation: Operation, planned: InstallPlan | OperationRecord) -> None:
        if isinstance(planned, OperationRecord):
            self._on_worker_finished(operation, planned)
            return
        operation.plan = planned
        self.note_plan(planned)
        if self._closed:
            # Planned while the window was closing: nobody is left to answer.
            self._answer(operation, accepted=False)
            return
        if self._join_open_batch(operation):
            return
        if operation.drop is None:
            self._confirm_queue.append(operation)
            self._confirm_next()
        else:
            self._settle(operation)

    def _settle(self, operation: Operation) -> None:
        """One file of a drop is planned or has ended: once all are, queue their confirmation."""
        drop = operation.drop
        if drop is None or drop.queued or not drop.settled or self._closed:
            return
        drop.queued = True
        planned = [op for op in drop.operations if op.plan is not None]
        refused = [
            op.record
            for op in drop.operations
            if op.record is not None and op.record.status == OperationStatus.FAILED
        ]
        if not planned:
            return
        if len(planned) == 1 and not refused:
            self._confirm_queue.append(planned[0])
        else:
            self._confirm_queue.append(PendingBatch(planned, refused))
        self._confirm_next()

    def _on_worker_finished(self, operation: Operation, record: OperationRecord) -> None:
        if self._closed:
            return
        operation.install_id = record.install_id
        self._apply(operation, record)

    def _on_worker_failed(self, operation: Operation, message: str) -> None:
        if self._closed or operation not in self.operations:
            return
        if operation.install_id is not None:
            # The registry has the row: show what it says if it says the operation ended.
            self.poll()
            if operation.final:
                return
        operation.final = True
        operation.row.show_failure(message)
        self._fit_height()
        self._update_dismiss_all()
        self._settle(operation)

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
        self._poll_ids(watched)
        if not any(op.install_id is not None and not op.final for op in self.operations):
            self._active_timer.stop()

    def _poll_ids(self, watched: dict[int, Operation]) -> None:
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

    def scan_external(self) -> None:
        """Add rows for active operations this window did not start (e.g. the command line)."""
        if self._closed:
            return
        try:
            # Nobody else has committed since the last scan: there is nothing new to read.
            version = self.registry.data_version()
            if version == self._scanned_data_version:
                return
            active = self.registry.list_operations(active_only=True)
        except RegistryError as error:
            log.warning("could not list active operations: %s", error)
            return
        known = {op.install_id for op in self.operations} | self._ignored_ids
        if self._notice_finished_elsewhere(known):
            self._scanned_data_version = version
        added = False
        for record in reversed(active):  # oldest first, so rows keep their start order
            # This process's own operations all have rows already, or get one as soon as the
            # worker that recorded them reports back.
            if record.install_id in known or record.owner_pid == os.getpid():
                continue
            if not process_is_alive(record.owner_pid, record.owner_started):
                continue  # a crashed process's leftover: Tools → Check registry repairs it
            name = Path(record.archive_path).name if record.archive_path else ""
            title = record.extension_id or name or f"Operation {record.install_id}"
            operation = self._add(
                Operation(
                    OperationRow(title, cancellable=False),
                    kind_of(record.kind),
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

    def _notice_finished_elsewhere(self, known: set[int | None]) -> bool:
        """Say when operations of other processes ended; False when the registry could not
        be read (the next scan tries again)."""
        try:
            if self._newest_seen_id is None:
                newest = self.registry.list_operations(limit=1)
                self._newest_seen_id = newest[0].install_id if newest else 0
                return True
            recent = self.registry.list_operations(since_id=self._newest_seen_id)
        except RegistryError as error:
            log.warning("could not list recent operations: %s", error)
            return False
        if not recent:
            return True
        self._newest_seen_id = max(record.install_id for record in recent)
        changed = {
            record.extension_id
            for record in recent
            if not record.active
            and record.install_id not in known
            and record.owner_pid != os.getpid()
            and record.extension_id
        }
        if changed:
            self.external_change.emit(changed)
        return True

    def _apply(self, operation: Operation, record: OperationRecord) -> None:
        if record == operation.record:
            return  # polled again, nothing changed: twenty rows sixteen times a second
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
            self._update_dismiss_all()
            if record.status in (OperationStatus.COMPLETED, OperationStatus.CANCELLED):
                QTimer.singleShot(
                    COMPLETED_ROW_LINGER_MS, operation.row, lambda: self.dismiss(operation)
                )
            self.operation_finished.emit(record, operation.row.title_label.text())
            self._settle(operation)

    def _installed_name(self, extension_id: str) -> str | None:
        try:
            installed = self.registry.extension_summaries([extension_id])
        except RegistryError:
            return None
        return installed[0].name if installed else None

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
        self._update_dismiss_all()
        self.rows_changed.emit()

    def dismiss_all(self) -> None:
        """Every finished row goes; rows still running stay."""
        for operation in [op for op in self.operations if op.final]:
            self.dismiss(operation)

    def _update_dismiss_all(self) -> None:
        finished = sum(1 for op in self.operations if op.final)
        self.dismiss_all_button.setVisible(finished > 1)

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
    def queued_confirmations(self) -> int:
        """Plans waiting behind the confirmation on screen."""
        return len(self._confirm_queue)

    @property
    def active_count(self) -> int:
        return sum(1 for op in self.operations if not op.final)

    # -- confirmation ----------------------------------------------------------------------------

    def _confirm_next(self) -> None:
        """Show one confirmation at a time; plans that arrive meanwhile wait their turn."""
        from gui.confirm_dialog import ConfirmDialog

        if self.confirming is not None or self._closed:
            return
        while self._confirm_queue:
            waiting = self._confirm_queue.popleft()
            if isinstance(waiting, PendingBatch):
                if self._confirm_batch(waiting):
                    return
                continue
            operation = waiting
            if self._is_cancelled(operation):
                self._answer(operation, accepted=False)
                continue
            assert operation.plan is not None
            self.confirming = operation
            dialog = ConfirmDialog.ask(
                self.window(),
                operation.plan,
                functools.partial(self._on_answered, operation),
                *operation.notes,
            )
            # An answer given at once (a test's stand-in) has already moved on to the next.
            if self.confirming is operation and isinstance(dialog, ConfirmDialog):
                self.confirm_dialog = dialog
            return

    @staticmethod
    def _is_cancelled(operation: Operation) -> bool:
        return operation.cancel is not None and operation.cancel.cancelled

    def _confirm_batch(self, pending: PendingBatch) -> bool:
        """Show the one dialog for a drop's files; False when none is left to ask about (each
        cancelled from its row meanwhile)."""
        from gui.batch_dialog import BatchChoice, BatchDialog
        from gui.confirm_dialog import ConfirmDialog

        for operation in [op for op in pending.operations if self._is_cancelled(op)]:
            pending.operations.remove(operation)
            self._answer(operation, accepted=False)
        if not pending.operations:
            return False
        plans = [op.plan for op in pending.operations if op.plan is not None]
        pending.choice = BatchChoice(plans, pending.refused, self.installer.arrange)
        self.confirming = pending
        dialog = ConfirmDialog.ask(
            self.window(), pending.choice, functools.partial(self._on_batch_answered, pending)
        )
        if self.confirming is pending and isinstance(dialog, BatchDialog):
            self.batch_dialog = dialog
            dialog.inside_requested.connect(functools.partial(self._plan_inside_batch, pending))
        return True

    def _plan_inside_batch(
        self, pending: PendingBatch, record: OperationRecord, offer: InnerOffer
    ) -> None:
        """The batch dialog asked for an extension inside a refused file: plan it on a row of
        its own; once planned it joins the open dialog (see ``_join_open_batch``)."""
        refused = next((op for op in self.operations if op.install_id == record.install_id), None)
        operation = self.start_install(Path(record.archive_path), member=offer.member)
        pending.extra.append(operation)
        if refused is not None:
            self.dismiss(refused)

    def _join_open_batch(self, operation: Operation) -> bool:
        """A plan the open batch dialog asked for joins it; True when it did."""
        pending = self.confirming
        if not isinstance(pending, PendingBatch) or operation not in pending.extra:
            return False
        if self.batch_dialog is None:
            return False
        pending.operations.append(operation)
        assert operation.plan is not None
        self.batch_dialog.add_plan(operation.plan)
        return True

    def _on_answered(self, operation: Operation, accepted: bool) -> None:
        if self.confirming is operation:
            self.confirming = None
            if self.confirm_dialog is not None:
                operation.plan = self.confirm_dialog.chosen_plan
            self.confirm_dialog = None
        self._answer(operation, accepted)
        self._confirm_next()

    def _on_batch_answered(self, pending: PendingBatch, accepted: bool) -> None:
        """Install what the person ticked (each linked set all or nothing, on the long pool);
        decline the rest: unticked ones as cancelled, held back ones with the reason."""
        if self.confirming is pending:
            self.confirming = None
            self.batch_dialog = None
        choice = pending.choice
        by_id = {op.install_id: op for op in pending.operations}
        if not accepted or self._closed or choice is None:
            for operation in pending.operations:
                self._answer(operation, accepted=False)
        else:
            batch = choice.batch
            for plan in choice.unticked:
                self._answer(by_id[plan.install_id], accepted=False)
            for plan, reason in batch.held_back:
                self._decline_with(by_id[plan.install_id], reason)
            for group in batch.groups:
                self._execute_group([by_id[plan.install_id] for plan in group], group)
        self._confirm_next()

    def _execute_group(self, operations: list[Operation], plans: Sequence[InstallPlan]) -> None:
        for operation in operations:
            operation.plan = None
        cancels = [operation.cancel for operation in operations]
        installer = self.installer

        def finished(records: list[OperationRecord]) -> None:
            for operation, record in zip(operations, records, strict=True):
                if operation in self.operations:
                    self._on_worker_finished(operation, record)

        def failed(message: str, _details: str) -> None:
            for operation in operations:
                self._on_worker_failed(operation, message)

        self.long_pool.start(
            lambda: installer.execute_group(plans, cancels),
            registry=self.registry,
            on_success=finished,
            on_failure=failed,
        )

    def _decline_with(self, operation: Operation, reason: str) -> None:
        """End a planned operation that cannot go ahead with the others, saying why."""
        plan, operation.plan = operation.plan, None
        if plan is None:
            return
        self._run(
            operation,
            self.pool,
            lambda: self.installer.decline(plan.install_id, reason),
            self._on_worker_finished,
        )

    def _answer(self, operation: Operation, accepted: bool) -> None:
        """Execute the plan on a worker, or record that the person said no."""
        plan, operation.plan = operation.plan, None
        if plan is None:
            return
        cancel = operation.cancel
        if accepted and not self._closed and not (cancel is not None and cancel.cancelled):
            self._run(
                operation,
                self.long_pool,
                lambda: self.installer.execute(plan, cancel),
                self._on_worker_finished,
            )
        else:
            self._run(
                operation,
                self.pool,
                lambda: self._decline(plan.install_id),
                self._on_worker_finished,
            )

    def _decline(self, install_id: int) -> OperationRecord:
        """On a worker: end the operation the person said no to. An update's download goes
        with it (the installer leaves the staging folder of a declined plan to its caller)."""
        shutil.rmtree(staging_dir_for(self.registry, install_id), ignore_errors=True)
        return self.installer.decline(install_id)

    # -- closing ---------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Cancel everything that can be cancelled and end what waits for an answer, without
        waiting: the workers finish (rolling back) on their own."""
        self._closed = True
        self._active_timer.stop()
        self._scan_timer.stop()
        for operation in self.operations:
            if operation.cancel is not None:
                operation.cancel.cancel()
        for dialog in (self.confirm_dialog, self.batch_dialog):
            if dialog is not None:
                dialog.reject()  # answers no through its callback
        if isinstance(self.confirming, PendingBatch):
            self._on_batch_answered(self.confirming, accepted=False)
        elif self.confirming is not None:
            self._on_answered(self.confirming, accepted=False)
        self._confirm_queue.clear()
        # Queued, or planned while the rest of their drop was still being read.
        for operation in self.operations:
            self._answer(operation, accepted=False)

    @property
    def busy(self) -> bool:
        return self.pool.busy or self.long_pool.busy

    def shutdown(self) -> None:
        """Stop everything and wait for every worker to return."""
        self.stop_all()
        # A step that finished just before the close has its result still queued for this
        # thread: deliver it, so that a recorded or planned operation is ended (declined) rather
        # than left waiting, and wait for what that starts.
        while True:
            self.pool.wait()
            self.long_pool.wait()
            QCoreApplication.sendPostedEvents()
            if not self.busy:
                break
