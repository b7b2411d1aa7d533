"""The window keeps up with a large registry by reading only what changed: a finished operation
puts its extension's row in place (the list is not read or reset again, the selection and the
scroll position stay), and the Activity puts new operations on top and reads its pages and
filters on a worker."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from gui.activity_view import PAGE_SIZE
from gui.batch_dialog import BatchChoice
from gui.extensions_model import ENABLED, NAME
from gui.install_panel import ROWS_PER_TURN
from gui.launch import FIRST_PAGE
from gui.main_window import MainWindow
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Registry
from tests import test_gui_window as window_tests
from tests.conftest import REPO_ROOT
from tests.test_gui_batch import extension
from tests.test_gui_window import HELLO, WAIT_MS, close_for_good, drop, wait_finished

application = window_tests.application
seams = window_tests.seams
zips = window_tests.zips
EXTENSIONS = 2_000
OPERATIONS = 3_000


def populate(database: Path, extensions: int, operations: int) -> None:
    """Extensions and finished operations written straight into a migrated registry."""
    now = "2026-01-01T00:00:00+00:00"
    connection = sqlite3.connect(database)
    with connection:
        connection.executemany(
            "INSERT INTO extensions (id, name, version, install_path, installed_at, updated_at,"
            " manifest) VALUES (?, ?, '1.0.0', ?, ?, ?, '{}')",
            (
                (f"bench.ext-{n:05d}", f"Extension {n:05d}", f"/x/bench.ext-{n:05d}", now, now)
                for n in range(extensions)
            ),
        )
        connection.executemany(
            "INSERT INTO extension_installs (extension_id, archive_path, status, progress,"
            " current_step, started_at, ended_at) VALUES (?, ?, 'COMPLETED', 100, 'Done', ?, ?)",
            (
                (f"bench.ext-{n % extensions:05d}", f"/zips/{n}.zip", now, now)
                for n in range(operations)
            ),
        )
    connection.close()


@pytest.fixture
def crowded(paths: DataPaths) -> Iterator[Registry]:
    open_data_folder(paths).close()
    populate(paths.database, EXTENSIONS, OPERATIONS)
    with open_data_folder(paths) as registry:
        yield registry


class Reads:
    """How often the whole list of extensions was read, and how often the views were reset."""

    def __init__(self) -> None:
        self.full_lists = 0
        self.resets = 0


@pytest.fixture
def crowded_window(
    qtbot: QtBot, crowded: Registry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[MainWindow, Reads]]:
    window = MainWindow(crowded)
    qtbot.addWidget(window)
    window.show()
    # The first page at once, then every extension from a worker.
    qtbot.waitUntil(lambda: window.extensions_model.total_count() == EXTENSIONS, timeout=WAIT_MS)
    reads = Reads()
    whole_list = crowded.list_extension_summaries

    def counted() -> list[object]:
        reads.full_lists += 1
        return list(whole_list())

    monkeypatch.setattr(crowded, "list_extension_summaries", counted)
    for model in (window.extensions_model, window.activity_view.activity_model):
        model.modelReset.connect(lambda: setattr(reads, "resets", reads.resets + 1))
        model.layoutChanged.connect(lambda: setattr(reads, "resets", reads.resets + 1))
    yield window, reads
    close_for_good(qtbot, window)


def shown_names(window: MainWindow) -> list[str]:
    model = window.extensions_model
    return [model.record(row).name for row in range(model.rowCount())]


def selected_id(window: MainWindow) -> str | None:
    return window.selected_extension_id()


def test_an_install_puts_its_row_in_place_and_the_selection_and_scroll_stay(
    qtbot: QtBot, crowded_window: tuple[MainWindow, Reads], zips: dict[str, Path]
) -> None:
    window, reads = crowded_window
    window.select_extension("bench.ext-01500")
    window.table.scrollTo(window.extensions_model.index(1500, NAME))
    scrolled = window.table.verticalScrollBar().value()
    assert scrolled > 0

    drop(window, [zips["hello-world"]])
    wait_finished(qtbot, window, 1)

    names = shown_names(window)
    assert len(names) == EXTENSIONS + 1 and "Hello World" in names
    assert names == sorted(names, key=str.casefold)
    assert selected_id(window) == "bench.ext-01500"
    assert window.details.record is not None and window.details.record.id == "bench.ext-01500"
    assert window.table.verticalScrollBar().value() == scrolled
    assert (reads.full_lists, reads.resets) == (0, 0)


def test_turning_one_off_changes_its_row_only(
    qtbot: QtBot, crowded_window: tuple[MainWindow, Reads]
) -> None:
    window, reads = crowded_window
    assert window.select_extension("bench.ext-00042")
    row = window.extensions_model.row_of("bench.ext-00042")
    assert row is not None
    changed: list[int] = []
    window.extensions_model.dataChanged.connect(lambda top, _bottom: changed.append(top.row()))

    window.details.enable_button.click()
    enabled = window.extensions_model.index(row, ENABLED)
    qtbot.waitUntil(lambda: enabled.data() == "No", timeout=WAIT_MS)

    assert changed == [row]
    assert window.details.enable_button.text() == "Enable"
    assert (reads.full_lists, reads.resets) == (0, 0)


def test_what_another_process_installs_and_removes_appears_row_by_row(
    qtbot: QtBot, crowded_window: tuple[MainWindow, Reads], zips: dict[str, Path]
) -> None:
    window, reads = crowded_window
    data_dir = str(window.registry.paths.root)

    def command(*words: str) -> None:
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", data_dir, *words],
            check=True,
            capture_output=True,
            timeout=120,
        )

    command("install", "--yes", str(zips["hello-world"]))
    qtbot.waitUntil(lambda: window.extensions_model.row_of(HELLO) is not None, timeout=WAIT_MS)
    command("uninstall", "--yes", "bench.ext-00007")
    qtbot.waitUntil(
        lambda: window.extensions_model.row_of("bench.ext-00007") is None, timeout=WAIT_MS
    )
    assert window.extensions_model.total_count() == EXTENSIONS
    assert (reads.full_lists, reads.resets) == (0, 0)


def test_the_activity_puts_new_operations_on_top_and_reads_pages_on_a_worker(
    qtbot: QtBot, crowded_window: tuple[MainWindow, Reads], zips: dict[str, Path]
) -> None:
    window, reads = crowded_window
    model = window.activity_view.activity_model
    window.activity_action.trigger()
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE, timeout=WAIT_MS)
    first_load = reads.resets
    newest = model.record(0).install_id

    window.install_files([zips["hello-world"]])
    wait_finished(qtbot, window, 1)
    qtbot.waitUntil(lambda: model.rowCount() == PAGE_SIZE + 1, timeout=WAIT_MS)
    assert model.record(0).install_id > newest and model.record(0).extension_id == HELLO
    assert model.record(1).install_id == newest
    assert reads.resets == first_load

    # Scrolling to the end asks for the next page, which arrives from the worker.
    bar = window.activity_view.verticalScrollBar()
    bar.setValue(bar.maximum())
    qtbot.waitUntil(lambda: model.rowCount() == 2 * PAGE_SIZE + 1, timeout=WAIT_MS)
    ids = [model.record(row).install_id for row in range(model.rowCount())]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)


def test_an_activity_filter_typed_over_shows_only_what_the_last_text_matches(
    qtbot: QtBot, crowded_window: tuple[MainWindow, Reads], zips: dict[str, Path]
) -> None:
    window, _reads = crowded_window
    window.install_files([zips["hello-world"]])
    wait_finished(qtbot, window, 1)
    model = window.activity_view.activity_model
    window.activity_action.trigger()
    qtbot.waitUntil(lambda: not model.reading and model.rowCount() == PAGE_SIZE, timeout=WAIT_MS)

    # The first text's read is still running when the second is typed: its rows never show.
    model.set_filter("/zips/")
    model.set_filter("hello-world")
    assert model.reading
    seen: list[int] = []
    model.modelReset.connect(lambda: seen.append(model.rowCount()))
    qtbot.waitUntil(lambda: not model.reading, timeout=WAIT_MS)
    assert seen == [1] and model.record(0).extension_id == HELLO

    # Typing in the box, as a person does, ends in the same place.
    window.activity_filter.clear()
    QTest.keyClicks(window.activity_filter, "ext-00001")
    expected: Callable[[], bool] = lambda: (  # noqa: E731
        not model.reading
        and model.rowCount() > 0
        and all(
            "ext-00001" in (model.record(row).extension_id or "") for row in range(model.rowCount())
        )
    )
    qtbot.waitUntil(expected, timeout=WAIT_MS)


def test_a_drop_of_many_files_makes_its_rows_a_few_per_turn_and_asks_once(
    qtbot: QtBot,
    crowded_window: tuple[MainWindow, Reads],
    seams: window_tests.Seams,
    tmp_path: Path,
) -> None:
    window, reads = crowded_window
    files = [extension(tmp_path / f"drop-{n}.zip", f"example.drop-{n:02d}") for n in range(11)]
    drop(window, files)
    # The first rows at once, the rest on the next turns of the event loop.
    assert len(window.install_panel.operations) == ROWS_PER_TURN
    wait_finished(qtbot, window, len(files))

    [choice] = seams.plans
    assert isinstance(choice, BatchChoice) and len(choice.plans) == len(files)
    model = window.extensions_model
    assert all(model.row_of(f"example.drop-{n:02d}") is not None for n in range(11))
    assert window.extensions_model.total_count() == EXTENSIONS + len(files)
    assert (reads.full_lists, reads.resets) == (0, 0)


def test_a_large_registry_shows_its_first_page_at_once_and_every_extension_soon(
    qtbot: QtBot, crowded: Registry
) -> None:
    window = MainWindow(crowded)
    qtbot.addWidget(window)
    window.show()
    model = window.extensions_model
    assert model.rowCount() == FIRST_PAGE
    assert shown_names(window) == [f"Extension {n:05d}" for n in range(FIRST_PAGE)]
    # Another process renames one before the worker's list is in: not lost when it comes.
    other = sqlite3.connect(crowded.paths.database, timeout=30)
    with other:
        other.execute("UPDATE extensions SET name = 'Aardvark' WHERE id = 'bench.ext-01999'")
    other.close()
    window.refresh_extensions(["bench.ext-01999"])
    qtbot.waitUntil(lambda: model.total_count() == EXTENSIONS, timeout=WAIT_MS)
    assert shown_names(window) == ["Aardvark"] + [f"Extension {n:05d}" for n in range(1999)]
    assert window.select_extension("bench.ext-01999")
    assert window.details.record is not None and window.details.record.id == "bench.ext-01999"
    close_for_good(qtbot, window)
