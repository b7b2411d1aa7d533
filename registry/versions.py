"""Kept archives: every installed version's zip, kept by content in ``archives/<sha256>.zip``,
so that an update that breaks something can be rolled back, files and settings.

The copy is made while the archive is extracted, from the same bytes that are hashed and
checked, into the operation's staging folder (so a failed or interrupted operation leaves
nothing behind); it is renamed into ``archives/`` just before the registry commit that records
it. What is kept is bounded by the preferences: the installed version's archive always, plus
the last ``keep_versions`` earlier versions of each extension, within ``keep_bytes`` for all
the earlier versions together (oldest dropped first).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from registry.durable import flush_folder
from registry.errors import InstallRefusedError
from registry.sizes import format_size
from registry.store import KeptArchive, KeptVersionRecord, Registry

log = logging.getLogger(__name__)

STAGED_ARCHIVE = "archive.zip"


def keep_archive(registry: Registry, staged: Path | None, sha256: str) -> KeptArchive:
    """Put the staged copy in place as ``archives/<sha256>.zip`` (an archive already kept with
    that content stays, and the copy is dropped with the staging folder)."""
    target = registry.paths.kept_archive(sha256)
    if not target.exists():
        if staged is None:
            raise InstallRefusedError(
                f"The kept archive {target} disappeared while it was being installed. "
                "Nothing was changed."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(target)
        flush_folder(target.parent)
    return KeptArchive(sha256=sha256, size=target.stat().st_size)


@dataclass(frozen=True, slots=True)
class Retention:
    """What the preferences say to drop, and what it frees."""

    dropped: tuple[KeptVersionRecord, ...]
    freed_bytes: int


def over_retention(registry: Registry) -> Retention:
    """The kept versions beyond the preferences' limits (never an installed version's)."""
    preferences = registry.preferences()
    installed = registry.installed_archives()
    earlier: dict[str, list[KeptVersionRecord]] = defaultdict(list)
    for version in registry.list_kept_versions():
        if installed.get(version.extension_id) != version.archive_sha256:
            earlier[version.extension_id].append(version)
    dropped: list[KeptVersionRecord] = []
    kept: list[KeptVersionRecord] = []
    for versions in earlier.values():
        versions.sort(key=_last_used, reverse=True)
        kept.extend(versions[: preferences.keep_versions])
        dropped.extend(versions[preferences.keep_versions :])
    # Within the size cap, newest first; an archive shared by two kept versions counts once.
    # The oldest go first: once one does not fit, nothing older stays (a smaller, older one
    # that would still fit is not kept in place of a newer one).
    counted: set[str] = set(installed.values())
    used = 0
    full = False
    for version in sorted(kept, key=_last_used, reverse=True):
        if version.archive_sha256 in counted:
            continue
        if full or used + version.archive_size > preferences.keep_bytes:
            full = True
            dropped.append(version)
            continue
        counted.add(version.archive_sha256)
        used += version.archive_size
    still_used = {v.archive_sha256 for v in kept if v not in dropped} | set(installed.values())
    freed = {
        v.archive_sha256: v.archive_size for v in dropped if v.archive_sha256 not in still_used
    }
    return Retention(tuple(dropped), sum(freed.values()))


def _last_used(version: KeptVersionRecord) -> str:
    return version.replaced_at or version.installed_at


def prune(registry: Registry) -> Retention:
    """Drop what the preferences no longer keep: rows first, then the files nobody refers to
    (a crash in between leaves only files that ``unreferenced_archives`` finds)."""
    retention = over_retention(registry)
    if retention.dropped:
        for sha256 in registry.forget_kept_versions(retention.dropped):
            registry.paths.kept_archive(sha256).unlink(missing_ok=True)
    return retention


def prune_quietly(registry: Registry) -> None:
    """Pruning after a commit is housekeeping: it never turns a done change into a failure."""
    try:
        prune(registry)
    except Exception:
        log.warning("could not drop old kept archives; the doctor reports them", exc_info=True)


def unreferenced_archives(registry: Registry) -> list[Path]:
    """Files in ``archives/`` that no kept version refers to (left by a crash just before a
    commit, or by a prune cut short)."""
    folder = registry.paths.archives
    if not folder.is_dir():
        return []
    referenced = {v.archive_sha256 for v in registry.list_kept_versions()}
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.suffix == ".zip" and entry.is_file() and entry.stem not in referenced
    )


def missing_archives(registry: Registry) -> list[KeptVersionRecord]:
    return [
        v
        for v in registry.list_kept_versions()
        if not registry.paths.kept_archive(v.archive_sha256).is_file()
    ]


def kept_bytes(registry: Registry) -> int:
    """Disk used by the kept archives (each file once)."""
    sizes = {v.archive_sha256: v.archive_size for v in registry.list_kept_versions()}
    return sum(sizes.values())


def rollback_target(
    registry: Registry, extension_id: str, to_version: str | None = None
) -> KeptVersionRecord:
    """The kept version a rollback goes back to: ``to_version``, or the one the installed
    version replaced. Refused, in plain words, when there is none or its archive is gone."""
    installed = registry.get_extension(extension_id)
    if installed is None:
        raise InstallRefusedError(f"The extension '{extension_id}' is not installed.")
    earlier = [
        v
        for v in registry.list_kept_versions(extension_id)
        if v.archive_sha256 != installed.archive_sha256
    ]
    earlier.sort(key=_last_used, reverse=True)
    earlier_all = list(earlier)
    if to_version is not None:
        earlier = [v for v in earlier if v.version == to_version]
        if not earlier and to_version == installed.version:
            raise InstallRefusedError(
                f"{installed.name} {to_version} is the installed version, so there is nothing "
                "to roll back. Nothing was changed."
            )
        if not earlier:
            choices = ", ".join(_in_version_order({v.version for v in earlier_all})) or "none"
            raise InstallRefusedError(
                f"No archive of {installed.name} {to_version} is kept, so it cannot be rolled "
                f"back to. Kept earlier versions: {choices}. Install {to_version} from its zip "
                "file instead."
            )
    if not earlier:
        raise InstallRefusedError(
            f"{installed.name} {installed.version} has no earlier version kept to roll back "
            "to. Install the version you want from its zip file instead."
        )
    target = earlier[0]
    archive = registry.paths.kept_archive(target.archive_sha256)
    if not archive.is_file():
        raise InstallRefusedError(
            f"The kept archive of {installed.name} {target.version} ({archive}) is missing, so "
            f"it cannot be rolled back to. Nothing was changed; install {target.version} from "
            "its zip file instead."
        )
    if not _holds_what_was_kept(archive, target):
        raise InstallRefusedError(
            f"The kept archive of {installed.name} {target.version} ({archive}) was changed "
            f"after it was kept, so it cannot be rolled back to. Nothing was changed; install "
            f"{target.version} from its zip file instead."
        )
    return target


def _holds_what_was_kept(archive: Path, version: KeptVersionRecord) -> bool:
    """Whether the file still holds the bytes it is named after (a rollback installs exactly
    the version that was kept, or nothing)."""
    import hashlib

    if archive.stat().st_size != version.archive_size:
        return False
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == version.archive_sha256


def _in_version_order(versions: Iterable[str]) -> list[str]:
    """Versions in version order (1.2.0 before 1.10.0); any that is not a semantic version
    after them, as text."""
    from registry.manifest import SemVer

    semantic: list[tuple[SemVer, str]] = []
    other: list[str] = []
    for version in versions:
        try:
            semantic.append((SemVer.parse(version), version))
        except ValueError:
            other.append(version)
    return [text for _, text in sorted(semantic, key=lambda pair: pair[0])] + sorted(other)


def describe_age(moment: str, now: datetime | None = None) -> str:
    """'3 days ago', 'today': when a kept version was installed, for "Roll back to ..."."""
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return "at an unknown time"
    current = now or datetime.now(then.tzinfo)
    days = (current - then).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 60:
        return f"{days} days ago"
    return f"on {then.date().isoformat()}"


@dataclass(frozen=True, slots=True)
class Reclaimable:
    """What the kept archives use, and what ``doctor --repair`` could free."""

    kept_bytes: int
    beyond_preferences: int  # kept versions the preferences no longer keep
    unreferenced: tuple[Path, ...]  # archive files no kept version refers to
    reclaimable_bytes: int

    def lines(self) -> list[str]:
        lines = [f"Kept archives use {format_size(self.kept_bytes)}."]
        if self.reclaimable_bytes or self.beyond_preferences or self.unreferenced:
            lines.append(
                f"{format_size(self.reclaimable_bytes)} could be reclaimed with 'extension-manager "
                f"doctor --repair': {self.beyond_preferences} version(s) beyond what the "
                f"preferences keep, {len(self.unreferenced)} archive file(s) nothing refers to."
            )
        return lines


def reclaimable(registry: Registry) -> Reclaimable:
    retention = over_retention(registry)
    stray = unreferenced_archives(registry)
    stray_bytes = sum(path.stat().st_size for path in stray if path.exists())
    return Reclaimable(
        kept_bytes=kept_bytes(registry),
        beyond_preferences=len(retention.dropped),
        unreferenced=tuple(stray),
        reclaimable_bytes=retention.freed_bytes + stray_bytes,
    )
