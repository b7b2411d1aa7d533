"""Interrupted operations are recovered at the next launch; the doctor finds and fixes drift."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import registry.installer as installer_module
from examples.build_examples import build_all
from registry.doctor import diagnose, installed_files, repair
from registry.installer import COMMITTED, NEW_VERSION_MOVED_IN, OLD_VERSION_MOVED_ASIDE, Installer
from registry.paths import DataPaths
from registry.recovery import INTERRUPTED, recover_interrupted
from registry.startup import open_data_folder
from registry.store import Registry
from registry.version import APP_VERSION
from registry.vocabulary import OperationKind
from tests.conftest import REPO_ROOT, run_cli


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


def dead_process_id() -> int:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


KILL_SCRIPT = """
import sys, threading
sys.path.insert(0, {root!r})
from pathlib import Path
from registry import open_registry
from registry.installer import Installer, InstallOptions

def stop_at(install_id, step):
    if step == {step!r}:
        print("reached", flush=True)
        threading.Event().wait()

registry = open_registry(Path({data!r}))
installer = Installer(registry, on_step=stop_at)
if {archive!r}:
    installer.install(Path({archive!r}), options=InstallOptions(True, True))
else:
    installer.uninstall("example.hello-world")
print("finished without reaching the step", flush=True)
"""


def kill_at(step: str, data: Path, archive: Path | None) -> None:
    """Run one operation in a new process and kill -9 it the moment it reaches ``step``."""
    script = KILL_SCRIPT.format(
        root=str(REPO_ROOT), step=step, data=str(data), archive=str(archive or "")
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert line == "reached"


# Every window of the swap protocol, and what the next launch must find: before the registry
# commit the old state exactly (the operation interrupted), after it the new state.
KILL_WINDOWS = [
    ("Extracting files", "hello-world-1.1", "rolled back"),
    (OLD_VERSION_MOVED_ASIDE, "hello-world-1.1", "rolled back"),
    (NEW_VERSION_MOVED_IN, "hello-world-1.1", "rolled back"),
    ("Recording in the registry", "hello-world-1.1", "rolled back"),
    (COMMITTED, "hello-world-1.1", "kept"),
    (NEW_VERSION_MOVED_IN, "word-count", "rolled back"),
    (COMMITTED, "word-count", "kept"),
    (OLD_VERSION_MOVED_ASIDE, None, "rolled back"),
    (COMMITTED, None, "kept"),
]


@pytest.mark.parametrize(
    ("step", "archive_name", "outcome"),
    KILL_WINDOWS,
    ids=[f"{name or 'uninstall'}-{step.replace(' ', '-')}" for step, name, _ in KILL_WINDOWS],
)
def test_kill_9_is_recovered_at_next_launch(
    paths: DataPaths,
    examples: dict[str, Path],
    step: str,
    archive_name: str | None,
    outcome: str,
) -> None:
    with open_data_folder(paths) as registry:
        assert Installer(registry).install(examples["hello-world"]).status == "COMPLETED"
    hello = paths.extensions / "example.hello-world"
    files_before = installed_files(hello)

    kill_at(step, paths.root, examples[archive_name] if archive_name else None)

    registry = open_data_folder(paths)
    try:
        newest = registry.list_operations(limit=1)[0]
        extensions = [(e.id, e.version) for e in registry.list_extensions()]
        if outcome == "rolled back":
            assert [op.install_id for op in registry.launch.interrupted] == [newest.install_id]
            assert (newest.status, newest.error) == ("FAILED", INTERRUPTED)
            assert registry.launch.messages()[-1].endswith("was interrupted and rolled back.")
            # The old state, exactly: hello-world 1.0.0 registered and on disk, nothing else.
            assert extensions == [("example.hello-world", "1.0.0")]
            assert installed_files(hello) == files_before
            assert sorted(p.name for p in paths.extensions.iterdir()) == ["example.hello-world"]
        else:
            assert registry.launch.interrupted == ()
            assert newest.status == "COMPLETED"
            expected = {
                "hello-world-1.1": [("example.hello-world", "1.1.0")],
                "word-count": [("example.hello-world", "1.0.0"), ("example.word-count", "1.2.0")],
                None: [],
            }[archive_name]
            assert sorted(extensions) == expected
        assert list(paths.staging.iterdir()) == []
        assert list(paths.trash.iterdir()) == []
        assert diagnose(registry) == []
    finally:
        registry.close()


def test_operations_of_a_live_process_are_left_alone(registry: Registry) -> None:
    mine = registry.create_operation("running.zip")
    report = recover_interrupted(registry)
    assert report.failed_operations == []
    assert registry.get_operation(mine).status == "INSTALLING"


def test_operation_of_a_dead_process_with_a_half_swapped_upgrade_is_rolled_back(
    registry: Registry, examples: dict[str, Path]
) -> None:
    Installer(registry, APP_VERSION).install(examples["hello-world"])
    paths = registry.paths
    hello = paths.extensions / "example.hello-world"
    before = installed_files(hello)
    # Leave exactly what a crash between swap and commit leaves behind.
    install_id = registry.create_operation(
        "hello-world-1.1.zip", extension_id="example.hello-world"
    )
    registry.update_operation(install_id, owner_pid=dead_process_id(), staging_dir="x")
    (paths.staging / f"op-{install_id}").mkdir()
    hello.rename(paths.trash / f"op-{install_id}-example.hello-world")
    hello.mkdir()
    (hello / "half-new.txt").write_text("new version")

    report = recover_interrupted(registry)
    assert report.failed_operations == [install_id]
    assert report.restored_extensions == ["example.hello-world"]
    assert installed_files(hello) == before
    assert diagnose(registry) == []


def test_doctor_reports_each_kind_of_drift_and_repairs_the_safe_ones(
    registry: Registry, examples: dict[str, Path]
) -> None:
    installer = Installer(registry, APP_VERSION)
    for name in ("hello-world", "word-count"):
        assert installer.install(examples[name]).status == "COMPLETED"
    assert diagnose(registry) == []
    paths = registry.paths
    shutil.rmtree(paths.extensions / "example.word-count")
    (paths.extensions / "example.hello-world" / "greeting.txt").write_text("tampered!!")
    (paths.extensions / "stray-folder").mkdir()
    (paths.staging / "op-9999").mkdir()
    stuck = registry.create_operation("stuck.zip")
    registry.update_operation(stuck, owner_pid=dead_process_id())

    problems = [finding.problem for finding in diagnose(registry)]
    assert any("example.word-count" in p and "missing" in p for p in problems)
    assert any("do not match" in p and "greeting.txt" in p for p in problems)
    assert any("stray-folder" in p for p in problems)
    assert any("op-9999" in p for p in problems)
    assert any(f"Operation {stuck}" in p for p in problems)

    done = repair(registry)
    assert done
    remaining = diagnose(registry)
    # Changed files cannot be repaired safely: the advice is to reinstall. A missing folder is
    # not repaired either: the extension stays registered with its settings until the person
    # reinstalls or uninstalls it.
    assert [f.repairable for f in remaining] == [False, False]
    changed, missing = remaining
    assert "example.word-count" in missing.problem and "settings are kept" in missing.advice
    assert "Reinstall" in changed.advice
    assert registry.get_extension("example.word-count") is not None
    assert registry.get_operation(stuck).status == "FAILED"
    orphans = list((paths.root / "orphans").iterdir())
    assert [o.name.startswith("stray-folder") for o in orphans] == [True]


def test_cli_install_json_doctor_and_exit_codes(tmp_path: Path, examples: dict[str, Path]) -> None:
    data = tmp_path / "data"
    refused = run_cli(data, "install", str(examples["hello-world"]))
    assert refused.returncode == 2 and "--yes" in refused.stderr

    installed = run_cli(data, "install", "--yes", "--json", str(examples["hello-world"]))
    assert installed.returncode == 0, installed.stderr
    [record] = json.loads(installed.stdout)
    assert (record["status"], record["extension_id"]) == ("COMPLETED", "example.hello-world")

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    failed = run_cli(data, "install", "--yes", str(broken))
    assert failed.returncode == 1 and "is not a zip archive" in failed.stderr

    assert run_cli(data, "doctor").returncode == 0
    shutil.rmtree(data / "extensions" / "example.hello-world")
    unhealthy = run_cli(data, "doctor", "--json")
    assert unhealthy.returncode == 1
    assert json.loads(unhealthy.stdout)["healthy"] is False
    # The repair keeps a registered extension whose folder is gone (and its settings): only
    # the person decides to forget it.
    kept = run_cli(data, "doctor", "--repair")
    assert kept.returncode == 1 and "settings are kept" in kept.stdout
    forgotten = run_cli(data, "uninstall", "--yes", "example.hello-world")
    assert forgotten.returncode == 0, forgotten.stderr
    assert run_cli(data, "doctor").returncode == 0

    history = run_cli(data, "history", "--json")
    kinds = [(op["kind"], op["status"]) for op in json.loads(history.stdout)]
    assert kinds[0] == ("UNINSTALL", "COMPLETED") and ("INSTALL", "FAILED") in kinds


def test_a_dead_operation_is_recovered_before_another_changes_the_same_extension(
    registry: Registry, examples: dict[str, Path]
) -> None:
    """Without this, the next launch would put the dead operation's old version back over the
    newer one that was installed and recorded meanwhile."""
    installer = Installer(registry, APP_VERSION)
    assert installer.install(examples["hello-world"]).status == "COMPLETED"
    hello = registry.paths.extensions / "example.hello-world"
    # A process upgrading hello-world died between moving the old version away and the commit.
    dead = registry.create_operation("elsewhere.zip", extension_id="example.hello-world")
    registry.update_operation(dead, owner_pid=dead_process_id(), staging_dir="x")
    hello.rename(registry.paths.trash / f"op-{dead}-example.hello-world")

    upgraded = installer.install(examples["hello-world-1.1"])
    assert upgraded.status == "COMPLETED", upgraded.error
    assert registry.get_operation(dead).status == "FAILED"
    recover_interrupted(registry)  # the next launch
    extension = registry.get_extension("example.hello-world")
    assert extension is not None and extension.version == "1.1.0"
    assert json.loads((hello / "manifest.json").read_text())["version"] == "1.1.0"
    assert diagnose(registry) == []


def test_a_stale_trash_is_never_restored_over_a_later_completed_change(
    registry: Registry, examples: dict[str, Path]
) -> None:
    installer = Installer(registry, APP_VERSION)
    assert installer.install(examples["hello-world"]).status == "COMPLETED"
    dead = registry.create_operation("elsewhere.zip", extension_id="example.hello-world")
    registry.update_operation(dead, owner_pid=dead_process_id())
    stale = registry.paths.trash / f"op-{dead}-example.hello-world"
    shutil.copytree(registry.paths.extensions / "example.hello-world", stale)
    # A later operation on the same extension committed (recorded directly, as another
    # process's would be).
    registry.record_completed_operation("example.hello-world", OperationKind.REINSTALL, "test")

    report = recover_interrupted(registry)
    assert report.restored_extensions == []
    assert not stale.exists()
    assert diagnose(registry) == []


def test_a_cleanup_failure_after_the_commit_keeps_the_operation_completed(
    registry: Registry, examples: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    installer = Installer(registry, APP_VERSION)
    assert installer.install(examples["hello-world"]).status == "COMPLETED"

    def cannot_remove(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(installer_module, "remove_tree", cannot_remove)
    upgraded = installer.install(examples["hello-world-1.1"])
    assert (upgraded.status, upgraded.error) == ("COMPLETED", None)
    removed = installer.uninstall("example.hello-world")
    assert (removed.status, removed.error) == ("COMPLETED", None)
    monkeypatch.undo()
    recover_interrupted(registry)  # the next launch removes what was left
    assert list(registry.paths.trash.iterdir()) == []


def test_repair_leaves_an_extension_that_a_running_install_is_changing_alone(
    registry: Registry, examples: dict[str, Path]
) -> None:
    swapped, go_on = threading.Event(), threading.Event()

    def pause_before_commit(install_id: int, step: str) -> None:
        if step == "Recording in the registry":
            swapped.set()
            assert go_on.wait(timeout=60)

    installer = Installer(registry, APP_VERSION, on_step=pause_before_commit)
    results = []

    def install() -> None:
        try:
            results.append(installer.install(examples["word-count"]))
        finally:
            registry.close_thread_connection()

    worker = threading.Thread(target=install)
    worker.start()
    try:
        assert swapped.wait(timeout=60)
        assert diagnose(registry) == []  # in flight is not a problem
        assert repair(registry) == []
    finally:
        go_on.set()
        worker.join(timeout=60)
    assert results[0].status == "COMPLETED", results[0].error
    assert [e.id for e in registry.list_extensions()] == ["example.word-count"]
    assert diagnose(registry) == []
