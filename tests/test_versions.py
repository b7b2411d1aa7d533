"""Kept versions: a rollback brings back a kept version's exact files and the settings it had,
holds it there until released, and is refused plainly when it cannot be done; what is kept is
bounded by the preferences."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from registry.doctor import diagnose, repair
from registry.errors import InstallRefusedError
from registry.installer import Installer, InstallOptions
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Preferences, Registry
from registry.versions import over_retention, unreferenced_archives
from tests.conftest import run_cli
from tests.update_sources import (
    NOTES,
    archive_tree,
    build_notes,
    folder_tree,
    leftovers,
    sha256_of,
)

CONFIG_1_0 = {"color": "blue", "size": 1}
CONFIG_1_1 = {"color": "blue", "size": 1, "font": "serif"}


def install(registry: Registry, archive: Path, **options: bool) -> None:
    record = Installer(registry).install(archive, options=InstallOptions(**options))
    assert record.status == "COMPLETED", record.error


def kept_files(paths: DataPaths) -> list[str]:
    return sorted(p.name for p in paths.archives.iterdir())


def kept_versions(registry: Registry, extension_id: str = NOTES) -> list[str]:
    return sorted(v.version for v in registry.list_kept_versions(extension_id))


def snapshot(registry: Registry) -> tuple[object, ...]:
    """Everything a refused rollback must leave as it was."""
    extension = registry.get_extension(NOTES)
    assert extension is not None
    return (
        extension.version,
        extension.archive_sha256,
        extension.held,
        registry.get_config(NOTES),
        folder_tree(registry.paths.extensions / NOTES),
        kept_files(registry.paths),
        [(v.version, v.settings, v.replaced_at) for v in registry.list_kept_versions()],
        leftovers(registry.paths.root),
    )


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


@pytest.fixture
def zips(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "zips"
    return {
        "1.0.0": build_notes(folder, "1.0.0", config=CONFIG_1_0),
        "1.1.0": build_notes(
            folder, "1.1.0", config=CONFIG_1_1, files={"fonts/serif.txt": b"serif"}
        ),
        "1.2.0": build_notes(folder, "1.2.0", config=CONFIG_1_1),
        "1.3.0": build_notes(folder, "1.3.0", config=CONFIG_1_1),
    }


@pytest.fixture
def upgraded(paths: DataPaths, zips: dict[str, Path]) -> DataPaths:
    """1.0.0 with color=red, upgraded to 1.1.0, where color=green and font=mono."""
    with open_data_folder(paths) as registry:
        install(registry, zips["1.0.0"])
        registry.set_config(NOTES, {"color": "red"})
        install(registry, zips["1.1.0"])
        assert registry.get_config(NOTES)["color"] == "red"  # an upgrade keeps the settings
        registry.set_config(NOTES, {"color": "green", "font": "mono"})
    return paths


def test_a_rollback_brings_back_the_files_and_settings_and_holds_until_released(
    upgraded: DataPaths, zips: dict[str, Path]
) -> None:
    paths = upgraded
    folder = paths.extensions / NOTES
    assert folder_tree(folder) == archive_tree(zips["1.1.0"])

    listed = json.loads(run_cli(paths.root, "versions", NOTES, "--json").stdout)
    assert [(row["version"], row["installed"]) for row in listed] == [
        ("1.1.0", True),
        ("1.0.0", False),
    ]
    assert listed[1]["settings"] == {"color": "red"}  # what 1.0.0 last ran with

    rolled = run_cli(paths.root, "rollback", "--yes", NOTES)
    assert rolled.returncode == 0, rolled.stderr
    assert f"Rolled back {NOTES} 1.0.0" in rolled.stdout

    with open_data_folder(paths) as registry:
        extension = registry.get_extension(NOTES)
        assert extension is not None
        assert extension.version == "1.0.0"
        assert extension.archive_sha256 == sha256_of(zips["1.0.0"].read_bytes())
        # The same tree, file by file and byte by byte; nothing of 1.1.0 left.
        assert folder_tree(folder) == archive_tree(zips["1.0.0"])
        assert not (folder / "fonts").exists()
        # The settings 1.0.0 had, not 1.1.0's (and no setting 1.0.0 does not know).
        assert registry.get_config(NOTES) == {"color": "red", "size": 1}
        assert extension.held and extension.hold_reason == "Rolled back from 1.1.0 to 1.0.0"
        [operation] = registry.list_operations(limit=1)
        assert (operation.kind, operation.status) == ("ROLLBACK", "COMPLETED")
        assert (operation.from_version, operation.to_version) == ("1.1.0", "1.0.0")
        # What 1.1.0 ran with is kept with it, for going forward again.
        kept = {v.version: v for v in registry.list_kept_versions(NOTES)}
        assert kept["1.1.0"].settings == {"color": "green", "font": "mono"}
        assert kept["1.1.0"].replaced_at is not None and kept["1.0.0"].replaced_at is None
        assert diagnose(registry) == []
    assert leftovers(paths.root) == []

    text = run_cli(paths.root, "versions", NOTES).stdout
    assert "Held: Rolled back from 1.1.0 to 1.0.0." in text
    released = run_cli(paths.root, "release", NOTES, "--json")
    assert json.loads(released.stdout) == {"id": NOTES, "held": False}

    with open_data_folder(paths) as registry:
        extension = registry.get_extension(NOTES)
        assert extension is not None
        assert (extension.held, extension.hold_reason, extension.held_at) == (False, None, None)
        # Forward again to the kept 1.1.0: its files and the settings it had.
        record = Installer(registry).rollback(NOTES, "1.1.0")
        assert record.status == "COMPLETED", record.error
        assert folder_tree(folder) == archive_tree(zips["1.1.0"])
        assert registry.get_config(NOTES) == {"color": "green", "size": 1, "font": "mono"}
        assert diagnose(registry) == []


def test_rollback_to_a_version_that_is_not_kept_is_refused_plainly(upgraded: DataPaths) -> None:
    with open_data_folder(upgraded) as registry:
        before = snapshot(registry)
    refused = one_line_failure(run_cli(upgraded.root, "rollback", "--yes", "--to", "0.9.0", NOTES))
    assert "No archive of Notes 0.9.0 is kept, so it cannot be rolled back to." in refused
    assert "Kept earlier versions: 1.0.0." in refused
    with open_data_folder(upgraded) as registry:
        assert snapshot(registry) == before
        [operation] = registry.list_operations(limit=1)
        assert (operation.kind, operation.status) == ("ROLLBACK", "FAILED")
        assert diagnose(registry) == []


def test_a_refused_rollback_names_the_kept_versions_in_version_order(
    paths: DataPaths, tmp_path: Path
) -> None:
    folder = tmp_path / "many"
    with open_data_folder(paths) as registry:
        registry.set_preferences(Preferences(keep_versions=5))
        for version in ("1.2.0", "1.10.0", "1.11.0"):
            install(registry, build_notes(folder, version))
        record = Installer(registry).rollback(NOTES, "1.0.0")
        assert record.error is not None and "Kept earlier versions: 1.2.0, 1.10.0." in (
            record.error
        )
        installed = Installer(registry).rollback(NOTES, "1.11.0")
        assert installed.error == (
            "Notes 1.11.0 is the installed version, so there is nothing to roll back. Nothing "
            "was changed."
        )
        extension = registry.get_extension(NOTES)
        assert extension is not None and (extension.version, extension.held) == ("1.11.0", False)


def test_rollback_with_no_earlier_version_or_no_extension_is_refused(
    paths: DataPaths, zips: dict[str, Path]
) -> None:
    with open_data_folder(paths) as registry:
        install(registry, zips["1.0.0"])
        before = snapshot(registry)
        record = Installer(registry).rollback(NOTES)
        assert record.status == "FAILED"
        assert record.error == (
            "Notes 1.0.0 has no earlier version kept to roll back to. Install the version you "
            "want from its zip file instead."
        )
        assert snapshot(registry) == before
        missing = Installer(registry).rollback("example.nothing")
        assert missing.error == "The extension 'example.nothing' is not installed."


def test_a_kept_archive_gone_missing_refuses_the_rollback_and_changes_nothing(
    upgraded: DataPaths, zips: dict[str, Path]
) -> None:
    archive = upgraded.kept_archive(sha256_of(zips["1.0.0"].read_bytes()))
    archive.unlink()
    with open_data_folder(upgraded) as registry:
        before = snapshot(registry)
    refused = one_line_failure(run_cli(upgraded.root, "rollback", "--yes", NOTES))
    assert f"The kept archive of Notes 1.0.0 ({archive}) is missing" in refused
    assert "Nothing was changed" in refused
    with open_data_folder(upgraded) as registry:
        assert snapshot(registry) == before
        # The doctor says so, and its repair forgets the version that cannot come back.
        [finding] = diagnose(registry)
        assert "kept archive of example.notes 1.0.0" in finding.problem and finding.repairable
        repair(registry)
        assert diagnose(registry) == []
        assert kept_versions(registry) == ["1.1.0"]
        record = Installer(registry).rollback(NOTES)
        assert record.error is not None and "has no earlier version kept" in record.error
    listed = json.loads(run_cli(upgraded.root, "versions", NOTES, "--json").stdout)
    assert [row["version"] for row in listed] == ["1.1.0"]


@pytest.mark.parametrize("replacement", ["not a zip", "another 1.0.0"])
def test_a_kept_archive_changed_on_disk_is_not_rolled_back_to(
    upgraded: DataPaths, zips: dict[str, Path], tmp_path: Path, replacement: str
) -> None:
    archive = upgraded.kept_archive(sha256_of(zips["1.0.0"].read_bytes()))
    if replacement == "not a zip":
        archive.write_bytes(b"no longer a zip")
    else:  # a valid zip of the same version, with a file the kept one did not have
        other = build_notes(tmp_path / "other", "1.0.0", files={"added.txt": b"not kept"})
        archive.write_bytes(other.read_bytes())
    with open_data_folder(upgraded) as registry:
        before = snapshot(registry)
        record = Installer(registry).rollback(NOTES)
        assert record.status == "FAILED"
        assert record.error == (
            f"The kept archive of Notes 1.0.0 ({archive}) was changed after it was kept, so it "
            "cannot be rolled back to. Nothing was changed; install 1.0.0 from its zip file "
            "instead."
        )
        assert snapshot(registry) == before


# -- what is kept --------------------------------------------------------------------------------


def test_the_installed_version_and_two_earlier_ones_are_kept_by_default(
    paths: DataPaths, zips: dict[str, Path], tmp_path: Path
) -> None:
    other = build_notes(tmp_path / "other", "1.0.0", extension_id="example.other")
    with open_data_folder(paths) as registry:
        assert registry.preferences() == Preferences(keep_versions=2)
        install(registry, other)
        for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
            install(registry, zips[version])
        expected = {sha256_of(zips[v].read_bytes()) for v in ("1.1.0", "1.2.0", "1.3.0")}
        expected.add(sha256_of(other.read_bytes()))
        assert kept_files(paths) == sorted(f"{digest}.zip" for digest in expected)
        assert kept_versions(registry) == ["1.1.0", "1.2.0", "1.3.0"]
        assert kept_versions(registry, "example.other") == ["1.0.0"]
        # Each kept file is the archive it names, byte for byte.
        for version in ("1.1.0", "1.2.0", "1.3.0"):
            kept = paths.kept_archive(sha256_of(zips[version].read_bytes()))
            assert kept.read_bytes() == zips[version].read_bytes()
        assert over_retention(registry).dropped == ()
        assert diagnose(registry) == []


def test_reinstalling_the_same_archive_keeps_one_copy(
    paths: DataPaths, zips: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "elsewhere" / "same-bytes.zip"
    copy.parent.mkdir()
    copy.write_bytes(zips["1.0.0"].read_bytes())
    with open_data_folder(paths) as registry:
        install(registry, zips["1.0.0"])
        install(registry, zips["1.0.0"], allow_reinstall=True)
        install(registry, copy, allow_reinstall=True)
        assert kept_files(paths) == [f"{sha256_of(copy.read_bytes())}.zip"]
        [kept] = registry.list_kept_versions()
        assert (kept.version, kept.origin) == ("1.0.0", str(copy))
        assert diagnose(registry) == []


def test_a_small_keep_bytes_drops_the_oldest_versions_first(
    paths: DataPaths, tmp_path: Path
) -> None:
    folder = tmp_path / "sized"
    # 1.0.0 is small: it would still fit after 1.1.0 does not, yet it is older.
    sizes = {"1.0.0": 0, "1.1.0": 20_000, "1.2.0": 20_000, "1.3.0": 20_000, "1.4.0": 0}
    zips = {v: build_notes(folder, v, padding=size) for v, size in sizes.items()}
    with open_data_folder(paths) as registry:
        registry.set_preferences(Preferences(keep_versions=10, keep_bytes=45_000))
        for version in sizes:
            install(registry, zips[version])
        # Newest first: 1.3.0 and 1.2.0 fit in 45 kB, 1.1.0 does not, and so nothing older.
        assert kept_versions(registry) == ["1.2.0", "1.3.0", "1.4.0"]
        assert kept_files(paths) == sorted(
            f"{sha256_of(zips[v].read_bytes())}.zip" for v in ("1.2.0", "1.3.0", "1.4.0")
        )

        # Smaller again, through the command line: only the newest earlier version fits.
        registry.close()
    changed = run_cli(paths.root, "preferences", "keep_bytes=30000", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["keep_bytes"] == 30_000
    with open_data_folder(paths) as registry:
        assert kept_versions(registry) == ["1.3.0", "1.4.0"]
        assert len(kept_files(paths)) == 2
        # Nothing is ever too big to keep the installed version's archive.
        registry.set_preferences(Preferences(keep_versions=10, keep_bytes=0))
        assert [v.version for v in over_retention(registry).dropped] == ["1.3.0"]
        assert diagnose(registry) == []


def test_keep_versions_zero_keeps_only_the_installed_archive(
    paths: DataPaths, zips: dict[str, Path]
) -> None:
    with open_data_folder(paths) as registry:
        for version in ("1.0.0", "1.1.0", "1.2.0"):
            install(registry, zips[version])
    changed = run_cli(paths.root, "preferences", "keep_versions=0")
    assert changed.returncode == 0, changed.stderr
    with open_data_folder(paths) as registry:
        assert kept_versions(registry) == ["1.2.0"]
        assert kept_files(paths) == [f"{sha256_of(zips['1.2.0'].read_bytes())}.zip"]
        assert unreferenced_archives(registry) == []
        record = Installer(registry).rollback(NOTES)
        assert record.error is not None and "no earlier version kept" in record.error
    refused = run_cli(paths.root, "preferences", "keep_versions=-1")
    assert one_line_failure(refused).endswith(
        "The preference keep_versions must be 0 or more (got '-1')."
    )


def test_an_uninstall_keeps_the_kept_versions_and_their_settings(
    upgraded: DataPaths, zips: dict[str, Path]
) -> None:
    with open_data_folder(upgraded) as registry:
        files_before = kept_files(upgraded)
        assert Installer(registry).uninstall(NOTES).status == "COMPLETED"
        assert registry.get_extension(NOTES) is None
        assert kept_files(upgraded) == files_before
        kept = {v.version: v for v in registry.list_kept_versions(NOTES)}
        assert set(kept) == {"1.0.0", "1.1.0"}
        assert kept["1.1.0"].settings == {"color": "green", "font": "mono"}
        assert kept["1.1.0"].replaced_at is not None
        assert diagnose(registry) == []
    listed: list[dict[str, Any]] = json.loads(
        run_cli(upgraded.root, "versions", NOTES, "--json").stdout
    )
    assert {(row["version"], row["installed"], row["archive_present"]) for row in listed} == {
        ("1.0.0", False, True),
        ("1.1.0", False, True),
    }
    # Installing again afterwards does not copy an archive that is kept already.
    with open_data_folder(upgraded) as registry:
        install(registry, zips["1.1.0"])
        assert kept_files(upgraded) == files_before
        assert diagnose(registry) == []


def test_a_kept_version_that_no_longer_fits_the_app_is_not_rolled_back_to(
    paths: DataPaths, tmp_path: Path
) -> None:
    folder = tmp_path / "fits"
    old = build_notes(folder, "1.0.0", max_app_version="0.1.0")
    new = build_notes(folder, "1.1.0")
    with open_data_folder(paths, app_version="0.0.9") as registry:
        for archive in (old, new):
            record = Installer(registry, app_version="0.0.9").install(archive)
            assert record.status == "COMPLETED", record.error
    with open_data_folder(paths, app_version="0.1.0") as registry:
        before = snapshot(registry)
        record = Installer(registry, app_version="0.1.0").rollback(NOTES)
        assert record.status == "FAILED"
        assert record.error is not None and "before 0.1.0 only" in record.error
        assert snapshot(registry) == before


def test_an_install_that_fails_at_its_commit_leaves_no_archive_behind(
    paths: DataPaths, zips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_data_folder(paths) as registry:
        install(registry, zips["1.0.0"])
        before = snapshot(registry)

        def refuse(*args: object, **kwargs: object) -> None:
            raise InstallRefusedError("Notes changed in the registry while it was installed.")

        def fail_the_commit(install_id: int, step: str) -> None:
            if step == "Recording in the registry":
                monkeypatch.setattr(registry, "commit_install", refuse)

        record = Installer(registry, on_step=fail_the_commit).install(zips["1.1.0"])
        assert (record.status, record.error) == (
            "FAILED",
            "Notes changed in the registry while it was installed.",
        )
        monkeypatch.undo()
        assert snapshot(registry) == before
        assert unreferenced_archives(registry) == []
