"""What registry.archive accepts, what it refuses and why, and how it unpacks."""

from __future__ import annotations

import bz2
import errno
import hashlib
import os
import random
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import pytest

from registry.archive import ArchiveMember, OpenArchive, open_archive
from registry.errors import ArchiveError, InstallCancelledError
from registry.limits import Limits
from tests.zipcraft import (
    RawEntry,
    corrupt_member_data,
    make_extension_zip,
    make_streamed_zip,
    make_zip,
    make_zip64,
    minimal_manifest,
    prepend_data,
    symlink_info,
    truncate,
    write_entries,
    write_raw_zip,
    zip_info,
)

MANIFEST = minimal_manifest()


def refused(path: Path, limits: Limits | None = None) -> str:
    """The message open_archive raises for ``path``."""
    with pytest.raises(ArchiveError) as caught:
        if limits is None:
            open_archive(path).close()
        else:
            open_archive(path, limits).close()
    message = str(caught.value)
    assert path.name in message
    return message


def paths(archive: OpenArchive) -> list[str]:
    return [str(member.path) for member in archive.members]


def extract(archive: OpenArchive, destination: Path) -> list[int]:
    destination.mkdir()
    progress: list[int] = []
    archive.extract_to(destination, progress.append, lambda: False)
    return progress


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def raw_manifest() -> RawEntry:
    return RawEntry("manifest.json", MANIFEST)


# -- accepted layouts ------------------------------------------------------------------------


def test_minimal_archive_is_described(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "hello.zip", {"main.py": b"print(1)\n"})
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "main.py"]
        assert archive.manifest.path == PurePosixPath("manifest.json")
        assert archive.root_prefix == ""
        assert archive.skipped_junk == ()
        assert archive.total_bytes == len(MANIFEST) + 9
        assert archive.path == path
        assert archive.read_member(archive.manifest, 1024) == MANIFEST


def test_single_top_folder_is_stripped(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "hello-main.zip",
        {"manifest.json": MANIFEST, "src/a.py": b"a", "icons/i.png": b"png"},
        top_folder="hello-main",
        directory_entries=True,
    )
    with open_archive(path) as archive:
        assert archive.root_prefix == "hello-main/"
        assert paths(archive) == ["manifest.json", "src/a.py", "icons/i.png"]
        assert archive.members[1].name == "hello-main/src/a.py"
        member = archive.find("icons/i.png")
        assert member is not None
        assert archive.read_member(member, 10) == b"png"
        assert archive.find("./icons\\i.png") is member
        assert archive.find("hello-main/icons/i.png") is None
        assert archive.find("../icons/i.png") is None


def test_os_junk_is_skipped(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "mac.zip",
        {
            "hello/manifest.json": MANIFEST,
            "hello/.DS_Store": b"x",
            "hello/._manifest.json": b"x",
            "hello/Thumbs.db": b"x",
            "hello/sub/Desktop.ini": b"x",
            "hello/sub/ok.txt": b"ok",
            "__MACOSX/hello/._manifest.json": b"x",
        },
    )
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "sub/ok.txt"]
        assert archive.skipped_junk == (
            "hello/.DS_Store",
            "hello/._manifest.json",
            "hello/Thumbs.db",
            "hello/sub/Desktop.ini",
            "__MACOSX/hello/._manifest.json",
        )


def test_bsdtar_leading_dot_slash_is_stripped(tmp_path: Path) -> None:
    path = write_entries(
        tmp_path / "bsd.zip",
        [(zipfile.ZipInfo("./"), b""), ("./manifest.json", MANIFEST), ("./lib/x.js", b"x")],
    )
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "lib/x.js"]


def test_backslash_separators_are_folders(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "windows.zip",
        [RawEntry("ext\\manifest.json", MANIFEST), RawEntry("ext\\lib\\x.js", b"x")],
    )
    with open_archive(path) as archive:
        assert archive.root_prefix == "ext/"
        assert paths(archive) == ["manifest.json", "lib/x.js"]


def test_utf8_names_without_the_utf8_flag_are_read_as_utf8(tmp_path: Path) -> None:
    name = "données/é.txt".encode()
    path = write_raw_zip(tmp_path / "legacy.zip", [raw_manifest(), RawEntry(name, b"x")])
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "données/é.txt"]


def test_utf8_names_with_the_utf8_flag(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "utf8.zip", {"日本/ß.txt": b"x"})
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "日本/ß.txt"]


def test_cp437_names_stay_cp437(tmp_path: Path) -> None:
    path = write_raw_zip(tmp_path / "dos.zip", [raw_manifest(), RawEntry(b"caf\x82.txt", b"x")])
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "café.txt"]


@pytest.mark.parametrize(
    "compression",
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "deflate", "bzip2", "lzma"],
)
def test_every_supported_compression_extracts(tmp_path: Path, compression: int) -> None:
    files = {"manifest.json": MANIFEST, "data.bin": bytes(range(256)) * 300, "empty": b""}
    path = make_zip(tmp_path / "c.zip", files, compression=compression)
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_data_descriptors_are_accepted(tmp_path: Path) -> None:
    files = {"manifest.json": MANIFEST, "a/b.txt": b"hello" * 1000, "z": b""}
    path = make_streamed_zip(tmp_path / "streamed.zip", files)
    with zipfile.ZipFile(path) as zf:
        assert all(info.flag_bits & 0x8 for info in zf.infolist())
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_zip64_data_descriptors_are_accepted(tmp_path: Path) -> None:
    files = {"manifest.json": MANIFEST, "a.txt": b"hello" * 1000}
    path = make_streamed_zip(tmp_path / "streamed64.zip", files, zip64=True)
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_zip64_is_accepted(tmp_path: Path) -> None:
    files = {"manifest.json": MANIFEST, "big/part.bin": b"\x00\x01" * 5000}
    path = make_zip64(tmp_path / "zip64.zip", files)
    with open_archive(path) as archive:
        assert archive.total_bytes == len(MANIFEST) + 10_000
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_nested_zip_is_an_ordinary_file(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"x": b"x"}).read_bytes()
    path = make_extension_zip(tmp_path / "outer.zip", {"bundle/inner.zip": inner})
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "bundle" / "inner.zip").read_bytes() == inner


# -- not a usable zip ------------------------------------------------------------------------


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    path.write_text("just some text\n" * 10)
    assert "is not a zip archive" in refused(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    path.write_bytes(b"")
    assert "is empty" in refused(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in refused(tmp_path / "gone.zip")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "folder.zip").mkdir()
    assert "is not a file" in refused(tmp_path / "folder.zip")


def test_zip_without_entries(tmp_path: Path) -> None:
    path = tmp_path / "nothing.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    assert "contains no files" in refused(path)


def test_truncated_download(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "partial.zip", {"a.bin": bytes(5000)})
    truncate(path, path.stat().st_size // 2)
    assert "incomplete or damaged" in refused(path)


def test_corrupt_central_directory(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "broken.zip")
    raw = bytearray(path.read_bytes())
    directory = raw.rfind(b"PK\x01\x02")
    raw[directory : directory + 4] = b"XXXX"
    path.write_bytes(bytes(raw))
    assert "damaged" in refused(path)


def test_entry_count_disagreeing_with_end_record(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "count.zip", {"a": b"a"})
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2
    path.write_bytes(bytes(raw))
    assert "damaged" in refused(path)


def test_bad_crc_is_reported_when_read(tmp_path: Path) -> None:
    path = make_extension_zip(
        tmp_path / "crc.zip", {"data.txt": b"important"}, compression=zipfile.ZIP_STORED
    )
    corrupt_member_data(path, "data.txt")
    with open_archive(path) as archive:
        member = archive.find("data.txt")
        assert member is not None
        with pytest.raises(ArchiveError, match=r"'data\.txt' does not match its checksum"):
            archive.read_member(member, 100)


def test_bad_crc_is_reported_during_extraction(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "crc.zip", {"data.bin": bytes(range(200)) * 50})
    corrupt_member_data(path, "data.bin")
    with open_archive(path) as archive, pytest.raises(ArchiveError, match="'data.bin'"):
        extract(archive, tmp_path / "out")


# -- entry kinds -----------------------------------------------------------------------------


def test_encrypted_entry(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "secret.zip", [raw_manifest(), RawEntry("key.txt", b"x", flag_bits=0x1)]
    )
    message = refused(path)
    assert "password-protected" in message
    assert "'key.txt'" in message


@pytest.mark.parametrize(("method", "label"), [(9, "Deflate64"), (93, "Zstandard"), (77, "77")])
def test_unsupported_compression(tmp_path: Path, method: int, label: str) -> None:
    entry = RawEntry("data.bin", b"x", method=method, stored_data=b"x")
    path = write_raw_zip(tmp_path / "method.zip", [raw_manifest(), entry])
    message = refused(path)
    assert "compression method" in message
    assert label in message
    assert "'data.bin'" in message


def test_symlink(tmp_path: Path) -> None:
    path = write_entries(
        tmp_path / "link.zip", [("manifest.json", MANIFEST), (symlink_info("evil"), b"/etc")]
    )
    message = refused(path)
    assert "symbolic link" in message
    assert "'evil'" in message


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        (stat.S_IFIFO, "pipe"),
        (stat.S_IFCHR, "device"),
        (stat.S_IFBLK, "device"),
        (stat.S_IFSOCK, "socket"),
    ],
)
def test_special_files(tmp_path: Path, kind: int, word: str) -> None:
    info = zip_info("special", mode=kind | 0o644)
    path = write_entries(tmp_path / "special.zip", [("manifest.json", MANIFEST), (info, b"")])
    message = refused(path)
    assert word in message
    assert "'special'" in message


def test_unix_mode_bits_of_other_systems_are_ignored(tmp_path: Path) -> None:
    info = zip_info("file.txt", mode=stat.S_IFLNK | 0o777, create_system=0)
    path = write_entries(tmp_path / "dos.zip", [("manifest.json", MANIFEST), (info, b"x")])
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", "file.txt"]


def test_folder_entry_with_data(tmp_path: Path) -> None:
    path = write_raw_zip(tmp_path / "dirdata.zip", [raw_manifest(), RawEntry("lib/", b"data")])
    assert "'lib/'" in refused(path)


def test_stored_entry_with_two_sizes(tmp_path: Path) -> None:
    entry = RawEntry("a.txt", b"abcdef", size=3)
    path = write_raw_zip(tmp_path / "sizes.zip", [raw_manifest(), entry])
    assert "'a.txt' declares two different sizes" in refused(path)


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("/etc/passwd", "absolute path"),
        ("\\etc\\passwd", "absolute path"),
        ("C:/Windows/x.dll", "drive letter"),
        ("c:x.dll", "drive letter"),
        ("//server/share/x", "network path"),
        ("\\\\server\\share\\x", "network path"),
        ("../escape.txt", "outside the extension folder"),
        ("lib/../../escape.txt", "outside the extension folder"),
        ("lib\\..\\..\\escape.txt", "outside the extension folder"),
        ("lib//x.txt", "empty folder name"),
        ("lib/./x.txt", "'.' folder name"),
        ("./../x.txt", "outside the extension folder"),
        (".", "'.' folder name"),
    ],
)
def test_unsafe_paths(tmp_path: Path, name: str, problem: str) -> None:
    path = write_raw_zip(tmp_path / "paths.zip", [raw_manifest(), RawEntry(name, b"x")])
    message = refused(path)
    assert problem in message
    assert name.replace("\\", "/") in message.replace("\\", "/")


def test_empty_name(tmp_path: Path) -> None:
    path = write_raw_zip(tmp_path / "noname.zip", [raw_manifest(), RawEntry("", b"x")])
    assert "empty name" in refused(path)


@pytest.mark.parametrize(
    "name", ["a\x01b.txt", "tab\there.txt", "bell\x07", "del\x7f.txt", "x\x85y"]
)
def test_control_characters(tmp_path: Path, name: str) -> None:
    path = write_raw_zip(
        tmp_path / "ctrl.zip", [raw_manifest(), RawEntry(name.encode(), b"x", flag_bits=0x800)]
    )
    message = refused(path)
    assert "control character" in message
    control = next(char for char in name if unicodedata.category(char) == "Cc")
    assert f"\\u{ord(control):04x}" in message


def test_nul_in_name_is_a_control_character(tmp_path: Path) -> None:
    path = write_raw_zip(tmp_path / "nul.zip", [raw_manifest(), RawEntry(b"ok.txt\x00.exe", b"x")])
    message = refused(path)
    assert "control character" in message
    assert "'ok.txt\\u0000.exe'" in message


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f"])
def test_bidi_controls(tmp_path: Path, char: str) -> None:
    name = f"invoice{char}fdp.exe"
    path = write_raw_zip(
        tmp_path / "bidi.zip", [raw_manifest(), RawEntry(name.encode(), b"x", flag_bits=0x800)]
    )
    message = refused(path)
    assert "control character" in message
    assert f"\\u{ord(char):04x}" in message


@pytest.mark.parametrize("char", list('<>:"|?*'))
def test_characters_windows_cannot_store(tmp_path: Path, char: str) -> None:
    name = f"notes{char}v2.txt"
    path = write_raw_zip(tmp_path / "win.zip", [raw_manifest(), RawEntry(name, b"x")])
    message = refused(path)
    assert "Windows cannot store" in message
    assert f"'{name}'" in message


@pytest.mark.parametrize("name", ["readme.", "readme ", "docs./a.txt", "docs /a.txt"])
def test_trailing_dot_or_space(tmp_path: Path, name: str) -> None:
    path = write_raw_zip(tmp_path / "trail.zip", [raw_manifest(), RawEntry(name, b"x")])
    message = refused(path)
    assert "ends with a dot or a space" in message
    assert f"'{name}'" in message


@pytest.mark.parametrize(
    ("name", "device"),
    [
        ("con", "CON"),
        ("PRN.txt", "PRN"),
        ("lib/aux.js", "AUX"),
        ("Nul", "NUL"),
        ("com1", "COM1"),
        ("COM9.tar.gz", "COM9"),
        ("lpt5.log", "LPT5"),
        ("lpt9/x", "LPT9"),
        ("con .txt", "CON"),
    ],
)
def test_reserved_device_names(tmp_path: Path, name: str, device: str) -> None:
    path = write_raw_zip(tmp_path / "dev.zip", [raw_manifest(), RawEntry(name, b"x")])
    message = refused(path)
    assert f"reserved Windows device name {device}" in message
    assert f"'{name}'" in message


@pytest.mark.parametrize("name", ["console.txt", "com10", "lpt0", "nul_log", "auxiliary"])
def test_names_that_only_look_like_devices(tmp_path: Path, name: str) -> None:
    path = write_raw_zip(tmp_path / "ok.zip", [raw_manifest(), RawEntry(name, b"x")])
    with open_archive(path) as archive:
        assert paths(archive) == ["manifest.json", name]


def test_over_long_component(tmp_path: Path) -> None:
    name = "x" * 21
    path = write_raw_zip(tmp_path / "long.zip", [raw_manifest(), RawEntry(f"a/{name}", b"x")])
    message = refused(path, Limits(max_component_chars=20))
    assert "longer than 20 characters" in message
    assert name in message


def test_over_long_path_counts_after_the_top_folder_is_stripped(tmp_path: Path) -> None:
    limits = Limits(max_path_chars=20, max_component_chars=20)
    ok = make_zip(
        tmp_path / "ok.zip",
        {"manifest.json": MANIFEST, "aaaaaaaaa/bbbbbbbbbb": b"x"},
        top_folder="topfolder",
    )
    with open_archive(ok, limits) as archive:
        assert "aaaaaaaaa/bbbbbbbbbb" in paths(archive)
    too_long = make_extension_zip(tmp_path / "long.zip", {"aaaaaaaaa/bbbbbbbbbbb": b"x"})
    message = refused(too_long, limits)
    assert "longer than 20 characters" in message
    assert "'aaaaaaaaa/bbbbbbbbbbb'" in message


def test_duplicate_names(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "dup.zip", [raw_manifest(), RawEntry("a.txt", b"1"), RawEntry("a.txt", b"2")]
    )
    assert "'a.txt' twice" in refused(path)


def test_duplicates_after_dot_slash_normalisation(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "dup.zip", [raw_manifest(), RawEntry("a.txt", b"1"), RawEntry("./a.txt", b"2")]
    )
    assert "twice" in refused(path)


def test_names_differing_only_in_case(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "case.zip",
        [raw_manifest(), RawEntry("Readme.TXT", b"1"), RawEntry("readme.txt", b"2")],
    )
    message = refused(path)
    assert "'Readme.TXT'" in message
    assert "'readme.txt'" in message


def test_folders_differing_only_in_case(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "case.zip",
        [raw_manifest(), RawEntry("Lib/a.js", b"1"), RawEntry("lib/b.js", b"2")],
    )
    message = refused(path)
    assert "'Lib/'" in message
    assert "'lib/'" in message


def test_names_differing_only_in_unicode_normalisation(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "café.txt")
    decomposed = unicodedata.normalize("NFD", "café.txt")
    assert composed != decomposed
    entries = [
        raw_manifest(),
        RawEntry(composed.encode(), b"1", flag_bits=0x800),
        RawEntry(decomposed.encode(), b"2", flag_bits=0x800),
    ]
    path = write_raw_zip(tmp_path / "nfc.zip", entries)
    assert "same name on Windows and macOS" in refused(path)


@pytest.mark.parametrize("order", ["file first", "folder first"])
def test_file_and_folder_with_the_same_name(tmp_path: Path, order: str) -> None:
    entries = [RawEntry("a", b"file"), RawEntry("a/b", b"inside")]
    if order == "folder first":
        entries.reverse()
    path = write_raw_zip(tmp_path / "clash.zip", [raw_manifest(), *entries])
    message = refused(path)
    assert "both as a file and as a folder" in message
    assert "'a'" in message


# -- sizes -----------------------------------------------------------------------------------


def test_too_many_entries(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(5)})
    message = refused(path, Limits(max_entries=5))
    assert "contains 6 entries, more than the 5" in message


def test_entry_count_limit_counts_real_records_too(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "liar.zip", {f"f{i}": b"x" for i in range(5)})
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 8 : end + 12] = (2).to_bytes(2, "little") * 2
    path.write_bytes(bytes(raw))
    assert "contains 6 entries" in refused(path, Limits(max_entries=5))


def test_file_too_big(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "big.zip", {"big.bin": bytes(2000)})
    message = refused(path, Limits(max_file_bytes=1000))
    assert "'big.bin'" in message
    assert "allowed for one file" in message


def test_total_too_big(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "total.zip", {f"f{i}": bytes(400) for i in range(5)})
    message = refused(path, Limits(max_total_bytes=1500))
    assert "unpacks to more than 1.5 KiB" in message


def test_compression_ratio(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(100_000)})
    message = refused(path, Limits(ratio_checked_above_bytes=10_000, max_compression_ratio=20))
    assert "'zeros.bin' is compressed more than 20:1" in message
    assert "zip bomb" in message


def test_compression_ratio_applies_only_above_the_threshold(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "small.zip", {"zeros.bin": bytes(5_000)})
    with open_archive(path, Limits(ratio_checked_above_bytes=10_000, max_compression_ratio=20)):
        pass


def test_manifest_too_big(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "fat.zip", {"manifest.json": MANIFEST + b" " * 2000})
    message = refused(path, Limits(max_manifest_bytes=1000))
    assert "manifest.json" in message
    assert "more than the 1,000 bytes a manifest may be" in message


def test_entry_inflating_past_its_declared_size(tmp_path: Path) -> None:
    content = b"A" * 5000
    lie = RawEntry("small.txt", content, method=zipfile.ZIP_DEFLATED, size=10)
    lie.crc = zlib.crc32(content[:10])  # what a reader that trusts the size would check
    path = write_raw_zip(tmp_path / "inflate.zip", [raw_manifest(), lie])
    with open_archive(path) as archive:
        member = archive.find("small.txt")
        assert member is not None
        with pytest.raises(ArchiveError, match="'small.txt' unpacks to more than its declared"):
            archive.read_member(member, 100)
        with pytest.raises(ArchiveError, match="'small.txt' unpacks to more than"):
            extract(archive, tmp_path / "out")


def test_bzip2_entry_inflating_past_its_declared_size(tmp_path: Path) -> None:
    content = b"B" * 100_000
    lie = RawEntry("b.txt", content, method=zipfile.ZIP_BZIP2, stored_data=bz2.compress(content))
    lie.size = 1000
    path = write_raw_zip(tmp_path / "bz.zip", [raw_manifest(), lie])
    with open_archive(path) as archive, pytest.raises(ArchiveError, match="'b.txt' unpacks to"):
        extract(archive, tmp_path / "out")


def test_deflate_stream_cut_short(tmp_path: Path) -> None:
    content = random.Random(3).randbytes(5000)
    cut = RawEntry("c.bin", content, method=zipfile.ZIP_DEFLATED)
    cut.stored_data = cut.payload()[:-100]
    path = write_raw_zip(tmp_path / "cut.zip", [raw_manifest(), cut])
    with open_archive(path) as archive, pytest.raises(ArchiveError, match="'c.bin' does not"):
        extract(archive, tmp_path / "out")


def test_read_member_refuses_more_than_max_bytes(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "icon.zip", {"icon.png": bytes(500)})
    with open_archive(path) as archive:
        member = archive.find("icon.png")
        assert member is not None
        with pytest.raises(ArchiveError, match="'icon.png' is 500 bytes, more than the 100"):
            archive.read_member(member, 100)


# -- byte layout -----------------------------------------------------------------------------


def test_overlapping_entries(tmp_path: Path) -> None:
    entries = [raw_manifest(), RawEntry("kernel.bin", bytes(1000), method=zipfile.ZIP_DEFLATED)]
    path = write_raw_zip(
        tmp_path / "overlap.zip", entries, shared_data=[("copy1.bin", 1), ("copy2.bin", 1)]
    )
    message = refused(path)
    assert "share the same data" in message
    assert "'kernel.bin'" in message


def test_prepended_data(tmp_path: Path) -> None:
    path = prepend_data(make_extension_zip(tmp_path / "sfx.zip"), b"MZ" + bytes(100))
    assert "extra data before its first entry" in refused(path)


def test_prepended_data_with_fixed_offsets(tmp_path: Path) -> None:
    path = write_raw_zip(tmp_path / "sfx.zip", [raw_manifest()], prefix=b"#!/bin/sh\n")
    assert "extra data before its first entry" in refused(path)


def test_prepended_data_with_concatenation_offsets(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "cat.zip", [raw_manifest()], prefix=b"junk" * 10, absolute_offsets=False
    )
    assert "extra data before its first entry" in refused(path)


def test_hidden_data_between_entries(tmp_path: Path) -> None:
    hidden = RawEntry("b.txt", b"b", padding_before=b"secret payload")
    path = write_raw_zip(tmp_path / "gap.zip", [raw_manifest(), RawEntry("a.txt", b"a"), hidden])
    message = refused(path)
    assert "hidden data between 'a.txt' and 'b.txt'" in message


def test_hidden_data_before_the_central_directory(tmp_path: Path) -> None:
    path = write_raw_zip(
        tmp_path / "tail.zip", [raw_manifest(), RawEntry("a.txt", b"a")], before_directory=b"??"
    )
    assert "hidden data after its last entry ('a.txt')" in refused(path)


def test_local_name_differs_from_central_name(tmp_path: Path) -> None:
    entry = RawEntry("readme.txt", b"x", local_name="evil.exe!!")
    path = write_raw_zip(tmp_path / "names.zip", [raw_manifest(), entry])
    message = refused(path)
    assert "'readme.txt'" in message
    assert "'evil.exe!!'" in message


def test_local_header_disagreeing_with_central_directory(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "crcs.zip", {"a.txt": b"abc"})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("a.txt").header_offset
    raw[offset + 14] ^= 0xFF  # the local header's CRC
    path.write_bytes(bytes(raw))
    assert "'a.txt' is described differently" in refused(path)


# -- where the manifest is -------------------------------------------------------------------


def test_no_manifest_lists_top_level_items(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "stuff.zip", {"notes.txt": b"x", "src/a.c": b"x", "b.txt": b"x", "c": b"x"}
    )
    message = refused(path)
    assert "no manifest.json at the top of the archive or inside its single top-level" in message
    assert "'notes.txt', 'src/', 'b.txt'" in message
    assert "'c'" not in message


def test_python_package(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "pkg-1.0.zip",
        {"setup.py": b"", "pkg/__init__.py": b""},
        top_folder="pkg-1.0",
    )
    assert "looks like a Python package" in refused(path)


def test_vscode_extension(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "theme.vsix",
        {"extension.vsixmanifest": b"<x/>", "[Content_Types].xml": b"", "extension/p.json": b""},
    )
    assert "VS Code extension" in refused(path)


def test_folder_of_images(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "photos.zip", {"a.jpg": b"", "b.PNG": b""}, top_folder="holiday")
    message = refused(path)
    assert "folder of images" in message
    assert "'holiday/'" in message


def test_zip_of_zips(tmp_path: Path) -> None:
    inner = make_extension_zip(tmp_path / "inner.zip").read_bytes()
    path = make_zip(tmp_path / "outer.zip", {"hello.zip": inner, "__MACOSX/._hello.zip": b""})
    message = refused(path)
    assert "contains a zip of zips" in message
    assert "unzip it and install the inner file" in message


def test_manifest_only_deeper(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "deep.zip", {"a/b/manifest.json": MANIFEST, "a/b/x.js": b""})
    message = refused(path)
    assert "'a/b/manifest.json'" in message
    assert "must be at the top" in message


def test_manifest_at_top_and_in_a_folder(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "two.zip", {"manifest.json": MANIFEST, "old/manifest.json": b"{}"})
    message = refused(path)
    assert "'old/manifest.json'" in message
    assert "unclear" in message


def test_two_folders_with_manifests(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "two.zip", {"a/manifest.json": MANIFEST, "b/manifest.json": b"{}"})
    message = refused(path)
    assert "'a/', 'b/'" in message
    assert "unclear" in message


def test_manifest_folder_with_siblings(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "side.zip", {"ext/manifest.json": MANIFEST, "README.md": b""})
    message = refused(path)
    assert "'ext/'" in message
    assert "'README.md'" in message


def test_misnamed_manifest(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "case.zip", {"Manifest.JSON": MANIFEST})
    assert "must be named exactly manifest.json" in refused(path)


def test_deeper_manifests_are_ordinary_files(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "ok.zip", {"manifest.json": MANIFEST, "examples/demo/manifest.json": b"{}"}
    )
    with open_archive(path) as archive:
        assert archive.manifest.path == PurePosixPath("manifest.json")


def test_only_junk(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "junk.zip", {".DS_Store": b"", "__MACOSX/._x": b""})
    assert "contains no files to install" in refused(path)


# -- extraction ------------------------------------------------------------------------------


def test_extraction_writes_exactly_the_validated_files(tmp_path: Path) -> None:
    files = {
        "manifest.json": MANIFEST,
        "lib/a.js": b"a" * 3000,
        "lib/deep/b.bin": bytes(range(256)),
        "empty.txt": b"",
    }
    path = make_zip(tmp_path / "ext.zip", {**files, ".DS_Store": b"junk"}, top_folder="ext-main")
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == files
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "empty.txt",
        "lib",
        "manifest.json",
    ]


def test_progress_is_monotonic_and_ends_at_total(tmp_path: Path) -> None:
    chunky = random.Random(1).randbytes(3 * 1024 * 1024 + 5)  # several 1 MiB chunks
    path = make_extension_zip(tmp_path / "p.zip", {"a.bin": chunky, "b.txt": b"b"})
    with open_archive(path) as archive:
        progress = extract(archive, tmp_path / "out")
        assert progress == sorted(progress)
        assert progress[-1] == archive.total_bytes
        assert len(progress) >= 4


def test_progress_reports_zero_for_empty_files(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "e.zip", {"manifest.json": b""})
    with open_archive(path) as archive:
        assert extract(archive, tmp_path / "out") == [0]


def test_cancel_raises(tmp_path: Path) -> None:
    path = make_extension_zip(
        tmp_path / "c.zip", {"a.bin": random.Random(2).randbytes(3 * 1024 * 1024)}
    )
    calls: list[int] = []

    def cancel_after_first_chunk() -> bool:
        calls.append(1)
        return len(calls) > 2

    (tmp_path / "out").mkdir()
    with open_archive(path) as archive, pytest.raises(InstallCancelledError):
        archive.extract_to(tmp_path / "out", lambda _: None, cancel_after_first_chunk)


def test_cancel_before_anything(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "c.zip")
    (tmp_path / "out").mkdir()
    with open_archive(path) as archive, pytest.raises(InstallCancelledError):
        archive.extract_to(tmp_path / "out", lambda _: None, lambda: True)
    assert list((tmp_path / "out").iterdir()) == []


def test_destination_must_be_empty(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "c.zip")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "left-over").write_bytes(b"")
    with open_archive(path) as archive, pytest.raises(ArchiveError, match="not empty"):
        archive.extract_to(tmp_path / "out", lambda _: None, lambda: False)


def test_destination_must_exist(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "c.zip")
    with open_archive(path) as archive, pytest.raises(ArchiveError, match="'c.zip'"):
        archive.extract_to(tmp_path / "missing", lambda _: None, lambda: False)


def test_archive_mode_bits_are_never_applied(tmp_path: Path) -> None:
    entries = [
        (zip_info("manifest.json", mode=stat.S_IFREG | 0o777), MANIFEST),
        (zip_info("run.sh", mode=stat.S_IFREG | stat.S_ISUID | stat.S_ISGID | 0o777), b"#!"),
        (zip_info("bin/", mode=stat.S_IFDIR | 0o777), b""),
        (zip_info("bin/tool", mode=stat.S_IFREG | 0o4755), b"tool"),
    ]
    path = write_entries(tmp_path / "modes.zip", entries)
    with open_archive(path) as archive:
        extract(archive, tmp_path / "out")
    for name in ("manifest.json", "run.sh", "bin/tool"):
        mode = (tmp_path / "out" / name).stat().st_mode
        assert not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH), name
        assert not mode & (stat.S_ISUID | stat.S_ISGID), name


def test_disk_full_is_a_plain_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    path = make_extension_zip(tmp_path / "c.zip")
    with open_archive(path) as archive:
        monkeypatch.setattr(os, "write", full)
        with pytest.raises(ArchiveError, match="not enough disk space"):
            extract(archive, tmp_path / "out")


# -- handle ----------------------------------------------------------------------------------


def test_sha256_is_of_the_whole_file(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "h.zip", {"a": b"a"})
    with open_archive(path) as archive:
        assert archive.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
        assert archive.read_member(archive.manifest, 10_000) == MANIFEST


def test_validated_handle_is_the_one_read(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "h.zip", {"a.txt": b"original"})
    with open_archive(path) as archive:
        digest = archive.sha256()
        replacement = tmp_path / "other.zip"
        make_extension_zip(replacement, {"a.txt": b"replaced!"})
        replacement.replace(path)
        member = archive.find("a.txt")
        assert member is not None
        assert archive.read_member(member, 100) == b"original"
        assert archive.sha256() == digest


def test_closed_archive_cannot_be_read(tmp_path: Path) -> None:
    path = make_extension_zip(tmp_path / "h.zip")
    archive = open_archive(path)
    archive.close()
    archive.close()
    with pytest.raises(ValueError, match="closed"):
        archive.sha256()


def test_members_of_another_archive_are_refused(tmp_path: Path) -> None:
    first = make_extension_zip(tmp_path / "one.zip", {"a": b"1"})
    second = make_extension_zip(tmp_path / "two.zip", {"b": b"22"})
    with open_archive(first) as one, open_archive(second) as two:
        stranger: ArchiveMember = two.members[1]
        with pytest.raises(ValueError, match="not a member"):
            one.read_member(stranger, 100)
