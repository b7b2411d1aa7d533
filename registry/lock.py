"""The registry lock: who may have the registry open, and who may migrate or replace it.

Two lock files sit next to the database:

* ``registry.lock``: every process that has the registry open holds a *shared* ``flock`` on it
  for as long as it runs. Migrating, and the rescue swapping the database file, need it
  *exclusive*, so neither can happen while anyone else has the registry open, and two launches
  racing on an old database cannot both migrate.
* ``registry.lock.gate``: a short-held exclusive ``flock`` that is taken around *every* request
  on ``registry.lock`` (shared, exclusive, and the exclusive-to-shared conversion) and released
  right after it. It is never held while waiting for a migration or while using the registry.

Why the gate: ``flock(2)`` does not convert a lock atomically ("the existing lock is first
removed, and then a new lock is established"). A launch that migrated and then turns its
exclusive lock into the shared one it keeps could, in that gap, let another launch take the
exclusive lock and migrate while this one believes it has the registry open, or fail to get the
shared lock and run with none. Since every request on ``registry.lock`` is made under the gate,
and the conversion holds the gate too, nobody can even ask for ``registry.lock`` during the gap.
The conversion's result is still checked: if it fails, ``RegistryBusyError`` is raised and the
process does not go on without a lock. ``RegistryLock`` enforces the rules that keep this true:
requests are made only from no lock (never shared to exclusive, which has the same gap and can
also lose to a shared holder), and exclusive becomes shared only through ``downgrade``.

Why not open-file-description ``fcntl`` locks (``F_OFD_SETLK``, which Python 3.11 exposes on
Linux), whose conversions are atomic: they exist on Linux only, their ``struct flock`` has to be
packed by hand per platform, and they do not see ``flock`` locks, so a copy of an earlier
release still running (which takes ``flock`` on ``registry.lock``) and this one would not
exclude each other at all. With ``flock`` plus the gate, both files keep ``flock``'s semantics:
locks belong to the open file description, so two descriptors in one process conflict like two
processes, and the operating system drops them when a process dies, ``kill -9`` included.

Where there is no ``fcntl`` (Windows), the same protocol runs on ``portalocker`` instead: see
``PortalockerBackend``. The backend is chosen once, at import (``BACKEND``); every platform with
``fcntl`` keeps ``flock``, so Linux and macOS make exactly the system calls they always made.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, Protocol

from migrations.runner import MigrationReport, Step, load_steps, migrate, read_status
from registry.errors import RegistryBusyError

try:
    import fcntl
except ImportError:  # Windows: PortalockerBackend stands in
    _HAS_FCNTL = False
else:
    _HAS_FCNTL = True

LockMode = Literal["none", "shared", "exclusive"]
HeldMode = Literal["shared", "exclusive"]

# The gate is held only for a few system calls; anyone who holds it this long is stopped or hung.
GATE_TIMEOUT_SECONDS = 10.0
GATE_POLL_SECONDS = 0.002
MIGRATION_POLL_SECONDS = 0.05
# Python opens descriptors non-inheritable anyway; Windows has no O_CLOEXEC to name.
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class LockBackend(Protocol):
    """The operating system's lock on one open lock file, as ``RegistryLock`` and the gate use it.

    What the protocol relies on, and every backend provides: a lock belongs to the descriptor
    (two descriptors conflict even within one process), the operating system drops it when the
    process dies, and no request waits. Conversions need not be atomic: they are only ever
    made under the gate.
    """

    name: str

    def try_lock(self, fd: int, mode: HeldMode) -> bool:
        """Take ``mode`` on ``fd`` (which holds nothing); False if another holder has it."""
        ...

    def try_downgrade(self, fd: int) -> bool:
        """Turn the exclusive lock ``fd`` holds into a shared one; False if it was lost."""
        ...

    def unlock(self, fd: int) -> None:
        """Drop whatever lock ``fd`` holds (nothing held is fine)."""
        ...


class FlockBackend:
    """``flock(2)``: Linux, macOS and the BSDs. Every release so far used it on
    ``registry.lock``, so a copy of an earlier release still running and this one exclude each
    other. ``fcntl.flock`` is looked up on every call, so a test can stand in for it."""

    name = "flock"

    def __init__(self) -> None:
        if not _HAS_FCNTL:
            raise ImportError("flock needs the fcntl module, which this platform does not have")

    def try_lock(self, fd: int, mode: HeldMode) -> bool:
        return _try_flock(fd, fcntl.LOCK_EX if mode == "exclusive" else fcntl.LOCK_SH)

    def try_downgrade(self, fd: int) -> bool:
        # flock converts in place: it drops the exclusive lock, then takes the shared one.
        return _try_flock(fd, fcntl.LOCK_SH)

    def unlock(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class PortalockerBackend:
    """``portalocker``, for platforms without ``fcntl``. On Windows it takes shared locks with
    ``LockFileEx`` (through pywin32) and exclusive ones with ``msvcrt.locking``, on ranges that
    both start at byte 0, so they conflict; both belong to the open handle, and Windows drops
    them when the process ends. On POSIX it calls ``flock`` itself, which is how the tests run this
    backend on Linux, and why it excludes ``FlockBackend`` holders there.

    Failures other than "someone else holds it" are raised as ``OSError``, as flock's are.
    """

    name = "portalocker"

    def __init__(self) -> None:
        import importlib.util

        try:
            import portalocker
        except ImportError as error:
            raise ImportError(
                "The registry lock needs the portalocker package on this platform (there is no "
                'fcntl here): install it with pip install "portalocker[win32]".'
            ) from error
        # Shared locks on Windows need pywin32 (portalocker's "win32" extra); say so now rather
        # than at the first launch that tries to share the registry.
        if os.name == "nt" and importlib.util.find_spec("pywintypes") is None:
            raise ImportError(
                "The registry lock needs pywin32 for shared locks on Windows: install it with "
                'pip install "portalocker[win32]".'
            )
        self._portalocker = portalocker

    def try_lock(self, fd: int, mode: HeldMode) -> bool:
        flags = self._portalocker.LockFlags
        wanted = flags.EXCLUSIVE if mode == "exclusive" else flags.SHARED
        try:
            self._portalocker.lock(fd, wanted | flags.NON_BLOCKING)
        except self._portalocker.AlreadyLocked:
            return False
        except self._portalocker.LockException as error:
            raise _as_os_error(error) from error
        return True

    def try_downgrade(self, fd: int) -> bool:
        # Windows would stack a shared lock on the exclusive one instead of converting it, so
        # drop the exclusive lock first, as flock does internally; the gate keeps anyone from
        # asking in between.
        self.unlock(fd)
        return self.try_lock(fd, "shared")

    def unlock(self, fd: int) -> None:
        try:
            self._portalocker.unlock(fd)
        except self._portalocker.LockException as error:
            raise _as_os_error(error) from error


def _as_os_error(error: Exception) -> OSError:
    """portalocker's failure as the ``OSError`` flock would have raised (its errno kept)."""
    cause = error.__cause__
    if isinstance(cause, OSError):
        return OSError(cause.errno, cause.strerror)
    return OSError(f"the lock file could not be locked ({error})")


def default_backend() -> LockBackend:
    """``flock`` wherever there is ``fcntl``; ``portalocker`` elsewhere."""
    return FlockBackend() if _HAS_FCNTL else PortalockerBackend()


# Chosen once; RegistryLock and the gate use it unless given another.
BACKEND: LockBackend = default_backend()


def gate_path_for(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".gate")


def _open_lock_file(path: Path) -> int:
    return os.open(path, _OPEN_FLAGS, 0o644)


@contextlib.contextmanager
def _gate(lock_path: Path, timeout: float, backend: LockBackend | None = None) -> Iterator[None]:
    """Hold the gate of ``lock_path`` exclusively for the duration of one request."""
    backend = backend if backend is not None else BACKEND
    fd = _open_lock_file(gate_path_for(lock_path))
    try:
        deadline = time.monotonic() + timeout
        while not backend.try_lock(fd, "exclusive"):
            if time.monotonic() >= deadline:
                raise RegistryBusyError(
                    f"Another Extension Manager has been opening the registry in "
                    f"{lock_path.parent} for more than {timeout:.0f} seconds without finishing; "
                    f"it may be stopped or hung. Close it (or end it), then try again."
                )
            time.sleep(GATE_POLL_SECONDS)
        try:
            yield
        finally:
            # Unlock explicitly: a child forked meanwhile would keep a merely closed lock alive.
            backend.unlock(fd)
    finally:
        os.close(fd)


class RegistryLock:
    """One open handle on ``registry.lock``; its mode moves between none, shared and exclusive.

    Every request goes through the gate (see the module docstring), so conversions cannot be
    entered by another process. ``backend`` is ``BACKEND`` unless a test picks another.
    """

    def __init__(
        self,
        path: Path,
        *,
        gate_timeout: float = GATE_TIMEOUT_SECONDS,
        backend: LockBackend | None = None,
    ) -> None:
        self.path = path
        self.gate_timeout = gate_timeout
        self.backend = backend if backend is not None else BACKEND
        self._fd: int | None = _open_lock_file(path)
        self.mode: LockMode = "none"

    def _open_fd(self) -> int:
        if self._fd is None:
            raise RuntimeError("the registry lock was already released")
        return self._fd

    def _request(self, mode: HeldMode) -> bool:
        fd = self._open_fd()
        if self.mode != "none":
            # flock would convert the held lock non-atomically; from shared to exclusive it can
            # lose the shared lock to nothing when another process holds it shared too.
            raise RuntimeError(f"the registry lock is already held {self.mode}; release it first")
        with _gate(self.path, self.gate_timeout, self.backend):
            if not self.backend.try_lock(fd, mode):
                return False
        self.mode = mode
        return True

    def try_exclusive(self) -> bool:
        return self._request("exclusive")

    def try_shared(self) -> bool:
        return self._request("shared")

    def downgrade(self) -> None:
        """Turn the exclusive lock into a shared one, with no moment in which another process
        could take it. Raises ``RegistryBusyError`` (holding nothing) if the conversion fails."""
        fd = self._open_fd()
        if self.mode != "exclusive":
            raise RuntimeError(f"only an exclusive registry lock can be downgraded ({self.mode})")
        with _gate(self.path, self.gate_timeout, self.backend):
            try:
                converted = self.backend.try_downgrade(fd)
            except OSError as error:
                self.release()
                raise RegistryBusyError(
                    f"The registry lock {self.path} could not be kept after upgrading the "
                    f"registry ({error}). The registry is up to date; start again."
                ) from error
        if not converted:
            self.release()
            raise RegistryBusyError(
                f"The registry lock {self.path} was lost after upgrading the registry: another "
                f"process took it. The registry is up to date; start again."
            )
        self.mode = "shared"

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.mode = "none"
            try:
                self.backend.unlock(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> RegistryLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def prepare_registry(
    db_path: Path,
    lock_path: Path,
    backups_dir: Path,
    *,
    wait_seconds: float = 60.0,
    steps: tuple[Step, ...] | None = None,
    while_exclusive: Callable[[], None] | None = None,
    backend: LockBackend | None = None,
) -> tuple[RegistryLock, MigrationReport]:
    """Lock, preflight and migrate; return the lock (held shared) for the process's lifetime.

    The loop handles every interleaving of launches: whoever gets the exclusive lock migrates
    (after re-reading the version, since someone else may just have done it) and then downgrades
    to shared; the others wait while a migration runs, and proceed shared once nothing is
    pending. If the database still needs upgrading while other processes hold it shared, those
    are older windows of the app that are open right now: refuse, and say so.

    ``while_exclusive`` is called after migrating, still holding the exclusive lock.
    """
    steps = steps if steps is not None else load_steps()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = RegistryLock(lock_path, backend=backend)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            if lock.try_exclusive():
                report = migrate(db_path, backups_dir, steps)
                if while_exclusive is not None:
                    while_exclusive()
                lock.downgrade()
                return lock, report
            if lock.try_shared():
                status = read_status(db_path, steps)
                if status.pending == 0:
                    return lock, MigrationReport(status.version, status.version, backup=None)
                raise RegistryBusyError(
                    f"The registry at {db_path} needs an upgrade (version {status.version} to "
                    f"{status.latest}), but another Extension Manager is using it. Close the other "
                    f"window or command, then start again."
                )
            # Someone holds the exclusive lock: a migration is running right now.
            if time.monotonic() > deadline:
                raise RegistryBusyError(
                    f"Another Extension Manager has been upgrading the registry at {db_path} for "
                    f"more than {wait_seconds:.0f} seconds. Wait for it to finish, then try again."
                )
            time.sleep(MIGRATION_POLL_SECONDS)
    except BaseException:
        lock.release()
        raise


def hold_exclusive(lock_path: Path, *, backend: LockBackend | None = None) -> RegistryLock:
    """The exclusive lock, for replacing the database file; ``RegistryBusyError`` if anyone
    else has the registry open (or is migrating it). Release it when done."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = RegistryLock(lock_path, backend=backend)
    try:
        acquired = lock.try_exclusive()
    except BaseException:
        lock.release()
        raise
    if not acquired:
        lock.release()
        raise RegistryBusyError(
            f"Another Extension Manager is using the registry in {lock_path.parent}. Close it, "
            f"then try again."
        )
    return lock
