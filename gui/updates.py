"""Updates from the sources: the check, what it found, and the bar above the list that says so.

A check contacts every source and may wait up to ten seconds on each one that does not answer,
so it runs on a pool of its own: installs, enabling and planning never queue behind it, and the
window stays usable meanwhile. It runs only when the person asks, or once after the window
appears when the preferences say so; nothing else ever contacts a source.

The last report is kept. After an update, a rollback, a hold or a release the report is
decided again from the offers the last check found (``decide`` reads only the registry), so
the list stays right without contacting the sources again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui import colors
from gui.labels import ElidedValue
from gui.workers import WorkerPool
from registry.store import Registry
from registry.version import APP_VERSION

if TYPE_CHECKING:
    # Reading sources needs urllib and the index schema: imported by the check, not at launch.
    from registry.sources import ExtensionUpdates, Offer, UpdateReport

# The statuses of ``ExtensionUpdates``.
UPDATE, HELD, BLOCKED, UP_TO_DATE = "update", "held", "blocked", "up to date"
NOT_CHECKED_TEXT = "Not checked yet: Tools → Check for updates (Ctrl+U)."


def available_words(item: ExtensionUpdates | None, *, complete: bool = True) -> str:
    """What the list says about one extension's updates ("1.1.0 available"); empty when no
    check has looked at it. Not ``complete``: some source could not be read."""
    if item is None:
        return ""
    if item.status == UPDATE and item.offer is not None:
        return f"{item.offer.version} available"
    if item.status == HELD:
        return f"Held ({item.withheld.version} available)" if item.withheld else "Held"
    if item.status == BLOCKED:
        # The reason ("needs Extension Manager ≥ 3.1.0") is too long for a column: it is in
        # the tooltip and the details.
        return f"{item.blocked[0][0].version} does not fit"
    return "Up to date" if complete else "None found"


def update_details(item: ExtensionUpdates, *, complete: bool = True) -> list[str]:
    """What the check found for one extension, a short sentence a line (no paths: they do
    not wrap; the source is in the tooltips). Not ``complete``: some source could not be read."""
    lines = []
    if item.offer is not None:
        lines.append(f"{item.offer.version} is available.")
    elif item.status == HELD and item.withheld is not None:
        lines.append(f"{item.withheld.version} is available, not offered while it is held.")
    elif item.status == HELD:
        lines.append("Nothing is offered while it is held.")
    elif complete:
        lines.append(f"{item.installed_version} is the newest version that fits.")
    else:
        lines.append("No update in the sources that could be read.")
    lines.extend(f"{offer.version} {reason}." for offer, reason in item.blocked)
    return lines


def _offers_in(report: UpdateReport) -> tuple[Offer, ...]:
    """The offers a report was decided from, as far as it tells (what a source has that is
    not newer than the installed version it leaves out)."""
    offered = [
        offer
        for item in report.extensions
        for offer in (item.offer, item.withheld)
        if offer is not None
    ]
    blocked = [offer for item in report.extensions for offer, _reason in item.blocked]
    return (*offered, *blocked)


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    report: UpdateReport
    sources: int  # how many sources there were to read


class UpdateChecks(QObject):
    """Runs checks one at a time on a thread of their own and keeps the last report."""

    started = Signal()
    reported = Signal(object)  # UpdateReport
    failed = Signal(str)

    def __init__(self, registry: Registry, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.pool = WorkerPool(self, threads=1)
        self.report: UpdateReport | None = None
        self.checked_at: datetime | None = None
        self.unreadable = False  # no source could be read in the last check
        self._offers: tuple[Offer, ...] = ()
        self._checking = False

    @property
    def running(self) -> bool:
        """A check is contacting the sources."""
        return self._checking

    @property
    def busy(self) -> bool:
        """A check or a decision is running on the checks' thread."""
        return self.pool.busy

    def check(self) -> None:
        """Contact the sources (ignored while a check runs: its answer is as fresh)."""
        if self.running:
            return
        registry = self.registry

        def work() -> CheckOutcome:
            from registry.sources import check_updates

            sources = len(registry.list_sources())
            return CheckOutcome(check_updates(registry, APP_VERSION), sources)

        self._checking = True
        self.pool.start(
            work, registry=registry, on_success=self._on_checked, on_failure=self._on_failed
        )
        self.started.emit()

    def redecide(self) -> None:
        """What is installed changed: decide again from the offers already known. A running
        check decides by itself when it ends."""
        report = self.report
        if report is None or self.running:
            return
        registry, offers, problems = self.registry, self._offers, report.problems

        def work() -> UpdateReport:
            from registry.sources import decide

            return decide(registry.list_extensions(), offers, APP_VERSION, problems)

        self.pool.start(work, registry=registry, on_success=self._on_decided)

    def for_extension(self, extension_id: str) -> ExtensionUpdates | None:
        """What the last check knows about one extension; None when it knows nothing."""
        if self.report is None or self.unreadable:
            return None
        return self.report.for_extension(extension_id)

    def by_extension(self) -> dict[str, ExtensionUpdates]:
        if self.report is None or self.unreadable:
            return {}
        return {item.extension_id: item for item in self.report.extensions}

    @property
    def complete(self) -> bool:
        """Every source could be read in the last check."""
        return self.report is not None and not self.report.problems

    def unknown_words(self) -> str:
        """Why nothing is known about an extension's updates."""
        if self.report is None:
            return NOT_CHECKED_TEXT
        return "Not known: no update source could be read in the last check."

    def wait(self) -> None:
        """Block until the check has returned; only when the window closes for good."""
        self.pool.wait()

    def _on_failed(self, message: str, _details: str) -> None:
        self._checking = False
        self.failed.emit(message)

    def _on_checked(self, outcome: CheckOutcome) -> None:
        self._checking = False
        self._offers = _offers_in(outcome.report)
        self.checked_at = datetime.now()
        self.unreadable = outcome.sources > 0 and len(outcome.report.problems) >= outcome.sources
        self._on_decided(outcome.report)

    def _on_decided(self, report: UpdateReport) -> None:
        self.report = report
        self.reported.emit(report)


def _tool_button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    return button


class UpdatesBar(QFrame):
    """Across the top of the window: what the last check found, in plain words (a source that
    could not be read included), and the actions that fit: check, the Updates view, update.

    One line of text and buttons, and one of problems: across the whole window rather than
    above the list, so that at twice the scale it still fits a small laptop's screen."""

    def __init__(
        self,
        check: QAction,
        show_updates: QAction,
        update_selected: QAction,
        update_all: QAction,
        edit_sources: QAction,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("updatesBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.status_label = _wrapping_label("updatesStatus", "What the check for updates found")
        # One line, however many sources failed: what went wrong, shortened where it does not
        # fit; the whole messages, with what to do, in its tooltip.
        self.problems_label = ElidedValue(
            "Sources that could not be read", Qt.TextElideMode.ElideRight
        )
        self.problems_label.setStyleSheet(colors.style(colors.error_color(self.palette())))
        self.problems_label.hide()

        self.check_button = _tool_button(check)
        self.show_updates_button = _tool_button(show_updates)
        self.sources_button = _tool_button(edit_sources)
        self._choices = (self.check_button, self.show_updates_button, self.sources_button)
        self.update_button = _tool_button(update_selected)
        self.update_all_button = _tool_button(update_all)
        status_line = QHBoxLayout()
        status_line.addWidget(self.status_label, 1)
        for button in (*self._choices, self.update_button, self.update_all_button):
            status_line.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(2)
        layout.addLayout(status_line)
        layout.addWidget(self.problems_label)
        self.hide()

    def show_not_checked(self) -> None:
        self._show("Not checked for updates yet.", self.check_button)

    def show_checking(self) -> None:
        self._show("Checking the update sources for newer versions…", None)

    def show_no_sources(self) -> None:
        self._show(
            "There are no update sources yet: add a folder of extension zips, or the address "
            "of an index.",
            self.sources_button,
        )

    def show_failure(self, message: str) -> None:
        self._show("The check for updates did not finish.", self.check_button, (message,))

    def show_report(self, checks: UpdateChecks) -> None:
        report = checks.report
        if report is None:
            return
        when = f" (checked at {checks.checked_at:%H:%M})" if checks.checked_at else ""
        if checks.unreadable:
            self._show(
                f"No update source could be read, so nothing is known about updates{when}.",
                self.check_button,
                report.problems,
            )
            return
        unread = len(report.problems)
        if unread:
            when += f"; {unread} source{'s' if unread > 1 else ''} could not be read"
        self._show(
            f"{summary(report)}{when}.", self.show_updates_button, report.problems, updates=True
        )

    def _show(
        self,
        text: str,
        choice: QToolButton | None,
        problems: tuple[str, ...] = (),
        *,
        updates: bool = False,
    ) -> None:
        """``choice``: the one button beside the text; ``updates``: the update buttons too."""
        self.status_label.setText(text)
        self.problems_label.set_value(" ".join(first_sentence(problem) for problem in problems))
        self.problems_label.setToolTip("\n\n".join(problems))
        self.problems_label.setVisible(bool(problems))
        for button in self._choices:
            button.setVisible(button is choice)
        self.update_button.setVisible(updates)
        self.update_all_button.setVisible(updates)
        self.show()


def first_sentence(message: str) -> str:
    """ "Could not reach URL (refused)." of "Could not reach URL (refused). Check the ..." """
    end = message.find(". ")
    return message if end < 0 else message[: end + 1]


def _wrapping_label(name: str, accessible_name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setAccessibleName(accessible_name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    # As wide as the bar lets it be, never wider: the window keeps its minimum width. As tall
    # as its lines at that width (a new policy would drop the height-for-width of wrapping).
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)
    label.setSizePolicy(policy)
    return label


def summary(report: UpdateReport) -> str:
    """ "2 updates available, 1 extension held" and the like, for the bar."""
    available = len(report.available)
    held = sum(1 for item in report.extensions if item.status == HELD)
    if available == 0:
        text = "Everything is up to date"
    elif available == 1:
        text = "1 update available"
    else:
        text = f"{available} updates available"
    if held:
        text += f"; {held} held, so not offered until released"
    return text
