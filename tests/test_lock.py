"""The registry lock: nobody migrates while the registry is open elsewhere, the exclusive lock
turns shared without a gap anyone can use, and a dead holder never leaves the lock behind.

``flock`` locks belong to the open file description, so two ``RegistryLock`` objects in one
process (here: one per thread) conflict exactly like two processes; the kill tests use real
processes. Every wait is on a condition, with a deadline after which the test fails. The tests
that stand in for ``fcntl.flock`` need it, and are skipped where there is none (Windows); the
others run on whichever backend the platform uses (tests/test_portability.py runs both).
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if sys.platform != "win32":
    import fcntl

from migrations.runner import MigrationReport, latest_version
from registry.errors import RegistryBusyError
from registry.lock import RegistryLock, gate_path_for, hold_exclusive, prepare_registry
from registry.paths import DataPaths

REPO_ROOT = Path(__file__).resolve().parent.parent
V1_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "registry-v1.db"
# Generous: on a loaded machine a thread may take a while to be scheduled. Nothing waits this
# long when the code is right; it only bounds how long a broken protocol takes to fail.
DEADLINE_SECONDS = 30.0
LATEST = latest_version()


@pytest.fixture
def v1_data(tmp_path: Path) -> DataPaths:
    """A data folder whose registry is the checked-in schema-version-1 database."""
    data = DataPaths(tmp_path / "data")
    data.root.mkdir(parents=True)
    shutil.copyfile(V1_FIXTURE, data.database)
    return data


class FlockSpy:
    """Stands in for ``fcntl.flock``: records which thread was refused which lock file, and can
    perform an exclusive-to-shared conversion the way flock(2) is allowed to (drop, then take),
    pausing in between so that a test can try to get in."""

    def __init__(self, lock_path: Path) -> None:
        self.real = fcntl.flock
        self.lock_path = lock_path
        self.refusals: collections.Counter[tuple[str, str]] = collections.Counter()
        self.changed = threading.Condition()
        self.held: dict[int, int] = {}
        self.split_conversions = False
        self.fail_conversions = False
        self.in_gap = threading.Event()
        self.close_gap = threading.Event()

    def file_of(self, fd: int) -> str:
        status = os.fstat(fd)
        for name, path in (("lock", self.lock_path), ("gate", gate_path_for(self.lock_path))):
            if path.exists() and os.path.samestat(status, path.stat()):
                return name
        return "other"

    def __call__(self, fd: int, operation: int) -> None:
        wanted = operation & ~fcntl.LOCK_NB
        converting = self.file_of(fd) == "lock" and self.held.get(fd) == fcntl.LOCK_EX
        if converting and wanted == fcntl.LOCK_SH:
            if self.fail_conversions:
                self.real(fd, fcntl.LOCK_UN)
                self.held.pop(fd, None)
                raise BlockingIOError("simulated: another process took the lock in the gap")
            if self.split_conversions:
                self.real(fd, fcntl.LOCK_UN)
                self.held.pop(fd, None)
                self.in_gap.set()
                if not self.close_gap.wait(DEADLINE_SECONDS):
                    raise AssertionError("the test never closed the conversion gap")
        try:
            self.real(fd, operation)
        except BlockingIOError:
            with self.changed:
                self.refusals[(threading.current_thread().name, self.file_of(fd))] += 1
                self.changed.notify_all()
            raise
        if wanted == fcntl.LOCK_UN:
            self.held.pop(fd, None)
        else:
            self.held[fd] = wanted

    def wait_until_refused(self, thread: str, file: str, times: int) -> None:
        with self.changed:
            refused = self.changed.wait_for(
                lambda: self.refusals[(thread, file)] >= times, timeout=DEADLINE_SECONDS
            )
        assert refused, f"{thread} was never refused the {file} {times} times: it did not wait"


@pytest.fixture
def spy(v1_data: DataPaths, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlockSpy]:
    if sys.platform == "win32":
        pytest.skip("stands in for fcntl.flock, which Windows does not have")
    watcher = FlockSpy(v1_data.lock)
    monkeypatch.setattr(fcntl, "flock", watcher)
    yield watcher
    watcher.close_gap.set()  # never leave a thread parked in the gap


class Opener(threading.Thread):
    """``prepare_registry`` on its own thread, with its own lock file descriptor."""

    def __init__(
        self, data: DataPaths, name: str, while_exclusive: Callable[[], None] | None = None
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.data = data
        self.while_exclusive = while_exclusive
        self.result: tuple[RegistryLock, MigrationReport] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = prepare_registry(
                self.data.database,
                self.data.lock,
                self.data.backups,
                wait_seconds=DEADLINE_SECONDS,
                while_exclusive=self.while_exclusive,
            )
        except BaseException as error:
            self.error = error

    def finish(self) -> tuple[RegistryLock, MigrationReport]:
        self.join(DEADLINE_SECONDS)
        assert not self.is_alive(), f"{self.name} never finished opening the registry"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture
def openers() -> Iterator[list[Opener]]:
    started: list[Opener] = []
    yield started
    for opener in started:
        opener.join(DEADLINE_SECONDS)
        if opener.result is not None:
            opener.result[0].release()


def start(openers: list[Opener], opener: Opener) -> Opener:
    openers.append(opener)
    opener.start()
    return opener


def assert_held_shared_by_someone(lock_path: Path) -> None:
    """A third descriptor: exclusive is refused (someone holds it), shared is granted (so
    nobody holds it exclusive)."""
    with RegistryLock(lock_path) as third:
        assert not third.try_exclusive(), "nobody holds the registry lock any more"
        assert third.try_shared(), "the registry lock is still held exclusive"


def test_second_opener_waits_out_the_exclusive_phase_then_shares_without_migrating(
    v1_data: DataPaths, spy: FlockSpy, openers: list[Opener]
) -> None:
    first_is_exclusive = threading.Event()
    let_first_finish = threading.Event()
    second_went_exclusive = threading.Event()

    def pause() -> None:
        first_is_exclusive.set()
        assert let_first_finish.wait(DEADLINE_SECONDS)

    first = start(openers, Opener(v1_data, "first", while_exclusive=pause))
    assert first_is_exclusive.wait(DEADLINE_SECONDS)
    second = start(openers, Opener(v1_data, "second", while_exclusive=second_went_exclusive.set))
    # Refused the registry lock again and again: it is waiting for the migration to end.
    spy.wait_until_refused("second", "lock", times=4)
    assert second.is_alive()
    assert not second_went_exclusive.is_set()

    let_first_finish.set()
    first_lock, first_report = first.finish()
    second_lock, second_report = second.finish()
    assert (first_report.from_version, first_report.to_version) == (1, LATEST)
    assert len(first_report.applied) == LATEST - 1
    assert not second_went_exclusive.is_set()
    assert second_report.applied == ()
    assert second_report.from_version == LATEST
    assert (first_lock.mode, second_lock.mode) == ("shared", "shared")

    second_lock.release()
    assert_held_shared_by_someone(v1_data.lock)  # only the first is left: it really is shared
    first_lock.release()
    with RegistryLock(v1_data.lock) as afterwards:
        assert afterwards.try_exclusive()


def test_nobody_can_get_in_while_the_exclusive_lock_turns_shared(
    v1_data: DataPaths, spy: FlockSpy, openers: list[Opener]
) -> None:
    spy.split_conversions = True
    second_went_exclusive = threading.Event()

    first = start(openers, Opener(v1_data, "first"))
    # The first has migrated and dropped its exclusive lock, and has not yet taken the shared
    # one: registry.lock itself is held by nobody right now.
    assert spy.in_gap.wait(DEADLINE_SECONDS)
    second = start(openers, Opener(v1_data, "second", while_exclusive=second_went_exclusive.set))
    spy.wait_until_refused("second", "gate", times=4)
    assert second.is_alive()
    assert not second_went_exclusive.is_set()

    spy.close_gap.set()
    first_lock, first_report = first.finish()
    second_lock, second_report = second.finish()
    assert first_report.to_version == LATEST and len(first_report.applied) == LATEST - 1
    assert not second_went_exclusive.is_set()
    assert second_report.applied == ()
    assert (first_lock.mode, second_lock.mode) == ("shared", "shared")
    second_lock.release()
    assert_held_shared_by_someone(v1_data.lock)
    first_lock.release()


def test_a_failed_conversion_is_an_error_not_a_launch_without_a_lock(
    v1_data: DataPaths, spy: FlockSpy
) -> None:
    spy.fail_conversions = True
    with pytest.raises(RegistryBusyError, match="was lost after upgrading"):
        prepare_registry(v1_data.database, v1_data.lock, v1_data.backups)
    with RegistryLock(v1_data.lock) as other:
        assert other.try_exclusive(), "the failed launch kept a lock"


def test_migration_is_refused_while_another_opener_shares_the_registry(
    v1_data: DataPaths,
) -> None:
    with RegistryLock(v1_data.lock) as other_window:
        assert other_window.try_shared()
        with pytest.raises(RegistryBusyError, match="another Extension Manager is using it"):
            prepare_registry(v1_data.database, v1_data.lock, v1_data.backups, wait_seconds=1)
    lock, report = prepare_registry(v1_data.database, v1_data.lock, v1_data.backups)
    lock.release()
    assert report.to_version == LATEST


def test_hold_exclusive_refuses_while_the_registry_is_open_elsewhere(v1_data: DataPaths) -> None:
    lock, _ = prepare_registry(v1_data.database, v1_data.lock, v1_data.backups)
    try:
        with pytest.raises(RegistryBusyError, match="is using the registry"):
            hold_exclusive(v1_data.lock)
    finally:
        lock.release()
    with hold_exclusive(v1_data.lock) as rescue:
        assert rescue.mode == "exclusive"
        # While it is held, a launch waits (as for a migration) and gives up at its deadline.
        with pytest.raises(RegistryBusyError, match="upgrading the registry"):
            prepare_registry(v1_data.database, v1_data.lock, v1_data.backups, wait_seconds=0.2)
    lock, _ = prepare_registry(v1_data.database, v1_data.lock, v1_data.backups)
    lock.release()


def test_a_held_lock_is_never_converted_behind_the_gates_back(v1_data: DataPaths) -> None:
    with RegistryLock(v1_data.lock) as lock:
        with pytest.raises(RuntimeError, match="only an exclusive"):
            lock.downgrade()
        assert lock.try_shared()
        with pytest.raises(RuntimeError, match="already held shared"):
            lock.try_exclusive()
        with pytest.raises(RuntimeError, match="only an exclusive"):
            lock.downgrade()
        assert lock.mode == "shared"
    with RegistryLock(v1_data.lock) as other:
        assert other.try_exclusive(), "leaving the block did not release the lock"


HOLDER_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from registry.lock import _gate, prepare_registry

database, lock_path, backups = Path({database!r}), Path({lock!r}), Path({backups!r})
phase = {phase!r}
if phase == "gate":
    with _gate(lock_path, timeout=10):
        print("holding", flush=True)
        sys.stdin.readline()
    sys.exit(0)

def hold_exclusive_phase():
    if phase == "exclusive":
        print("holding", flush=True)
        sys.stdin.readline()

lock, report = prepare_registry(database, lock_path, backups, while_exclusive=hold_exclusive_phase)
print("holding", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("phase", ["exclusive", "shared", "gate"])
def test_a_killed_holder_releases_everything(v1_data: DataPaths, phase: str) -> None:
    script = HOLDER_SCRIPT.format(
        root=str(REPO_ROOT),
        database=str(v1_data.database),
        lock=str(v1_data.lock),
        backups=str(v1_data.backups),
        phase=phase,
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "holding"
            with RegistryLock(v1_data.lock, gate_timeout=0.2) as other:
                if phase == "gate":
                    with pytest.raises(RegistryBusyError, match="stopped or hung"):
                        other.try_shared()
                else:
                    assert not other.try_exclusive()
                    assert other.try_shared() == (phase == "shared")
        finally:
            holder.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
            holder.wait(timeout=DEADLINE_SECONDS)
    if sys.platform != "win32":
        assert holder.returncode == -signal.SIGKILL
    with RegistryLock(v1_data.lock) as other:
        assert other.try_exclusive()
    lock, report = prepare_registry(v1_data.database, v1_data.lock, v1_data.backups)
    lock.release()
    assert report.to_version == LATEST
