"""A full or read-only disk is an expected condition, never damage: the launch says what is
wrong and how much room is needed, and the rescue refuses before it moves anything, because on
such a disk it could not create the registry it would replace the old one with.

The disks are real: a small tmpfs, filled with a file of zeros, and remounted read-only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.build_examples import build_all
from registry.errors import RegistryError, RegistryNeedsRescueError
from registry.paths import DataPaths
from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup
from registry.startup import open_data_folder
from registry.version import APP_VERSION
from tests.conftest import install_examples, run_cli, state_of
from tests.disks import SmallDisk, small_disk_on

# "needs about 1.0 MiB free ... which has 0 bytes free"
SIZE = r"[\d,]+(\.\d+)? (bytes|KiB|MiB|GiB)"


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk_on(tmp_path / "disk") as disk:
        yield disk


def installed_on(disk: SmallDisk, examples: dict[str, Path]) -> DataPaths:
    """Two extensions, one of them disabled, one with a setting changed."""
    return install_examples(DataPaths(disk.path / "data"), examples, disable_word_count=True)


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
