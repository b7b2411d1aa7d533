"""The install pipeline end to end: registry rows, files on disk, refusals, failures, cancel."""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from pathlib import Path

import peewee
import pytest

from examples.build_examples import build_all
from registry.doctor import diagnose, installed_files
from registry.installer import (
    EXTRACT_END,
    EXTRACT_START,
    STEP_PROGRESS,
    CancelToken,
    Installer,
    InstallOptions,
    InstallPlan,
)
from registry.store import Registry
from registry.version import APP_VERSION


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = build_all(tmp_path_factory.mktemp("examples"))
    return {path.stem: path for path in built}


@pytest.fixture
def installer(registry: Registry) -> Installer:
    return Installer(registry, APP_VERSION)


def make_extension_zip(
    path: Path,
    manifest: dict[str, object],
    files: dict[str, bytes] | None = None,
    *,
    top_folder: str = "",
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top_folder}manifest.json", json.dumps(manifest))
        for name, data in (files or {}).items():
            archive.writestr(f"{top_folder}{name}", data)
    return path


def manifest(version: str = "1.0.0", **extra: object) -> dict[str, object]:
    return {"id": "test.sample", "name": "Sample", "version": version, **extra}


def assert_clean(registry: Registry) -> None:
    """Nothing left in staging or trash, and the doctor agrees with the registry."""
    assert list(registry.paths.staging.iterdir()) == []
    assert list(registry.paths.trash.iterdir()) == []
    assert diagnose(registry) == []


def test_install_records_everything_and_writes_the_files(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    archive = examples["word-count"]
    record = installer.install(archive)
    assert record.status == "COMPLETED", record.error
    assert (record.progress, record.current_step, record.kind) == (100, "Done", "INSTALL")
    assert record.extension_id == "example.word-count"
    assert (record.from_version, record.to_version) == (None, "1.2.0")
    assert record.archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record.archive_path == str(archive)

    extension = registry.get_extension("example.word-count")
    assert extension is not None and extension.enabled
    folder = registry.paths.extensions / "example.word-count"
    assert extension.install_path == str(folder)
    assert extension.permissions == ("filesystem-read",)
    with zipfile.ZipFile(archive) as source:
        expected = {info.filename: info.file_size for info in source.infolist()}
        for name in expected:
            assert (folder / name).read_bytes() == source.read(name)
    assert installed_files(folder) == expected
    assert record.file_count == len(expected)
    assert record.total_bytes == sum(expected.values())
    assert_clean(registry)


def test_single_top_level_folder_is_stripped(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    archive = make_extension_zip(
        tmp_path / "sample-main.zip", manifest(), {"lib/code.txt": b"x"}, top_folder="sample-main/"
    )
    record = installer.install(archive)
    assert record.status == "COMPLETED", record.error
    folder = registry.paths.extensions / "test.sample"
    assert sorted(installed_files(folder)) == ["lib/code.txt", "manifest.json"]


class SteppingClock:
    """A clock that moves ``step`` seconds at every reading, and on each reading notes the
    progress the registry shows at that moment (the throttle reads the clock once per chunk)."""

    def __init__(self, registry: Registry, step: float) -> None:
        self.registry = registry
        self.step = step
        self.now = 1000.0
        self.install_id: int | None = None
        self.seen: list[int] = []

    def __call__(self) -> float:
        if self.install_id is not None:
            self.seen.append(self.registry.get_operation(self.install_id).progress)
        self.now += self.step
        return self.now


def install_with_clock(registry: Registry, archive: Path, step: float) -> SteppingClock:
    clock = SteppingClock(registry, step)
    installer = Installer(registry, APP_VERSION, clock=clock)
    clock.install_id = installer.begin(archive)
    record = installer.install(
        archive, install_id=clock.install_id, options=InstallOptions(allow_reinstall=True)
    )
    assert record.status == "COMPLETED", record.error
    assert record.progress == 100
    assert clock.seen == sorted(clock.seen)
    return clock


def test_progress_writes_are_throttled_by_the_clock(registry: Registry, tmp_path: Path) -> None:
    # Small enough to be extracted on one thread, which reports after every chunk.
    payload = {f"data/{n}.bin": bytes([n]) * 100_000 for n in range(40)}
    archive = make_extension_zip(tmp_path / "many.zip", manifest(), payload)
    step_values = {0, *STEP_PROGRESS.values()}
    # Time stands still: within 1/20 s nothing but the step changes reaches the registry.
    frozen = install_with_clock(registry, archive, step=0.0)
    assert set(frozen.seen) <= step_values
    # A second passes at every chunk: every chunk's progress is written.
    flowing = install_with_clock(registry, archive, step=1.0)
    between = {value for value in flowing.seen if EXTRACT_START < value < EXTRACT_END}
    assert len(between) >= 10


def test_planning_writes_nothing_and_waits_at_zero(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    archive = examples["word-count"]
    install_id = installer.begin(archive)
    plan = installer.plan(install_id, archive)
    assert isinstance(plan, InstallPlan)
    waiting = registry.get_operation(install_id)
    assert (waiting.status, waiting.progress, waiting.current_step) == (
        "INSTALLING",
        0,
        "Waiting for confirmation",
    )
    assert (waiting.extension_id, waiting.kind, waiting.to_version) == (
        "example.word-count",
        "INSTALL",
        "1.2.0",
    )
    assert list(registry.paths.extensions.iterdir()) == []
    assert list(registry.paths.staging.iterdir()) == []
    record = installer.execute(plan)
    assert record.status == "COMPLETED", record.error
    assert_clean(registry)


def test_a_file_changed_after_planning_is_not_installed(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    archive = make_extension_zip(tmp_path / "sample.zip", manifest("1.0.0"), {"a.txt": b"a"})
    plan = installer.plan(installer.begin(archive), archive)
    assert isinstance(plan, InstallPlan)
    make_extension_zip(archive, manifest("6.6.6"), {"a.txt": b"something else entirely"})
    record = installer.execute(plan)
    assert record.status == "FAILED"
    assert record.error is not None and "changed after it was checked" in record.error
    assert registry.list_extensions() == []
    assert_clean(registry)


def test_a_declined_plan_ends_cancelled(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    archive = examples["hello-world"]
    plan = installer.plan(installer.begin(archive), archive)
    assert isinstance(plan, InstallPlan)
    record = installer.decline(plan.install_id)
    assert (record.status, record.error) == ("CANCELLED", "Cancelled: nothing was changed.")
    assert registry.list_extensions() == []


def test_progress_seen_by_another_reader_never_goes_backwards(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    payload = {f"data/{n}.bin": bytes([n]) * 300_000 for n in range(30)}
    archive = make_extension_zip(tmp_path / "big.zip", manifest(), payload)
    install_id = installer.begin(archive)
    seen: list[int] = []
    worker = threading.Thread(
        target=installer.install, args=(archive,), kwargs={"install_id": install_id}
    )
    worker.start()
    while worker.is_alive():
        seen.append(registry.get_operation(install_id).progress)
    worker.join()
    seen.append(registry.get_operation(install_id).progress)
    assert seen == sorted(seen)
    assert seen[-1] == 100


def test_bad_archive_fails_clearly_and_changes_nothing(
    registry: Registry, installer: Installer, examples: dict[str, Path], tmp_path: Path
) -> None:
    assert installer.install(examples["hello-world"]).status == "COMPLETED"
    folder = registry.paths.extensions / "example.hello-world"
    before = installed_files(folder)
    garbage = tmp_path / "hello-world-2.0.zip"
    garbage.write_bytes(b"PK\x03\x04 this is not really a zip")
    record = installer.install(garbage)
    assert record.status == "FAILED"
    assert record.error is not None and "hello-world-2.0.zip" in record.error
    assert record.current_step == "Failed"
    assert installed_files(folder) == before
    extension = registry.get_extension("example.hello-world")
    assert extension is not None and extension.version == "1.0.0"
    assert_clean(registry)


def test_invalid_manifest_reports_every_problem(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    archive = make_extension_zip(
        tmp_path / "bad.zip", {"id": "Bad ID", "name": "", "version": "1.0", "permissions": ["x"]}
    )
    record = installer.install(archive)
    assert record.status == "FAILED" and record.error is not None
    for field in ("id:", "name:", "version:", "permissions[0]:"):
        assert field in record.error
    assert registry.list_extensions() == []


def test_upgrade_keeps_user_settings_merges_defaults_and_drops_removed(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    assert installer.install(examples["hello-world"]).status == "COMPLETED"
    registry.set_config("example.hello-world", {"greeting": "Howdy", "repeat": 4})
    plans: list[InstallPlan] = []

    def confirm(plan: InstallPlan) -> bool:
        plans.append(plan)
        return True

    record = installer.install(examples["hello-world-1.1"], confirm=confirm)
    assert record.status == "COMPLETED", record.error
    assert (record.kind, record.from_version, record.to_version) == ("UPGRADE", "1.0.0", "1.1.0")
    assert plans[0].change == "Upgrade 1.0.0 → 1.1.0"
    assert plans[0].config_removed == ("repeat",)
    assert plans[0].config_added == ("punctuation",)
    config = registry.get_config("example.hello-world")
    assert config["greeting"] == "Howdy"
    assert "repeat" not in config and "punctuation" in config
    stored = {key for (key,) in registry.fetch_all("SELECT key FROM extension_configs")}
    assert stored == {"greeting"}
    assert_clean(registry)


def test_same_version_and_downgrade_need_explicit_consent(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    assert installer.install(examples["hello-world-1.1"]).status == "COMPLETED"
    again = installer.install(examples["hello-world-1.1"])
    assert again.status == "FAILED" and again.kind == "REINSTALL"
    assert again.error is not None and "already installed" in again.error
    older = installer.install(examples["hello-world"])
    assert older.status == "FAILED" and older.kind == "DOWNGRADE"
    assert older.error is not None and "Downgrade" in older.error

    reinstall = installer.install(
        examples["hello-world-1.1"], options=InstallOptions(allow_reinstall=True)
    )
    assert reinstall.status == "COMPLETED"
    downgrade = installer.install(
        examples["hello-world"], options=InstallOptions(allow_downgrade=True)
    )
    assert downgrade.status == "COMPLETED"
    extension = registry.get_extension("example.hello-world")
    assert extension is not None and extension.version == "1.0.0"
    assert_clean(registry)


def test_declined_confirmation_is_cancelled_and_writes_nothing(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    record = installer.install(examples["word-count"], confirm=lambda plan: False)
    assert record.status == "CANCELLED"
    assert record.error == "Cancelled: nothing was changed."
    assert registry.list_extensions() == []
    assert list(registry.paths.extensions.iterdir()) == []
    assert_clean(registry)


class CancelAfter(CancelToken):
    """Asks to stop after ``checks`` looks, i.e. somewhere in the middle of the extraction."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.remaining = checks

    @property
    def cancelled(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0


def test_cancel_during_extraction_keeps_the_previous_version(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    first = make_extension_zip(tmp_path / "v1.zip", manifest("1.0.0"), {"a.txt": b"one"})
    assert installer.install(first).status == "COMPLETED"
    payload = {f"data/{n}.bin": bytes([n]) * 200_000 for n in range(20)}
    second = make_extension_zip(tmp_path / "v2.zip", manifest("2.0.0"), payload)
    record = installer.install(second, cancel=CancelAfter(12))
    assert record.status == "CANCELLED" and record.error == "Cancelled: nothing was changed."
    extension = registry.get_extension("test.sample")
    assert extension is not None and extension.version == "1.0.0"
    assert (registry.paths.extensions / "test.sample" / "a.txt").read_bytes() == b"one"
    assert_clean(registry)


def test_disk_full_during_commit_puts_the_old_version_back(
    registry: Registry,
    installer: Installer,
    examples: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert installer.install(examples["hello-world"]).status == "COMPLETED"
    folder = registry.paths.extensions / "example.hello-world"
    before = installed_files(folder)

    def disk_full(*args: object, **kwargs: object) -> None:
        # What SQLite raises when the commit's pages do not fit; tests/test_faults.py makes a
        # real one with PRAGMA max_page_count. Here only the rollback of the swap is at stake.
        raise peewee.OperationalError("database or disk is full")

    monkeypatch.setattr(registry, "commit_install", disk_full)
    record = installer.install(examples["hello-world-1.1"])
    assert record.status == "FAILED"
    assert record.error is not None and record.error.startswith("The disk is full")
    assert installed_files(folder) == before
    extension = registry.get_extension("example.hello-world")
    assert extension is not None and extension.version == "1.0.0"
    assert_clean(registry)


def test_incompatible_extension_is_refused(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    archive = make_extension_zip(tmp_path / "future.zip", manifest(min_app_version="99.0.0"))
    record = installer.install(archive)
    assert record.status == "FAILED"
    assert record.error is not None and "needs Extension Manager 99.0.0 or newer" in record.error
    assert registry.list_extensions() == []


@pytest.mark.parametrize(
    ("icon_name", "icon_bytes", "expected"),
    [
        ("missing.png", None, "is not a file in the archive"),
        ("icon.png", b"GIF89a not a png at all....", "is not a PNG image"),
        (
            "icon.png",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x10\x00\x00\x00\x10\x00",
            "4096×4096 pixels",
        ),
    ],
    ids=["missing", "not-png", "too-large"],
)
def test_icon_is_checked_from_its_bytes(
    installer: Installer, tmp_path: Path, icon_name: str, icon_bytes: bytes | None, expected: str
) -> None:
    files = {icon_name: icon_bytes} if icon_bytes is not None else {}
    archive = make_extension_zip(tmp_path / "icon.zip", manifest(icon="icon.png"), files)
    record = installer.install(archive)
    assert record.status == "FAILED"
    assert record.error is not None and expected in record.error


def test_two_installs_at_once_both_succeed(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    results = {}

    def run(name: str) -> None:
        try:
            results[name] = installer.install(examples[name])
        finally:
            registry.database.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("hello-world", "word-count")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in results.values()} == {"COMPLETED"}, results
    assert {e.id for e in registry.list_extensions()} == {
        "example.hello-world",
        "example.word-count",
    }
    assert_clean(registry)


def test_second_install_of_the_same_extension_is_refused_while_one_runs(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    running = registry.create_operation("elsewhere.zip", extension_id="example.hello-world")
    record = installer.install(examples["hello-world"])
    assert record.status == "FAILED"
    assert record.error is not None and f"operation (number {running})" in record.error
    assert registry.get_operation(running).status == "INSTALLING"


def test_uninstall_removes_files_row_and_settings_but_keeps_history(
    registry: Registry, installer: Installer, examples: dict[str, Path]
) -> None:
    installed = installer.install(examples["hello-world"])
    registry.set_config("example.hello-world", {"greeting": "Yo"})
    record = installer.uninstall("example.hello-world")
    assert (record.status, record.kind, record.progress) == ("COMPLETED", "UNINSTALL", 100)
    assert record.from_version == "1.0.0"
    assert registry.get_extension("example.hello-world") is None
    assert not (registry.paths.extensions / "example.hello-world").exists()
    assert registry.scalar("SELECT count(*) FROM extension_configs") == 0
    assert registry.get_operation(installed.install_id).status == "COMPLETED"
    assert_clean(registry)


def test_uninstall_of_unknown_extension_fails_clearly(installer: Installer) -> None:
    record = installer.uninstall("example.nothing")
    assert record.status == "FAILED"
    assert record.error == "The extension 'example.nothing' is not installed."


def test_nothing_is_written_outside_the_data_dir(
    registry: Registry, installer: Installer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest()))
        archive.writestr("../outside/pwned.txt", "gotcha")
    record = installer.install(tmp_path / "evil.zip")
    assert record.status == "FAILED"
    assert list(outside.iterdir()) == []
    assert registry.list_extensions() == []
