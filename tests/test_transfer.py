"""The installed set as a file: ``export`` and ``import``, run the way a person or a script runs
them (real CLI processes on real data folders)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from examples.build_examples import build_all
from tests.conftest import run_cli
from tests.zipcraft import make_extension_zip, minimal_manifest

HELLO_WORLD = "example.hello-world"
WORD_COUNT = "example.word-count"
HELLO = "example.hello"
IDS = (HELLO, HELLO_WORLD, WORD_COUNT)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    built = {path.stem: path for path in build_all(folder)}
    built["hello"] = make_extension_zip(
        folder / "hello.zip",
        {"manifest.json": minimal_manifest(config={"loud": False, "times": 2})},
    )
    return built


def succeeds(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(data, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def as_json(data: Path, *args: str) -> Any:
    return json.loads(succeeds(data, *args, "--json").stdout)


def installed(data: Path) -> list[tuple[str, str, bool, str]]:
    return [
        (e["id"], e["version"], e["enabled"], e["archive_sha256"]) for e in as_json(data, "list")
    ]


def settings(data: Path) -> dict[str, Any]:
    return {
        extension_id: as_json(data, "config", extension_id) for extension_id, *_ in installed(data)
    }


def snapshot(data: Path) -> tuple[object, ...]:
    """What an import that is refused must leave exactly as it was."""
    files = sorted(str(p.relative_to(data)) for p in (data / "extensions").rglob("*"))
    staging = sorted(p.name for p in (data / "staging").iterdir())
    return installed(data), settings(data), as_json(data, "history"), files, staging


def plain_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines and all(line.startswith("extension-manager: ") for line in lines), lines
    return result.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, archives: dict[str, Path]) -> Path:
    """Three extensions: hello-world 1.1.0 with a changed greeting, word-count disabled, and
    example.hello as installed."""
    data = tmp_path_factory.mktemp("source")
    for name in ("hello-world-1.1", "word-count", "hello"):
        succeeds(data, "install", "--yes", str(archives[name]))
    succeeds(data, "disable", WORD_COUNT)
    succeeds(data, "config", HELLO_WORLD, "greeting=Hi", "punctuation=?")
    return data


@pytest.fixture(scope="module")
def bundle(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("exports") / "set.zip"
    succeeds(source, "export", "--bundle", str(target))
    return target


@pytest.fixture(scope="module")
def listing(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("exports") / "set.json"
    succeeds(source, "export", str(target))
    return target


def test_the_export_lists_ids_versions_hashes_states_and_changed_settings(
    source: Path, listing: Path
) -> None:
    document = json.loads(listing.read_text(encoding="utf-8"))
    assert document["format"] == 1 and document["app_version"] and document["exported_at"]
    entries = {entry["id"]: entry for entry in document["extensions"]}
    assert sorted(entries) == sorted(IDS)
    for extension_id, version, enabled, sha256 in installed(source):
        entry = entries[extension_id]
        assert (entry["version"], entry["enabled"], entry["sha256"]) == (version, enabled, sha256)
    # Only what differs from the defaults.
    assert entries[HELLO_WORLD]["settings"] == {"greeting": "Hi", "punctuation": "?"}
    assert entries[WORD_COUNT]["settings"] == {}
    assert not list(listing.parent.glob(".*.part"))


def test_a_bundle_brings_an_empty_folder_to_the_same_set(
    source: Path, bundle: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(bundle) as opened:
        names = set(opened.namelist())
    assert {f"archives/{sha256}.zip" for *_, sha256 in installed(source)} < names
    assert "installed-set.json" in names

    target = tmp_path / "empty"
    unconfirmed = run_cli(target, "import", str(bundle))
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert f"install {HELLO} 1.0.0" in unconfirmed.stdout
    assert installed(target) == []

    imported = succeeds(target, "import", "--yes", str(bundle))
    assert f"Installed {WORD_COUNT} 1.2.0, disabled" in imported.stdout
    assert installed(target) == installed(source)
    assert settings(target) == settings(source)

    history = as_json(target, "history")
    assert sorted((op["extension_id"], op["kind"], op["status"]) for op in history) == [
        (extension_id, "INSTALL", "COMPLETED") for extension_id in sorted(IDS)
    ]
    assert sorted((target / "staging").iterdir()) == []


def test_the_import_json_says_the_plan_and_each_result(bundle: Path, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "import", "--yes", "--json", str(bundle))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["bundle"] is True
    assert {(p["id"], p["action"]) for p in payload["plan"]} == {(i, "install") for i in IDS}
    assert all(r["done"] and r["operation"]["status"] == "COMPLETED" for r in payload["results"])


def test_a_list_imports_where_the_archives_are_kept(
    source: Path, listing: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    for name in ("hello-world-1.1", "word-count", "hello"):
        succeeds(tmp_path, "install", "--yes", str(archives[name]))
    for extension_id in IDS:
        succeeds(tmp_path, "uninstall", "--yes", extension_id)
    assert installed(tmp_path) == []

    succeeds(tmp_path, "import", "--yes", str(listing))
    assert installed(tmp_path) == installed(source)
    assert settings(tmp_path) == settings(source)


def test_a_list_into_an_empty_folder_names_the_missing_archives_and_changes_nothing(
    listing: Path, tmp_path: Path
) -> None:
    result = run_cli(tmp_path, "import", "--yes", str(listing))
    plain_failure(result)
    for extension_id in IDS:
        assert f"refused {extension_id}" in result.stdout
    assert result.stdout.count("export it with --bundle") == 3
    assert installed(tmp_path) == []
    assert as_json(tmp_path, "history") == []


def test_a_tampered_bundle_is_refused_before_anything_changes(
    source: Path, bundle: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    [word_count_sha] = [sha for i, _v, _e, sha in installed(source) if i == WORD_COUNT]
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as original, zipfile.ZipFile(tampered, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == f"archives/{word_count_sha}.zip":
                data = data[:-1] + bytes([data[-1] ^ 1])
            copy.writestr(info, data)
    target = tmp_path / "data"
    succeeds(target, "install", "--yes", str(archives["hello-world"]))
    before = snapshot(target)

    result = run_cli(target, "import", "--yes", str(tampered))
    message = plain_failure(result)
    assert "damaged" in message and WORD_COUNT in message and "Nothing was changed" in message
    assert snapshot(target) == before


def test_a_partly_satisfied_import_changes_only_the_rest(
    source: Path, bundle: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    succeeds(tmp_path, "install", "--yes", str(archives["hello"]))
    succeeds(tmp_path, "install", "--yes", str(archives["hello-world"]))
    succeeds(tmp_path, "install", "--yes", str(archives["word-count"]))
    before = as_json(tmp_path, "history")

    result = succeeds(tmp_path, "import", "--yes", str(bundle))
    assert f"{HELLO} 1.0.0: already as in the file" in result.stdout
    assert f"upgrade {HELLO_WORLD} 1.0.0 → 1.1.0, 2 changed setting(s)" in result.stdout
    assert f"disable {WORD_COUNT}" in result.stdout
    assert installed(tmp_path) == installed(source)
    assert settings(tmp_path) == settings(source)
    new = as_json(tmp_path, "history")[: -len(before)]
    assert [(op["extension_id"], op["kind"], op["status"]) for op in new] == [
        (HELLO_WORLD, "UPGRADE", "COMPLETED")
    ]

    again = succeeds(tmp_path, "import", "--yes", str(bundle))
    assert again.stdout.count("already as in the file") == 3
    assert "Nothing to do" in again.stdout


def test_changed_settings_alone_are_put_back(source: Path, bundle: Path, tmp_path: Path) -> None:
    succeeds(tmp_path, "import", "--yes", str(bundle))
    succeeds(tmp_path, "config", HELLO, "times=5")
    succeeds(tmp_path, "config", HELLO_WORLD, "--reset")
    operations = len(as_json(tmp_path, "history"))

    result = succeeds(tmp_path, "import", "--yes", str(bundle))
    assert f"settings of {HELLO}: loud = false, times = 2" in result.stdout
    assert f"settings of {HELLO_WORLD}:" in result.stdout
    assert settings(tmp_path) == settings(source)
    assert len(as_json(tmp_path, "history")) == operations


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not json at all", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"format": 1}', "'extensions' is missing"),
        (b'{"format": 7, "extensions": []}', "newer Extension Manager"),
        (
            b'{"format": 1, "extensions": [{"id": "a.b", "version": "1.0.0", "sha256": "xyz"}]}',
            'extension 1 (a.b): sha256: "xyz" is not a SHA-256',
        ),
        (
            b'{"format": 1, "extensions": [{"id": "a.b", "version": "one", "sha256": null}]}',
            "is not a version like 1.2.3",
        ),
    ],
)
def test_a_malformed_file_is_a_plain_message(content: bytes, words: str, tmp_path: Path) -> None:
    file = tmp_path / "set.json"
    file.write_bytes(content)
    message = plain_failure(run_cli(tmp_path / "data", "import", "--yes", str(file)))
    assert words in message
    assert installed(tmp_path / "data") == []


def test_a_zip_that_is_not_a_bundle_says_what_it_is(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    message = plain_failure(run_cli(tmp_path, "import", "--yes", str(archives["hello"])))
    # The command is named the way this one was run ('extension-manager install' installed).
    assert "not a bundle" in message and " install'." in message


def test_a_bundle_with_a_missing_kept_archive_is_not_written(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    succeeds(data, "install", "--yes", str(archives["hello"]))
    [(_, _, _, sha256)] = installed(data)
    (data / "archives" / f"{sha256}.zip").unlink()
    target = tmp_path / "set.zip"
    message = plain_failure(run_cli(data, "export", "--bundle", str(target)))
    assert HELLO in message and "doctor" in message
    assert not target.exists() and list(tmp_path.glob(".*.part")) == []


def test_requirements_come_in_first_and_are_turned_off_last(tmp_path: Path) -> None:
    """Listed by name, the dependent comes first; both are disabled in the file, and an install
    needs what it requires turned on."""
    base = make_extension_zip(
        tmp_path / "base.zip",
        {"manifest.json": minimal_manifest(id="example.base", name="Zeta Base")},
    )
    user = make_extension_zip(
        tmp_path / "user.zip",
        {
            "manifest.json": minimal_manifest(
                id="example.user", name="Alpha User", requires={"example.base": ">=1.0.0"}
            )
        },
    )
    source, target = tmp_path / "source", tmp_path / "target"
    succeeds(source, "install", "--yes", str(base), str(user))
    succeeds(source, "disable", "example.user")
    succeeds(source, "disable", "example.base")
    bundle = tmp_path / "set.zip"
    succeeds(source, "export", "--bundle", str(bundle))
    with zipfile.ZipFile(bundle) as opened:
        [first, second] = json.loads(opened.read("installed-set.json"))["extensions"]
    assert (first["id"], first["requires"], second["id"]) == (
        "example.user",
        {"example.base": ">=1.0.0"},
        "example.base",
    )

    result = succeeds(target, "import", "--yes", str(bundle))
    assert result.stdout.index("install example.base") < result.stdout.index("install example.user")
    assert installed(target) == installed(source)
    assert [op["extension_id"] for op in reversed(as_json(target, "history"))] == [
        "example.base",
        "example.user",
    ]
