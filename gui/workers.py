"""Running registry work off the GUI thread.

Every write to the registry (and every extraction) runs on a pool thread, so the GUI thread only
ever reads. A ``Task`` is a QRunnable plus a QObject that carries its signals back to the GUI
thread; ``WorkerPool`` keeps a strong reference to each task until it has finished (Python would
otherwise collect it mid-run) and waits for all of them when the window closes, so no thread
outlives the objects it reports to.

Every exception raised by the work is caught in ``run()`` and emitted: PySide6 has changed how
exceptions escaping a slot or a runnable surface between releases, so nothing relies on that.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from registry.errors import UserFacingError
from registry.installer import CancelToken, InstallPlan
from registry.store import Registry

log = logging.getLogger(__name__)

# Operations are few and mostly wait on disk; a confirmation also parks its thread while the
# person reads the dialog. Enough threads that even a large drop of zips gets every registry row
# (created by the worker itself) straight away, and that enabling or saving settings never
# queues behind unanswered confirmations. Extractions themselves cannot pile up: each waits for
# its confirmation, and the dialog shows one at a time.
MAX_WORKERS = 64
# How often a worker waiting for a confirmation checks whether it was cancelled meanwhile.
CONFIRM_POLL_SECONDS = 0.05


def describe_failure(error: BaseException) -> str:
    """Plain words for an exception that escaped the registry API."""
    if isinstance(error, UserFacingError):
        return str(error)
    return (
        f"An unexpected error happened ({type(error).__name__}: {error}). "
        "Details are in the log file."
    )


class TaskSignals(QObject):
    """Lives on the GUI thread; emitted from the pool thread, so receivers run queued."""

    succeeded = Signal(object)
    failed = Signal(str, str)  # message for the person, traceback for the log / details
    done = Signal()


class Task(QRunnable):
    """One function run on the pool; its result or its error comes back as a signal."""

    def __init__(self, work: Callable[[], Any], registry: Registry | None = None) -> None:
        super().__init__()
        # The pool must not delete the C++ side while Python still holds the task.
        self.setAutoDelete(False)
        self.signals = TaskSignals()
        self._work = work
        self._registry = registry

    def run(self) -> None:
        try:
            result = self._work()
        except BaseException as error:
            log.exception("background task failed")
            self.signals.failed.emit(describe_failure(error), traceback.format_exc())
        else:
            self.signals.succeeded.emit(result)
        finally:
            close_thread_connection(self._registry)
            self.signals.done.emit()


def close_thread_connection(registry: Registry | None) -> None:
    """peewee keeps one connection per thread; pool threads are reused and outlive the task."""
    if registry is None:
        return
    try:
        registry.close_thread_connection()
    except Exception:
        log.exception("could not close a worker's registry connection")


class WorkerPool(QObject):
    """Owns the pool threads and the tasks running on them."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(MAX_WORKERS)
        self._tasks: set[Task] = set()

    def start(
        self,
        work: Callable[[], Any],
        *,
        registry: Registry | None = None,
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> Task:
        """Run ``work`` on a pool thread. Without ``on_failure`` the error is only logged, so
        callers that can fail in a way a person must see pass one."""
        task = Task(work, registry)
        if on_success is not None:
            task.signals.succeeded.connect(on_success)
        if on_failure is not None:
            task.signals.failed.connect(on_failure)
        task.signals.done.connect(lambda: self._tasks.discard(task))
        self._tasks.add(task)
        self._pool.start(task)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def wait(self, msecs: int = -1) -> bool:
        """Block until every task has returned from ``run()``; used on close only."""
        return self._pool.waitForDone(msecs)


@dataclass(eq=False)
class ConfirmRequest:
    """One plan waiting for the person's answer; answered at most once."""

    plan: InstallPlan
    cancel: CancelToken
    _answered: threading.Event = field(default_factory=threading.Event)
    _accepted: bool = False

    def answer(self, accepted: bool) -> None:
        if not self._answered.is_set():
            self._accepted = accepted
            self._answered.set()

    @property
    def answered(self) -> bool:
        return self._answered.is_set()

    def wait(self) -> bool:
        """Block the worker until the GUI answers; a cancel request meanwhile means no."""
        while not self._answered.wait(CONFIRM_POLL_SECONDS):
            if self.cancel.cancelled:
                self.answer(False)
        return self._accepted and not self.cancel.cancelled


class ConfirmBridge(QObject):
    """The Installer calls ``confirm(plan)`` on its worker thread; the dialog must run on the
    GUI thread. The worker emits ``requested`` (delivered queued to the GUI thread) and blocks on
    the request's event until the GUI answers or the operation is cancelled."""

    requested = Signal(object)  # ConfirmRequest

    def confirm_for(self, cancel: CancelToken) -> Callable[[InstallPlan], bool]:
        def confirm(plan: InstallPlan) -> bool:
            request = ConfirmRequest(plan, cancel)
            self.requested.emit(request)
            return request.wait()

        return confirm
