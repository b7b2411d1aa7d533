"""The launch reads the whole registry for damage only when something can have damaged it since
the last check passed: a clean close lets the next launch skip it; a write by anything else, a
process that died with the registry open, or a week without a full check make it run."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from migrations import verified
from registry.errors import RegistryError
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.vocabulary import OperationStatus
from tests.conftest import REPO_ROOT


def checked_once(paths: DataPaths) -> None:
    open_and_close(paths)
    open_and_close(paths)


def open_and_close(paths: DataPaths) -> None:
    """A session that writes something, as every session of the app may."""
    with open_data_folder(paths) as registry:
        install_id = registry.create_operation("/somewhere/a.zip")
        registry.finish_operation(install_id, OperationStatus.FAILED, "Stopped.")


def test_a_clean_close_lets_the_next_launch_skip_the_full_check(paths: DataPaths) -> None:
    open_and_close(paths)  # creates the registry: nothing to check yet
    assert verified.check_needed(paths.database)
    open_and_close(paths)  # checks it, and closes cleanly
    assert not verified.check_needed(paths.database)
    open_and_close(paths)  # a session that skipped it closes cleanly too
    assert not verified.check_needed(paths.database)
    # A week on, the check runs again whatever the stamp says.
    later = time.time() + verified.RECHECK_AFTER + 60
    assert verified.check_needed(paths.database, now=later)


def test_damage_after_a_clean_close_is_still_found(paths: DataPaths) -> None:
    checked_once(paths)
    data = bytearray(paths.database.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size * 2 : page_size * 3] = b"\x07" * page_size  # scribble over a table page
    # File times move with the kernel's coarse clock (a few milliseconds a tick): a write in
    # the very tick of the close could leave them as recorded, which nothing but a test does.
    # Wait until a file touched now gets a later change time than the closed registry.
    closed = paths.database.stat().st_ctime_ns
    probe = paths.root / "clock-probe"
    probe.touch()
    while probe.stat().st_ctime_ns <= closed:
        probe.touch()
    with paths.database.open("r+b") as handle:  # the same file, the same size
        handle.write(bytes(data))
    assert verified.check_needed(paths.database)
    with pytest.raises(RegistryError, match="damaged|cannot be read"):
        open_data_folder(paths)
    assert paths.database.read_bytes() == bytes(data)


DIES_WITH_THE_REGISTRY_OPEN = """
import os, sys
from pathlib import Path
from registry import open_registry
registry = open_registry(Path(sys.argv[1]))
registry.create_operation("/somewhere/b.zip")
os._exit(0)
"""


def test_a_process_that_died_with_the_registry_open_makes_the_next_launch_check(
    paths: DataPaths,
) -> None:
    checked_once(paths)
    subprocess.run(
        [sys.executable, "-c", DIES_WITH_THE_REGISTRY_OPEN, str(paths.root)],
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert verified.check_needed(paths.database)
    open_and_close(paths)
    assert not verified.check_needed(paths.database)


def test_a_missing_or_unreadable_stamp_means_the_check_runs(paths: DataPaths) -> None:
    checked_once(paths)
    stamp = paths.database.with_name(paths.database.name + verified.STAMP_SUFFIX)
    stamp.write_text("not json", encoding="utf-8")
    assert verified.check_needed(paths.database)
    stamp.unlink()
    assert verified.check_needed(paths.database)
    open_and_close(paths)  # the check passes and is recorded again
    assert not verified.check_needed(paths.database)
