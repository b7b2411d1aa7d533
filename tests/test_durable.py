"""The flushes that make an install survive a power cut, observed where they happen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry import durable
from registry.durable import FileFlusher, FlushingWriter


def recorded_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every flush and cache release, with the file it was for, in order."""
    calls: list[tuple[str, str]] = []

    def name(fd: int) -> str:
        return Path(f"/proc/self/fd/{fd}").readlink().name

    def recording(kind: str, real: object) -> object:
        def call(fd: int, *args: object) -> object:
            calls.append((kind, name(fd)))
            return real(fd, *args)  # type: ignore[operator]

        return call

    monkeypatch.setattr(os, "fsync", recording("fsync", os.fsync))
    if hasattr(os, "fdatasync"):
        monkeypatch.setattr(durable, "_flush_data", recording("fdatasync", os.fdatasync))
    if hasattr(os, "posix_fadvise"):
        monkeypatch.setattr(os, "posix_fadvise", recording("release", os.posix_fadvise))
    return calls


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir() or not hasattr(os, "posix_fadvise"),
    reason="needs /proc and posix_fadvise",
)


def test_a_long_file_is_flushed_as_it_grows_and_its_flushed_pages_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "FLUSH_EVERY_BYTES", 1000)
    calls = recorded_calls(monkeypatch)
    target = tmp_path / "copy.zip"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        writer = FlushingWriter(fd)
        chunks = [bytes([n]) * 600 for n in range(5)]
        for chunk in chunks:
            writer.write(chunk)
        assert calls == [
            ("fdatasync", "copy.zip"),
            ("release", "copy.zip"),
            ("fdatasync", "copy.zip"),
            ("release", "copy.zip"),
        ]
        writer.finish()
    finally:
        os.close(fd)
    # The whole file is flushed last, data and size, before anything is released after it.
    assert calls[-2:] == [("fsync", "copy.zip"), ("release", "copy.zip")]
    assert target.read_bytes() == b"".join(chunks)


def test_handed_over_files_are_flushed_before_their_pages_are_released_and_then_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = recorded_calls(monkeypatch)
    fds = []
    with FileFlusher() as flusher:
        for n in range(10):
            fd = os.open(tmp_path / f"f{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.write(fd, b"x" * n)
            fds.append(fd)
            flusher.hand_over(fd, n)
    assert flusher.error is None
    for n in range(10):
        mine = [kind for kind, name in calls if name == f"f{n}"]
        assert mine == ["fsync", "release"]
        assert (tmp_path / f"f{n}").read_bytes() == b"x" * n
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_failed_flush_is_reported_with_its_label_and_nothing_is_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[int] = []

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, *args: released.append(fd))
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with FileFlusher() as flusher:
        flusher.hand_over(fd, "the file")
    assert flusher.error is not None
    assert flusher.error[0] == "the file"
    assert released == []
    with pytest.raises(OSError):
        os.fstat(fd)
