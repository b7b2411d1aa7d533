"""Interrupted operations are recovered at the next launch; the doctor finds and fixes drift."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from examples.build_examples import build_all
from registry.doctor import diagnose, installed_files, repair
from registry.installer import Installer
from registry.paths import DataPaths
from registry.recovery import INTERRUPTED, recover_interrupted
from registry.startup import open_registry
from registry.store import Registry
from tests.conftest import REPO_ROOT

APP_VERSION = "0.1.0"


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
import registry.installer as installer_module
from registry.paths import DataPaths
from registry.startup import open_registry

def stop_here():
    print("reached", flush=True)
    threading.Event().wait()

point = {point!r}
writer = installer_module._ProgressWriter
if point == "extracting":
    writer.extracted = lambda self, written, total: stop_here()
else:
    original_step = writer.step
    def step(self, name, **fields):
        original_step(self, name, **fields)
        if name == "Recording in the registry":
            stop_here()
    writer.step = step

opened = open_registry(DataPaths(Path({data!r})))
installer = installer_module.Installer(opened.registry, "0.1.0")
if {archive!r}:
    installer.install(Path({archive!r}), options=installer_module.InstallOptions(True, True))
else:
    installer.uninstall("example.hello-world")
"""


def kill_at(point: str, data: Path, archive: Path | None) -> None:
    script = KILL_SCRIPT.format(
        root=str(REPO_ROOT), point=point, data=str(data), archive=str(archive or "")
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert line == "reached"


@pytest.mark.parametrize(
    ("point", "archive_name"),
    [
        ("extracting", "hello-world-1.1"),
        ("committing", "hello-world-1.1"),
        ("committing", "word-count"),
        ("committing", None),
    ],
    ids=["upgrade-mid-extraction", "upgrade-after-swap", "install-after-swap", "uninstall"],
)
def test_kill_9_is_recovered_at_next_launch(
    paths: DataPaths, examples: dict[str, Path], point: str, archive_name: str | None
) -> None:
    opened = open_registry(paths)
    assert Installer(opened.registry, APP_VERSION).install(examples["hello-world"]).status == (
        "COMPLETED"
    )
    hello = paths.extensions / "example.hello-world"
    files_before = installed_files(hello)
    opened.registry.close()

    kill_at(point, paths.root, examples[archive_name] if archive_name else None)

    reopened = open_registry(paths)
    registry = reopened.registry
    try:
        assert len(reopened.recovery.failed_operations) == 1
        interrupted = registry.get_operation(reopened.recovery.failed_operations[0])
        assert (interrupted.status, interrupted.error) == ("FAILED", INTERRUPTED)
        # The old state, exactly: hello-world 1.0.0 registered and on disk, nothing else.
        assert [(e.id, e.version) for e in registry.list_extensions()] == [
            ("example.hello-world", "1.0.0")
        ]
        assert installed_files(hello) == files_before
        assert sorted(p.name for p in paths.extensions.iterdir()) == ["example.hello-world"]
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
    # Changed files cannot be repaired safely: the advice is to reinstall.
    assert [f.repairable for f in remaining] == [False]
    assert "Reinstall" in remaining[0].advice
    assert registry.get_extension("example.word-count") is None
    assert registry.get_operation(stuck).status == "FAILED"
    orphans = list((paths.root / "orphans").iterdir())
    assert [o.name.startswith("stray-folder") for o in orphans] == [True]


def run_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    assert run_cli(data, "doctor", "--repair").returncode == 0

    history = run_cli(data, "history", "--json")
    kinds = [(op["kind"], op["status"]) for op in json.loads(history.stdout)]
    assert kinds[0] == ("UNINSTALL", "COMPLETED") and ("INSTALL", "FAILED") in kinds
