"""Install, upgrade and uninstall extensions: safe, atomic and observable.

An install runs in two parts with the person's decision between them, so that no thread ever
waits on a person:

1. ``plan`` (on a worker): read the archive, check its entries and limits, read the manifest,
   check compatibility and compare with the installed version. The result, an ``InstallPlan``,
   is everything the confirmation shows. Nothing is written but the operation row, which then
   says "Waiting for confirmation" at progress 0.
2. The caller asks the person on its own thread (a dialog, a terminal prompt, or ``--yes``).
3. ``execute`` (on a worker): check that the file is still the one planned, extract to staging,
   swap in, commit. Or ``decline``, which ends the operation with nothing changed.

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

import dataclasses
import errno
import json
import logging
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from migrations.runner import expected_condition
from registry.durable import flush_folders
from registry.errors import (
    InstallCancelledError,
    InstallRefusedError,
    ManifestError,
    RegistryError,
    UserFacingError,
)
from registry.limits import DEFAULT_LIMITS, Limits
from registry.permissions import PERMISSIONS
from registry.recovery import (
    RecoveryReport,
    recover_operation,
    remove_tree,
    staging_dir_for,
    trash_dir_for,
)
from registry.sizes import format_size
from registry.store import (
    DOWNLOAD_STEP,
    RECORDING_ROOM,
    ExtensionValues,
    InnerOffer,
    KeptSettingsRecord,
    OperationRecord,
    Registry,
    RequirementsRow,
    plain_database_error,
)
from registry.version import APP_VERSION
from registry.versions import STAGED_ARCHIVE, keep_archive, prune_quietly, rollback_target
from registry.vocabulary import OperationKind, OperationStatus

if TYPE_CHECKING:
    from registry.archive import OpenArchive
    from registry.manifest import Manifest
    from registry.requirements import Missing, VersionRange
    from registry.sources import Offer

# The archive reader and the manifest validator (zipfile, bz2, lzma, many regular expressions)
# are imported by the operations that use them: the window imports this module at launch, and
# its launch time is measured.

log = logging.getLogger(__name__)

# Planning writes nothing but the row, so its steps stay at 0 %: the bar only moves once the
# person has said yes. Extraction fills EXTRACT_START..EXTRACT_END by bytes.
PLAN_STEPS = (
    "Reading the archive",
    "Checking the archive's contents",
    "Reading the manifest",
    "Checking compatibility",
    "Comparing with the installed version",
)
WAITING_STEP = "Waiting for confirmation"
DOWNLOADED_ARCHIVE = "download.zip"
PACKED_FOLDER = "folder.zip"
STEP_PROGRESS = {
    "Checking the file again": 1,
    "Extracting files": 2,
    "Putting the new version in place": 95,
    "Removing files": 50,
    "Recording in the registry": 98,
}
EXTRACT_START, EXTRACT_END = 2, 94
PROGRESS_WRITES_PER_SECOND = 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Named moments inside the swap, reported to ``on_step`` like the steps themselves, so that a
# test can stop a process at exactly that point.
OLD_VERSION_MOVED_ASIDE = "old version moved aside"
NEW_VERSION_MOVED_IN = "new version moved in"
COMMITTED = "committed"

StepHook = Callable[[int, str], None]


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
class InstallOptions:
    """What an unattended install (``--yes``) may do besides installing or upgrading."""

    allow_reinstall: bool = False
    allow_downgrade: bool = False
    # A version outside the range an installed extension needs of it.
    allow_breaking: bool = False


@dataclass(frozen=True, slots=True)
class InstallPlan:
    """Everything the confirmation shows before anything is written."""

    install_id: int
    archive_path: Path
    manifest: Manifest
    kind: OperationKind  # INSTALL, UPGRADE, REINSTALL or DOWNGRADE
    installed_version: str | None
    file_count: int
    total_bytes: int
    config_added: tuple[str, ...] = ()
    config_removed: tuple[str, ...] = ()
    # Where the archive came from (its path or URL) and the update source it was found in.
    origin: str = ""
    origin_source: str | None = None
    # A rollback puts back the settings the kept version last ran with; a new install of an
    # id uninstalled with its settings kept puts those back, unless the person says not to.
    restore_settings: Mapping[str, Any] | None = field(default=None, compare=False)
    kept_settings: KeptSettingsRecord | None = field(default=None, compare=False)
    # Installed extensions this version would leave without what they need, in words.
    breaks: tuple[str, ...] = ()
    # Taken from inside another archive: the member, and the outer file's sha256.
    from_member: str | None = None
    outer_sha256: str | None = None
    # The archive as validated (closed while the person decides), and which file that was:
    # executing reopens it and extracts those members if, and only if, the file is the same.
    validated: OpenArchive | None = field(default=None, compare=False, repr=False)
    identity: tuple[int, int, int, int] | None = field(default=None, compare=False, repr=False)

    @property
    def permissions(self) -> list[tuple[str, str]]:
        return [(name, PERMISSIONS[name]) for name in self.manifest.permissions]

    @property
    def requires(self) -> Mapping[str, VersionRange]:
        return self.manifest.requires

    @property
    def restores_kept_settings(self) -> bool:
        return self.kept_settings is not None and self.restore_settings is not None

    def with_kept_settings(self, restore: bool) -> InstallPlan:
        """The same plan, putting back the settings kept at the last uninstall or not."""
        if self.kept_settings is None:
            return self
        values = self.kept_settings.settings if restore else None
        return dataclasses.replace(self, restore_settings=values)

    @property
    def change(self) -> str:
        new = str(self.manifest.version)
        return {
            OperationKind.INSTALL: f"New install of version {new}",
            OperationKind.UPGRADE: f"Upgrade {self.installed_version} → {new}",
            OperationKind.REINSTALL: f"Reinstall of the installed version {new}",
            OperationKind.DOWNGRADE: (
                f"Downgrade {self.installed_version} → {new} (older than installed)"
            ),
            OperationKind.ROLLBACK: (
                f"Roll back {self.installed_version} → {new}, with the settings it had"
            ),
        }[self.kind]

    def refusal(self, options: InstallOptions) -> str | None:
        """Why this may not run unattended with ``options`` (None: it may). A person who is
        asked sees "Reinstall"/"Downgrade" and chooses explicitly instead."""
        name = f"{self.manifest.name} {self.installed_version}"
        if self.kind == OperationKind.REINSTALL and not options.allow_reinstall:
            return (
                f"{name} is already installed. To install the same version again, choose "
                "Reinstall (--reinstall on the command line)."
            )
        if self.kind == OperationKind.DOWNGRADE and not options.allow_downgrade:
            return (
                f"{name} is installed, which is newer than {self.manifest.version} in this "
                "file. To go back to the older version, choose Downgrade (--allow-downgrade)."
            )
        if self.breaks and not options.allow_breaking:
            return (
                f"{self.manifest.name} {self.manifest.version} was not installed: it would "
                f"break what needs it ({'; '.join(self.breaks)}). Install a version of those "
                "that accepts it in the same command, or allow it (--allow-breaking)."
            )
        return None

    def describe(self) -> list[str]:
        """The confirmation as lines of plain text (the CLI prints them; the dialog shows them)."""
        manifest = self.manifest
        lines = [
            f"{manifest.name} ({manifest.id})",
            self.change,
            f"{self.file_count} files, {format_size(self.total_bytes)}",
        ]
        if self.from_member:
            lines.append(f"From inside {self.archive_name}: {self.from_member}")
        if manifest.author:
            lines.append(f"Author: {manifest.author}")
        if manifest.capabilities:
            lines.append("Capabilities: " + ", ".join(manifest.capabilities))
        if manifest.permissions:
            lines.append("It asks permission to:")
            lines.extend(f"  • {words} ({name})" for name, words in self.permissions)
        else:
            lines.append("It asks for no permissions.")
        if self.kind == OperationKind.ROLLBACK:
            lines.append(
                "No update is offered for it afterwards until you release it "
                "(extension-manager release ID)."
            )
        elif self.config_removed:
            lines.append("Settings no longer used: " + ", ".join(self.config_removed))
        if self.config_added:
            lines.append("New settings (with defaults): " + ", ".join(self.config_added))
        if self.requires:
            lines.append(
                "Needs: "
                + ", ".join(f"{other} {wanted}" for other, wanted in self.requires.items())
            )
        if self.kept_settings is not None:
            kept = self.kept_settings
            lines.append(
                f"Settings kept when {kept.version} was uninstalled: "
                + ("restored" if self.restores_kept_settings else "not restored (defaults)")
            )
        lines.extend(f"Breaks: {words}" for words in self.breaks)
        return lines

    @property
    def archive_name(self) -> str:
        return Path(self.origin).name if self.origin else self.archive_path.name


Confirm = Callable[[InstallPlan], bool]


@dataclass(frozen=True, slots=True)
class _Staged:
    """An archive extracted into staging, ready to be swapped in."""

    files_dir: Path
    kept_copy: Path | None
    digest: str
    files: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Batch:
    """Several plans confirmed together: those that can go ahead, in the order they install
    (what others need first), and those held back, each with why."""

    ready: tuple[InstallPlan, ...]
    held_back: tuple[tuple[InstallPlan, str], ...]
    # Plans linked by ``requires`` install all or nothing: one group per set of linked plans.
    groups: tuple[tuple[InstallPlan, ...], ...]


@dataclass(slots=True)
class _Swap:
    """What the swap has done so far, so that a failure at any point can undo exactly that."""

    target: Path | None = None
    trash: Path | None = None
    swapped: bool = False
    # An archive this operation put in archives/: garbage if the operation does not commit.
    new_archive: Path | None = None


def extension_values(
    manifest: Manifest,
    install_path: Path,
    archive_sha256: str,
    files: list[tuple[str, int]],
    origin: str = "",
    origin_source: str | None = None,
) -> ExtensionValues:
    """What the registry records for ``manifest`` installed in ``install_path``."""
    return ExtensionValues(
        id=manifest.id,
        name=manifest.name,
        version=str(manifest.version),
        description=manifest.description,
        author=manifest.author,
        license=manifest.license,
        homepage=manifest.homepage,
        icon_path=manifest.icon,
        manifest=manifest.raw,
        capabilities=tuple(manifest.capabilities),
        permissions=tuple(manifest.permissions),
        install_path=str(install_path),
        archive_sha256=archive_sha256,
        files=tuple(files),
        origin=origin,
        origin_source=origin_source,
    )


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
    second in between, so the registry stays the one source of truth without dominating cost.
    ``clock`` is injectable so the throttle can be tested without waiting."""

    def __init__(
        self,
        registry: Registry,
        install_id: int,
        clock: Callable[[], float],
        on_step: StepHook | None,
    ) -> None:
        self.registry = registry
        self.install_id = install_id
        self.progress = 0
        self._clock = clock
        self._on_step = on_step
        self._last_write = float("-inf")

    def step(self, name: str, **fields: object) -> None:
        self.progress = max(self.progress, STEP_PROGRESS.get(name, self.progress))
        self.registry.update_operation(
            self.install_id, current_step=name, progress=self.progress, **fields
        )
        self._last_write = self._clock()
        self.checkpoint(name)

    def checkpoint(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(self.install_id, name)

    def downloaded(self, received: int) -> None:
        """Byte progress of a download, written like extraction's (throttled)."""
        now = self._clock()
        if now - self._last_write < 1 / PROGRESS_WRITES_PER_SECOND:
            return
        self.registry.update_operation(self.install_id, download_bytes=received)
        self._last_write = now

    def extracted(self, written: int, total: int) -> None:
        share = written / total if total else 1.0
        progress = EXTRACT_START + int(share * (EXTRACT_END - EXTRACT_START))
        now = self._clock()
        if progress <= self.progress or now - self._last_write < 1 / PROGRESS_WRITES_PER_SECOND:
            return
        self.progress = progress
        self.registry.update_operation(self.install_id, progress=progress)
        self._last_write = now


class Installer:
    """Runs operations against one registry. Safe to use from several threads at once.

    ``clock`` and ``on_step`` are seams: the progress throttle reads the clock, and ``on_step``
    is called with the operation and the name of every step and swap moment as it is reached.
    """

    def __init__(
        self,
        registry: Registry,
        app_version: str = APP_VERSION,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_step: StepHook | None = None,
    ) -> None:
        self.registry = registry
        self.app_version = app_version
        self.limits = limits
        self._clock = clock
        self._on_step = on_step

    def _progress(self, install_id: int) -> _ProgressWriter:
        return _ProgressWriter(self.registry, install_id, self._clock, self._on_step)

    # -- install ---------------------------------------------------------------------------------

    def begin(self, archive_path: Path) -> int:
        """Record the operation the moment a file is accepted."""
        return self.registry.create_operation(archive_path.absolute())

    def plan(
        self,
        install_id: int,
        archive_path: Path,
        cancel: CancelToken | None = None,
        *,
        origin: str | None = None,
        origin_source: str | None = None,
        member: str | None = None,
    ) -> InstallPlan | OperationRecord:
        """Read and check the archive and compare it with what is installed. Returns the plan
        to show the person, or the operation's final (FAILED) record when the file cannot be
        installed; never raises for a bad archive. ``origin`` is where the file came from when
        it is not the file itself (a download). ``archive_path`` may be a folder (packed into
        staging first); ``member`` is an inner zip or a folder inside the archive to install
        instead of the archive itself (one level only)."""
        cancel = cancel or CancelToken()
        progress = self._progress(install_id)
        try:
            plan = self._plan(install_id, archive_path, progress, cancel, member=member)
            plan = dataclasses.replace(
                plan,
                origin=origin if origin is not None else str(archive_path.absolute()),
                origin_source=origin_source,
            )
            progress.step(WAITING_STEP)
        except Exception as error:
            self._fail(install_id, error, _Swap(), f"reading {archive_path.name}")
            return self.registry.get_operation(install_id)
        return plan

    def execute(self, plan: InstallPlan, cancel: CancelToken | None = None) -> OperationRecord:
        """Carry out a plan the person agreed to; returns the operation's final record."""
        cancel = cancel or CancelToken()
        progress = self._progress(plan.install_id)
        swap = _Swap()
        try:
            self._execute(plan, progress, cancel, swap)
        except Exception as error:
            return self._fail(plan.install_id, error, swap, f"installing {plan.archive_path.name}")
        finally:
            self._clean_staging(plan.install_id)
        return self.registry.get_operation(plan.install_id)

    def decline(self, install_id: int, refusal: str | None = None) -> OperationRecord:
        """End a planned operation the person said no to (CANCELLED), or that may not run
        unattended (FAILED, with ``refusal`` saying why). An update's download goes with it."""
        self._clean_staging(install_id)
        if refusal is None:
            self.registry.finish_operation(
                install_id, OperationStatus.CANCELLED, str(InstallCancelledError())
            )
        else:
            self.registry.finish_operation(install_id, OperationStatus.FAILED, refusal)
        return self.registry.get_operation(install_id)

    def install(
        self,
        archive_path: Path,
        *,
        confirm: Confirm | None = None,
        options: InstallOptions = InstallOptions(),
        cancel: CancelToken | None = None,
        install_id: int | None = None,
    ) -> OperationRecord:
        """Plan, confirm and execute on the calling thread, for callers that have no person to
        wait for in between (``confirm`` answers at once, or is None for unattended installs,
        where ``options`` say whether a reinstall or downgrade may go ahead)."""
        if install_id is None:
            install_id = self.begin(archive_path)
        planned = self.plan(install_id, archive_path, cancel)
        return self._confirm_and_execute(planned, confirm, cancel, options)

    def arrange(self, plans: Sequence[InstallPlan]) -> Batch:
        """Put plans confirmed together in order and say which cannot go ahead: one whose
        requirements are met neither by what is installed and on nor by another plan of the
        batch, a second file for the same extension. What an upgrade would break is worked
        out again with the batch's other plans in view."""
        from registry.requirements import install_order, unmet

        # Only what the plans need is read: at ten thousand extensions the whole table is tens
        # of milliseconds, and the window arranges again at every tick of its dialog.
        extensions = self.registry.requirement_rows(
            {needed for plan in plans for needed in plan.requires}
        )
        held: dict[int, str] = {}
        first_for: dict[str, InstallPlan] = {}
        for plan in plans:
            other = first_for.setdefault(plan.manifest.id, plan)
            if other is not plan:
                held[plan.install_id] = (
                    f"{other.archive_name} is also {plan.manifest.name} "
                    f"({other.manifest.version}): only one of the two files can be installed."
                )
        while True:
            going = [plan for plan in plans if plan.install_id not in held]
            available = {i: record.version for i, record in extensions.items() if record.enabled}
            available.update({plan.manifest.id: str(plan.manifest.version) for plan in going})
            newly = {
                plan.install_id: _missing_words(plan, missing, extensions)
                for plan in going
                if (missing := unmet(plan.requires, available))
            }
            if not newly:
                break
            held.update(newly)
        by_id = {plan.manifest.id: plan for plan in going}
        try:
            order = install_order({plan.manifest.id: plan.requires for plan in going})
        except ValueError:  # a cycle installs as one group, in the order given
            order = list(by_id)
        ready = []
        for extension_id in order:
            plan = by_id[extension_id]
            if plan.installed_version is not None:
                others = {o.manifest.id: o.manifest for o in going if o is not plan}
                plan = dataclasses.replace(plan, breaks=self._breaks(plan.manifest, others))
            ready.append(plan)
        return Batch(
            ready=tuple(ready),
            held_back=tuple(
                (plan, held[plan.install_id]) for plan in plans if plan.install_id in held
            ),
            groups=_linked_groups(ready),
        )

    def execute_group(
        self, plans: Sequence[InstallPlan], cancels: Sequence[CancelToken | None] = ()
    ) -> list[OperationRecord]:
        """Carry out plans that need each other, all or nothing: every archive is extracted
        first (where nearly every failure happens: a damaged file, a full disk, a cancel),
        and only then is each swapped in and committed, in order. If one cannot be staged,
        none is installed."""
        given = list(cancels) + [None] * (len(plans) - len(cancels))
        tokens = [token or CancelToken() for token in given[: len(plans)]]
        if len(plans) == 1:
            return [self.execute(plans[0], tokens[0])]
        staged: list[_Staged] = []
        try:
            for plan, token in zip(plans, tokens, strict=True):
                try:
                    if any(t.cancelled for t in tokens):
                        raise InstallCancelledError()
                    staged.append(self._stage(plan, self._progress(plan.install_id), token))
                except Exception as error:
                    self._fail(plan.install_id, error, _Swap(), f"installing {plan.archive_name}")
                    self._give_up_with(plans, plan, "could not be installed")
                    return self._records(plans)
            for index, (plan, ready) in enumerate(zip(plans, staged, strict=True)):
                swap = _Swap()
                try:
                    self._put_in_place(plan, ready, self._progress(plan.install_id), swap)
                except Exception as error:
                    self._fail(plan.install_id, error, swap, f"installing {plan.archive_name}")
                    self._give_up_with(plans[index + 1 :], plan, "failed")
                    break
        finally:
            for plan in plans:
                self._clean_staging(plan.install_id)
        return self._records(plans)

    def _check_requirements(self, plan: InstallPlan) -> None:
        """Never put in place an extension without what it needs: a plan made alone, or the
        registry changed since the batch was arranged (another process removed it)."""
        from registry.requirements import unmet

        if not plan.requires:
            return
        extensions = self.registry.requirement_rows(plan.requires)
        available = {i: record.version for i, record in extensions.items() if record.enabled}
        missing = unmet(plan.requires, available)
        if missing:
            raise InstallRefusedError(_missing_words(plan, missing, extensions))

    def _give_up_with(self, plans: Sequence[InstallPlan], failed: InstallPlan, what: str) -> None:
        for plan in plans:
            if plan is failed or not self.registry.get_operation(plan.install_id).active:
                continue
            self.decline(
                plan.install_id,
                f"{plan.manifest.name} was not installed: it goes with "
                f"{failed.manifest.name}, which {what}. Nothing was changed for it.",
            )

    def _records(self, plans: Sequence[InstallPlan]) -> list[OperationRecord]:
        return [self.registry.get_operation(plan.install_id) for plan in plans]

    def _confirm_and_execute(
        self,
        planned: InstallPlan | OperationRecord,
        confirm: Confirm | None,
        cancel: CancelToken | None,
        options: InstallOptions | None = None,
    ) -> OperationRecord:
        """The second half of every one-call operation: ask ``confirm`` (None: unattended,
        where ``options``, if given, say whether a reinstall or downgrade may go ahead), then
        execute or decline."""
        if not isinstance(planned, InstallPlan):
            return planned
        if confirm is None:
            refusal = planned.refusal(options) if options is not None else None
            if refusal is not None:
                return self.decline(planned.install_id, refusal)
        elif not confirm(planned):
            return self.decline(planned.install_id)
        return self.execute(planned, cancel)

    def _plan(
        self,
        install_id: int,
        archive_path: Path,
        progress: _ProgressWriter,
        cancel: CancelToken,
        *,
        rolling_back: bool = False,
        member: str | None = None,
    ) -> InstallPlan:
        progress.step("Reading the archive")
        archive, from_member, outer_sha256 = self._open_for_plan(install_id, archive_path, member)
        with archive:
            progress.step(
                "Checking the archive's contents",
                file_count=len(archive.members),
                total_bytes=archive.total_bytes,
            )
            self._check_cancel(cancel)
            progress.step("Reading the manifest")
            manifest = self._read_manifest(archive)
            self.claim(install_id, manifest.id)
            progress.step("Checking compatibility", to_version=str(manifest.version))
            self._check_compatibility(manifest)
            progress.step("Comparing with the installed version")
            plan = self._compare(install_id, archive.path, archive, manifest)
            if rolling_back:
                plan = dataclasses.replace(plan, kind=OperationKind.ROLLBACK)
            if from_member is not None:
                plan = dataclasses.replace(plan, from_member=from_member, outer_sha256=outer_sha256)
        self.registry.update_operation(
            install_id, kind=plan.kind, from_version=plan.installed_version
        )
        self._check_cancel(cancel)
        return plan

    def _open_for_plan(
        self, install_id: int, path: Path, member: str | None
    ) -> tuple[OpenArchive, str | None, str | None]:
        """The archive to install from ``path``: the file itself, a folder packed into staging,
        or a member inside it. Returns it open, with the member and the outer file's sha256
        when it came from inside. An archive whose extension is inside it is refused with what
        it holds (recorded on the operation, so the window can offer it)."""
        from registry.archive import NestedArchiveError, open_archive
        from registry.nested import find_candidates, open_member, pack_folder, refusal

        staging = staging_dir_for(self.registry, install_id)
        if path.is_dir():
            staging.mkdir(parents=True, exist_ok=True)
            packed = staging / PACKED_FOLDER
            pack_folder(path, packed, self.limits)
            return open_archive(packed, self.limits), None, None
        if member is not None:
            staging.mkdir(parents=True, exist_ok=True)
            opened = open_member(path, member, self.limits, staging)
            self.registry.update_operation(
                install_id, from_member=opened.member, outer_sha256=opened.outer_sha256
            )
            archive = opened.archive
            if opened.kind == "folder":
                # Packed into an extension zip of its own: that is what is kept, so a rollback
                # to this version opens a plain archive, and its sha256 is the inner one.
                unpacked = staging / "member"
                unpacked.mkdir()
                with archive:
                    archive.extract_to(unpacked, lambda _written: None, lambda: False)
                packed = staging / PACKED_FOLDER
                pack_folder(unpacked, packed, self.limits)
                remove_tree(unpacked)
                archive = open_archive(packed, self.limits)
            return archive, opened.member, opened.outer_sha256
        try:
            return open_archive(path, self.limits), None, None
        except NestedArchiveError:
            staging.mkdir(parents=True, exist_ok=True)
            candidates = find_candidates(path, self.limits, staging)
            offers = [
                InnerOffer(c.member, c.extension_id, c.name, c.version).payload()
                for c in candidates
                if c.problem is None and c.extension_id and c.name and c.version
            ]
            if offers:
                self.registry.update_operation(install_id, inner_offers=json.dumps(offers))
            raise InstallRefusedError(refusal(path, candidates)) from None

    def _read_manifest(self, archive: OpenArchive) -> Manifest:
        from registry.manifest import parse_manifest

        manifest = parse_manifest(
            archive.read_member(archive.manifest, self.limits.max_manifest_bytes)
        )
        self._check_icon(archive, manifest)
        return manifest

    def _check_compatibility(self, manifest: Manifest) -> None:
        from registry.manifest import check_compatibility

        problem = check_compatibility(manifest, self.app_version)
        if problem:
            raise InstallRefusedError(problem)

    def _execute(
        self,
        plan: InstallPlan,
        progress: _ProgressWriter,
        cancel: CancelToken,
        swap: _Swap,
    ) -> None:
        staged = self._stage(plan, progress, cancel)
        self._check_cancel(cancel)
        self._put_in_place(plan, staged, progress, swap)

    def _stage(self, plan: InstallPlan, progress: _ProgressWriter, cancel: CancelToken) -> _Staged:
        """Extract the planned archive into the operation's staging folder, hashing it (and
        writing the copy that is kept) meanwhile. Nothing outside staging changes."""
        install_id = plan.install_id
        self._check_cancel(cancel)
        progress.step("Checking the file again")
        with self._planned_archive(plan) as archive:
            staging = staging_dir_for(self.registry, install_id)
            files_dir = staging / "files"
            files_dir.mkdir(parents=True)
            progress.step("Extracting files", staging_dir=str(staging))
            # Hash on another core while extracting: both release the GIL, reads are positional.
            # The kept copy is written from the bytes being hashed (a rollback's is kept already).
            copy = staging / STAGED_ARCHIVE if plan.kind != OperationKind.ROLLBACK else None
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
                hashing = hasher.submit(archive.sha256, copy)
                archive.extract_to(
                    files_dir,
                    on_progress=lambda written: progress.extracted(written, archive.total_bytes),
                    should_cancel=lambda: cancel.cancelled,
                )
                digest = hashing.result()
            file_list = [(str(m.path), m.size) for m in archive.members]
        return _Staged(files_dir, copy, digest, file_list)

    def _put_in_place(
        self, plan: InstallPlan, staged: _Staged, progress: _ProgressWriter, swap: _Swap
    ) -> None:
        """Swap the staged files in and commit: the steps a crash recovery knows."""
        install_id, digest, copy = plan.install_id, staged.digest, staged.kept_copy
        files_dir, file_list = staged.files_dir, staged.files
        self._check_requirements(plan)
        progress.step("Putting the new version in place", archive_sha256=digest)
        if not self.registry.paths.kept_archive(digest).exists():
            swap.new_archive = self.registry.paths.kept_archive(digest)
        kept = keep_archive(self.registry, copy, digest)
        target = self.registry.paths.extensions / plan.manifest.id
        swap.target = target
        if target.exists():
            swap.trash = trash_dir_for(self.registry, install_id, plan.manifest.id)
            target.rename(swap.trash)
            progress.checkpoint(OLD_VERSION_MOVED_ASIDE)
        swap.swapped = True
        files_dir.rename(target)
        progress.checkpoint(NEW_VERSION_MOVED_IN)
        # The renames reach the disk before the commit that describes them.
        flush_folders({target.parent} | ({swap.trash.parent} if swap.trash else set()))

        progress.step("Recording in the registry")
        rollback = plan.kind == OperationKind.ROLLBACK
        self.registry.commit_install(
            install_id,
            extension_values(
                plan.manifest, target, digest, file_list, plan.origin, plan.origin_source
            ),
            expected_version=plan.installed_version,
            config_removed=plan.config_removed,
            kept=kept,
            restore_settings=plan.restore_settings,
            hold_reason=(
                f"Rolled back from {plan.installed_version} to {plan.manifest.version}"
                if rollback
                else None
            ),
        )
        swap.swapped = False  # committed: the new version is the registered one now
        progress.checkpoint(COMMITTED)
        _discard_trash(swap)
        prune_quietly(self.registry)

    def _planned_archive(self, plan: InstallPlan) -> OpenArchive:
        """The archive the person saw, open again; refused if the file changed meanwhile (the
        person may have taken a while to answer: install exactly what they saw)."""
        from registry.archive import open_archive

        if plan.validated is not None:
            archive = plan.validated.reopen()
            unchanged = archive.identity() == plan.identity
        else:  # a plan made elsewhere: check the file from scratch
            archive = open_archive(plan.archive_path, self.limits)
            unchanged = self._read_manifest(archive).raw == plan.manifest.raw
        if not unchanged:
            archive.close()
            raise InstallRefusedError(
                f"{plan.archive_path.name} changed after it was checked. Nothing was changed; "
                "install the file again."
            )
        return archive

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
                    f"icon: '{manifest.icon}' is {format_size(member.size)}; the limit is "
                    f"{format_size(self.limits.max_icon_bytes)}"
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
        """Mark the operation as working on ``extension_id``, unless another live one is."""
        self.registry.claim_operation(
            install_id,
            extension_id,
            lambda dead: recover_operation(self.registry, dead, RecoveryReport()),
        )

    def _compare(
        self,
        install_id: int,
        archive_path: Path,
        archive: OpenArchive,
        manifest: Manifest,
    ) -> InstallPlan:
        installed = self.registry.get_extension(manifest.id)
        kind, installed_version = OperationKind.INSTALL, None
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
                kind = OperationKind.UPGRADE
            elif manifest.version == current:
                kind = OperationKind.REINSTALL
            else:
                kind = OperationKind.DOWNGRADE
            old_keys = set(installed.config_defaults)
            new_keys = set(manifest.config)
            added = tuple(sorted(new_keys - old_keys))
            removed = tuple(sorted(old_keys - new_keys))
        kept_settings = self.registry.kept_settings(manifest.id) if installed is None else None
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
            kept_settings=kept_settings,
            restore_settings=kept_settings.settings if kept_settings is not None else None,
            breaks=self._breaks(manifest) if installed is not None else (),
            validated=archive,
            identity=archive.identity(),
        )

    def _breaks(
        self, manifest: Manifest, replaced: Mapping[str, Manifest] | None = None
    ) -> tuple[str, ...]:
        """What installing ``manifest`` would leave without what it needs: installed
        extensions whose range for it excludes the new version (unless ``replaced`` brings
        them in a version that accepts it)."""
        from registry.relations import installed
        from registry.requirements import broken_by

        replaced = replaced or {}
        current = [
            item for item in installed(self.registry.list_requirements()) if item.id not in replaced
        ]
        words = [
            f"{item.name} {item.version} needs {manifest.id} {wanted}"
            for item, wanted in broken_by(manifest.id, manifest.version, current)
        ]
        for other in replaced.values():
            wanted = other.requires.get(manifest.id)
            if wanted is not None and manifest.version not in wanted:
                words.append(f"{other.name} {other.version} needs {manifest.id} {wanted}")
        return tuple(words)

    # -- updates from a source -------------------------------------------------------------------

    def begin_update(self, offer: Offer) -> int:
        install_id = self.registry.create_operation(
            offer.url, kind=OperationKind.UPGRADE, extension_id=offer.extension_id
        )
        self.registry.update_operation(
            install_id,
            origin_source=offer.source,
            to_version=offer.version,
            download_total=offer.size,
            download_bytes=0,
        )
        return install_id

    def plan_update(
        self, install_id: int, offer: Offer, cancel: CancelToken | None = None
    ) -> InstallPlan | OperationRecord:
        """Download the offered zip into the operation's staging folder (its size and SHA-256
        checked as it comes), then plan it like any file. Only an upgrade goes ahead: the
        source's file must hold exactly the offered extension and version."""
        from registry.sources import download

        cancel = cancel or CancelToken()
        progress = self._progress(install_id)
        try:
            self.claim(install_id, offer.extension_id)
            staging = staging_dir_for(self.registry, install_id)
            staging.mkdir(parents=True, exist_ok=True)
            progress.step(DOWNLOAD_STEP, staging_dir=str(staging))
            downloaded = staging / DOWNLOADED_ARCHIVE
            download(offer, downloaded, progress.downloaded, lambda: cancel.cancelled)
            self.registry.update_operation(install_id, download_bytes=offer.size)
        except Exception as error:
            self._fail(install_id, error, _Swap(), f"downloading {offer.extension_id}")
            return self.registry.get_operation(install_id)
        planned = self.plan(
            install_id, downloaded, cancel, origin=offer.url, origin_source=offer.source
        )
        if not isinstance(planned, InstallPlan):
            return planned
        manifest = planned.manifest
        if manifest.id != offer.extension_id or str(manifest.version) != offer.version:
            refusal = (
                f"The file at {offer.url} holds {manifest.id} {manifest.version}, not "
                f"{offer.extension_id} {offer.version} as the source says. Nothing was changed; "
                "tell the source's owner."
            )
        elif planned.kind != OperationKind.UPGRADE:
            refusal = (
                f"{manifest.name} {planned.installed_version} is installed, and {offer.version} "
                "is not newer: an update never goes back. Nothing was changed."
            )
        else:
            return planned
        return self.decline(install_id, refusal)

    def update(
        self,
        offer: Offer,
        *,
        confirm: Confirm | None = None,
        cancel: CancelToken | None = None,
        install_id: int | None = None,
    ) -> OperationRecord:
        """Download, plan, confirm (``confirm`` None: unattended) and execute an update."""
        if install_id is None:
            install_id = self.begin_update(offer)
        planned = self.plan_update(install_id, offer, cancel)
        return self._confirm_and_execute(planned, confirm, cancel)

    # -- rollback --------------------------------------------------------------------------------

    def begin_rollback(self, extension_id: str) -> int:
        return self.registry.create_operation(
            kind=OperationKind.ROLLBACK, extension_id=extension_id
        )

    def plan_rollback(
        self,
        install_id: int,
        extension_id: str,
        to_version: str | None = None,
        cancel: CancelToken | None = None,
    ) -> InstallPlan | OperationRecord:
        """Plan going back to a kept version (``to_version``, or the one the installed version
        replaced): its archive is checked again like any file. Returns the plan, or the
        operation's final (FAILED) record with the reason, e.g. a kept archive gone missing."""
        cancel = cancel or CancelToken()
        progress = self._progress(install_id)
        try:
            target = rollback_target(self.registry, extension_id, to_version)
            archive = self.registry.paths.kept_archive(target.archive_sha256)
            self.registry.update_operation(install_id, archive_path=str(archive))
            plan = self._plan(install_id, archive, progress, cancel, rolling_back=True)
            if plan.manifest.id != extension_id:
                raise InstallRefusedError(
                    f"The kept archive {archive.name} holds {plan.manifest.id}, not "
                    f"{extension_id}. Nothing was changed; run 'extension-manager doctor'."
                )
            plan = dataclasses.replace(
                plan,
                origin=target.origin,
                origin_source=target.origin_source,
                restore_settings=target.settings,
            )
            progress.step(WAITING_STEP)
        except Exception as error:
            self._fail(install_id, error, _Swap(), f"rolling back {extension_id}")
            return self.registry.get_operation(install_id)
        return plan

    def rollback(
        self,
        extension_id: str,
        to_version: str | None = None,
        *,
        confirm: Confirm | None = None,
        cancel: CancelToken | None = None,
        install_id: int | None = None,
    ) -> OperationRecord:
        """Plan, confirm (``confirm`` None: unattended) and execute a rollback."""
        if install_id is None:
            install_id = self.begin_rollback(extension_id)
        planned = self.plan_rollback(install_id, extension_id, to_version, cancel)
        return self._confirm_and_execute(planned, confirm, cancel)

    # -- uninstall -------------------------------------------------------------------------------

    def begin_uninstall(self, extension_id: str) -> int:
        return self.registry.create_operation(
            kind=OperationKind.UNINSTALL,
            status=OperationStatus.UNINSTALLING,
            extension_id=extension_id,
        )

    def uninstall(
        self, extension_id: str, *, install_id: int | None = None, keep_settings: bool = True
    ) -> OperationRecord:
        """Remove an extension's files and its row; its history stays, and its settings are
        kept for a later install of the same id unless ``keep_settings`` is False. Refused
        while another installed extension needs it (remove those first: ``dependents``)."""
        from registry.relations import removal_refusal

        if install_id is None:
            install_id = self.begin_uninstall(extension_id)
        progress = self._progress(install_id)
        swap = _Swap()
        try:
            installed = self.registry.get_extension(extension_id)
            if installed is None:
                raise InstallRefusedError(f"The extension '{extension_id}' is not installed.")
            refused = removal_refusal(self.registry, extension_id)
            if refused is not None:
                raise InstallRefusedError(refused[0])
            self.claim(install_id, extension_id)
            progress.step("Removing files", from_version=installed.version)
            target = self.registry.paths.extensions / extension_id
            swap.target = target
            if target.exists():
                swap.trash = trash_dir_for(self.registry, install_id, extension_id)
                swap.swapped = True
                target.rename(swap.trash)
                progress.checkpoint(OLD_VERSION_MOVED_ASIDE)
                flush_folders({target.parent, swap.trash.parent})
            progress.step("Recording in the registry")
            self.registry.commit_uninstall(install_id, extension_id, keep_settings=keep_settings)
            swap.swapped = False
            progress.checkpoint(COMMITTED)
            _discard_trash(swap)
        except Exception as error:
            return self._fail(install_id, error, swap, f"uninstalling {extension_id}")
        return self.registry.get_operation(install_id)

    # -- failure ---------------------------------------------------------------------------------

    def _fail(self, install_id: int, error: Exception, swap: _Swap, doing: str) -> OperationRecord:
        """Undo, free the space the operation used, then record why it failed. Returns the
        final record, which says why even when a full or read-only disk kept the registry
        from recording it (the next launch then finds the operation interrupted)."""
        message = self._failure_message(error, doing)
        if swap.swapped:
            self._undo_swap(swap)
        self._clean_staging(install_id)
        self._drop_new_archive(swap)
        cancelled = isinstance(error, InstallCancelledError)
        status = OperationStatus.CANCELLED if cancelled else OperationStatus.FAILED
        try:
            self.registry.finish_operation(install_id, status, message)
        except RegistryError:
            log.warning("could not record the failure of operation %s", install_id, exc_info=True)
            self.registry.abandon_operation(install_id)
        try:
            record = self.registry.get_operation(install_id)
        except RegistryError as unreadable:
            raise RegistryError(message) from unreadable
        if record.active:
            return dataclasses.replace(record, status=status, error=message)
        return record

    def _failure_message(self, error: Exception, doing: str) -> str:
        """One plain sentence for why ``doing`` failed; the disk is looked at only when the
        error does not already say it in words of its own."""
        if isinstance(error, UserFacingError):
            return str(error)
        root = self.registry.paths.root
        condition = expected_condition(error, root, RECORDING_ROOM, doing)
        if condition is not None:
            return str(condition)
        if isinstance(error, OSError):
            return plain_os_error(error, doing)
        if isinstance(error, peewee.OperationalError | sqlite3.OperationalError):
            plain = plain_database_error(error)  # the disk was just ruled out above
            if plain is not None:
                return str(plain)
        log.exception("unexpected error while %s", doing)
        return (
            f"An unexpected error stopped {doing} ({type(error).__name__}: {error}). "
            "Nothing was changed; details are in the log file."
        )

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

    def _drop_new_archive(self, swap: _Swap) -> None:
        archive = swap.new_archive
        if archive is None:
            return
        try:
            if not any(
                kept.archive_sha256 == archive.stem for kept in self.registry.list_kept_versions()
            ):
                archive.unlink(missing_ok=True)
        except (OSError, RegistryError):
            log.warning("could not remove %s; the doctor reports it", archive, exc_info=True)

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


def _missing_words(
    plan: InstallPlan, missing: Sequence[Missing], installed: Mapping[str, RequirementsRow]
) -> str:
    """'Word Tools needs example.hello >=1.2.0 (not installed)', and what to do."""
    parts = []
    for item in missing:
        record = installed.get(item.extension_id)
        if record is not None and not record.enabled:
            parts.append(
                f"{item.extension_id} {item.range} ({record.name} {record.version} is turned off)"
            )
        elif record is not None:
            parts.append(f"{item.extension_id} {item.range} ({record.version} is installed)")
        else:
            parts.append(item.describe())
    return (
        f"{plan.manifest.name} needs {'; '.join(parts)}. Install what it needs first, or "
        "install them together (drop or choose both files)."
    )


def _linked_groups(plans: Sequence[InstallPlan]) -> tuple[tuple[InstallPlan, ...], ...]:
    """Plans joined by what they need of each other, each group in the plans' order."""
    group_of = {plan.manifest.id: index for index, plan in enumerate(plans)}

    def root(index: int) -> int:
        while group_of_index[index] != index:
            index = group_of_index[index]
        return index

    group_of_index = list(range(len(plans)))
    for index, plan in enumerate(plans):
        for other in plan.requires:
            if other in group_of:
                group_of_index[root(index)] = root(group_of[other])
    groups: dict[int, list[InstallPlan]] = {}
    for index, plan in enumerate(plans):
        groups.setdefault(root(index), []).append(plan)
    return tuple(tuple(group) for group in groups.values())
