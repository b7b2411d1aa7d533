"""A second launch's side of "one window per data folder", without Qt.

The running window listens with a ``QLocalServer`` (``gui.single_instance``) on a name made
from the user and a hash of the data folder, so two data folders (or two users) never talk to
each other. A second launch sends one JSON line ``{"files": [...]}`` and waits for ``ok``.

On Linux and the other Unix systems a local server is a Unix domain socket in Qt's temporary
folder, which Python's own ``socket`` reaches directly: the hand-off then happens before Qt is
imported at all, and a launch that finds no window can start opening the registry while Qt
loads. Elsewhere (Windows' named pipes) the hand-off goes through ``QLocalSocket``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

CONNECT_TIMEOUT_MS = 500
REPLY_TIMEOUT_MS = 5000
MAX_MESSAGE_BYTES = 1_000_000
ACK = b"ok\n"


def server_name(data_dir: Path) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    digest = hashlib.sha256(str(data_dir.absolute()).encode("utf-8")).hexdigest()[:16]
    safe_user = "".join(c if c.isalnum() else "_" for c in user)[:32]
    return f"extension-manager-{safe_user}-{digest}"


def socket_path(name: str) -> Path | None:
    """Where ``QLocalServer.listen(name)`` puts its socket, where Python can tell: Qt's
    ``QDir.tempPath()``, which is ``$TMPDIR`` or else ``/tmp``. None on Windows, and on macOS
    without ``$TMPDIR`` (Qt then asks the system for the folder)."""
    if not hasattr(socket, "AF_UNIX") or sys.platform == "win32":
        return None
    folder = os.environ.get("TMPDIR")
    if not folder:
        if sys.platform == "darwin":
            return None
        folder = "/tmp"  # Qt's fixed choice, which the server uses too
    return Path(os.path.normpath(folder)) / name


def handoff_message(files: list[Path]) -> bytes:
    return (json.dumps({"files": [str(path.absolute()) for path in files]}) + "\n").encode()


def send_to_running_instance(
    data_dir: Path, files: list[Path], *, timeout_ms: int = REPLY_TIMEOUT_MS
) -> bool:
    """True when a running window took the files (the caller should then exit 0).

    Blocking: meant for a launch that has no window yet (it runs no event loop of its own).
    """
    name = server_name(data_dir)
    path = socket_path(name)
    if path is None:
        return _send_with_qt(name, files, timeout_ms)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(CONNECT_TIMEOUT_MS / 1000)
        try:
            client.connect(str(path))
        except OSError:
            # No socket, or one a crashed window left behind: nobody to hand the files to.
            return False
        client.settimeout(timeout_ms / 1000)
        reply = b""
        try:
            client.sendall(handoff_message(files))
            while not reply.endswith(b"\n") and len(reply) < len(ACK):
                chunk = client.recv(len(ACK))
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return False
    return reply == ACK


def _send_with_qt(name: str, files: list[Path], timeout_ms: int) -> bool:
    from PySide6.QtNetwork import QLocalSocket

    from gui.app import ensure_application

    # Qt's local sockets want the application to exist; the launch would create it next anyway.
    ensure_application()
    local = QLocalSocket()
    local.connectToServer(name)
    if not local.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    local.write(handoff_message(files))
    if not local.waitForBytesWritten(timeout_ms):
        local.abort()
        return False
    reply = b""
    while not reply.endswith(b"\n") and local.waitForReadyRead(timeout_ms):
        reply += bytes(local.readAll().data())
    local.disconnectFromServer()
    return reply == ACK
