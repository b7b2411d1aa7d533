"""Make disk and registry agree again after a process died in the middle of an operation.

The installer's protocol (see ``registry.installer``) makes this decidable from what is left:

* ``staging/op-N/`` holds the files of operation N while they are extracted;
* before swapping, the installed version is moved to ``trash/op-N-<id>`` (same filesystem, one
  rename), and the new version is renamed into ``extensions/<id>``;
* the registry commit flips the operation to COMPLETED in the same transaction that records the
  new version, and only then is the trash emptied.

So an operation still INSTALLING/UNINSTALLING whose process is gone never committed: its trash
holds the version the registry still describes, and it is put back.

Only names the app makes (``op-N``, ``op-N-<id>``) are ever removed from ``staging/`` and
``trash/``; anything else there is someone else's and is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from registry import durable
from registry.store import InterruptedOperation, OperationRecord, Registry
from registry.vocabulary import OperationKind, OperationStatus

log = logging.getLogger(__name__)

INTERRUPTED = (
    "Interrupted: Extension Manager stopped before this operation finished. Nothing was "
    "changed; install the file again if you still want it."
)


def staging_dir_for(registry: Registry, install_id: int) -> Path:
    return registry.paths.staging / f"op-{install_id}"


def trash_dir_for(registry: Registry, install_id: int, extension_id: str) -> Path:
    return registry.paths.trash / f"op-{install_id}-{extension_id}"


@dataclass
class RecoveryReport:
    failed_operations: list[int] = field(default_factory=list)
    interrupted: list[InterruptedOperation] = field(default_factory=list)
    restored_extensions: list[str] = field(default_factory=list)
    removed_paths: list[Path] = field(default_factory=list)


def remove_tree(path: Path) -> None:
    """Remove a folder the app made (staging, trash, an extension's files), including folders
    an extension made read-only inside it: their entries cannot be removed until they are
    writable again, and the tree is the app's to remove."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_make_writable_and_retry)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _make_writable_and_retry(
    function: Callable[..., object],
    name: str,
    info: tuple[type[BaseException], BaseException, TracebackType],
) -> None:
    path = Path(name)
    if function in (os.unlink, os.rmdir, os.remove) and not os.access(path.parent, os.W_OK):
        path.parent.chmod(path.parent.stat().st_mode | stat.S_IRWXU)
        function(name)
        return
    if function in (os.open, os.scandir, os.listdir) and path.is_dir() and not path.is_symlink():
        path.chmod(path.stat().st_mode | stat.S_IRWXU)
        shutil.rmtree(path, onerror=_make_writable_and_retry)
        return
    raise info[1]


def roll_back_swap(registry: Registry, operation: OperationRecord, report: RecoveryReport) -> None:
    """Undo a swap that did not reach the registry commit."""
    extension_id = operation.extension_id
    if extension_id is None:
        return
    installed = registry.paths.extensions / extension_id
    trash = trash_dir_for(registry, operation.install_id, extension_id)
    registered = registry.get_extension(extension_id)
    if trash.exists() and registry.completed_after(extension_id, operation.install_id):
        # A later operation changed this extension and committed: what is installed now is
        # what the registry describes, and the trash is an older version nobody refers to.
        remove_tree(trash)
        report.removed_paths.append(trash)
    elif trash.exists():
        # The registry still describes the version in the trash: put it back.
        if installed.exists():
            remove_tree(installed)
        trash.rename(installed)
        report.restored_extensions.append(extension_id)
    elif (
        operation.kind != OperationKind.UNINSTALL
        and registered is None
        and installed.exists()
        and operation.staging_dir is not None
    ):
        # A first install swapped in but never registered: the folder is not ours to keep.
        remove_tree(installed)
        report.removed_paths.append(installed)
    else:
        return
    # The renames reach the disk before the operation is marked failed: otherwise a power cut
    # could keep the "failed" and lose the rename, leaving the half-done swap with no record.
    durable.flush_folders(
        {folder for folder in (installed.parent, trash.parent) if folder.is_dir()}
    )


def recover_interrupted(registry: Registry, *, repairing: bool = False) -> RecoveryReport:
    """Fail operations whose process is gone and undo their half-done work on disk.

    ``repairing`` (the doctor's repair) also takes an owner that cannot be confirmed (no start
    time recorded) for gone at once; a launch waits until its row is old.
    """
    report = RecoveryReport()
    for operation in registry.list_operations(active_only=True):
        if not registry.owner_is_running(operation, repairing=repairing):
            recover_operation(registry, operation, report)
    _empty_finished(registry, report)
    if report.failed_operations:
        _remove_unreferenced_archives(registry, report)
    return report


def _remove_unreferenced_archives(registry: Registry, report: RecoveryReport) -> None:
    """An operation interrupted after its archive was put in ``archives/`` but before its
    commit leaves a file no kept version refers to. Only while nothing else runs: a running
    install puts its archive in place just before its own commit."""
    from registry.versions import unreferenced_archives

    if registry.list_operations(active_only=True, limit=1):
        return
    for path in unreferenced_archives(registry):
        try:
            path.unlink()
        except OSError:
            log.warning("could not remove %s; the doctor reports it", path, exc_info=True)
            continue
        report.removed_paths.append(path)


def recover_operation(
    registry: Registry, operation: OperationRecord, report: RecoveryReport
) -> None:
    """Undo what one operation of a dead process left half done, and mark it interrupted."""
    roll_back_swap(registry, operation, report)
    staging = staging_dir_for(registry, operation.install_id)
    if staging.exists():
        remove_tree(staging)
        report.removed_paths.append(staging)
        durable.flush_folder(staging.parent)
    registry.finish_operation(operation.install_id, OperationStatus.FAILED, INTERRUPTED)
    report.failed_operations.append(operation.install_id)
    what = operation.extension_id or Path(operation.archive_path).name or "an unknown file"
    report.interrupted.append(InterruptedOperation(operation.install_id, operation.kind, what))
    log.warning("operation %s was interrupted; marked failed", operation.install_id)


def _empty_finished(registry: Registry, report: RecoveryReport) -> None:
    """Trash and staging of operations that committed (or failed and were rolled back) is
    garbage. A process killed after its commit but before its own cleanup leaves some behind.
    Entries whose names the app does not make are not its garbage and stay.

    The folders are listed *before* the active operations are read: an operation's row exists
    before its folders, so a folder seen here whose operation is not active then has finished,
    even if another process started a new operation in between.
    """
    entries = [
        entry
        for folder in (registry.paths.trash, registry.paths.staging)
        if folder.exists()
        for entry in folder.iterdir()
    ]
    if not entries:
        return
    active = {op.install_id for op in registry.list_operations(active_only=True)}
    for entry in entries:
        install_id = operation_number(entry.name)
        if install_id is None or install_id in active:
            continue  # not a name the app makes, or still in use
        try:
            remove_tree(entry)
        except FileNotFoundError:
            continue  # its own process finished cleaning it up meanwhile
        except OSError:
            # Garbage that cannot be removed must not keep anyone out; the doctor reports it.
            log.warning("could not remove %s; left for the next launch", entry, exc_info=True)
            continue
        report.removed_paths.append(entry)


def operation_number(name: str) -> int | None:
    """The operation a ``staging/`` or ``trash/`` entry belongs to (``op-N`` or ``op-N-<id>``)."""
    prefix, _, rest = name.partition("-")
    number = rest.split("-", 1)[0]
    if prefix == "op" and number.isascii() and number.isdigit():
        return int(number)
    return None
