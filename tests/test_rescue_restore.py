"""What a rescue restores or rebuilds must be compared with the files on disk, and a registry
whose tables are not what its schema version says is something to rescue, not "not migrated".
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import migrations.runner as runner
from examples.build_examples import build_all
from registry.doctor import diagnose, repair
from registry.errors import RegistryError, RegistryNeedsRescueError
from registry.installer import Installer, InstallOptions
from registry.paths import DataPaths
from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup
from registry.startup import open_data_folder
from registry.version import APP_VERSION
from tests.conftest import install_examples, run_cli

ANYTHING = InstallOptions(allow_reinstall=True, allow_downgrade=True)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


def break_registry(paths: DataPaths) -> None:
    paths.database.write_bytes(b"overwritten by something else\n" * 100)
    for companion in paths.root.glob("registry.db-*"):
        companion.unlink()


# -- 5. a restored backup is compared with the versions on disk ----------------------------------


@pytest.fixture
def upgraded_since_the_backup(v1_paths: DataPaths, examples: dict[str, Path]) -> DataPaths:
    """The schema-1 registry (hello-world 1.0.0, word-count 1.2.0 disabled, settings "hello from
    v1") is upgraded at launch, which backs it up; then hello-world 1.1.0 is installed over
    1.0.0 and word-count 1.2.0 again; then the registry is lost."""
    with open_data_folder(v1_paths) as registry:
        installer = Installer(registry, APP_VERSION)
        for name in ("hello-world-1.1", "word-count"):
            record = installer.install(examples[name], options=ANYTHING)
            assert record.status == "COMPLETED", record.error
    assert len(list(v1_paths.backups.glob("registry-v1-*.db"))) == 1
    break_registry(v1_paths)
    return v1_paths


def test_a_restore_names_each_extension_whose_folder_holds_another_version(
    upgraded_since_the_backup: DataPaths,
) -> None:
    paths = upgraded_since_the_backup
    result = restore_latest_backup(paths)
    said = "\n".join(result.actions)
    assert "The restored registry matches the extensions on disk." not in said
    assert (
        "Hello World (example.hello-world): the registry says 1.0.0, the folder holds 1.1.0."
        in result.actions
    ), said
    assert "example.word-count" not in said.split("Restored the backup")[-1]  # same version


def test_the_doctor_reports_a_version_mismatch_and_repair_records_the_folder(
    upgraded_since_the_backup: DataPaths,
) -> None:
    paths = upgraded_since_the_backup
    restore_latest_backup(paths)
    with open_data_folder(paths) as registry:
        [finding] = diagnose(registry)
        assert finding.problem == (
            "Hello World (example.hello-world): the registry says 1.0.0, the folder holds 1.1.0."
        )
        assert finding.repairable and "settings" in finding.advice
        done = repair(registry)
        assert any("example.hello-world 1.1.0" in line for line in done), done
        assert diagnose(registry) == []
        hello = registry.get_extension("example.hello-world")
        assert hello is not None and hello.version == "1.1.0"
        manifest = json.loads(
            (paths.extensions / "example.hello-world" / "manifest.json").read_text()
        )
        assert hello.manifest == manifest
        assert hello.files is not None and ("manifest.json", len(json.dumps(manifest)) > 0)
        # Settings and enabled states are the backup's, untouched by the repair.
        assert registry.get_config("example.hello-world")["greeting"] == "hello from v1"
        word_count = registry.get_extension("example.word-count")
        assert word_count is not None and not word_count.enabled
        [newest] = registry.list_operations(limit=1)
        assert (newest.kind, newest.from_version, newest.to_version) == (
            "UPGRADE",
            "1.0.0",
            "1.1.0",
        )
        assert newest.status == "COMPLETED" and "doctor" in (newest.error or "")


def test_the_command_line_doctor_after_a_restore(upgraded_since_the_backup: DataPaths) -> None:
    paths = upgraded_since_the_backup
    restored = run_cli(paths.root, "rescue", "--restore-backup")
    assert restored.returncode == 0, restored.stderr
    assert "the registry says 1.0.0, the folder holds 1.1.0" in restored.stdout
    unhealthy = run_cli(paths.root, "doctor")
    assert unhealthy.returncode == 1
    assert "the registry says 1.0.0, the folder holds 1.1.0" in unhealthy.stdout
    assert run_cli(paths.root, "doctor", "--repair").returncode == 0
    listed = run_cli(paths.root, "list")
    assert "example.hello-world" in listed.stdout and "1.1.0" in listed.stdout


# -- 8. a tampered or partial schema is something to rescue --------------------------------------


@pytest.fixture
def installed(paths: DataPaths, examples: dict[str, Path]) -> DataPaths:
    return install_examples(paths, examples)


def tamper(database: Path, *statements: str) -> None:
    connection = sqlite3.connect(database)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()
    # The schema version still says the latest.
    version = sqlite3.connect(database).execute("PRAGMA user_version").fetchone()[0]
    assert version == runner.latest_version()


@pytest.mark.parametrize(
    ("statements", "named"),
    [
        (("DROP TABLE extension_configs",), "the table extension_configs is missing"),
        (("ALTER TABLE extensions DROP COLUMN files",), "the column extensions.files is missing"),
    ],
    ids=["dropped-table", "dropped-column"],
)
def test_a_schema_that_lacks_a_table_or_column_is_reported_and_rescued(
    installed: DataPaths, statements: tuple[str, ...], named: str
) -> None:
    paths = installed
    tamper(paths.database, *statements)

    with pytest.raises(RegistryNeedsRescueError) as caught:
        open_data_folder(paths)
    message = str(caught.value)
    assert named in message and "extension-manager rescue" in message, message
    assert "not been migrated" not in message and "Start the app once" not in message

    line = run_cli(paths.root, "list").stderr.strip()
    assert named in line and "Traceback" not in line

    options = rescue_options(paths)
    assert options.needed and named in (options.problem or "")
    result = rebuild_from_disk(paths, APP_VERSION)
    assert any(line.startswith("Re-registered example.hello-world") for line in result.actions)
    assert len(list(paths.root.glob("registry.db.damaged-*Z"))) == 1
    with open_data_folder(paths) as registry:
        assert [e.id for e in registry.list_extensions()] == [
            "example.hello-world",
            "example.word-count",
        ]
        assert diagnose(registry) == []


def test_a_partial_schema_is_restored_from_the_newest_complete_backup(
    installed: DataPaths,
) -> None:
    paths = installed
    good = runner.backup_database(paths.database, paths.backups, runner.latest_version())
    tamper(paths.database, "DROP TABLE extension_configs")
    # A newer backup of the tampered file: it passes SQLite's own checks, but is no backup.
    partial = runner.backup_database(paths.database, paths.backups, runner.latest_version())
    assert partial != good

    options = rescue_options(paths)
    assert options.needed and options.backup is not None and options.backup.path == good
    result = restore_latest_backup(paths)
    assert any(str(good) in line for line in result.actions)
    with open_data_folder(paths) as registry:
        assert registry.get_config("example.hello-world")["greeting"] == "Hi"
        assert diagnose(registry) == []


def test_a_healthy_registry_has_every_table_and_column_its_steps_create(
    installed: DataPaths,
) -> None:
    status = runner.read_status(installed.database)
    assert status.version == runner.latest_version()
    with pytest.raises(RegistryError, match="does not need rescuing"):
        rebuild_from_disk(installed, APP_VERSION)
