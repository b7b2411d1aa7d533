"""A small real disk for tests: a tmpfs of a few MiB, that a test can fill and make read-only."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallDisk:
    """A tmpfs of a few MiB mounted on ``path``, that a test can fill and make read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int = 0) -> None:
        """Take all free space but ``leave`` bytes (rounded down to the disk's pages)."""
        chunk = b"\0" * 65536
        with self.filler.open("ab") as handle:
            try:
                while self.free() > leave:
                    handle.write(chunk[: max(4096, min(len(chunk), self.free() - leave))])
                    handle.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                handle.truncate(handle.tell())  # what did not fit was never written

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


def mount_small_disk(path: Path, size: str = "4m") -> SmallDisk:
    """Mount a tmpfs of ``size`` (as mount(8) writes it: "4m") on ``path``, or skip the test,
    saying why, where that cannot be done."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8): a full disk cannot be made")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): no real full disk")
    return SmallDisk(path)


def unmount(disk: SmallDisk) -> None:
    subprocess.run(["mount", "-o", "remount,rw", str(disk.path)], check=False)
    subprocess.run(["umount", "-l", str(disk.path)], check=False)


@contextmanager
def small_disk_on(path: Path, size: str = "4m") -> Iterator[SmallDisk]:
    """A small disk mounted on ``path`` for the time of the ``with`` block."""
    disk = mount_small_disk(path, size)
    try:
        yield disk
    finally:
        unmount(disk)
