"""A full or read-only disk is an expected condition, never damage: the launch says what is
wrong and how much room is needed, and the rescue refuses before it moves anything, because on
such a disk it could not create the registry it would replace the old one with.

The disks are real: a small tmpfs, filled with a file of zeros, and remounted read-only."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.build_examples import build_all
from registry.errors import RegistryError, RegistryNeedsRescueError
from registry.installer import Installer
from registry.paths import DataPaths
from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup
from registry.startup import open_data_folder
from registry.version import APP_VERSION
from tests.conftest import run_cli

# "needs about 1.0 MiB free ... which has 0 bytes free"
SIZE = r"[\d,]+(\.\d+)? (bytes|KiB|MiB|GiB)"


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


class SmallDisk:
    """A tmpfs of a few MiB mounted on ``path``, that a test can fill and make read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int = 0) -> None:
        """Take all free space but ``leave`` bytes (rounded down to the disk's pages)."""
        chunk = b"\0" * 65536
        with self.filler.open("ab") as handle:
            try:
                while self.free() > leave:
                    handle.write(chunk[: max(4096, min(len(chunk), self.free() - leave))])
                    handle.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                handle.truncate(handle.tell())  # what did not fit was never written

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


def mount_small_disk(path: Path, size: str = "4m") -> SmallDisk:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8): a full disk cannot be made")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): no real full disk")
    return SmallDisk(path)


def unmount(disk: SmallDisk) -> None:
    subprocess.run(["mount", "-o", "remount,rw", str(disk.path)], check=False)
    subprocess.run(["umount", "-l", str(disk.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    disk = mount_small_disk(tmp_path / "disk")
    try:
        yield disk
    finally:
        unmount(disk)


def installed_on(disk: SmallDisk, examples: dict[str, Path]) -> DataPaths:
    """Two extensions, one of them disabled, one with a setting changed."""
    paths = DataPaths(disk.path / "data")
    with open_data_folder(paths) as registry:
        installer = Installer(registry, APP_VERSION)
        for name in ("hello-world", "word-count"):
            assert installer.install(examples[name]).status == "COMPLETED"
        registry.set_config("example.hello-world", {"greeting": "Hi"})
        registry.set_enabled("example.word-count", False)
    return paths


def state_of(paths: DataPaths) -> tuple[object, ...]:
    with open_data_folder(paths) as registry:
        return (
            [(e.id, e.version, e.enabled) for e in registry.list_extensions()],
            registry.get_config("example.hello-world"),
            registry.count_operations(),
        )


def names_in(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


def assert_plain_full_disk(message: str) -> None:
    assert message.startswith("The disk is full"), message
    assert re.search(f"needs about {SIZE}", message), message
    assert re.search(f"(has|had) {SIZE}( free)?", message), message
    assert "extension-manager rescue" not in message, message
    assert "damaged" not in message and "Traceback" not in message


def test_a_full_disk_at_launch_is_no_damage_and_offers_no_rescue(
    small_disk: SmallDisk, examples: dict[str, Path]
) -> None:
    paths = installed_on(small_disk, examples)
    before = state_of(paths)
    files_before = names_in(paths.root)
    small_disk.fill()

    with pytest.raises(RegistryError) as caught:
        open_data_folder(paths)
    assert not isinstance(caught.value, RegistryNeedsRescueError)
    assert_plain_full_disk(str(caught.value))

    # Asked anyway, the rescue says the same plain thing and moves nothing.
    with pytest.raises(RegistryError) as asked:
        rescue_options(paths)
    assert_plain_full_disk(str(asked.value))
    for rescue in (restore_latest_backup, lambda p: rebuild_from_disk(p, APP_VERSION)):
        with pytest.raises(RegistryError) as refused:
            rescue(paths)
        assert_plain_full_disk(str(refused.value))
    assert list(paths.root.glob("registry.db.damaged-*")) == []

    # The command line too: one plain line, no traceback, nothing moved.
    for command in (("list",), ("rescue",), ("rescue", "--rebuild")):
        result = run_cli(paths.root, *command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert_plain_full_disk(line.removeprefix("extension-manager: "))
    assert list(paths.root.glob("registry.db.damaged-*")) == []

    # Once there is room again, everything is as it was: settings, enabled states, history.
    small_disk.empty()
    assert state_of(paths) == before
    assert [name for name in names_in(paths.root) if name in files_before] == files_before


def test_a_rescue_that_could_not_finish_on_a_full_disk_moves_nothing(
    small_disk: SmallDisk, examples: dict[str, Path]
) -> None:
    """A registry that really is damaged, on a full disk: the rebuild is refused before the
    damaged file is moved aside, since no new registry could be created."""
    paths = installed_on(small_disk, examples)
    garbage = b"overwritten by something else\n" * 100
    paths.database.write_bytes(garbage)
    for companion in paths.root.glob("registry.db-*"):
        companion.unlink()
    small_disk.fill()

    with pytest.raises(RegistryNeedsRescueError):
        open_data_folder(paths)
    assert rescue_options(paths).needed
    with pytest.raises(RegistryError) as refused:
        rebuild_from_disk(paths, APP_VERSION)
    message = str(refused.value)
    assert_plain_full_disk(message)
    assert "nothing was moved" in message
    assert paths.database.read_bytes() == garbage
    assert list(paths.root.glob("registry.db.damaged-*")) == []
    assert names_in(paths.extensions) == ["example.hello-world", "example.word-count"]

    small_disk.empty()
    result = rebuild_from_disk(paths, APP_VERSION)
    assert any(line.startswith("Re-registered example.word-count") for line in result.actions)


def test_a_read_only_disk_at_launch_is_no_damage_and_offers_no_rescue(
    small_disk: SmallDisk, examples: dict[str, Path]
) -> None:
    paths = installed_on(small_disk, examples)
    before = state_of(paths)
    small_disk.read_only(True)
    try:
        with pytest.raises(RegistryError) as caught:
            open_data_folder(paths)
        message = str(caught.value)
        assert not isinstance(caught.value, RegistryNeedsRescueError)
        assert "read-only" in message and "rescue" not in message, message
        with pytest.raises(RegistryError, match="read-only"):
            rebuild_from_disk(paths, APP_VERSION)
        with pytest.raises(RegistryError, match="read-only"):
            rescue_options(paths)
        result = run_cli(paths.root, "list")
        assert result.returncode == 1 and "read-only" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        small_disk.read_only(False)
    assert list(paths.root.glob("registry.db.damaged-*")) == []
    assert state_of(paths) == before
