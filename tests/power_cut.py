"""Power cuts for real: a data folder on a loop-mounted ext4 image that is shut down mid-work.

``EXT4_IOC_SHUTDOWN`` with ``NOLOGFLUSH`` stops the filesystem as a power cut would: whatever
the kernel had not yet written (file data, journal) is lost, every later read or write fails, and
the next mount replays the journal. A driver process runs a seeded stream of installs,
reinstalls, upgrades, downgrades, settings saves and uninstalls on that folder, printing one line
per operation the registry reported done. After the cut the filesystem is mounted again, the
registry opened as a launch opens it (recovery included), and checked against the driver's lines:

* every operation reported done is recorded as COMPLETED, and every setting saved is there
  (or a later value);
* every registered extension's files are exactly the files of the version the registry records,
  byte for byte, and nothing the registry does not describe sits in ``extensions/``.

Run as a module for figures: ``python -m tests.power_cut --cuts 60`` (root needed).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.store import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent
EXTENSION_ID = "powercut.subject"
OTHER_ID = "powercut.bystander"
VERSIONS = ("1.0.0", "1.1.0", "2.0.0")
IMAGE_MIB = 96
EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2  # drop everything not yet on the disk, as a power cut does


# -- the archives ------------------------------------------------------------------------------


def archive_name(extension_id: str, version: str) -> str:
    return f"{extension_id}-{version}.zip"


def build_archives(folder: Path) -> None:
    """One archive per (extension, version). Each version has different files and sizes, so a
    version on disk that the registry does not record cannot pass for the recorded one."""
    folder.mkdir(parents=True, exist_ok=True)
    for extension_id in (EXTENSION_ID, OTHER_ID):
        for number, version in enumerate(VERSIONS):
            rng = random.Random(f"{extension_id}-{version}")
            manifest = {
                "id": extension_id,
                "name": extension_id.split(".")[1].title(),
                "version": version,
                "config": {"counter": 0, "label": "start"},
            }
            path = folder / archive_name(extension_id, version)
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                archive.writestr("manifest.json", json.dumps(manifest))
                for index in range(40 + 20 * number):
                    size = rng.randrange(1, 64 * 1024)
                    archive.writestr(f"data/{version}/part-{index:03d}.bin", rng.randbytes(size))
                archive.writestr("big.bin", rng.randbytes((1 + number) * 1024 * 1024))


def archive_contents(folder: Path, extension_id: str, version: str) -> dict[str, bytes]:
    with zipfile.ZipFile(folder / archive_name(extension_id, version)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


# -- the driver (runs in its own process, on the filesystem that will be cut) -----------------


def drive(data_dir: Path, archives: Path, seed: int) -> None:
    """Operate on the registry until killed, printing one JSON line per acknowledged change."""
    from registry import open_registry
    from registry.installer import Installer, InstallOptions
    from registry.vocabulary import OperationStatus

    rng = random.Random(seed)
    registry = open_registry(data_dir)
    installer = Installer(registry)
    print("ready", flush=True)
    anything = InstallOptions(allow_reinstall=True, allow_downgrade=True)
    counter = int(time.time() * 1000)  # grows across drivers, so a later value means newer

    def acknowledge(**fields: object) -> None:
        print(json.dumps(fields), flush=True)

    while True:
        extension_id = rng.choice((EXTENSION_ID, EXTENSION_ID, OTHER_ID))
        installed = registry.get_extension(extension_id)
        action = rng.choice(("install", "install", "install", "settings", "uninstall"))
        if installed is None or action == "install":
            version = rng.choice(VERSIONS)
            operation = installer.install(
                archives / archive_name(extension_id, version), options=anything
            )
            if operation.status == OperationStatus.COMPLETED:
                acknowledge(
                    kind="install", id=extension_id, version=version, op=operation.install_id
                )
        elif action == "settings":
            counter += 1
            registry.save_config(extension_id, {"counter": counter, "label": f"saved {counter}"})
            acknowledge(kind="settings", id=extension_id, counter=counter)
        else:
            operation = installer.uninstall(extension_id)
            if operation.status == OperationStatus.COMPLETED:
                acknowledge(kind="uninstall", id=extension_id, op=operation.install_id)


# -- the filesystem ----------------------------------------------------------------------------


def can_mount() -> str | None:
    """Why loop-mounting is impossible here, or None when it works."""
    if os.geteuid() != 0:
        return "mounting a filesystem image needs root (CI runs as root)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            with ext4_image(Path(scratch), size_mib=8):
                return None
        except (OSError, subprocess.CalledProcessError) as error:
            return f"cannot loop-mount an ext4 image here ({error})"


@contextlib.contextmanager
def ext4_image(
    scratch: Path, size_mib: int = IMAGE_MIB, options: str = "loop"
) -> Iterator[MountedImage]:
    image = scratch / "disk.img"
    with image.open("wb") as fh:
        fh.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mounted = MountedImage(image, scratch / "mnt", options)
    mounted.mount_point.mkdir()
    mounted.mount()
    try:
        yield mounted
    finally:
        mounted.unmount()


@dataclass
class MountedImage:
    image: Path
    mount_point: Path
    options: str = "loop"
    mounted: bool = False

    def mount(self) -> None:
        # A filesystem that stopped on an error is marked as such; the check a boot would run
        # clears the mark before it is mounted again.
        subprocess.run(["e2fsck", "-p", str(self.image)], check=False, capture_output=True)
        subprocess.run(
            ["mount", "-o", self.options, str(self.image), str(self.mount_point)],
            check=True,
            capture_output=True,
        )
        self.mounted = True

    def turn_read_only(self) -> None:
        """Make ext4 hit an error, as a failing disk does: mounted with ``errors=remount-ro``
        it turns read-only at once, under every open writer."""
        source = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.mount_point)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(f"/sys/fs/ext4/{Path(source).name}/trigger_fs_error").write_text("test\n")

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.mount_point)], check=True, capture_output=True)
            self.mounted = False

    def cut_power(self) -> None:
        fd = os.open(self.mount_point, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)


# -- one cut -----------------------------------------------------------------------------------


@dataclass
class CutResult:
    seed: int
    delay: float
    acknowledged: list[dict[str, object]]
    problems: list[str] = field(default_factory=list)


def cut_once(mounted: MountedImage, archives: Path, seed: int, delay: float) -> CutResult:
    """Run the driver, cut the power ``delay`` seconds in, remount and check."""
    data_dir = mounted.mount_point / "data"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.power_cut",
            "--drive",
            str(data_dir),
            str(archives),
            str(seed),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert driver.stdout is not None
    driver.stdout.readline()  # "ready": the delay counts from the registry being open
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(driver.stdout or ()), daemon=True)
    reader.start()
    time.sleep(delay)
    mounted.cut_power()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    reader.join()
    driver.stdout.close()
    mounted.unmount()
    mounted.mount()
    result = CutResult(seed, delay, [json.loads(line) for line in lines if line.startswith("{")])
    result.problems = check_after_cut(data_dir, archives, result.acknowledged)
    return result


def check_after_cut(
    data_dir: Path, archives: Path, acknowledged: list[dict[str, object]]
) -> list[str]:
    """What the relaunched registry got wrong, in words (empty when nothing was lost)."""
    from registry import open_registry
    from registry.doctor import diagnose
    from registry.errors import OperationNotFoundError, UserFacingError
    from registry.vocabulary import OperationStatus

    try:
        registry = open_registry(data_dir, wait_seconds=5)
    except UserFacingError as error:
        return [f"the registry did not open after the cut: {error}"]
    problems: list[str] = []
    with registry:
        for ack in acknowledged:
            if ack["kind"] == "settings":
                continue
            try:
                operation = registry.get_operation(int(str(ack["op"])))
            except OperationNotFoundError:
                problems.append(f"operation {ack['op']} was reported done but is not recorded")
                continue
            if operation.status != OperationStatus.COMPLETED:
                problems.append(
                    f"operation {ack['op']} was reported done but is {operation.status}"
                )
        problems += _lost_settings(registry, acknowledged)
        for extension in registry.list_extensions():
            problems += _files_differ(
                extension.id, extension.version, Path(extension.install_path), archives
            )
        for folder in registry.paths.extensions.iterdir():
            if registry.get_extension(folder.name) is None:
                problems.append(f"{folder} is on disk but not registered")
        problems += [f"doctor: {finding.problem}" for finding in diagnose(registry)]
    return problems


def _lost_settings(registry: Registry, acknowledged: list[dict[str, object]]) -> list[str]:
    last_saved: dict[str, int] = {}
    for ack in acknowledged:
        if ack["kind"] == "settings":
            last_saved[str(ack["id"])] = int(str(ack["counter"]))
        elif ack["kind"] == "uninstall":
            last_saved.pop(str(ack["id"]), None)
    problems = []
    for extension_id, counter in last_saved.items():
        if registry.get_extension(extension_id) is None:
            continue  # an uninstall that started after the save may have committed
        stored = registry.get_config(extension_id)["counter"]
        if not isinstance(stored, int) or stored < counter:
            problems.append(f"{extension_id}: setting saved as {counter} reads {stored}")
    return problems


def _files_differ(extension_id: str, version: str, folder: Path, archives: Path) -> list[str]:
    expected = {
        name: data
        for name, data in archive_contents(archives, extension_id, version).items()
        if not name.endswith("/")
    }
    on_disk = {
        path.relative_to(folder).as_posix(): path for path in folder.rglob("*") if path.is_file()
    }
    problems = []
    if set(on_disk) != set(expected):
        problems.append(f"{extension_id} {version}: the files on disk are not that version's files")
    differing = sorted(
        name
        for name, data in expected.items()
        if name in on_disk and on_disk[name].read_bytes() != data
    )
    if differing:
        problems.append(
            f"{extension_id} {version}: {len(differing)} of {len(expected)} files differ from the "
            f"archive (e.g. {differing[0]}, {on_disk[differing[0]].stat().st_size} bytes)"
        )
    return problems


def run_cuts(scratch: Path, cuts: int, first_seed: int = 0) -> list[CutResult]:
    archives = scratch / "archives"
    build_archives(archives)
    results = []
    with ext4_image(scratch) as mounted:
        for seed in range(first_seed, first_seed + cuts):
            delay = random.Random(seed).uniform(0.05, 2.0)
            results.append(cut_once(mounted, archives, seed, delay))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drive", nargs=3, metavar=("DATA_DIR", "ARCHIVES", "SEED"))
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    if arguments.drive:
        data_dir, archives, seed = arguments.drive
        drive(Path(data_dir), Path(archives), int(seed))
        return
    reason = can_mount()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as scratch:
        results = run_cuts(Path(scratch), arguments.cuts, arguments.seed)
    acknowledged = sum(len(result.acknowledged) for result in results)
    lost = [result for result in results if result.problems]
    for result in lost:
        print(f"seed {result.seed} (cut at {result.delay:.2f} s):")
        for problem in result.problems:
            print(f"  {problem}")
    print(
        f"{len(results)} cuts, {len(results) - len(lost)} survived, {len(lost)} lost something; "
        f"{acknowledged} acknowledged changes checked"
    )


if __name__ == "__main__":
    main()
