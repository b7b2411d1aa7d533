"""What the launch's recovery and the doctor's repair may touch, and what they must leave: a
person's settings, names in ``staging/`` and ``trash/`` the app never made, and an operation
whose owner cannot be confirmed alive, which must not block its extension forever."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from examples.build_examples import build_all
from registry.doctor import diagnose, installed_files, repair
from registry.installer import Installer, InstallOptions
from registry.paths import DataPaths
from registry.recovery import INTERRUPTED, recover_interrupted
from registry.startup import open_data_folder
from registry.store import Registry
from registry.version import APP_VERSION
from tests.test_recovery import dead_process_id

HELLO = "example.hello-world"
ANYTHING = InstallOptions(allow_reinstall=True, allow_downgrade=True)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


@pytest.fixture
def hello(registry: Registry, examples: dict[str, Path]) -> Registry:
    assert Installer(registry, APP_VERSION).install(examples["hello-world"]).status == "COMPLETED"
    return registry


def half_swapped_upgrade(registry: Registry, owner_pid: int) -> int:
    """What a process leaves when it stops between the swap and the commit of an upgrade: the
    old version in the trash, a half-new one in place, the operation still running."""
    paths = registry.paths
    installed = paths.extensions / HELLO
    install_id = registry.create_operation("hello-world-1.1.zip", extension_id=HELLO)
    registry.update_operation(install_id, owner_pid=owner_pid, owner_started=None, staging_dir="x")
    (paths.staging / f"op-{install_id}").mkdir()
    installed.rename(paths.trash / f"op-{install_id}-{HELLO}")
    installed.mkdir()
    (installed / "half-new.txt").write_text("new version")
    return install_id


# -- 6. settings are never deleted; only the app's own names are cleaned up ----------------------


def test_repair_keeps_the_settings_of_an_extension_whose_folder_is_missing(
    hello: Registry, examples: dict[str, Path]
) -> None:
    registry = hello
    registry.set_config(HELLO, {"greeting": "Hi"})
    registry.set_enabled(HELLO, False)
    shutil.rmtree(registry.paths.extensions / HELLO)

    repair(registry)
    kept = registry.get_extension(HELLO)
    assert kept is not None and not kept.enabled
    assert registry.get_config(HELLO)["greeting"] == "Hi"
    # Still a problem, but one only the person can settle: reinstall, or uninstall.
    [finding] = diagnose(registry)
    assert "is missing" in finding.problem and not finding.repairable
    assert "settings are kept" in finding.advice and "uninstall" in finding.advice

    # Installing the same extension again brings its files back, with its settings.
    record = Installer(registry, APP_VERSION).install(examples["hello-world"], options=ANYTHING)
    assert record.status == "COMPLETED", record.error
    assert registry.get_config(HELLO)["greeting"] == "Hi"
    assert diagnose(registry) == []


def test_the_launch_removes_only_what_the_app_made_in_staging_and_trash(hello: Registry) -> None:
    registry = hello
    paths = registry.paths
    [finished] = registry.list_operations(limit=1)
    ours = [paths.staging / f"op-{finished.install_id}", paths.trash / f"op-9999-{HELLO}"]
    for folder in ours:
        folder.mkdir()
        (folder / "left.txt").write_text("left over")
    theirs = [
        paths.staging / "notes.txt",
        paths.staging / "photos",
        paths.trash / "keep-me",
        paths.trash / "op-draft",
        paths.trash / "op-12.bak",
    ]
    for entry in theirs:
        if entry.suffix:
            entry.write_text("mine")
        else:
            entry.mkdir()
            (entry / "inside.txt").write_text("mine")
    registry.close()

    with open_data_folder(paths) as reopened:
        assert not any(folder.exists() for folder in ours)
        assert all(entry.exists() for entry in theirs)
        assert (paths.trash / "keep-me" / "inside.txt").read_text() == "mine"
        # The doctor mentions them, and its repair leaves them too.
        mentioned = [f for f in diagnose(reopened) if "not made by Extension Manager" in f.problem]
        assert len(mentioned) == len(theirs) and not any(f.repairable for f in mentioned)
        repair(reopened)
        assert all(entry.exists() for entry in theirs)


# -- 10. an owner that cannot be confirmed alive -------------------------------------------------


def test_repair_recovers_an_operation_whose_live_pid_has_no_start_time(
    hello: Registry, examples: dict[str, Path]
) -> None:
    """The pid is alive (it is this very process) but no start time was recorded, so whether
    it is the process that started the operation cannot be known: the repair recovers it."""
    registry = hello
    before = installed_files(registry.paths.extensions / HELLO)
    stuck = half_swapped_upgrade(registry, owner_pid=os.getpid())

    problems = [f for f in diagnose(registry) if f"Operation {stuck}" in f.problem]
    assert len(problems) == 1 and problems[0].repairable
    assert "no start time" in problems[0].problem
    done = repair(registry)
    assert f"Marked operation {stuck} as interrupted." in done
    assert (registry.get_operation(stuck).status, registry.get_operation(stuck).error) == (
        "FAILED",
        INTERRUPTED,
    )
    assert installed_files(registry.paths.extensions / HELLO) == before
    assert diagnose(registry) == []
    # And the extension can change again.
    upgraded = Installer(registry, APP_VERSION).install(examples["hello-world-1.1"])
    assert upgraded.status == "COMPLETED", upgraded.error


def test_the_launch_recovers_such_an_operation_once_its_row_is_old(hello: Registry) -> None:
    registry = hello
    paths = registry.paths
    before = installed_files(paths.extensions / HELLO)
    stuck = half_swapped_upgrade(registry, owner_pid=os.getpid())
    # Fresh, it may still be running: a launch leaves it alone.
    assert recover_interrupted(registry).failed_operations == []
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="microseconds")
    registry.database.execute_sql(
        "UPDATE extension_installs SET started_at = ?, updated_at = ? WHERE install_id = ?",
        (an_hour_ago, an_hour_ago, stuck),
    )
    registry.close()

    with open_data_folder(paths) as reopened:
        assert [op.install_id for op in reopened.launch.interrupted] == [stuck]
        assert reopened.get_operation(stuck).status == "FAILED"
        assert installed_files(paths.extensions / HELLO) == before
        assert diagnose(reopened) == []


# -- the recovery's renames reach the disk before the operation is marked failed ----------------


def test_recovery_flushes_the_folders_it_renamed_in_before_marking_the_operation_failed(
    hello: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut cannot be made in a test, so the flushes are observed where they happen:
    every ``fsync`` is recorded with the file it flushed and the operation's status in the
    registry's file at that moment."""
    registry = hello
    paths: DataPaths = registry.paths
    stuck = half_swapped_upgrade(registry, owner_pid=dead_process_id())
    real_fsync = os.fsync
    flushed: list[tuple[str, str]] = []

    def status_on_disk() -> str:
        connection = sqlite3.connect(f"{paths.database.as_uri()}?mode=ro", uri=True)
        try:
            row = connection.execute(
                "SELECT status FROM extension_installs WHERE install_id = ?", (stuck,)
            ).fetchone()
        finally:
            connection.close()
        return str(row[0])

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        flushed.append((str(Path(f"/proc/self/fd/{fd}").readlink()), status_on_disk()))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    report = recover_interrupted(registry)
    monkeypatch.undo()

    assert report.restored_extensions == [HELLO]
    assert registry.get_operation(stuck).status == "FAILED"
    flushed_while_running = {path for path, status in flushed if status == "INSTALLING"}
    assert str(paths.extensions) in flushed_while_running, flushed
    assert str(paths.trash) in flushed_while_running, flushed
