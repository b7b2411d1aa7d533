"""Fuzzing the two gates that untrusted bytes pass: whatever comes in, the manifest validator and
the archive checks answer with their own plain errors (never an unhandled exception), and nothing
is ever written outside the destination folder."""

from __future__ import annotations

import io
import json
import tempfile
import warnings
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from registry.archive import open_archive
from registry.errors import ArchiveError, ManifestError
from registry.limits import Limits
from registry.manifest import Manifest, parse_manifest
from tests.zipcraft import minimal_manifest

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SMALL_LIMITS = Limits(max_entries=50, max_file_bytes=64 * 1024, max_total_bytes=256 * 1024)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=40) | st.just("example.fuzz"),
        "name": st.text(max_size=40),
        "version": st.text(max_size=12) | st.just("1.0.0"),
        "permissions": st.lists(st.text(max_size=12) | st.just("network"), max_size=3),
        "capabilities": json_values,
        "config": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        "icon": st.text(max_size=20),
        "homepage": st.text(max_size=30),
        "min_app_version": st.text(max_size=10),
    },
)


def check_manifest(data: bytes) -> None:
    try:
        result = parse_manifest(data)
    except ManifestError as error:
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)
    else:
        assert isinstance(result, Manifest)


@FUZZ
@given(st.binary(max_size=600))
def test_manifest_validator_survives_arbitrary_bytes(data: bytes) -> None:
    check_manifest(data)


@FUZZ
@given(manifest_like)
def test_manifest_validator_survives_manifest_shaped_documents(document: dict[str, object]) -> None:
    check_manifest(json.dumps(document).encode())


def valid_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ext/manifest.json", minimal_manifest())
        archive.writestr("ext/lib/code.txt", b"print('never run')\n" * 40)
        archive.writestr("ext/data.bin", bytes(range(256)) * 8)
    return buffer.getvalue()


VALID = valid_archive()


def extract_in_sandbox(data: bytes) -> None:
    """Open and extract ``data``; only ArchiveError may come out, nothing may escape."""
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        archive_path = root / "fuzz.zip"
        archive_path.write_bytes(data)
        destination = root / "sandbox" / "out"
        destination.mkdir(parents=True)
        try:
            with open_archive(archive_path, SMALL_LIMITS) as archive:
                archive.extract_to(destination, lambda _written: None, lambda: False)
                written = sorted(p.relative_to(destination) for p in destination.rglob("*"))
                assert all(not str(p).startswith("..") for p in written)
        except ArchiveError as error:
            assert str(error)
        assert sorted(p.name for p in root.iterdir()) == ["fuzz.zip", "sandbox"]
        assert [p.name for p in (root / "sandbox").iterdir()] == ["out"]


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8)
)
def test_archive_checks_survive_corrupted_bytes(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for position, value in flips:
        data[position] = value
    extract_in_sandbox(bytes(data))


@FUZZ
@given(st.integers(0, len(VALID)), st.binary(max_size=64))
def test_archive_checks_survive_truncation_and_insertion(cut: int, junk: bytes) -> None:
    extract_in_sandbox(VALID[:cut] + junk + VALID[cut:][: len(VALID) // 3])


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30
) | st.sampled_from(["../x", "/abs", "C:/x", "a\\..\\b", "con.txt", "a/./b", "A", "a", "é", "é"])


@FUZZ
@given(st.lists(st.tuples(names, st.binary(max_size=64)), max_size=6))
def test_archive_checks_survive_arbitrary_member_names(members: list[tuple[str, bytes]]) -> None:
    # zipfile cuts a name at its first NUL and cannot write an empty one.
    assume(all(zipfile.ZipInfo(name).filename for name, _content in members))
    buffer = io.BytesIO()
    # Duplicate names are part of the fuzz (the checks refuse them); zipfile only warns.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("manifest.json", minimal_manifest())
            for name, content in members:
                archive.writestr(name, content)
    extract_in_sandbox(buffer.getvalue())
