"""kill -9 during an update or a rollback, at every named step and swap moment, and in the
middle of a download: the next launch finds one version complete, never a mix, the registry
agreeing with the disk, nothing left in staging/ or trash/, and a healthy doctor."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.doctor import diagnose
from registry.installer import (
    COMMITTED,
    NEW_VERSION_MOVED_IN,
    OLD_VERSION_MOVED_ASIDE,
    Installer,
)
from registry.paths import DataPaths
from registry.recovery import INTERRUPTED
from registry.sources import INDEX, check_updates, write_index
from registry.startup import open_data_folder
from registry.store import DOWNLOAD_STEP
from registry.versions import missing_archives, unreferenced_archives
from tests.conftest import REPO_ROOT, run_cli
from tests.update_sources import (
    NOTES,
    archive_tree,
    build_notes,
    folder_tree,
    leftovers,
    serve_folder,
    sha256_of,
)

CONFIG = {"color": "blue", "size": 1}
SWAP_STEPS = [
    "Reading the archive",
    "Extracting files",
    "Putting the new version in place",
    OLD_VERSION_MOVED_ASIDE,
    NEW_VERSION_MOVED_IN,
    "Recording in the registry",
    COMMITTED,
]

CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from registry import open_registry
from registry.installer import Installer
from registry.sources import check_updates

def stop_at(install_id, step):
    if step == {step!r}:
        print("reached", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

registry = open_registry(Path({data!r}))
installer = Installer(registry, on_step=stop_at)
if {operation!r} == "update":
    [item] = check_updates(registry).available
    record = installer.update(item.offer)
else:
    record = installer.rollback({extension!r})
print("finished without reaching the step:", record.status, record.error, flush=True)
"""


def child_script(data: Path, operation: str, step: str) -> list[str]:
    script = CHILD.format(
        root=str(REPO_ROOT), data=str(data), operation=operation, step=step, extension=NOTES
    )
    return [sys.executable, "-c", script]


def kill_at(data: Path, operation: str, step: str) -> None:
    """Run ``operation`` in a new process that SIGKILLs itself the moment it reaches ``step``."""
    finished = subprocess.run(
        child_script(data, operation, step), capture_output=True, text=True, timeout=120
    )
    assert finished.stdout.strip() == "reached", finished.stdout + finished.stderr
    assert finished.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("published")
    built = {
        "1.0.0": build_notes(folder, "1.0.0", config=CONFIG),
        "1.1.0": build_notes(
            folder,
            "1.1.0",
            config={**CONFIG, "font": "serif"},
            files={f"data/part{n}.txt": bytes([65 + n]) * 3000 for n in range(20)},
        ),
    }
    write_index(folder)
    return built


@pytest.fixture(scope="module")
def source(zips: dict[str, Path]) -> Iterator[str]:
    with serve_folder(zips["1.0.0"].parent) as url:
        yield url + "index.json"


def what_the_kill_left(paths: DataPaths, zips: dict[str, Path]) -> tuple[str | None, list[str]]:
    """Before any launch: the version in the extension's folder (None: no folder), and the
    versions in trash/. Proves the process died where the test says, mid-swap included."""

    def version_of(folder: Path) -> str:
        tree = folder_tree(folder)
        [version] = [v for v, archive in zips.items() if archive_tree(archive) == tree]
        return version

    installed = paths.extensions / NOTES
    trash = sorted(version_of(entry) for entry in paths.trash.iterdir())
    return (version_of(installed) if installed.exists() else None), trash


# Where each step leaves the folders (installed, trash) when the change is from OLD to NEW.
LEFT_AT = {
    DOWNLOAD_STEP: ("OLD", []),
    "Reading the archive": ("OLD", []),
    "Extracting files": ("OLD", []),
    "Putting the new version in place": ("OLD", []),
    OLD_VERSION_MOVED_ASIDE: (None, ["OLD"]),
    NEW_VERSION_MOVED_IN: ("NEW", ["OLD"]),
    "Recording in the registry": ("NEW", ["OLD"]),
    COMMITTED: ("NEW", ["OLD"]),
}


def check_left_at(paths: DataPaths, zips: dict[str, Path], step: str, old: str, new: str) -> None:
    names = {"OLD": old, "NEW": new, None: None}
    installed, trash = LEFT_AT[step]
    assert what_the_kill_left(paths, zips) == (names[installed], [names[t] for t in trash])


def the_version_on_disk(paths: DataPaths, zips: dict[str, Path]) -> str:
    """Which version's archive the installed folder holds, exactly; fails on a mix."""
    tree = folder_tree(paths.extensions / NOTES)
    matching = [version for version, archive in zips.items() if archive_tree(archive) == tree]
    assert len(matching) == 1, f"the folder holds no version exactly: {sorted(tree)}"
    return matching[0]


def check_one_version_complete(
    paths: DataPaths, zips: dict[str, Path], expected: str, *, interrupted: bool
) -> None:
    """What the next launch must find, and what the doctor must agree with."""
    with open_data_folder(paths) as registry:
        newest = registry.list_operations(limit=1)[0]
        if interrupted:
            assert (newest.status, newest.error) == ("FAILED", INTERRUPTED)
            assert [op.install_id for op in registry.launch.interrupted] == [newest.install_id]
            assert registry.launch.messages()[-1].endswith("was interrupted and rolled back.")
        else:
            assert newest.status == "COMPLETED"
            assert registry.launch.interrupted == ()
        extension = registry.get_extension(NOTES)
        assert extension is not None
        assert the_version_on_disk(paths, zips) == expected == extension.version
        assert extension.archive_sha256 == sha256_of(zips[expected].read_bytes())
        assert sorted(p.name for p in paths.extensions.iterdir()) == [NOTES]
        assert leftovers(paths.root) == []
        assert unreferenced_archives(registry) == [] and missing_archives(registry) == []
        assert diagnose(registry) == []


@pytest.mark.parametrize("step", [DOWNLOAD_STEP, *SWAP_STEPS])
def test_kill_9_during_an_update_leaves_one_version_complete(
    paths: DataPaths, zips: dict[str, Path], source: str, step: str
) -> None:
    with open_data_folder(paths) as registry:
        assert Installer(registry).install(zips["1.0.0"]).status == "COMPLETED"
        registry.set_config(NOTES, {"color": "red"})
        registry.add_source(source, INDEX)

    kill_at(paths.root, "update", step)
    check_left_at(paths, zips, step, "1.0.0", "1.1.0")
    if step in (DOWNLOAD_STEP, "Extracting files"):
        assert list(paths.staging.iterdir()) != []

    committed = step == COMMITTED
    expected = "1.1.0" if committed else "1.0.0"
    check_one_version_complete(paths, zips, expected, interrupted=not committed)
    with open_data_folder(paths) as registry:
        assert registry.get_config(NOTES)["color"] == "red"
        kept = sorted(v.version for v in registry.list_kept_versions(NOTES))
        assert kept == (["1.0.0", "1.1.0"] if committed else ["1.0.0"])
        if not committed:
            # Started again from the beginning, the update goes through.
            [item] = check_updates(registry).available
            assert item.offer is not None
            record = Installer(registry).update(item.offer)
            assert record.status == "COMPLETED", record.error
    if not committed:
        check_one_version_complete(paths, zips, "1.1.0", interrupted=False)


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_kill_9_during_a_rollback_leaves_one_version_complete(
    paths: DataPaths, zips: dict[str, Path], step: str
) -> None:
    with open_data_folder(paths) as registry:
        installer = Installer(registry)
        assert installer.install(zips["1.0.0"]).status == "COMPLETED"
        registry.set_config(NOTES, {"color": "red"})
        assert installer.install(zips["1.1.0"]).status == "COMPLETED"
        registry.set_config(NOTES, {"color": "green", "font": "mono"})

    kill_at(paths.root, "rollback", step)
    check_left_at(paths, zips, step, "1.1.0", "1.0.0")

    committed = step == COMMITTED
    expected = "1.0.0" if committed else "1.1.0"
    check_one_version_complete(paths, zips, expected, interrupted=not committed)
    with open_data_folder(paths) as registry:
        extension = registry.get_extension(NOTES)
        assert extension is not None
        # The settings go with the files: never 1.0.0's files with 1.1.0's settings.
        if committed:
            assert registry.get_config(NOTES) == {"color": "red", "size": 1}
            assert extension.hold_reason == "Rolled back from 1.1.0 to 1.0.0"
        else:
            assert registry.get_config(NOTES) == {"color": "green", "size": 1, "font": "mono"}
            assert not extension.held
        assert sorted(v.version for v in registry.list_kept_versions(NOTES)) == [
            "1.0.0",
            "1.1.0",
        ]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition()`` holds: it watches another process's files, which sends no
    signal (the deadline guards against hanging; it is not a timing assertion)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_kill_9_in_the_middle_of_a_slow_download_then_a_fresh_update_succeeds(
    tmp_path: Path, paths: DataPaths
) -> None:
    folder = tmp_path / "published"
    first = build_notes(folder, "1.0.0")
    newer = build_notes(folder, "1.1.0", padding=2_000_000)
    write_index(folder)
    total = newer.stat().st_size
    with open_data_folder(paths) as registry:
        assert Installer(registry).install(first).status == "COMPLETED"

    # 64 KiB every 10 ms: the download takes a while, and the child is killed part way.
    with serve_folder(folder, chunk_bytes=65536, pause_seconds=0.01) as url:
        with open_data_folder(paths) as registry:
            registry.add_source(url + "index.json", INDEX)
        received: list[int] = []

        def partly_downloaded() -> bool:
            downloads = list(paths.staging.glob("op-*/download.zip"))
            received[:] = [d.stat().st_size for d in downloads]
            return any(received)

        with subprocess.Popen(
            child_script(paths.root, "update", "never reached"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as child:
            wait_for(partly_downloaded, "the download to start")
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=60) == -signal.SIGKILL
        assert 0 < received[0] < total
        versions = {"1.0.0": first, "1.1.0": newer}
        check_one_version_complete(paths, versions, "1.0.0", interrupted=True)

        again = run_cli(paths.root, "update", "--yes", NOTES)
        assert again.returncode == 0, again.stderr
        assert f"Upgraded {NOTES} 1.1.0" in again.stdout
    check_one_version_complete(paths, versions, "1.1.0", interrupted=False)
    with open_data_folder(paths) as registry:
        [operation] = registry.list_operations(limit=1)
        assert (operation.download_bytes, operation.download_total) == (total, total)
