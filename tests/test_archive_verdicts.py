"""Verdicts and messages for archive shapes found in other projects' zip test suites.

Each archive here is one that Python's zipfile or Info-ZIP ``unzip`` reads correctly but an
earlier version of the checks judged wrongly (a harmless file called a zip bomb, appended data
let through), or one that was refused for the right reason in the wrong words.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import pytest

from registry.archive import open_archive
from registry.errors import ArchiveError
from registry.limits import Limits
from tests.zipcraft import (
    RawEntry,
    append_data,
    data_descriptor,
    make_extension_zip,
    make_zip,
    minimal_manifest,
    msdos_folder,
    prepend_data,
    set_end_record_entries,
    streamed_entry,
    with_zip64_end_record,
    write_raw_zip,
)

MANIFEST = minimal_manifest()
TEXT = b"the quick brown fox jumps over the lazy dog\n" * 40

# Python-internal words that must never reach a person through an archive message.
PYTHON_WORDS = re.compile(r"Traceback|[A-Z][a-z]+Error\b|errno|struct\.|sys\.")


def refused(path: Path, limits: Limits | None = None) -> str:
    """The message open_archive raises for ``path``, checked for plain wording."""
    with pytest.raises(ArchiveError) as caught:
        open_archive(path, limits or Limits()).close()
    message = str(caught.value)
    assert path.name in message
    assert not PYTHON_WORDS.search(message), message
    return message


def extracted(path: Path, destination: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) that extraction creates under ``destination``."""
    destination.mkdir()
    with open_archive(path) as archive:
        archive.extract_to(destination, lambda _: None, lambda: False)
    return {
        item.relative_to(destination).as_posix(): item.read_bytes() if item.is_file() else None
        for item in sorted(destination.rglob("*"))
    }


def read_by_zipfile(path: Path) -> dict[str, bytes]:
    """What Python's zipfile reads from ``path`` (it checks every CRC): the oracle."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


# -- 1. flag bit 3 without a data descriptor -------------------------------------------------


def descriptor_flag_only(name: str, content: bytes, *, zeroed: bool) -> RawEntry:
    """An entry whose headers claim a data descriptor (flag bit 3) that is not written.

    With ``zeroed`` the local header holds zeros as a streaming writer's does; otherwise it
    holds the true CRC and sizes (Go's ``crc32-not-streamed.zip`` has this shape).
    """
    return RawEntry(name, content, method=zipfile.ZIP_DEFLATED, flag_bits=0x8, local_zeroed=zeroed)


@pytest.mark.parametrize("zeroed", [False, True], ids=["sizes-in-local-header", "zeroed"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_descriptor_flag_without_descriptor_is_read_like_zipfile(
    tmp_path: Path, zeroed: bool, position: str
) -> None:
    odd = descriptor_flag_only("notes.txt", TEXT, zeroed=zeroed)
    entries = [odd, RawEntry("manifest.json", MANIFEST)]
    if position == "last":
        entries.reverse()
    path = write_raw_zip(tmp_path / "no-descriptor.zip", entries)
    assert read_by_zipfile(path)["notes.txt"] == TEXT
    assert extracted(path, tmp_path / "out") == {"manifest.json": MANIFEST, "notes.txt": TEXT}


def test_descriptor_flag_without_descriptor_and_damaged_data_is_damage(tmp_path: Path) -> None:
    odd = descriptor_flag_only("notes.txt", TEXT, zeroed=True)
    odd.crc = zlib.crc32(TEXT) ^ 1
    path = write_raw_zip(tmp_path / "no-descriptor.zip", [odd, RawEntry("manifest.json", MANIFEST)])
    with pytest.raises(ArchiveError) as caught:
        extracted(path, tmp_path / "out")
    message = str(caught.value)
    assert "is damaged: 'notes.txt' does not match its checksum" in message
    assert "zip bomb" not in message
    assert "unsafe" not in message


# -- 2. data after the end record ------------------------------------------------------------


@pytest.mark.parametrize("tail", [b"trailing garbage", b"\x00" * 64, b"PK\x05\x06"])
def test_data_after_the_end_record_is_refused(tmp_path: Path, tail: bytes) -> None:
    path = append_data(make_extension_zip(tmp_path / "tail.zip", {"a.txt": b"a"}), tail)
    message = refused(path)
    assert f"{len(tail)} bytes of extra data after the end of the zip archive" in message
    assert "Download the extension again" in message


def test_zip_comment_is_not_trailing_data(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "comment.zip", {"a.txt": b"a"})
    with zipfile.ZipFile(path, "a") as zf:
        zf.comment = b"built by the release script"
    with open_archive(path) as archive:
        assert [str(m.path) for m in archive.members] == ["manifest.json", "a.txt"]


def test_data_after_a_zip_comment_is_refused(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "comment-tail.zip",
        [RawEntry("manifest.json", MANIFEST)],
        comment=b"release 1.0",
        after_end=b"appended",
    )
    assert "8 bytes of extra data after the end" in refused(path)


def test_comment_longer_than_the_file_is_a_cut_download(tmp_path: Path) -> None:
    raw = bytearray(
        write_raw_zip(
            tmp_path / "cut.zip", [RawEntry("manifest.json", MANIFEST)], comment=b"x" * 40
        ).read_bytes()
    )
    (tmp_path / "cut.zip").write_bytes(bytes(raw[:-20]))
    assert "incomplete" in refused(tmp_path / "cut.zip")


# -- 3. a data descriptor that contradicts the central directory -----------------------------


@pytest.mark.parametrize("zip64", [False, True], ids=["32-bit", "zip64"])
@pytest.mark.parametrize("signature", [True, False], ids=["signed", "unsigned"])
def test_true_data_descriptors_are_accepted(tmp_path: Path, signature: bool, zip64: bool) -> None:
    entry = streamed_entry("notes.txt", TEXT, signature=signature, zip64=zip64)
    path = write_raw_zip(tmp_path / "streamed.zip", [entry, RawEntry("manifest.json", MANIFEST)])
    assert read_by_zipfile(path)["notes.txt"] == TEXT
    assert extracted(path, tmp_path / "out")["notes.txt"] == TEXT


@pytest.mark.parametrize("zip64", [False, True], ids=["32-bit", "zip64"])
@pytest.mark.parametrize("signature", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("position", ["first", "last"])
def test_data_descriptor_with_another_crc_is_refused(
    tmp_path: Path, signature: bool, zip64: bool, position: str
) -> None:
    entry = streamed_entry("notes.txt", TEXT, signature=signature, zip64=zip64, crc=0x12345678)
    entries = [entry, RawEntry("manifest.json", MANIFEST)]
    if position == "last":
        entries.reverse()
    path = write_raw_zip(tmp_path / "liar.zip", entries)
    message = refused(path)
    assert "is damaged: 'notes.txt' is described differently in two places" in message
    assert "Download the extension again" in message


def test_data_descriptor_with_other_sizes_is_refused(tmp_path: Path) -> None:
    entry = streamed_entry("notes.txt", TEXT)
    entry.descriptor = entry.descriptor[:8] + (len(TEXT) + 1).to_bytes(4, "little") * 2
    path = write_raw_zip(tmp_path / "liar.zip", [entry, RawEntry("manifest.json", MANIFEST)])
    assert "'notes.txt' is described differently" in refused(path)


def test_stray_bytes_after_data_are_not_called_overlap(tmp_path: Path) -> None:
    entry = streamed_entry("notes.txt", TEXT)
    entry.descriptor = b"junk!"
    path = write_raw_zip(tmp_path / "stray.zip", [entry, RawEntry("manifest.json", MANIFEST)])
    message = refused(path)
    assert "hidden data between 'notes.txt' and 'manifest.json'" in message
    assert "zip bomb" not in message


def test_descriptor_only_helper_matches_zipfile(tmp_path: Path) -> None:
    # The hand-made descriptors are the ones zipfile writes to a non-seekable stream.
    entry = streamed_entry("a.txt", TEXT, signature=True)
    assert entry.descriptor == data_descriptor(entry)
    assert len(data_descriptor(entry, zip64=True, signature=False)) == 20


# -- 4. limits come before the manifest search -----------------------------------------------


@pytest.mark.parametrize(
    ("files", "limits", "expected"),
    [
        (
            {"zeros.bin": bytes(200_000)},
            Limits(max_compression_ratio=20, ratio_checked_above_bytes=1000),
            "zip bomb",
        ),
        ({"big.bin": bytes(5000)}, Limits(max_file_bytes=4000), "allowed for one file"),
        (
            {f"f{n}": bytes(1000) for n in range(5)},
            Limits(max_total_bytes=4000),
            "the most an extension may take",
        ),
        ({f"f{n}": b"" for n in range(30)}, Limits(max_entries=20), "more than the 20 entries"),
    ],
    ids=["ratio", "file-size", "total-size", "count"],
)
def test_bomb_without_manifest_is_reported_as_over_the_limit(
    tmp_path: Path, files: dict[str, bytes], limits: Limits, expected: str
) -> None:
    path = make_zip(tmp_path / "bomb.zip", files)
    message = refused(path, limits)
    assert expected in message
    assert "manifest" not in message


def test_bomb_in_a_top_folder_without_manifest(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(300_000)}, top_folder="payload")
    message = refused(path, Limits(max_compression_ratio=20, ratio_checked_above_bytes=1000))
    assert "'payload/zeros.bin' is compressed more than 20:1" in message


# -- 5. damaged end records ------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["zip64-all-ones", "zip64-huge", "classic-sentinel", "classic-too-many-for-the-size"],
)
def test_absurd_entry_counts_are_damage(tmp_path: Path, damage: str) -> None:
    path = make_extension_zip(tmp_path / "count.zip", {"a.txt": b"a"})
    if damage == "zip64-all-ones":
        with_zip64_end_record(path, entries=0xFFFF_FFFF_FFFF_FFFF)
    elif damage == "zip64-huge":
        with_zip64_end_record(path, entries=12_345_678_901)
    elif damage == "classic-sentinel":
        set_end_record_entries(path, 0xFFFF)
    else:
        set_end_record_entries(path, 40_000)
    message = refused(path)
    assert "is damaged" in message
    assert "Download the extension again" in message
    assert not re.search(r"\d{5,}", message.replace(",", "")), message


def test_zip64_end_record_with_the_true_count_is_accepted(tmp_path: Path) -> None:
    path = with_zip64_end_record(make_extension_zip(tmp_path / "z64.zip", {"a.txt": b"a"}))
    with open_archive(path) as archive:
        assert len(archive.members) == 2


def test_many_entries_are_counted_with_separators(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "many.zip", {f"f{n}": b"" for n in range(1200)})
    assert "contains 1,200 entries, more than the 1,000 entries" in refused(
        path, Limits(max_entries=1000)
    )


# -- 6. and 7. folders -----------------------------------------------------------------------


def test_msdos_folder_entries_without_a_slash_are_folders(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "win98.zip",
        [
            msdos_folder("ext"),
            RawEntry("ext/manifest.json", MANIFEST, create_system=0, external_attr=0x20),
            msdos_folder("ext/lib"),
            RawEntry("ext/lib/a.js", b"a", create_system=0, external_attr=0x20),
            msdos_folder("ext/cache"),
        ],
    )
    assert extracted(path, tmp_path / "out") == {
        "cache": None,
        "lib": None,
        "lib/a.js": b"a",
        "manifest.json": MANIFEST,
    }


def test_unix_entry_with_the_msdos_bit_is_still_a_file(tmp_path: Path) -> None:
    odd = RawEntry("notes", b"", external_attr=(0o100644 << 16) | 0x10)
    path = write_raw_zip(tmp_path / "odd.zip", [RawEntry("manifest.json", MANIFEST), odd])
    assert extracted(path, tmp_path / "out")["notes"] == b""


def test_empty_folders_are_created(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "ext-main.zip",
        {"manifest.json": MANIFEST, "lib/a.js": b"a"},
        top_folder="ext-main",
        directory_entries=True,
    )
    with zipfile.ZipFile(path, "a") as zf:
        for folder in ("ext-main/cache/", "ext-main/data/logs/", "__MACOSX/", "__MACOSX/ext/"):
            zf.writestr(zipfile.ZipInfo(folder), b"")
    assert extracted(path, tmp_path / "out") == {
        "cache": None,
        "data": None,
        "data/logs": None,
        "lib": None,
        "lib/a.js": b"a",
        "manifest.json": MANIFEST,
    }


@pytest.mark.parametrize(
    ("folder", "problem"),
    [
        ("../outside/", "outside the extension folder"),
        ("aux/", "reserved Windows device name AUX"),
        ("a" * 30 + "/" + "b" * 30 + "/", "longer than 50 characters"),
    ],
)
def test_empty_folders_get_the_usual_name_checks(tmp_path: Path, folder: str, problem: str) -> None:
    path = write_raw_zip(
        tmp_path / "folders.zip", [RawEntry("manifest.json", MANIFEST), RawEntry(folder)]
    )
    assert problem in refused(path, Limits(max_path_chars=50))


# -- 8. a browser add-on's container ---------------------------------------------------------


def test_chrome_crx_header_is_named(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "addon.zip", {"manifest.json": b'{"manifest_version": 3}'})
    prepend_data(path, b"Cr24\x03\x00\x00\x00" + bytes(40))
    message = refused(path)
    assert "browser add-on" in message
    assert "install it in your web browser" in message


# -- 9. messages -----------------------------------------------------------------------------


def test_size_just_over_the_file_limit_shows_exact_bytes(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "big.zip", {"big.bin": bytes(262_145)})
    message = refused(path, Limits(max_file_bytes=262_144, max_compression_ratio=10_000))
    assert "is 262,145 bytes when unpacked, more than the 262,144 bytes allowed" in message


def test_manifest_just_over_its_limit_shows_exact_bytes(tmp_path: Path) -> None:
    manifest = MANIFEST + b" " * (256 * 1024 + 1 - len(MANIFEST))
    path = make_zip(tmp_path / "fat.zip", {"manifest.json": manifest})
    message = refused(path, Limits(max_compression_ratio=100_000))
    assert "manifest.json is 262,145 bytes, more than the 262,144 bytes" in message


def test_sizes_that_round_apart_stay_rounded(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "big.zip", {"big.bin": bytes(3 * 1024 * 1024)})
    message = refused(path, Limits(max_file_bytes=2 * 1024 * 1024, max_compression_ratio=10**6))
    assert "is 3.0 MiB when unpacked, more than the 2.0 MiB allowed" in message


@pytest.mark.parametrize("name", ["日" * 86, "é" * 128 + "x" * 2], ids=["cjk", "accents"])
def test_name_over_255_bytes_is_refused_before_extraction(tmp_path: Path, name: str) -> None:
    assert len(name.encode()) > 255
    entry = RawEntry(name.encode(), b"x", flag_bits=0x800)
    path = write_raw_zip(tmp_path / "long.zip", [RawEntry("manifest.json", MANIFEST), entry])
    message = refused(path, Limits(max_component_chars=200))
    assert f"a name longer than 255 bytes ({len(name.encode())} bytes" in message
    assert "Shorten the name and re-create the zip" in message


def test_name_of_255_bytes_is_accepted(tmp_path: Path) -> None:
    name = "日" * 85
    assert len(name.encode()) == 255
    entry = RawEntry(name.encode(), b"x", flag_bits=0x800)
    path = write_raw_zip(tmp_path / "long.zip", [RawEntry("manifest.json", MANIFEST), entry])
    with open_archive(path, Limits(max_component_chars=200, max_path_chars=300)) as archive:
        assert str(archive.members[1].path) == name


def test_name_over_the_character_limit_says_to_shorten_it(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "long.zip", [RawEntry("manifest.json", MANIFEST), RawEntry("a" * 258, b"x")]
    )
    message = refused(path)
    assert "a name longer than 100 characters (258 characters" in message
    assert "Shorten the name and re-create the zip" in message
