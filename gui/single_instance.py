"""One window per data folder: the running window's side. It listens on the name
``gui.handoff.server_name`` gives its data folder; a second launch sends one JSON line
``{"files": [...]}`` there (``gui.handoff.send_to_running_instance``) and waits for ``ok``; then
it exits and the running window raises itself and installs the files.

Only the running window needs this module (and QtNetwork): a launch imports it once its window
is up.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from gui.handoff import (
    ACK,
    CONNECT_TIMEOUT_MS,
    MAX_MESSAGE_BYTES,
    REPLY_TIMEOUT_MS,
    send_to_running_instance,
    server_name,
)

__all__ = [
    "REPLY_TIMEOUT_MS",
    "InstanceServer",
    "send_to_running_instance",
    "server_name",
    "someone_answers",
]

log = logging.getLogger(__name__)


def someone_answers(name: str) -> bool:
    probe = QLocalSocket()
    probe.connectToServer(name)
    answered = probe.waitForConnected(CONNECT_TIMEOUT_MS)
    probe.abort()
    return answered


class InstanceServer(QObject):
    """Listens for later launches; emits the files each one hands over."""

    files_received = Signal(list)  # list[Path]

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(data_dir)
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._accept)
        self._buffers: dict[QLocalSocket, bytes] = {}

    def start(self) -> bool:
        """Listen; a socket left by a crashed window is removed, a live one is respected.

        The probe comes first: with socket options set, Qt binds in a temporary folder and
        renames the socket into place, which would silently take the name from a live window.
        """
        if someone_answers(self.name):
            log.info("another window already serves %s", self.name)
            return False
        if self.server.listen(self.name):
            return True
        # Nobody answered, so whatever holds the name is a leftover of a crash.
        QLocalServer.removeServer(self.name)
        if self.server.listen(self.name):
            return True
        log.warning("cannot listen for other launches: %s", self.server.errorString())
        return False

    def close(self) -> None:
        for socket in list(self._buffers):
            socket.abort()
        self._buffers.clear()
        self.server.close()

    @property
    def listening(self) -> bool:
        return self.server.isListening()

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            self._buffers[socket] = b""
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))

    def _forget(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        socket.deleteLater()

    def _read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket, b"") + bytes(socket.readAll().data())
        if len(buffer) > MAX_MESSAGE_BYTES:
            socket.abort()
            return
        self._buffers[socket] = buffer
        if not buffer.endswith(b"\n"):
            return
        try:
            message = json.loads(buffer.decode("utf-8"))
            files = [Path(name) for name in message["files"]]
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignored a malformed message from another launch: %s", error)
            socket.abort()
            return
        socket.write(ACK)
        socket.flush()
        self.files_received.emit(files)
