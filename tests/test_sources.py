"""Update sources end to end: a folder of zips and an index served over HTTP on 127.0.0.1, read
by the real command line; what is offered, what is blocked and why, downloads checked against
the index, a source that is gone, and the index format itself."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from registry.doctor import diagnose
from registry.installer import Installer, InstallPlan
from registry.manifest import SemVer
from registry.paths import DataPaths
from registry.sources import (
    INDEX,
    Offer,
    SourceError,
    check_updates,
    classify,
    fetch_index,
    index_schema_path,
    offers_from_index,
    write_index,
)
from registry.startup import open_data_folder
from registry.version import APP_VERSION
from tests.conftest import REPO_ROOT, run_cli
from tests.update_sources import (
    NOTES,
    archive_tree,
    build_notes,
    folder_tree,
    http_server_process,
    install_by_hand,
    leftovers,
    serve_folder,
    sha256_of,
)

_APP = SemVer.parse(APP_VERSION)
# An app version this one is not yet: what 2.0.0 needs.
NEWER_APP = f"{_APP.major + 3}.1.0"


def cli_ok(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(data, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def cli_json(data: Path, *args: str) -> Any:
    return json.loads(cli_ok(data, *args, "--json").stdout)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """A failure as every command ends one: exit 1, one line on stderr, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    # A note said before the attempt ("installed by hand from ...") is not part of the failure.
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Note: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("extension-manager: ")
    return lines[0]


def add_source(data: Path, location: str) -> None:
    """What 'extension-manager sources add' does, in this process."""
    with open_data_folder(DataPaths(data)) as registry:
        registry.add_source(*classify(location))


def installed_versions(data: Path) -> list[str]:
    with open_data_folder(DataPaths(data)) as registry:
        return [e.version for e in registry.list_extensions()]


def notes_of(report: Any) -> dict[str, Any]:
    [item] = [e for e in report["extensions"] if e["id"] == NOTES]
    return dict(item)


def registry_state(paths: DataPaths) -> tuple[object, ...]:
    """What an update must not change when it fails: the extension's row, its files, the kept
    archives, and nothing left in staging/ or trash/."""
    with open_data_folder(paths) as registry:
        extension = registry.get_extension(NOTES)
        assert extension is not None
        return (
            extension.version,
            extension.archive_sha256,
            extension.origin,
            folder_tree(paths.extensions / NOTES),
            sorted(p.name for p in paths.archives.iterdir()),
            [(k.version, k.archive_sha256) for k in registry.list_kept_versions()],
            leftovers(paths.root),
        )


@pytest.fixture
def published(tmp_path: Path) -> dict[str, Path]:
    """A folder of zips with 1.0.0, 1.1.0 and 2.0.0 (which needs a newer app), and its index
    written by the real 'extension-manager index' command."""
    folder = tmp_path / "published"
    zips = {
        "1.0.0": build_notes(folder, "1.0.0"),
        "1.1.0": build_notes(folder, "1.1.0", config={"color": "blue", "size": 1}),
        "2.0.0": build_notes(folder, "2.0.0", min_app_version=NEWER_APP),
    }
    written = run_cli(tmp_path / "unused", "index", str(folder))
    assert written.returncode == 0, written.stderr
    assert "with 3 extension archive(s)" in written.stdout
    return zips


@pytest.fixture
def hand_installed(tmp_path: Path, published: dict[str, Path]) -> Path:
    """A data folder with 1.0.0 installed from a copy of its zip (not from the source)."""
    data = tmp_path / "data"
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    copy = Path(shutil.copy(published["1.0.0"], elsewhere / "notes.zip"))
    install_by_hand(data, copy)
    return data


def test_an_index_on_a_web_server_offers_what_fits_and_an_update_records_its_source(
    tmp_path: Path, published: dict[str, Path], hand_installed: Path
) -> None:
    data = hand_installed
    paths = DataPaths(data)
    with http_server_process(published["1.0.0"].parent) as (url, server):
        added = cli_ok(data, "sources", "add", url)
        index_url = url + "index.json"
        assert index_url in added.stdout

        report = cli_json(data, "updates")
        assert report["problems"] == []
        item = notes_of(report)
        assert (item["status"], item["installed"]) == ("update", "1.0.0")
        assert item["available"]["version"] == "1.1.0"
        assert item["available"]["url"] == url + f"{NOTES}-1.1.0.zip"
        assert item["available"]["source"] == index_url
        assert [(b["version"], b["reason"]) for b in item["blocked"]] == [
            ("2.0.0", f"needs Extension Manager ≥ {NEWER_APP}")
        ]
        # It was installed by hand: the update says where the new version comes from.
        assert "installed by hand from notes.zip" in item["note"]

        updated = cli_ok(data, "update", "--yes", NOTES)
        assert f"Upgraded {NOTES} 1.1.0" in updated.stdout

        with open_data_folder(paths) as registry:
            extension = registry.get_extension(NOTES)
            assert extension is not None
            assert (extension.version, extension.origin_source) == ("1.1.0", index_url)
            assert extension.origin == url + f"{NOTES}-1.1.0.zip"
            assert extension.archive_sha256 == sha256_of(published["1.1.0"].read_bytes())
            [operation] = registry.list_operations(limit=1)
            assert (operation.kind, operation.status) == ("UPGRADE", "COMPLETED")
            assert operation.origin_source == index_url
            assert operation.download_bytes == published["1.1.0"].stat().st_size
            kept = {k.version: k for k in registry.list_kept_versions(NOTES)}
            assert set(kept) == {"1.0.0", "1.1.0"}
            assert kept["1.1.0"].origin_source == index_url
            assert diagnose(registry) == []
        assert folder_tree(paths.extensions / NOTES) == archive_tree(published["1.1.0"])
        assert leftovers(data) == []

        again = notes_of(cli_json(data, "updates"))
        assert (again["status"], again["available"]) == ("blocked", None)
        assert [b["version"] for b in again["blocked"]] == ["2.0.0"]
        assert f"{NOTES} 1.1.0: up to date" in cli_ok(data, "updates").stdout

        server.kill()
        server.wait(timeout=30)

        # The server is gone: a plain sentence, and everything that needs no source works.
        stopped = one_line_failure(run_cli(data, "updates"))
        assert f"Could not reach {index_url}" in stopped
        assert "everything installed keeps working" in stopped
        stopped_json = run_cli(data, "updates", "--json")
        assert stopped_json.returncode == 1 and "Traceback" not in stopped_json.stderr
        assert "Could not reach" in json.loads(stopped_json.stdout)["problems"][0]
        no_update = one_line_failure(run_cli(data, "update", "--yes", NOTES))
        assert f"Could not reach {index_url}" in no_update
        sources = cli_json(data, "sources", "list")
        assert "Could not reach" in sources[0]["last_error"]

        assert [e["version"] for e in cli_json(data, "list")] == ["1.1.0"]
        rolled_back = cli_ok(data, "rollback", "--yes", NOTES)
        assert f"Rolled back {NOTES} 1.0.0" in rolled_back.stdout
        assert folder_tree(paths.extensions / NOTES) == archive_tree(published["1.0.0"])
        cli_ok(data, "uninstall", "--yes", NOTES)
        assert cli_json(data, "list") == []
        assert leftovers(data) == []


def test_a_folder_of_zips_is_a_source_too(
    tmp_path: Path, published: dict[str, Path], hand_installed: Path
) -> None:
    data = hand_installed
    folder = published["1.0.0"].parent
    cli_ok(data, "sources", "add", str(folder))
    assert cli_json(data, "sources", "list")[0]["kind"] == "FOLDER"

    item = notes_of(cli_json(data, "updates"))
    assert item["status"] == "update"
    assert item["available"]["url"] == str(published["1.1.0"])
    assert [(b["version"], b["reason"]) for b in item["blocked"]] == [
        ("2.0.0", f"needs Extension Manager ≥ {NEWER_APP}")
    ]

    cli_ok(data, "update", "--yes", NOTES)
    paths = DataPaths(data)
    with open_data_folder(paths) as registry:
        extension = registry.get_extension(NOTES)
        assert extension is not None
        assert (extension.version, extension.origin_source) == ("1.1.0", str(folder))
        assert extension.origin == str(published["1.1.0"])
        assert diagnose(registry) == []
    assert folder_tree(paths.extensions / NOTES) == archive_tree(published["1.1.0"])

    # A folder on a disk that is not connected: said plainly, like an unreachable server.
    folder.rename(tmp_path / "unplugged")
    gone = one_line_failure(run_cli(data, "updates"))
    assert f"The source folder {folder} is not there" in gone


def test_a_folder_source_reads_each_zip_once_until_it_changes(tmp_path: Path) -> None:
    folder = tmp_path / "zips"
    build_notes(folder, "1.0.0")
    with open_data_folder(DataPaths(tmp_path / "data")) as registry:
        Installer(registry).install(build_notes(tmp_path / "mine", "1.0.0"))
        registry.add_source(str(folder), "FOLDER")
        assert check_updates(registry).available == []
        newer = build_notes(folder, "1.2.0")
        assert [e.offer.version for e in check_updates(registry).available if e.offer] == ["1.2.0"]
        # Not read again while its size and time are unchanged: what is remembered is offered.
        remembered = registry.source_files([str(newer)])[str(newer)]
        assert remembered.version == "1.2.0"
        # Replaced by a file that is not an extension: no longer offered, the problem kept.
        newer.write_bytes(b"not a zip at all")
        assert check_updates(registry).available == []
        assert registry.source_files([str(newer)])[str(newer)].problem


def replace_same_size(path: Path) -> None:
    """Other bytes, same length: only the SHA-256 can tell."""
    raw = bytearray(path.read_bytes())
    middle = raw.find(b"padding.bin") + 100  # inside the stored padding's data
    raw[middle] ^= 0xFF
    path.write_bytes(bytes(raw))


def replace_other_size(path: Path) -> None:
    build_notes(path.parent / "other", "1.1.0", files={"extra.txt": b"x" * 5000})
    shutil.move(path.parent / "other" / path.name, path)
    shutil.rmtree(path.parent / "other")


@pytest.mark.parametrize(
    ("replace", "says"),
    [(replace_same_size, "its SHA-256 is"), (replace_other_size, "bytes")],
    ids=["same-size", "other-size"],
)
def test_a_zip_replaced_after_indexing_is_refused_and_nothing_changes(
    tmp_path: Path, replace: Any, says: str
) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    build_notes(folder, "1.1.0", padding=4096)
    write_index(folder)
    data = tmp_path / "data"
    install_by_hand(data, first)
    before = registry_state(DataPaths(data))
    replace(folder / f"{NOTES}-1.1.0.zip")

    with serve_folder(folder) as url:
        cli_ok(data, "sources", "add", url)
        refused = one_line_failure(run_cli(data, "update", "--yes", NOTES))
    assert f"The file for {NOTES} 1.1.0 at {url}{NOTES}-1.1.0.zip" in refused
    assert "is not the one the source describes" in refused and says in refused
    assert "Nothing was changed" in refused

    assert registry_state(DataPaths(data)) == before
    assert before[0] == "1.0.0" and before[3] == archive_tree(first)
    with open_data_folder(DataPaths(data)) as registry:
        [operation] = registry.list_operations(limit=1)
        assert (operation.kind, operation.status) == ("UPGRADE", "FAILED")
        assert operation.error is not None and "is not the one the source describes" in (
            operation.error
        )
        assert diagnose(registry) == []


def test_a_server_that_stops_mid_download_changes_nothing_and_says_try_again(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    newer = build_notes(folder, "1.1.0", padding=600_000)
    write_index(folder)
    data = tmp_path / "data"
    install_by_hand(data, first)
    before = registry_state(DataPaths(data))
    with serve_folder(folder, cut_after=300_000) as url:
        cli_ok(data, "sources", "add", url)
        stopped = one_line_failure(run_cli(data, "update", "--yes", NOTES))
    # A transfer cut short is not a file that differs from the index: try again, no blame.
    size = newer.stat().st_size
    assert f"stopped after 300,000 of {size:,} bytes" in stopped
    assert "Nothing was changed; try again." in stopped
    assert "not the one the source describes" not in stopped
    assert registry_state(DataPaths(data)) == before

    # The file on the server itself cut short (it announces its own, smaller size): that is
    # a file other than the one the index describes.
    newer.write_bytes(newer.read_bytes()[:300_000])
    with serve_folder(folder) as url:
        with open_data_folder(DataPaths(data)) as registry:
            [earlier] = registry.list_sources()
            assert registry.remove_source(earlier.location)
            registry.add_source(url + "index.json", INDEX)
        refused = one_line_failure(run_cli(data, "update", "--yes", NOTES))
    assert f"is not the one the source describes (it is 300,000 bytes, not {size:,})" in refused
    assert registry_state(DataPaths(data)) == before


def test_an_update_never_goes_back(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    build_notes(folder, "1.0.0")
    write_index(folder)
    data = tmp_path / "data"
    newer = build_notes(tmp_path / "mine", "1.1.0")
    install_by_hand(data, newer)
    with serve_folder(folder) as url:
        add_source(data, url)
        item = notes_of(cli_json(data, "updates"))
        assert (item["status"], item["available"], item["blocked"]) == ("up to date", None, [])
        one = cli_ok(data, "update", "--yes", NOTES)
        assert f"{NOTES} 1.1.0: up to date" in one.stdout
        every = cli_ok(data, "update", "--yes", "--all")
        assert "Everything is up to date." in every.stdout
    assert installed_versions(data) == ["1.1.0"]

    # Even an offer made by hand for an older version is refused by the installer itself.
    older = build_notes(folder, "1.0.0")
    offer = Offer(
        NOTES,
        "1.0.0",
        older.stat().st_size,
        sha256_of(older.read_bytes()),
        str(older),
        str(folder),
    )
    with open_data_folder(DataPaths(data)) as registry:
        record = Installer(registry).update(offer)
        assert record.status == "FAILED"
        assert record.error is not None and "an update never goes back" in record.error
        extension = registry.get_extension(NOTES)
        assert extension is not None and extension.version == "1.1.0"
    assert folder_tree(DataPaths(data).extensions / NOTES) == archive_tree(newer)
    assert leftovers(data) == []


def test_a_held_extension_is_offered_nothing_until_released(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    build_notes(folder, "1.1.0")
    data = tmp_path / "data"
    install_by_hand(data, first)
    add_source(data, str(folder))
    cli_ok(data, "hold", NOTES, "--reason", "waiting for the fix")

    item = notes_of(cli_json(data, "updates"))
    assert (item["status"], item["available"]) == ("held", None)
    assert (item["held"], item["withheld"]) == ("waiting for the fix", "1.1.0")
    text = cli_ok(data, "updates").stdout
    assert f"{NOTES} 1.0.0: held (waiting for the fix); nothing is offered" in text
    refused = run_cli(data, "update", "--yes", NOTES)
    assert refused.returncode == 1 and "held (waiting for the fix)" in refused.stderr
    every = cli_ok(data, "update", "--yes", "--all")
    assert "Everything is up to date." in every.stdout
    assert installed_versions(data) == ["1.0.0"]

    cli_ok(data, "release", NOTES)
    assert notes_of(cli_json(data, "updates"))["available"]["version"] == "1.1.0"


def test_max_app_version_is_exclusive_and_blocks_with_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    # Works with every app before this one: not with this one.
    build_notes(folder, "1.1.0", max_app_version=APP_VERSION)
    build_notes(folder, "1.2.0", min_app_version=NEWER_APP, max_app_version=f"{_APP.major + 4}.0.0")
    write_index(folder)
    data = tmp_path / "data"
    install_by_hand(data, first)
    with serve_folder(folder) as url:
        add_source(data, url)
        item = notes_of(cli_json(data, "updates"))
        assert (item["status"], item["available"]) == ("blocked", None)
        reasons = {b["version"]: b["reason"] for b in item["blocked"]}
        assert reasons["1.1.0"] == f"needs Extension Manager < {APP_VERSION}"
        assert reasons["1.2.0"].startswith(f"needs Extension Manager ≥ {NEWER_APP}")
        text = cli_ok(data, "updates").stdout
        assert f"1.1.0 needs Extension Manager < {APP_VERSION}" in text
        cli_ok(data, "update", "--yes", NOTES)
    assert installed_versions(data) == ["1.0.0"]


def test_declining_an_update_at_the_terminal_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    build_notes(folder, "1.1.0")
    data = tmp_path / "data"
    install_by_hand(data, first)
    with open_data_folder(DataPaths(data)) as registry:
        registry.add_source(str(folder), "FOLDER")

    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(data), "update", NOTES],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    ) as child:
        os.close(terminal)
        screen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
            if screen.endswith(b"[y/N] "):
                os.write(controller, b"n\n")
        child.wait(timeout=60)
    os.close(controller)
    assert child.returncode == 1, screen
    assert b"Upgrade 1.0.0 \xe2\x86\x92 1.1.0" in screen
    assert b"Cancelled: nothing was changed." in screen
    # The downloaded file went with the declined operation, not at the next launch.
    assert list((data / "staging").iterdir()) == []
    assert installed_versions(data) == ["1.0.0"]


# -- the index format ----------------------------------------------------------------------------


def test_the_written_index_follows_its_schema_with_relative_urls(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    zips = [
        build_notes(folder, "1.0.0"),
        build_notes(folder, "2.0.0", min_app_version=NEWER_APP, max_app_version="9.0.0"),
        build_notes(folder, "1.0.0", extension_id="example.other-thing"),
    ]
    spaced = folder / "with space #1.zip"
    shutil.copy(zips[0], spaced)
    (folder / "broken.zip").write_bytes(b"not a zip")
    (folder / "readme.txt").write_text("not a zip either")

    result = write_index(folder)
    assert result.entries == 4
    assert [line.split(":")[0] for line in result.skipped] == ["broken.zip"]
    document = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    schema = json.loads(index_schema_path().read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert list(Draft202012Validator(schema).iter_errors(document)) == []
    assert document["format"] == 1
    assert not (folder / ".index.json.partial").exists()

    by_url = {entry["url"]: entry for entry in document["extensions"]}
    for url, entry in by_url.items():
        assert urllib.parse.urlsplit(url).scheme == "" and "/" not in url
        path = folder / urllib.parse.unquote(url)
        assert (entry["size"], entry["sha256"]) == (
            path.stat().st_size,
            sha256_of(path.read_bytes()),
        )
    assert "with%20space%20%231.zip" in by_url
    assert by_url[zips[1].name]["min_app_version"] == NEWER_APP
    assert by_url[zips[1].name]["max_app_version"] == "9.0.0"
    assert "min_app_version" not in by_url[zips[0].name]

    # Read back as a source (file://), each URL resolves to its file.
    location, kind = classify(str(folder / "index.json"))
    assert kind == INDEX and location.startswith("file://")
    entries = fetch_index(location)["extensions"]
    assert len(entries) == 4


def test_an_index_with_a_space_in_a_file_name_updates_over_http(tmp_path: Path) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    newer = build_notes(folder, "1.1.0")
    newer.rename(folder / "notes 1.1 (final).zip")
    write_index(folder)
    data = tmp_path / "data"
    install_by_hand(data, first)
    with serve_folder(folder) as url, open_data_folder(DataPaths(data)) as registry:
        registry.add_source(url + "index.json", INDEX)
        [item] = check_updates(registry).available
        assert item.offer is not None
        assert item.offer.url == url + "notes%201.1%20%28final%29.zip"
        record = Installer(registry).update(item.offer)
        assert record.status == "COMPLETED", record.error
    assert installed_versions(data) == ["1.1.0"]


def write_document(path: Path, document: object) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path.as_uri()


def test_an_index_of_a_newer_format_asks_for_a_newer_app(tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    url = write_document(index, {"format": 2, "extensions": [], "signatures": {}})
    with pytest.raises(SourceError, match="needs a newer Extension Manager") as raised:
        fetch_index(url)
    assert "format 2" in str(raised.value)

    data = tmp_path / "data"
    install_by_hand(data, build_notes(tmp_path, "1.0.0"))
    cli_ok(data, "sources", "add", str(index))
    refused = one_line_failure(run_cli(data, "updates"))
    assert "needs a newer Extension Manager" in refused and "Update the app" in refused


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "is not valid JSON"),
        (b"[]", "is not a valid update index"),
        (json.dumps({"format": 1}).encode(), "is not a valid update index"),
        (
            json.dumps(
                {
                    "format": 1,
                    "extensions": [
                        {"id": NOTES, "version": "1.1", "size": 1, "sha256": "0" * 64, "url": "a"}
                    ],
                }
            ).encode(),
            "extensions/0/version",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "extensions": [
                        {"id": NOTES, "version": "1.1.0", "size": 1, "sha256": "XYZ", "url": "a"}
                    ],
                }
            ).encode(),
            "extensions/0/sha256",
        ),
        (json.dumps({"format": "1", "extensions": []}).encode(), "format"),
    ],
    ids=["truncated", "not-utf8", "a-list", "no-extensions", "bad-version", "bad-hash", "str"],
)
def test_a_malformed_index_is_refused_in_one_plain_sentence(
    tmp_path: Path, content: bytes, says: str
) -> None:
    index = tmp_path / "index.json"
    index.write_bytes(content)
    with pytest.raises(SourceError) as raised:
        fetch_index(index.as_uri())
    message = str(raised.value)
    assert says in message and "\n" not in message
    assert "extension-manager index" in message


def test_a_malformed_index_on_the_command_line_is_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    index = tmp_path / "index.json"
    index.write_text('{"format": 1, "extensions": [', encoding="utf-8")
    data = tmp_path / "data"
    first = build_notes(tmp_path, "1.0.0")
    install_by_hand(data, first)
    with open_data_folder(DataPaths(data)) as registry:
        registry.add_source(index.as_uri(), INDEX)
    assert "is not valid JSON" in one_line_failure(run_cli(data, "updates"))
    assert "is not valid JSON" in one_line_failure(run_cli(data, "update", "--yes", "--all"))
    assert folder_tree(DataPaths(data).extensions / NOTES) == archive_tree(first)


def test_a_plan_from_a_download_is_an_ordinary_plan(tmp_path: Path) -> None:
    """plan_update hands back the same plan an install shows, with the source as origin."""
    folder = tmp_path / "published"
    build_notes(folder, "1.1.0", config={"color": "blue", "size": 1})
    with open_data_folder(DataPaths(tmp_path / "data")) as registry:
        installer = Installer(registry)
        assert installer.install(build_notes(tmp_path / "mine", "1.0.0")).status == "COMPLETED"
        registry.add_source(str(folder), "FOLDER")
        [item] = check_updates(registry).available
        assert item.offer is not None
        install_id = installer.begin_update(item.offer)
        planned = installer.plan_update(install_id, item.offer)
        assert isinstance(planned, InstallPlan)
        assert (planned.kind, planned.installed_version) == ("UPGRADE", "1.0.0")
        assert planned.config_added == ("size",)
        assert planned.origin_source == str(folder)
        assert installer.execute(planned).status == "COMPLETED"
        assert leftovers(registry.paths.root) == []


def test_an_index_that_misstates_the_version_is_refused_after_the_download(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    build_notes(folder, "1.1.0")
    write_index(folder)
    index = folder / "index.json"
    document = json.loads(index.read_text(encoding="utf-8"))
    for entry in document["extensions"]:
        if entry["version"] == "1.1.0":
            entry["version"] = "1.2.0"  # size and hash are right: only the version is not
    index.write_text(json.dumps(document), encoding="utf-8")
    data = tmp_path / "data"
    install_by_hand(data, first)
    before = registry_state(DataPaths(data))
    with open_data_folder(DataPaths(data)) as registry:
        registry.add_source(index.as_uri(), INDEX)
        [item] = check_updates(registry).available
        assert item.offer is not None and item.offer.version == "1.2.0"
        record = Installer(registry).update(item.offer)
        assert record.status == "FAILED"
        assert record.error is not None and (
            f"holds {NOTES} 1.1.0, not {NOTES} 1.2.0 as the source says" in record.error
        )
    assert registry_state(DataPaths(data)) == before


def test_a_zip_gone_from_the_server_and_a_server_that_never_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import registry.sources as sources

    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    newer = build_notes(folder, "1.1.0")
    write_index(folder)
    newer.unlink()
    data = tmp_path / "data"
    install_by_hand(data, first)
    before = registry_state(DataPaths(data))
    with serve_folder(folder) as url, open_data_folder(DataPaths(data)) as registry:
        registry.add_source(url + "index.json", INDEX)
        [item] = check_updates(registry).available
        assert item.offer is not None
        record = Installer(registry).update(item.offer)
        assert record.status == "FAILED"
        assert record.error == (
            f"{url}{newer.name} answered 404 File not found. Check the address, or ask the "
            "source's owner."
        )
    assert registry_state(DataPaths(data)) == before

    # Accepts the connection and then says nothing: given up on after the timeout.
    monkeypatch.setattr(sources, "TIMEOUT_SECONDS", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"http://127.0.0.1:{silent.getsockname()[1]}/index.json"
        with open_data_folder(DataPaths(data)) as registry:
            for old in registry.list_sources():
                registry.remove_source(old.location)
            registry.add_source(address, INDEX)
            report = check_updates(registry)
    assert report.problems == (
        f"Could not reach {address} (timed out). Check the network or the address and try "
        "again; everything installed keeps working meanwhile.",
    )
    assert report.available == []


def test_an_index_on_a_web_server_cannot_point_at_files_of_this_computer(tmp_path: Path) -> None:
    local = build_notes(tmp_path, "1.1.0")
    entry = {
        "id": NOTES,
        "version": "1.1.0",
        "size": local.stat().st_size,
        "sha256": sha256_of(local.read_bytes()),
    }
    served = tmp_path / "served"
    served.mkdir()
    write_document(
        served / "index.json",
        {
            "format": 1,
            "extensions": [{**entry, "url": local.as_uri()}, {**entry, "url": "here.zip"}],
        },
    )
    with serve_folder(served) as base:
        offers = offers_from_index(fetch_index(base + "index.json"), base + "index.json")
    assert [offer.url for offer in offers] == [base + "here.zip"]
    # Read from this computer, the same index may name files on it.
    local_index = write_document(
        tmp_path / "index.json", {"format": 1, "extensions": [{**entry, "url": local.as_uri()}]}
    )
    assert [o.url for o in offers_from_index(fetch_index(local_index), local_index)] == [
        local.as_uri()
    ]
