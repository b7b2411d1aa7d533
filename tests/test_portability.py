"""The registry runs where there is no ``fcntl`` and no ``os.pread`` (Windows), and Linux keeps
both.

Each lock backend is run here on this machine: on Linux ``PortalockerBackend`` calls ``flock``
itself, so its adapter code is what is tested, not Windows' locks. The last test goes further: a
fresh interpreter in which ``fcntl``, ``os.pread`` and the other POSIX-only names the package
could reach do not exist imports every non-GUI module, runs commands, and holds the registry
lock against this process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import registry.archive
import registry.lock
from examples.build_examples import build_all
from migrations.runner import latest_version
from registry.archive import PARALLEL_ABOVE, open_archive
from registry.errors import RegistryBusyError
from registry.lock import (
    FlockBackend,
    LockBackend,
    PortalockerBackend,
    RegistryLock,
    _gate,
    hold_exclusive,
    prepare_registry,
)
from registry.paths import DataPaths
from tests.conftest import FIXTURES, REPO_ROOT
from tests.zipcraft import minimal_manifest

DEADLINE_SECONDS = 30.0
LATEST = latest_version()


def make_backend(name: str) -> LockBackend:
    if name == "flock":
        if sys.platform == "win32":
            pytest.skip("flock needs fcntl, which Windows does not have")
        return FlockBackend()
    return PortalockerBackend()


@pytest.fixture(params=["flock", "portalocker"])
def backend(request: pytest.FixtureRequest) -> LockBackend:
    return make_backend(request.param)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.lock"


def test_flock_is_kept_wherever_there_is_fcntl() -> None:
    has_fcntl = importlib.util.find_spec("fcntl") is not None
    expected = FlockBackend if has_fcntl else PortalockerBackend
    assert type(registry.lock.BACKEND) is expected
    expected_reader = "_PositionalReader" if hasattr(os, "pread") else "_SeekingReader"
    assert registry.archive._READER.__name__ == expected_reader


def test_shared_holders_share_and_keep_an_exclusive_request_out(
    lock_path: Path, backend: LockBackend
) -> None:
    with (
        RegistryLock(lock_path, backend=backend) as first,
        RegistryLock(lock_path, backend=backend) as second,
        RegistryLock(lock_path, backend=backend) as migrating,
    ):
        assert first.try_shared()
        assert second.try_shared()
        assert not migrating.try_exclusive()
        first.release()
        assert not migrating.try_exclusive(), "one shared holder is left"
        second.release()
        assert migrating.try_exclusive()


def test_an_exclusive_holder_keeps_every_request_out(lock_path: Path, backend: LockBackend) -> None:
    with RegistryLock(lock_path, backend=backend) as migrating:
        assert migrating.try_exclusive()
        with RegistryLock(lock_path, backend=backend) as other:
            assert not other.try_shared()
            assert not other.try_exclusive()
            assert other.mode == "none"
        migrating.release()
        assert migrating.mode == "none"
    with RegistryLock(lock_path, backend=backend) as other:
        assert other.try_exclusive()


def test_a_downgraded_lock_is_shared_and_one_release_drops_it(
    lock_path: Path, backend: LockBackend
) -> None:
    with RegistryLock(lock_path, backend=backend) as lock:
        assert lock.try_exclusive()
        lock.downgrade()
        assert lock.mode == "shared"
        with RegistryLock(lock_path, backend=backend) as other:
            assert not other.try_exclusive(), "the downgrade left no lock"
            assert other.try_shared(), "the downgrade left the lock exclusive"
    with RegistryLock(lock_path, backend=backend) as afterwards:
        # Windows would keep a shared lock stacked under a released exclusive one.
        assert afterwards.try_exclusive(), "the released lock is still held"


def test_a_held_gate_stops_requests_as_stopped_or_hung(
    lock_path: Path, backend: LockBackend
) -> None:
    with (
        _gate(lock_path, timeout=1, backend=backend),
        RegistryLock(lock_path, gate_timeout=0.1, backend=backend) as other,
    ):
        with pytest.raises(RegistryBusyError, match="stopped or hung"):
            other.try_shared()
        assert other.mode == "none"
    with RegistryLock(lock_path, backend=backend) as other:
        assert other.try_shared()


def test_launches_migrate_once_then_share(v1_paths: DataPaths, backend: LockBackend) -> None:
    first, report = prepare_registry(
        v1_paths.database, v1_paths.lock, v1_paths.backups, backend=backend
    )
    try:
        assert (report.from_version, report.to_version) == (1, LATEST)
        second, again = prepare_registry(
            v1_paths.database, v1_paths.lock, v1_paths.backups, backend=backend
        )
        assert (first.mode, second.mode) == ("shared", "shared")
        second.release()
        assert again.applied == ()
        with pytest.raises(RegistryBusyError, match="is using the registry"):
            hold_exclusive(v1_paths.lock, backend=backend)
    finally:
        first.release()
    with hold_exclusive(v1_paths.lock, backend=backend) as rescue:
        assert rescue.mode == "exclusive"


class PausingPortalocker(PortalockerBackend):
    """Stops in the middle of a downgrade, between dropping the exclusive lock and taking the
    shared one, where nobody holds ``registry.lock``."""

    def __init__(self) -> None:
        super().__init__()
        self.in_gap = threading.Event()
        self.close_gap = threading.Event()

    def try_downgrade(self, fd: int) -> bool:
        self.unlock(fd)
        self.in_gap.set()
        if not self.close_gap.wait(DEADLINE_SECONDS):
            raise AssertionError("the test never closed the conversion gap")
        return self.try_lock(fd, "shared")


def test_nobody_gets_in_while_the_portalocker_downgrade_drops_and_retakes(
    lock_path: Path,
) -> None:
    pausing = PausingPortalocker()
    errors: list[BaseException] = []

    def downgrade(lock: RegistryLock) -> None:
        try:
            lock.downgrade()
        except BaseException as error:
            errors.append(error)

    with RegistryLock(lock_path, backend=pausing) as first:
        assert first.try_exclusive()
        converting = threading.Thread(target=downgrade, args=(first,), daemon=True)
        converting.start()
        try:
            assert pausing.in_gap.wait(DEADLINE_SECONDS)
            with RegistryLock(lock_path, gate_timeout=0.2, backend=PortalockerBackend()) as other:
                with pytest.raises(RegistryBusyError, match="stopped or hung"):
                    other.try_exclusive()
                assert other.mode == "none"
        finally:
            pausing.close_gap.set()
            converting.join(DEADLINE_SECONDS)
        assert not converting.is_alive()
        assert errors == []
        assert first.mode == "shared"
        with RegistryLock(lock_path, backend=PortalockerBackend()) as other:
            assert not other.try_exclusive()
            assert other.try_shared()


@pytest.mark.skipif(sys.platform == "win32", reason="flock needs fcntl")
def test_both_backends_see_each_others_locks_on_posix(lock_path: Path) -> None:
    """A copy of an earlier release (flock) and a portalocker holder exclude each other."""
    with RegistryLock(lock_path, backend=FlockBackend()) as older:
        assert older.try_shared()
        with RegistryLock(lock_path, backend=PortalockerBackend()) as newer:
            assert not newer.try_exclusive()
            assert newer.try_shared()
    with RegistryLock(lock_path, backend=PortalockerBackend()) as newer:
        assert newer.try_exclusive()
        with RegistryLock(lock_path, backend=FlockBackend()) as older:
            assert not older.try_shared()


# -- positional reads -----------------------------------------------------------------------


def parallel_archive(path: Path) -> dict[str, bytes]:
    """An extension archive above ``PARALLEL_ABOVE`` in every compression method; returns its
    files by name."""
    rng = random.Random(20240601)
    files: dict[str, bytes] = {"manifest.json": minimal_manifest()}
    methods = {
        "stored": zipfile.ZIP_STORED,
        "deflated": zipfile.ZIP_DEFLATED,
        "bzip2": zipfile.ZIP_BZIP2,
        "lzma": zipfile.ZIP_LZMA,
    }
    part = PARALLEL_ABOVE // 6
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", files["manifest.json"])
        for number, (label, method) in enumerate(methods.items()):
            for copy in range(2):
                # Sixteen letters: compressible, and far from the zip-bomb ratio.
                content = bytes(rng.choices(b"abcdefghijklmnop", k=part + number * 4099 + copy))
                name = f"data/{label}-{copy}.bin"
                archive.writestr(name, content, compress_type=method)
                files[name] = content
    return files


@pytest.fixture
def seeking_reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Every archive reads through ``_SeekingReader``, as where there is no ``os.pread``; the
    set collects the threads that read."""
    readers: set[str] = set()
    original = registry.archive._SeekingReader.read

    def read(self: registry.archive._SeekingReader, size: int) -> bytes:
        readers.add(threading.current_thread().name)
        return original(self, size)

    monkeypatch.setattr(registry.archive._SeekingReader, "read", read)
    monkeypatch.setattr(registry.archive, "_READER", registry.archive._SeekingReader)
    monkeypatch.setattr(registry.archive, "EXTRACT_THREADS", 3)  # parallel even on one core
    if hasattr(os, "pread"):
        monkeypatch.delattr(os, "pread")
    yield readers


def test_without_pread_a_parallel_extraction_gives_identical_bytes(
    tmp_path: Path, seeking_reader: set[str]
) -> None:
    path = tmp_path / "big.zip"
    files = parallel_archive(path)
    destination = tmp_path / "out"
    destination.mkdir()
    with open_archive(path) as archive:
        fd = archive._require_open().fileno()
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        assert archive.total_bytes > PARALLEL_ABOVE
        digest: list[str] = []
        checksum = threading.Thread(target=lambda: digest.append(archive.sha256()))
        checksum.start()  # reads the same handle while the members are extracted
        archive.extract_to(destination, lambda _: None, lambda: False)
        checksum.join(DEADLINE_SECONDS)
        assert os.lseek(fd, 0, os.SEEK_CUR) == offset, "the shared offset moved"
    extracted = {
        item.relative_to(destination).as_posix(): item.read_bytes()
        for item in destination.rglob("*")
        if item.is_file()
    }
    assert extracted == files
    assert digest == [hashlib.sha256(path.read_bytes()).hexdigest()]
    assert {name for name in seeking_reader if name.startswith("extract-")}, "never parallel"


# -- a platform without fcntl or pread --------------------------------------------------------

WITHOUT_POSIX_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
# What the package and its dependencies need from the standard library, imported first: their
# own platform checks are not under test (portalocker itself calls flock on POSIX).
import argparse, logging.handlers, shutil, sqlite3, subprocess, tempfile
import jsonschema, peewee, platformdirs, portalocker, psutil, tqdm
import os

# shutil.disk_usage calls os.statvfs on POSIX; on Windows it has a call of its own.
_statvfs = os.statvfs


def disk_usage(path):
    st = _statvfs(path)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    return shutil._ntuple_diskusage(total, (st.f_blocks - st.f_bfree) * st.f_frsize, free)


shutil.disk_usage = disk_usage
sys.modules["fcntl"] = None  # import fcntl now raises ImportError, as on Windows
for name in {missing!r}:
    if hasattr(os, name):
        delattr(os, name)

import importlib, pkgutil
for package in ("migrations", "registry", "cli"):
    module = importlib.import_module(package)
    for found in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(found.name)
import main
import registry.archive, registry.lock
from pathlib import Path

assert type(registry.lock.BACKEND).__name__ == "PortalockerBackend", registry.lock.BACKEND
assert registry.archive._READER.__name__ == "_SeekingReader"
data = {data!r}
for command in (
    ["install", "--yes", {archive!r}],
    ["list"],
    ["doctor"],
    ["uninstall", "--yes", "example.hello-world"],
):
    code = main.main(["--data-dir", data, *command])
    assert code == 0, (command, code)

v1 = Path({v1!r})
lock, report = registry.lock.prepare_registry(v1, v1.with_name("registry.lock"), v1.parent)
assert lock.mode == "shared" and report.to_version > report.from_version, report
print("holding", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""

# What Windows lacks of what the package's non-GUI code could call.
POSIX_ONLY_NAMES = (
    "pread",
    "pwrite",
    "O_CLOEXEC",
    "O_DIRECTORY",
    "O_NOFOLLOW",
    "posix_fallocate",
    "statvfs",
    "fstatvfs",
    "ST_RDONLY",
    "sync",
    "getuid",
    "geteuid",
)


def test_the_package_runs_and_locks_without_fcntl_or_pread(tmp_path: Path) -> None:
    examples = {archive.stem: archive for archive in build_all(tmp_path / "zips")}
    v1 = tmp_path / "v1" / "registry.db"
    v1.parent.mkdir()
    shutil.copyfile(FIXTURES / "registry-v1.db", v1)
    script = WITHOUT_POSIX_SCRIPT.format(
        root=str(REPO_ROOT),
        missing=POSIX_ONLY_NAMES,
        data=str(tmp_path / "data"),
        archive=str(examples["hello-world"]),
        v1=str(v1),
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            printed: list[str] = []  # the commands' output, then "holding"
            while (line := child.stdout.readline()) not in ("holding\n", ""):
                printed.append(line)
            if not line:  # the child ended without locking
                _, errors = child.communicate(timeout=DEADLINE_SECONDS)
                pytest.fail(f"the child failed before locking:\n{''.join(printed)}\n{errors}")
            # This process (flock, or portalocker on Windows) sees the child's shared lock.
            with RegistryLock(v1.with_name("registry.lock")) as other:
                assert not other.try_exclusive()
                assert other.try_shared()
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "released"
            assert child.wait(timeout=DEADLINE_SECONDS) == 0
        finally:
            if child.poll() is None:
                child.kill()
    with RegistryLock(v1.with_name("registry.lock")) as other:
        assert other.try_exclusive()
