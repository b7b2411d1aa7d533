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
import sys
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from registry.errors import UserFacingError
from registry.store import Registry

log = logging.getLogger(__name__)

# No worker ever waits on a person (the confirmation is asked on the GUI thread between two
# worker runs), so threads are only needed for work that is actually running. Extractions are
# bound by the disk: two at a time keep it busy. Short work (planning, enabling, saving
# settings, recording an answer) has its own threads so it never queues behind an extraction.
LONG_WORKERS = 2
SHORT_WORKERS = 2
# How long a thread may keep the interpreter while another waits for it. Every paint calls into
# Python hundreds of times (a model's data() per cell and role); while a worker runs Python
# code, each of those calls may wait a whole interval, so CPython's default of 5 ms made one
# repaint of the list take a tenth of a second. At 0.2 ms it takes a frame or less.
SWITCH_INTERVAL_S = 0.0002


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

    def __init__(self, parent: QObject | None = None, *, threads: int = SHORT_WORKERS) -> None:
        super().__init__(parent)
        # Process-wide, and only where there are worker threads beside a window.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
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

    @property
    def running_threads(self) -> int:
        """Threads running a task right now (idle pool threads do not count)."""
        return self._pool.activeThreadCount()

    def wait(self, msecs: int = -1) -> bool:
        """Block until every task has returned from ``run()``; used on close only."""
        return self._pool.waitForDone(msecs)
