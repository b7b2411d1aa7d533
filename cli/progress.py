"""A terminal progress bar drawn from an operation's registry row: the same numbers the window
shows, drawn by tqdm to the terminal's width."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

from tqdm import tqdm

from registry.store import Registry

T = TypeVar("T")
REDRAW_SECONDS = 0.1
LABEL_WIDTH = 24


def terminal_width() -> int:
    return shutil.get_terminal_size().columns


def _label(text: str) -> str:
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 1] + "…"


def run_with_progress(
    registry: Registry,
    install_id: int | Sequence[int],
    label: str,
    work: Callable[[], T],
    stream: TextIO,
) -> T:
    """Run ``work`` on a thread and redraw the operation's bar until it returns. The calling
    thread only waits for the worker, never for a person: prompts happen between two runs.
    With several operations (a group installed together) the bar follows the first one still
    under way."""
    install_ids = [install_id] if isinstance(install_id, int) else list(install_id)
    results: list[T] = []
    failures: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as error:
            failures.append(error)
        finally:
            registry.close_thread_connection()

    worker = threading.Thread(target=target, name=f"operation-{install_ids[0]}", daemon=True)
    bar = tqdm(
        total=100,
        desc=_label(label),
        file=stream,
        ncols=terminal_width(),
        leave=False,
        bar_format="{desc} {bar} {percentage:3.0f}%{postfix}",
    )
    try:
        worker.start()
        while True:
            finished = not worker.is_alive()
            records = registry.get_operations(install_ids)
            in_order = [records[i] for i in install_ids if i in records]
            record = next((r for r in in_order if r.active), in_order[-1])
            # Follow resizes; a terminal that reports no size gets the usual 80 columns.
            bar.ncols = terminal_width()
            bar.n = record.shown_progress
            bar.set_postfix_str(record.shown_step, refresh=False)
            bar.refresh()
            if finished:
                break
            worker.join(REDRAW_SECONDS)
    finally:
        bar.close()
    if failures:
        raise failures[0]
    return results[0]
