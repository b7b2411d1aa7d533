"""An operation's owner is known by its process id and start time: read from /proc where there
is one (as psutil reads it, so every process agrees on the value), from psutil elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from registry import store


@pytest.fixture(params=["proc", "psutil"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs with /proc, and again as where there is none."""
    saved = store.PROC
    if request.param == "psutil":
        store.PROC = tmp_path / "no-proc"
    store._boot_time.cache_clear()
    store._identity_of.cache_clear()
    yield str(request.param)
    store.PROC = saved
    store._boot_time.cache_clear()
    store._identity_of.cache_clear()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to compare")
def test_the_start_time_is_psutils_whichever_way_it_is_read(source: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        for pid in (os.getpid(), child.pid):
            assert store._identity_of(pid) == (pid, psutil.Process(pid).create_time())
        assert store.current_process_identity()[0] == os.getpid()
    finally:
        child.communicate(b"")


def test_a_process_is_alive_until_it_ends_and_not_under_another_start_time(source: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    started = psutil.Process(child.pid).create_time()
    assert store.process_is_alive(child.pid, started)
    assert store.process_is_alive(child.pid, None)
    # The same id given to a process started at another time is not the owner.
    assert not store.process_is_alive(child.pid, started - 60)
    child.kill()
    # Killed but not yet waited for: a zombie, which owns nothing any more.
    zombie = psutil.Process(child.pid)
    while zombie.status() != psutil.STATUS_ZOMBIE:
        zombie.cpu_times()  # asks the kernel again; the kill lands within a moment
    assert not store.process_is_alive(child.pid, started)
    child.communicate(timeout=30)
    assert not store.process_is_alive(child.pid, started)
    assert not store.process_is_alive(None, started)
