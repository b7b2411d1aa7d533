"""Install, upgrade and uninstall extensions: safe, atomic and observable.

One operation row per attempt, created before anything else happens, then::

    read archive -> check entries and limits -> read manifest -> compatibility -> compare with
    the installed version -> confirmation -> extract to staging -> swap in -> commit -> COMPLETED

The swap protocol (which ``registry.recovery`` relies on after a crash):

1. files are extracted to ``staging/op-N/files``;
2. the installed version, if any, is renamed to ``trash/op-N-<id>``;
3. the new files are renamed to ``extensions/<id>``;
4. one registry transaction records the extension and flips the operation to COMPLETED;
5. only then are the trash and the staging folder removed.

Until step 4 the registry describes the old version and the trash holds it, so a failure (or a
crash) puts it back. Nothing from the archive is executed or imported, and every write stays
inside the data folder.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from registry.errors import (
    InstallCancelledError,
    InstallRefusedError,
    ManifestError,
    RegistryError,
    UserFacingError,
)
from registry.limits import DEFAULT_LIMITS, Limits
from registry.models import Extension, ExtensionConfig, ExtensionInstall
from registry.permissions import PERMISSIONS
from registry.recovery import (
    RecoveryReport,
    recover_operation,
    remove_tree,
    staging_dir_for,
    trash_dir_for,
)
from registry.store import (
    ACTIVE_STATUSES,
    OperationRecord,
    Registry,
    operation_record,
    plain_database_error,
    process_is_alive,
    utc_now,
)

if TYPE_CHECKING:
    from registry.archive import OpenArchive
    from registry.manifest import Manifest

# The archive reader and the manifest validator (zipfile, bz2, lzma, many regular expressions)
# are imported by the operations that use them: the window imports this module at launch, and
# its launch time is measured.

log = logging.getLogger(__name__)

# Where each step starts on the progress bar; extraction fills EXTRACT_START..EXTRACT_END by bytes.
STEP_PROGRESS = {
    "Reading the archive": 1,
    "Checking the archive's contents": 3,
    "Reading the manifest": 5,
    "Checking compatibility": 6,
    "Comparing with the installed version": 7,
    "Waiting for confirmation": 8,
    "Extracting files": 10,
    "Putting the new version in place": 95,
    "Recording in the registry": 98,
}
EXTRACT_START, EXTRACT_END = 10, 94
PROGRESS_WRITES_PER_SECOND = 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class CancelToken:
    """A request to stop, checked between steps and between extraction chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True, slots=True)
class InstallPlan:
    """Everything the confirmation shows before anything is written."""

    install_id: int
    archive_path: Path
    manifest: Manifest
    kind: str  # INSTALL, UPGRADE, REINSTALL or DOWNGRADE
    installed_version: str | None
    file_count: int
    total_bytes: int
    config_added: tuple[str, ...] = ()
    config_removed: tuple[str, ...] = ()

    @property
    def permissions(self) -> list[tuple[str, str]]:
        return [(name, PERMISSIONS[name]) for name in self.manifest.permissions]

    @property
    def change(self) -> str:
        new = str(self.manifest.version)
        return {
            "INSTALL": f"New install of version {new}",
            "UPGRADE": f"Upgrade {self.installed_version} → {new}",
            "REINSTALL": f"Reinstall of the installed version {new}",
            "DOWNGRADE": f"Downgrade {self.installed_version} → {new} (older than installed)",
        }[self.kind]

    def describe(self) -> list[str]:
        """The confirmation as lines of plain text (the CLI prints them; the dialog shows them)."""
        manifest = self.manifest
        lines = [
            f"{manifest.name} ({manifest.id})",
            self.change,
            f"{self.file_count} files, {format_bytes(self.total_bytes)}",
        ]
        if manifest.author:
            lines.append(f"Author: {manifest.author}")
        if manifest.capabilities:
            lines.append("Capabilities: " + ", ".join(manifest.capabilities))
        if manifest.permissions:
            lines.append("It asks permission to:")
            lines.extend(f"  • {words} ({name})" for name, words in self.permissions)
        else:
            lines.append("It asks for no permissions.")
        if self.config_removed:
            lines.append("Settings no longer used: " + ", ".join(self.config_removed))
        if self.config_added:
            lines.append("New settings (with defaults): " + ", ".join(self.config_added))
        return lines


Confirm = Callable[[InstallPlan], bool]


@dataclass(frozen=True, slots=True)
class InstallOptions:
    allow_reinstall: bool = False
    allow_downgrade: bool = False


@dataclass(slots=True)
class _Swap:
    """What the swap has done so far, so that a failure at any point can undo exactly that."""

    target: Path | None = None
    trash: Path | None = None
    swapped: bool = False


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


def plain_os_error(error: OSError, doing: str) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"The disk is full while {doing}. Free some space and try again; nothing was changed."
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"Permission denied while {doing} ({error.filename or 'the data folder'}). Check "
            "that the data folder is writable, or choose another one with --data-dir."
        )
    return f"Could not finish {doing}: {error.strerror or error}. Nothing was changed."


class _ProgressWriter:
    """Writes progress into the operation row: at every step change, and at most ~20 times a
    second in between, so the registry stays the one source of truth without dominating cost."""

    def __init__(self, registry: Registry, install_id: int) -> None:
        self.registry = registry
        self.install_id = install_id
        self.progress = 0
        self._last_write = 0.0

    def step(self, name: str, **fields: Any) -> None:
        self.progress = max(self.progress, STEP_PROGRESS.get(name, self.progress))
        self.registry.update_operation(
            self.install_id, current_step=name, progress=self.progress, **fields
        )
        self._last_write = time.monotonic()

    def extracted(self, written: int, total: int) -> None:
        share = written / total if total else 1.0
        progress = EXTRACT_START + int(share * (EXTRACT_END - EXTRACT_START))
        now = time.monotonic()
        if progress <= self.progress or now - self._last_write < 1 / PROGRESS_WRITES_PER_SECOND:
            return
        self.progress = progress
        self.registry.update_operation(self.install_id, progress=progress)
        self._last_write = now


class Installer:
    """Runs operations against one registry. Safe to use from several threads at once."""

    def __init__(
        self, registry: Registry, app_version: str, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.registry = registry
        self.app_version = app_version
        self.limits = limits

    # -- install ---------------------------------------------------------------------------------

    def begin(self, archive_path: Path) -> int:
        """Record the operation the moment a file is accepted."""
        return self.registry.create_operation(archive_path.absolute())

    def install(
        self,
        archive_path: Path,
        *,
        confirm: Confirm | None = None,
        options: InstallOptions = InstallOptions(),
        cancel: CancelToken | None = None,
        install_id: int | None = None,
    ) -> OperationRecord:
        """Install one archive; always returns the operation's final record (never raises for
        a bad archive or a refusal: those end FAILED with a plain error)."""
        if install_id is None:
            install_id = self.begin(archive_path)
        cancel = cancel or CancelToken()
        progress = _ProgressWriter(self.registry, install_id)
        swap = _Swap()
        try:
            self._install(archive_path, install_id, progress, confirm, options, cancel, swap)
        except Exception as error:
            self._fail(install_id, error, swap, f"installing {archive_path.name}")
        finally:
            self._clean_staging(install_id)
        return self.registry.get_operation(install_id)

    def _install(
        self,
        archive_path: Path,
        install_id: int,
        progress: _ProgressWriter,
        confirm: Confirm | None,
        options: InstallOptions,
        cancel: CancelToken,
        swap: _Swap,
    ) -> None:
        from registry.archive import open_archive
        from registry.manifest import check_compatibility, parse_manifest

        progress.step("Reading the archive")
        with open_archive(archive_path, self.limits) as archive:
            progress.step(
                "Checking the archive's contents",
                file_count=len(archive.members),
                total_bytes=archive.total_bytes,
            )
            self._check_cancel(cancel)
            progress.step("Reading the manifest")
            manifest = parse_manifest(
                archive.read_member(archive.manifest, self.limits.max_manifest_bytes)
            )
            self._check_icon(archive, manifest)
            self.claim(install_id, manifest.id)

            progress.step("Checking compatibility", to_version=str(manifest.version))
            problem = check_compatibility(manifest, self.app_version)
            if problem:
                raise InstallRefusedError(problem)

            progress.step("Comparing with the installed version")
            plan = self._plan(install_id, archive_path, archive, manifest)
            self.registry.update_operation(
                install_id, kind=plan.kind, from_version=plan.installed_version
            )
            self._check_version_change(plan, options, confirm)
            self._check_cancel(cancel)

            progress.step("Waiting for confirmation")
            if confirm is not None and not confirm(plan):
                raise InstallCancelledError()
            self._check_cancel(cancel)

            staging = staging_dir_for(self.registry, install_id)
            files_dir = staging / "files"
            files_dir.mkdir(parents=True)
            progress.step("Extracting files", staging_dir=str(staging))
            # Hash on another core while extracting: both release the GIL, reads are positional.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
                hashing = hasher.submit(archive.sha256)
                archive.extract_to(
                    files_dir,
                    on_progress=lambda written: progress.extracted(written, archive.total_bytes),
                    should_cancel=lambda: cancel.cancelled,
                )
                digest = hashing.result()
            file_list = [(str(m.path), m.size) for m in archive.members]
        self._check_cancel(cancel)

        progress.step("Putting the new version in place", archive_sha256=digest)
        target = self.registry.paths.extensions / manifest.id
        swap.target = target
        if target.exists():
            swap.trash = trash_dir_for(self.registry, install_id, manifest.id)
            target.rename(swap.trash)
        swap.swapped = True
        files_dir.rename(target)

        progress.step("Recording in the registry")
        self._commit_install(install_id, plan, target, digest, file_list)
        swap.swapped = False  # committed: the new version is the registered one now
        _discard_trash(swap)

    def _check_cancel(self, cancel: CancelToken) -> None:
        if cancel.cancelled:
            raise InstallCancelledError()

    def _check_icon(self, archive: OpenArchive, manifest: Manifest) -> None:
        if manifest.icon is None:
            return
        member = archive.find(manifest.icon)
        if member is None:
            raise ManifestError([f"icon: '{manifest.icon}' is not a file in the archive"])
        if member.size > self.limits.max_icon_bytes:
            raise ManifestError(
                [
                    f"icon: '{manifest.icon}' is {format_bytes(member.size)}; the limit is "
                    f"{format_bytes(self.limits.max_icon_bytes)}"
                ]
            )
        header = archive.read_member(member, self.limits.max_icon_bytes)[:24]
        if len(header) < 24 or not header.startswith(PNG_SIGNATURE) or header[12:16] != b"IHDR":
            raise ManifestError([f"icon: '{manifest.icon}' is not a PNG image"])
        width, height = struct.unpack(">II", header[16:24])
        side = self.limits.max_icon_pixels_per_side
        if width > side or height > side or width == 0 or height == 0:
            raise ManifestError(
                [f"icon: '{manifest.icon}' is {width}×{height} pixels; at most {side}×{side}"]
            )

    def claim(self, install_id: int, extension_id: str) -> None:
        """Mark the operation as working on ``extension_id``, unless another live one is.

        The check and the claim happen in one IMMEDIATE transaction, so two processes racing to
        install the same extension cannot both win.
        """
        database = self.registry.database
        with database.atomic():
            others = ExtensionInstall.select().where(
                (ExtensionInstall.extension_id == extension_id)
                & (ExtensionInstall.status.in_(ACTIVE_STATUSES))
                & (ExtensionInstall.install_id != install_id)
            )
            for other in others:
                if process_is_alive(other.owner_pid, other.owner_started):
                    raise InstallRefusedError(
                        f"Another operation (number {other.install_id}) is already changing "
                        f"{extension_id}. Wait for it to finish, then try again."
                    )
                # Its process died mid-change: finish its recovery now, before this operation
                # touches the same folders (otherwise the next launch would put its old
                # version back over ours).
                recover_operation(self.registry, operation_record(other), RecoveryReport())
            ExtensionInstall.update(extension_id=extension_id, updated_at=utc_now()).where(
                ExtensionInstall.install_id == install_id
            ).execute()

    def _plan(
        self, install_id: int, archive_path: Path, archive: OpenArchive, manifest: Manifest
    ) -> InstallPlan:
        installed = self.registry.get_extension(manifest.id)
        kind, installed_version = "INSTALL", None
        added: tuple[str, ...] = ()
        removed: tuple[str, ...] = ()
        if installed is not None:
            installed_version = installed.version
            from registry.manifest import SemVer

            try:
                current = SemVer.parse(installed.version)
            except ValueError:
                current = None
            if current is None or manifest.version > current:
                kind = "UPGRADE"
            elif manifest.version == current:
                kind = "REINSTALL"
            else:
                kind = "DOWNGRADE"
            old_keys = set(installed.config_defaults)
            new_keys = set(manifest.config)
            added = tuple(sorted(new_keys - old_keys))
            removed = tuple(sorted(old_keys - new_keys))
        return InstallPlan(
            install_id=install_id,
            archive_path=archive_path,
            manifest=manifest,
            kind=kind,
            installed_version=installed_version,
            file_count=len(archive.members),
            total_bytes=archive.total_bytes,
            config_added=added,
            config_removed=removed,
        )

    def _check_version_change(
        self, plan: InstallPlan, options: InstallOptions, confirm: Confirm | None
    ) -> None:
        # With a confirmation, the person sees "Reinstall"/"Downgrade" and chooses explicitly.
        if confirm is not None:
            return
        name = f"{plan.manifest.name} {plan.installed_version}"
        if plan.kind == "REINSTALL" and not options.allow_reinstall:
            raise InstallRefusedError(
                f"{name} is already installed. To install the same version again, choose "
                "Reinstall (--reinstall on the command line)."
            )
        if plan.kind == "DOWNGRADE" and not options.allow_downgrade:
            raise InstallRefusedError(
                f"{name} is installed, which is newer than {plan.manifest.version} in this file. "
                "To go back to the older version, choose Downgrade (--downgrade)."
            )

    def _commit_install(
        self,
        install_id: int,
        plan: InstallPlan,
        target: Path,
        digest: str,
        file_list: list[tuple[str, int]],
    ) -> None:
        manifest = plan.manifest
        now = utc_now()
        previous = self.registry.get_extension(manifest.id)
        values = {
            "name": manifest.name,
            "version": str(manifest.version),
            "description": manifest.description,
            "author": manifest.author,
            "license": manifest.license,
            "homepage": manifest.homepage,
            "icon_path": manifest.icon,
            "manifest": json.dumps(manifest.raw, ensure_ascii=False),
            "capabilities": json.dumps(list(manifest.capabilities)),
            "permissions": json.dumps(list(manifest.permissions)),
            "install_path": str(target),
            "archive_sha256": digest,
            "files": json.dumps(file_list, ensure_ascii=False),
            "updated_at": now,
        }
        with self.registry.database.atomic():
            if previous is None:
                Extension.insert(id=manifest.id, enabled=True, installed_at=now, **values).execute()
            else:
                updated = Extension.update(**values).where(Extension.id == manifest.id).execute()
                if not updated:
                    # Unregistered meanwhile (e.g. by a repair): committing now would complete
                    # the operation with no extension row to show for it.
                    raise InstallRefusedError(
                        f"{manifest.name} was removed from the registry while it was being "
                        "changed. Install it again."
                    )
                if plan.config_removed:
                    ExtensionConfig.delete().where(
                        (ExtensionConfig.extension_id == manifest.id)
                        & (ExtensionConfig.key.in_(plan.config_removed))
                    ).execute()
            # Same transaction as the rows that make the change real.
            self.registry.finish_operation(install_id, "COMPLETED")

    # -- uninstall -------------------------------------------------------------------------------

    def uninstall(self, extension_id: str, *, install_id: int | None = None) -> OperationRecord:
        """Remove an extension's files, its row and its settings; its history stays."""
        if install_id is None:
            install_id = self.registry.create_operation(
                kind="UNINSTALL", status="UNINSTALLING", current_step="Queued"
            )
        progress = _ProgressWriter(self.registry, install_id)
        swap = _Swap()
        try:
            installed = self.registry.get_extension(extension_id)
            if installed is None:
                raise InstallRefusedError(f"The extension '{extension_id}' is not installed.")
            self.claim(install_id, extension_id)
            progress.step("Removing files", from_version=installed.version)
            target = self.registry.paths.extensions / extension_id
            swap.target = target
            if target.exists():
                swap.trash = trash_dir_for(self.registry, install_id, extension_id)
                swap.swapped = True
                target.rename(swap.trash)
            progress.step("Recording in the registry")
            with self.registry.database.atomic():
                Extension.delete().where(Extension.id == extension_id).execute()
                self.registry.finish_operation(install_id, "COMPLETED")
            swap.swapped = False
            _discard_trash(swap)
        except Exception as error:
            self._fail(install_id, error, swap, f"uninstalling {extension_id}")
        return self.registry.get_operation(install_id)

    # -- failure ---------------------------------------------------------------------------------

    def _fail(self, install_id: int, error: Exception, swap: _Swap, doing: str) -> None:
        plain = (
            plain_database_error(error)
            if isinstance(error, peewee.OperationalError | sqlite3.OperationalError)
            else None
        )
        if isinstance(error, UserFacingError):
            message = str(error)
        elif isinstance(error, OSError):
            message = plain_os_error(error, doing)
        elif plain is not None:
            message = str(plain)
        else:
            log.exception("unexpected error while %s", doing)
            message = (
                f"An unexpected error stopped {doing} ({type(error).__name__}: {error}). "
                "Nothing was changed; details are in the log file."
            )
        if swap.swapped:
            self._undo_swap(swap)
        try:
            self.registry.finish_operation(install_id, "FAILED", message)
        except RegistryError:
            log.exception("could not record the failure of operation %s", install_id)

    def _undo_swap(self, swap: _Swap) -> None:
        target = swap.target
        if target is None:
            return
        try:
            if swap.trash is not None and swap.trash.exists():
                if target.exists():
                    remove_tree(target)
                swap.trash.rename(target)
            elif swap.trash is None and target.exists():
                remove_tree(target)
        except OSError:
            # The next launch's recovery finds the trash and finishes putting it back.
            log.exception("could not undo the swap of %s", swap.target)

    def _clean_staging(self, install_id: int) -> None:
        staging = staging_dir_for(self.registry, install_id)
        try:
            if staging.exists():
                shutil.rmtree(staging)
        except OSError:
            log.exception("could not remove %s", staging)


def _discard_trash(swap: _Swap) -> None:
    """After the commit the change is made: a leftover trash folder is only garbage, which the
    next launch removes, and must not turn the operation into a failure."""
    if swap.trash is None:
        return
    try:
        remove_tree(swap.trash)
    except OSError:
        log.warning("could not remove %s; the next launch will", swap.trash, exc_info=True)
