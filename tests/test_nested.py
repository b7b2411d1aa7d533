"""Installing from one level inside a wrong-shaped archive, and packing a dropped folder."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from registry.archive import NestedArchiveError, open_archive, open_container
from registry.errors import ArchiveError
from registry.limits import Limits
from registry.nested import (
    Candidate,
    OpenedMember,
    find_candidates,
    install_hint,
    open_member,
    pack_folder,
    refusal,
)
from registry.sizes import format_size
from tests.zipcraft import make_extension_zip, make_zip, minimal_manifest, symlink_info, zip_info

LIMITS = Limits()
HELLO = minimal_manifest(id="example.hello", name="Hello World", version="1.0.0")


def hello_zip(
    path: Path, extra: dict[str, bytes] | None = None, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    """The bytes of a valid extension zip holding Hello World 1.0.0."""
    files = {"manifest.json": HELLO, "main.js": b"hello()", **(extra or {})}
    make_zip(path, files, compression=compression)
    return path.read_bytes()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def nested_error(path: Path, limits: Limits = LIMITS) -> NestedArchiveError:
    with pytest.raises(NestedArchiveError) as caught:
        open_archive(path, limits).close()
    return caught.value


def files_of(opened: OpenedMember) -> dict[str, bytes]:
    archive = opened.archive
    return {str(m.path): archive.read_member(m, LIMITS.max_file_bytes) for m in archive.members}


# -- a zip of zips ---------------------------------------------------------------------------


def test_zip_of_zips_offers_the_inner_extension(tmp_path: Path, work: Path) -> None:
    inner = hello_zip(tmp_path / "real.zip")
    outer = make_zip(tmp_path / "outer.zip", {"Plugin/real.zip": inner})

    error = nested_error(outer)
    assert error.candidates == ("Plugin/real.zip",)
    assert "contains a zip of zips ('Plugin/real.zip'): unzip it" in str(error)

    candidates = find_candidates(outer, LIMITS, work)
    assert candidates == (
        Candidate("Plugin/real.zip", "zip", "example.hello", "Hello World", "1.0.0", None),
    )
    assert list(work.iterdir()) == []  # the inner zips looked at are gone
    assert refusal(outer, candidates) == (
        "'outer.zip' is a zip of zips: 'Plugin/real.zip' contains Hello World 1.0.0. "
        "It can be installed from inside the archive."
    )
    assert install_hint(outer, "Plugin/real.zip") == (
        f"extension-manager install {outer} --from-member 'Plugin/real.zip'"
    )


def test_open_member_unpacks_the_inner_zip(tmp_path: Path, work: Path) -> None:
    inner = hello_zip(tmp_path / "real.zip")
    outer = make_zip(tmp_path / "outer.zip", {"Plugin/real.zip": inner})

    with open_member(outer, "Plugin/real.zip", LIMITS, work) as opened:
        assert opened.member == "Plugin/real.zip"
        assert opened.kind == "zip"
        assert opened.outer_sha256 == hashlib.sha256(outer.read_bytes()).hexdigest()
        assert opened.archive.path == work / "inner.zip"
        assert opened.archive.sha256() == hashlib.sha256(inner).hexdigest()
        assert files_of(opened) == {"manifest.json": HELLO, "main.js": b"hello()"}
    assert (work / "inner.zip").read_bytes() == inner


def test_one_inner_zip_per_platform_all_listed(tmp_path: Path, work: Path) -> None:
    inner = hello_zip(tmp_path / "hello.zip")
    outer = make_zip(
        tmp_path / "outer.zip",
        {"linux/hello.zip": inner, "mac/hello.zip": inner, "win/hello.zip": inner},
    )
    candidates = find_candidates(outer, LIMITS, work)
    assert [c.member for c in candidates] == ["linux/hello.zip", "mac/hello.zip", "win/hello.zip"]
    assert all(c.usable for c in candidates)
    assert refusal(outer, candidates) == (
        "'outer.zip' is a zip of zips: 'linux/hello.zip' contains Hello World 1.0.0; "
        "'mac/hello.zip' contains Hello World 1.0.0; 'win/hello.zip' contains Hello World "
        "1.0.0. Choose one to install from inside the archive."
    )
    with open_member(outer, "win/hello.zip", LIMITS, work) as opened:
        assert opened.archive.manifest.path.name == "manifest.json"


def test_usable_and_unusable_inner_zips(tmp_path: Path, work: Path) -> None:
    good = hello_zip(tmp_path / "good.zip")
    broken = make_zip(tmp_path / "broken.zip", {"manifest.json": b"{"}).read_bytes()
    outer = make_zip(tmp_path / "outer.zip", {"a.zip": good, "b.zip": broken})
    candidates = find_candidates(outer, LIMITS, work)
    assert candidates[0].usable
    assert candidates[1].problem is not None
    assert candidates[1].problem.startswith("the manifest.json of 'b.zip' is invalid")
    message = refusal(outer, candidates)
    assert "'a.zip' contains Hello World 1.0.0. Not offered: the manifest.json of 'b.zip'" in (
        message
    )
    assert message.endswith("It can be installed from inside the archive.")


# -- a manifest deeper down ------------------------------------------------------------------


def test_manifest_three_folders_down_is_offered_as_a_folder(tmp_path: Path, work: Path) -> None:
    outer = make_zip(
        tmp_path / "project.zip",
        {
            "README.md": b"read me",
            "src/x/y/manifest.json": HELLO,
            "src/x/y/main.js": b"main",
            "src/x/y/lib/util.js": b"util",
            "src/x/other.js": b"not installed",
            "src/x/y/node_modules/dep/manifest.json": b"{}",
        },
        directory_entries=True,
    )
    error = nested_error(outer)
    assert error.candidates == ("src/x/y/",)  # the dependency's folder lies inside it
    assert "has its manifest.json at 'src/x/y/manifest.json', but it must be" in str(error)

    candidates = find_candidates(outer, LIMITS, work)
    assert candidates == (
        Candidate("src/x/y/", "folder", "example.hello", "Hello World", "1.0.0", None),
    )
    assert refusal(outer, candidates) == (
        "'project.zip' has its manifest.json in a sub-folder, not at the top: 'src/x/y/' "
        "contains Hello World 1.0.0. It can be installed from inside the archive."
    )

    with open_member(outer, "src/x/y/", LIMITS, work) as opened:
        assert opened.kind == "folder"
        assert opened.member == "src/x/y/"
        assert opened.archive.root_prefix == "src/x/y/"
        assert opened.outer_sha256 == opened.archive.sha256()
        assert opened.outer_sha256 == hashlib.sha256(outer.read_bytes()).hexdigest()
        assert files_of(opened) == {
            "manifest.json": HELLO,
            "main.js": b"main",
            "lib/util.js": b"util",
            "node_modules/dep/manifest.json": b"{}",
        }
        assert opened.archive.total_bytes == len(HELLO) + len("mainutil") + 2
        out = tmp_path / "out"
        out.mkdir()
        opened.archive.extract_to(out, lambda _: None, lambda: False)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "lib",
        "lib/util.js",
        "main.js",
        "manifest.json",
        "node_modules",
        "node_modules/dep",
        "node_modules/dep/manifest.json",
    ]
    assert list(work.iterdir()) == []  # a folder member needs no work file


def test_a_folder_member_may_be_named_without_its_slash(tmp_path: Path, work: Path) -> None:
    outer = make_zip(tmp_path / "p.zip", {"a/b/c/manifest.json": HELLO})
    with open_member(outer, "a/b/c", LIMITS, work) as opened:
        assert opened.member == "a/b/c/"
        assert [str(m.path) for m in opened.archive.members] == ["manifest.json"]


def test_several_folders_with_a_manifest_are_all_listed(tmp_path: Path, work: Path) -> None:
    other = minimal_manifest(id="example.other", name="Other", version="2.1.0")
    outer = make_zip(
        tmp_path / "mono.zip",
        {"packages/hello/manifest.json": HELLO, "packages/other/manifest.json": other},
    )
    candidates = find_candidates(outer, LIMITS, work)
    assert [(c.member, c.title) for c in candidates] == [
        ("packages/hello/", "Hello World 1.0.0"),
        ("packages/other/", "Other 2.1.0"),
    ]
    assert "'packages/hello/' contains Hello World 1.0.0; 'packages/other/' contains Other " in (
        refusal(outer, candidates)
    )


def test_shutil_make_archive_of_a_folder_two_levels_up(tmp_path: Path, work: Path) -> None:
    project = tmp_path / "project"
    extension = project / "outer" / "ext"
    (extension / "icons").mkdir(parents=True)
    (extension / "manifest.json").write_bytes(HELLO)
    (extension / "icons" / "a.txt").write_bytes(b"a")
    (project / "notes.txt").write_bytes(b"notes")
    made = Path(shutil.make_archive(str(tmp_path / "made"), "zip", root_dir=project))

    candidates = find_candidates(made, LIMITS, work)
    assert [(c.member, c.kind, c.usable) for c in candidates] == [("outer/ext/", "folder", True)]
    with open_member(made, "outer/ext/", LIMITS, work) as opened:
        assert files_of(opened) == {"manifest.json": HELLO, "icons/a.txt": b"a"}


def test_open_archive_with_a_root(tmp_path: Path) -> None:
    outer = make_zip(tmp_path / "p.zip", {"a/b/manifest.json": HELLO, "a/x.txt": b"x"})
    with open_archive(outer, root="a/b/") as archive:
        assert [str(m.path) for m in archive.members] == ["manifest.json"]
        assert archive.manifest.name == "a/b/manifest.json"
    with pytest.raises(ArchiveError, match=r"'p\.zip' has no manifest\.json directly in 'a/'"):
        open_archive(outer, root="a")
    with pytest.raises(ArchiveError, match=r"'p\.zip' has no folder 'c/' with files in it"):
        open_archive(outer, root="c/")
    with pytest.raises(ValueError, match="not a folder path"):
        open_archive(outer, root="../")


def test_the_whole_outer_archive_is_still_checked(tmp_path: Path) -> None:
    outer = tmp_path / "p.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("src/x/y/manifest.json", HELLO)
        zf.writestr(symlink_info("elsewhere/link"), "/etc/passwd")
    with pytest.raises(ArchiveError, match="contains a symbolic link"):
        open_archive(outer, root="src/x/y/")


def test_a_container_needs_no_manifest(tmp_path: Path) -> None:
    outer = make_zip(tmp_path / "o.zip", {"x/a.zip": b"PK", "__MACOSX/._a.zip": b""})
    with open_container(outer) as container:
        assert [str(m.path) for m in container.members] == ["x/a.zip"]
        assert container.root_prefix == ""
        assert container.skipped_junk == ("__MACOSX/._a.zip",)


# -- refused ---------------------------------------------------------------------------------


def test_two_levels_of_zips_are_not_opened(tmp_path: Path, work: Path) -> None:
    innermost = hello_zip(tmp_path / "hello.zip")
    middle = make_zip(tmp_path / "b.zip", {"hello.zip": innermost}).read_bytes()
    outer = make_zip(tmp_path / "outer.zip", {"a/b.zip": middle})

    candidates = find_candidates(outer, LIMITS, work)
    assert candidates == (
        Candidate(
            "a/b.zip",
            "zip",
            None,
            None,
            None,
            "'a/b.zip' is itself a zip of zips; only one level is opened",
        ),
    )
    assert refusal(outer, candidates) == (
        "'outer.zip' is a zip of zips, and nothing in it can be installed: 'a/b.zip' is "
        "itself a zip of zips; only one level is opened."
    )
    with pytest.raises(ArchiveError) as caught:
        open_member(outer, "a/b.zip", LIMITS, work)
    assert str(caught.value) == (
        "'outer.zip': 'a/b.zip' is itself a zip of zips; only one level is opened. "
        "Unzip 'outer.zip', then install 'b.zip' from it."
    )
    assert list(work.iterdir()) == []


def test_an_inner_zip_with_its_manifest_deep_is_not_opened(tmp_path: Path, work: Path) -> None:
    middle = make_zip(tmp_path / "b.zip", {"x/y/z/manifest.json": HELLO}).read_bytes()
    outer = make_zip(tmp_path / "outer.zip", {"b.zip": middle})
    (candidate,) = find_candidates(outer, LIMITS, work)
    assert candidate.problem == (
        "'b.zip' has its manifest.json deeper inside, at 'x/y/z/manifest.json'; "
        "only one level is opened"
    )
    with pytest.raises(ArchiveError, match="only one level is opened"):
        open_member(outer, "b.zip", LIMITS, work)


def test_an_inner_zip_bomb_is_refused(tmp_path: Path, work: Path) -> None:
    bomb = hello_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(20_000_000)})
    outer = make_zip(tmp_path / "outer.zip", {"bomb.zip": bomb}, compression=zipfile.ZIP_STORED)
    (candidate,) = find_candidates(outer, LIMITS, work)
    assert not candidate.usable
    with pytest.raises(ArchiveError) as caught:
        open_member(outer, "bomb.zip", LIMITS, work)
    assert str(caught.value) == (
        "'bomb.zip': 'zeros.bin' is compressed more than 200:1, which is typical of a zip "
        "bomb. This archive is unsafe and cannot be installed."
    )
    assert list(work.iterdir()) == []


def test_inner_bytes_count_against_the_outer_budget(tmp_path: Path, work: Path) -> None:
    noise = random.Random(3).randbytes(40_000)
    inner = hello_zip(tmp_path / "real.zip", {"noise.bin": noise}, compression=zipfile.ZIP_STORED)
    outer = make_zip(tmp_path / "outer.zip", {"real.zip": inner})
    alone = len(HELLO) + len("hello()") + len(noise)
    limits = Limits(max_total_bytes=alone + 1_000)  # room for the inner zip, not for both
    with open_archive(tmp_path / "real.zip", limits):
        pass

    expected = (
        f"'outer.zip': 'real.zip' unpacks to {format_size(alone)}, which with the "
        f"{format_size(len(inner))} of 'outer.zip' itself is more than the "
        f"{format_size(limits.max_total_bytes)} an extension may take. This archive cannot be "
        "installed."
    )
    (candidate,) = find_candidates(outer, limits, work)
    assert candidate.problem == expected.removesuffix(".")
    with pytest.raises(ArchiveError) as caught:
        open_member(outer, "real.zip", limits, work)
    assert str(caught.value) == expected
    assert list(work.iterdir()) == []

    roomy = Limits(max_total_bytes=2 * len(inner) + 2_000)
    with open_member(outer, "real.zip", roomy, work) as opened:
        assert opened.archive.total_bytes == alone


def test_unknown_member_lists_the_choices(tmp_path: Path, work: Path) -> None:
    inner = hello_zip(tmp_path / "hello.zip")
    outer = make_zip(tmp_path / "outer.zip", {"linux/hello.zip": inner, "win/hello.zip": inner})
    with pytest.raises(ArchiveError) as caught:
        open_member(outer, "mac/hello.zip", LIMITS, work)
    assert str(caught.value) == (
        "'outer.zip' contains no 'mac/hello.zip'. Choose one of: 'linux/hello.zip', "
        "'win/hello.zip'."
    )


def test_member_that_is_neither_a_zip_nor_an_extension_folder(tmp_path: Path, work: Path) -> None:
    outer = make_zip(tmp_path / "p.zip", {"a/b/manifest.json": HELLO, "a/b/x.txt": b"x"})
    expected = (
        "'p.zip': {} is neither a zip nor a folder with a manifest.json directly in it, so "
        "there is nothing to install from it. Choose one of: 'a/b/'."
    )
    for member in ("a/b/x.txt", "a/"):
        with pytest.raises(ArchiveError) as caught:
            open_member(outer, member, LIMITS, work)
        assert str(caught.value) == expected.format(f"'{member}'")


def test_an_unsafe_outer_archive_offers_nothing(tmp_path: Path, work: Path) -> None:
    inner = hello_zip(tmp_path / "hello.zip")
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("hello.zip", inner)
        zf.writestr(zip_info("../evil.zip"), inner)
    with pytest.raises(ArchiveError, match="points outside the extension folder"):
        find_candidates(outer, LIMITS, work)
    with pytest.raises(ArchiveError, match="points outside the extension folder"):
        open_member(outer, "hello.zip", LIMITS, work)


def test_an_extension_offers_no_candidates(tmp_path: Path, work: Path) -> None:
    assert find_candidates(make_extension_zip(tmp_path / "e.zip"), LIMITS, work) == ()


# -- packing a dropped folder ----------------------------------------------------------------


def make_folder(root: Path) -> Path:
    folder = root / "Hello"
    (folder / "lib").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "manifest.json").write_bytes(HELLO)
    (folder / "main.js").write_bytes(b"main")
    (folder / "lib" / "util.js").write_bytes(b"util" * 1000)
    return folder


def test_pack_folder_round_trip(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_bytes(b"ref")
    (folder / "lib" / "__pycache__").mkdir()
    (folder / "lib" / "__pycache__" / "util.pyc").write_bytes(b"pyc")
    (folder / ".DS_Store").write_bytes(b"junk")
    os.utime(folder / "main.js", (0, 0))  # before 1980, which zip dates cannot hold
    destination = tmp_path / "staging" / "Hello.zip"
    destination.parent.mkdir()

    pack_folder(folder, destination, LIMITS)

    with zipfile.ZipFile(destination) as zf:
        names = zf.namelist()
        assert {info.compress_type for info in zf.infolist() if info.file_size} == {
            zipfile.ZIP_DEFLATED
        }
    assert names == ["empty/", "lib/", "lib/util.js", "main.js", "manifest.json"]
    with open_archive(destination) as archive:
        assert archive.root_prefix == ""
        assert archive.folders == (PurePosixPath("empty"), PurePosixPath("lib"))
        contents = {
            str(m.path): archive.read_member(m, LIMITS.max_file_bytes) for m in archive.members
        }
    assert contents == {"lib/util.js": b"util" * 1000, "main.js": b"main", "manifest.json": HELLO}

    again = tmp_path / "staging" / "again.zip"
    pack_folder(folder, again, LIMITS)
    with zipfile.ZipFile(again) as first, zipfile.ZipFile(destination) as second:
        assert first.namelist() == second.namelist()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_pack_folder_refuses_links(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "lib" / "link.js").symlink_to(folder / "main.js")
    destination = tmp_path / "Hello.zip"
    with pytest.raises(ArchiveError) as caught:
        pack_folder(folder, destination, LIMITS)
    assert str(caught.value) == (
        "'Hello' contains a symbolic link ('lib/link.js'). Extensions cannot include links; "
        "replace it with a copy of the file."
    )
    assert not destination.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pack_folder_refuses_special_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    os.mkfifo(folder / "pipe")
    with pytest.raises(ArchiveError, match=r"a special file, a pipe \('pipe'\)"):
        pack_folder(folder, tmp_path / "Hello.zip", LIMITS)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (
            Limits(max_entries=4),
            "'Hello' contains more than the 4 entries an extension may have. This folder "
            "cannot be installed.",
        ),
        (
            Limits(max_file_bytes=3000),
            "'Hello': 'lib/util.js' is 3.9 KiB, more than the 2.9 KiB allowed for one file. "
            "This folder cannot be installed.",
        ),
        (
            Limits(max_total_bytes=4050),
            "'Hello' takes more than 4.0 KiB, the most an extension may take (reached at "
            "'lib/util.js'). This folder cannot be installed.",
        ),
    ],
)
def test_pack_folder_checks_limits_before_writing(
    tmp_path: Path, limits: Limits, expected: str
) -> None:
    folder = make_folder(tmp_path)
    destination = tmp_path / "Hello.zip"
    with pytest.raises(ArchiveError) as caught:
        pack_folder(folder, destination, limits)
    assert str(caught.value) == expected
    assert not destination.exists()


def test_pack_folder_without_a_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "Photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    with pytest.raises(ArchiveError) as caught:
        pack_folder(folder, tmp_path / "p.zip", LIMITS)
    assert str(caught.value) == (
        "'Photos' contains no manifest.json at its top, so it is not an extension (it "
        "contains 'a.jpg'). Choose the extension's folder or its .zip file."
    )


def test_pack_folder_names_the_extension_folder_inside(tmp_path: Path) -> None:
    make_folder(tmp_path / "download")
    with pytest.raises(ArchiveError) as caught:
        pack_folder(tmp_path / "download", tmp_path / "p.zip", LIMITS)
    assert str(caught.value) == (
        "'download' contains no manifest.json at its top, so it is not an extension; its "
        "manifest.json is in 'Hello/': choose that folder instead."
    )


def test_pack_folder_never_overwrites(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    destination = tmp_path / "Hello.zip"
    destination.write_bytes(b"keep")
    with pytest.raises(ArchiveError, match="Could not pack 'Hello' into"):
        pack_folder(folder, destination, LIMITS)
    assert destination.read_bytes() == b"keep"
