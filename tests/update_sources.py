"""Helpers for the tests of versions over time: versioned extension zips, what a zip or an
installed folder holds (by SHA-256), and update sources served on 127.0.0.1 only.

Nothing here reaches beyond the loopback interface: every server binds 127.0.0.1 on a port the
kernel picked.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from registry.installer import Installer
from registry.paths import DataPaths
from registry.startup import open_data_folder
from tests.zipcraft import make_zip

NOTES = "example.notes"


def build_notes(
    folder: Path,
    version: str,
    *,
    extension_id: str = NOTES,
    config: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
    padding: int = 0,
    name: str | None = None,
    **manifest: Any,
) -> Path:
    """``folder/<id>-<version>.zip``: a valid extension whose every file says its version
    (so that two versions' trees differ in content, not only in the manifest). ``padding``
    adds a stored file of that many incompressible bytes, for a download that takes a while
    or an archive of a known size. Other keywords are manifest fields (None: left out)."""
    document: dict[str, Any] = {
        "id": extension_id,
        "name": name or extension_id.rpartition(".")[2].title(),
        "version": version,
        "config": dict(config if config is not None else {"color": "blue"}),
        **{key: value for key, value in manifest.items() if value is not None},
    }
    content = {
        "manifest.json": json.dumps(document, indent=2).encode(),
        "notes.txt": f"{extension_id} {version}\n".encode(),
        f"lib/v{version.replace('.', '_')}.py": f"VERSION = {version!r}\n".encode(),
        **(files or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = make_zip(folder / f"{extension_id}-{version}.zip", content)
    if padding:
        with zipfile.ZipFile(target, "a", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("padding.bin", os.urandom(padding))
    return target


def install_by_hand(data: Path, archive: Path) -> None:
    """Install ``archive`` into the data folder ``data`` (in this process: quicker than the
    command line, for a test whose point is elsewhere)."""
    with open_data_folder(DataPaths(data)) as registry:
        record = Installer(registry).install(archive)
        assert record.status == "COMPLETED", record.error


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_tree(archive: Path) -> dict[str, str]:
    """Each regular file the zip holds -> the SHA-256 of its content."""
    with zipfile.ZipFile(archive) as zf:
        return {
            info.filename: sha256_of(zf.read(info)) for info in zf.infolist() if not info.is_dir()
        }


def folder_tree(folder: Path) -> dict[str, str]:
    """Each regular file under ``folder`` -> the SHA-256 of its content."""
    return {
        path.relative_to(folder).as_posix(): sha256_of(path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def leftovers(root: Path) -> list[str]:
    """What is left in the data folder's staging/ and trash/ (nothing, after any operation)."""
    return sorted(
        f"{folder}/{entry.name}"
        for folder in ("staging", "trash")
        if (root / folder).is_dir()
        for entry in (root / folder).iterdir()
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, says nothing on stderr, and can send bodies slowly."""

    chunk_bytes = 0  # 0: all at once
    pause_seconds = 0.0
    cut_after: int | None = None  # stop sending after this many bytes of a body

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not self.chunk_bytes and self.cut_after is None:
            super().copyfile(source, outputfile)
            return
        sent = 0
        while chunk := source.read(self.chunk_bytes or 65536):
            if self.cut_after is not None and sent + len(chunk) >= self.cut_after:
                outputfile.write(chunk[: self.cut_after - sent])
                outputfile.flush()
                return  # the connection closes with the body cut short
            outputfile.write(chunk)
            outputfile.flush()
            sent += len(chunk)
            time.sleep(self.pause_seconds)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-download is what some tests do on purpose


@contextlib.contextmanager
def serve_folder(
    folder: Path,
    *,
    chunk_bytes: int = 0,
    pause_seconds: float = 0.0,
    cut_after: int | None = None,
) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 from a thread; yields the base URL (ending in
    '/'). With ``chunk_bytes`` each body is sent in chunks of that size with ``pause_seconds``
    between them; with ``cut_after`` the connection is closed after that many bytes of a body
    (whose full length was announced). The port is closed when the block ends, so a later
    request is refused."""
    handler = type(
        "Handler",
        (_QuietHandler,),
        {"chunk_bytes": chunk_bytes, "pause_seconds": pause_seconds, "cut_after": cut_after},
    )
    server = _QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@contextlib.contextmanager
def http_server_process(folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m http.server`` bound to 127.0.0.1 serving ``folder``, as someone publishing a
    folder would run it; yields its base URL and the process (which a test may stop)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(port),
            "--directory",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"the HTTP server exited with {process.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the HTTP server did not listen on port {port}")
