"""The example extensions build into valid, reproducible archives."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from examples.build_examples import (
    EXAMPLES_DIR,
    FIXED_DATE_TIME,
    build_all,
    build_example,
    example_names,
    png_bytes,
)
from registry.manifest import Manifest, SemVer, parse_manifest

EXPECTED = ["hello-world", "hello-world-1.1", "word-count"]


def manifest_in(archive: Path) -> Manifest:
    with zipfile.ZipFile(archive) as opened:
        return parse_manifest(opened.read("manifest.json"))


def test_all_examples_are_found() -> None:
    assert example_names() == EXPECTED


def test_every_built_example_has_a_valid_manifest(tmp_path: Path) -> None:
    archives = build_all(tmp_path)
    assert [path.name for path in archives] == [f"{name}.zip" for name in EXPECTED]
    for archive in archives:
        manifest = manifest_in(archive)
        assert manifest.ignored_keys == (), archive.name
        if manifest.icon is not None:
            with zipfile.ZipFile(archive) as opened:
                assert opened.read(manifest.icon).startswith(b"\x89PNG\r\n\x1a\n")


def test_builds_are_byte_for_byte_reproducible(tmp_path: Path) -> None:
    first = build_all(tmp_path / "first")
    second = build_all(tmp_path / "second")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_archive_entries_are_sorted_deflated_and_timestamp_free(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_example("word-count", tmp_path)) as opened:
        infos = opened.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "manifest.json" in names
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
    assert all(info.date_time == FIXED_DATE_TIME for info in infos)


def test_hello_world_is_minimal_with_three_kinds_of_setting(tmp_path: Path) -> None:
    manifest = manifest_in(build_example("hello-world", tmp_path))
    assert manifest.id == "example.hello-world"
    assert manifest.version == SemVer(1, 0, 0)
    assert manifest.permissions == ()
    assert {type(value) for value in manifest.config.values()} == {bool, int, str}
    assert manifest.icon == "icon.png"


def test_hello_world_icon_is_a_64_pixel_png_matching_the_generator() -> None:
    icon = (EXAMPLES_DIR / "hello-world" / "icon.png").read_bytes()
    width, height = struct.unpack(">II", icon[16:24])
    assert (width, height) == (64, 64)
    # The committed file is what the generator makes, so it can always be regenerated.
    assert icon == png_bytes(64, 64)
    assert (EXAMPLES_DIR / "hello-world-1.1" / "icon.png").read_bytes() == icon


def test_word_count_declares_its_permission_and_details(tmp_path: Path) -> None:
    manifest = manifest_in(build_example("word-count", tmp_path))
    assert manifest.id == "example.word-count"
    assert manifest.version == SemVer(1, 2, 0)
    assert manifest.permissions == ("filesystem-read",)
    assert manifest.capabilities == ("command",)
    assert manifest.description and manifest.author and manifest.homepage


def test_hello_world_1_1_upgrades_1_0_with_changed_settings(tmp_path: Path) -> None:
    old = manifest_in(build_example("hello-world", tmp_path))
    new = manifest_in(build_example("hello-world-1.1", tmp_path))
    assert new.id == old.id
    assert new.version == SemVer(1, 1, 0) > old.version
    removed = old.config.keys() - new.config.keys()
    added = new.config.keys() - old.config.keys()
    assert len(removed) == 1
    assert len(added) == 1


def test_unknown_example_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no example named 'nope'"):
        build_example("nope", tmp_path)
    with pytest.raises(ValueError):
        build_example("../registry", tmp_path)


def test_command_line_builds_every_example(tmp_path: Path) -> None:
    script = EXAMPLES_DIR / "build_examples.py"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{name}.zip" for name in EXPECTED
    )
    assert result.stdout.count(".zip") == len(EXPECTED)
