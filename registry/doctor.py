"""Compare the registry with the disk, report every disagreement, and fix the safe ones.

Safe repairs never delete anything a person might want: interrupted operations are rolled back
exactly as a launch would (and so is one whose owner cannot be confirmed alive), leftovers of
finished operations are removed, a folder nobody registered is moved to ``orphans/`` (not
deleted), and an extension folder whose valid manifest holds another version than the registry
records is taken as the truth: the registry is brought to it, settings and enabled state kept.

A registered extension whose folder is gone stays registered, settings included, so that
installing it again brings them back; only the person can choose to uninstall it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from registry.errors import ManifestError
from registry.installer import extension_values
from registry.limits import DEFAULT_LIMITS
from registry.manifest import Manifest, SemVer, parse_manifest
from registry.recovery import operation_number, recover_interrupted
from registry.sizes import format_size
from registry.store import ExtensionRecord, OperationRecord, Registry
from registry.versions import missing_archives, prune, unreferenced_archives
from registry.vocabulary import OperationKind, kind_of


@dataclass(frozen=True, slots=True)
class Finding:
    problem: str
    advice: str
    repairable: bool


@dataclass(frozen=True, slots=True)
class VersionDifference:
    """An extension whose folder holds another version than the registry records."""

    extension: ExtensionRecord
    manifest: Manifest

    @property
    def words(self) -> str:
        return (
            f"{self.extension.name} ({self.extension.id}): the registry says "
            f"{self.extension.version}, the folder holds {self.manifest.version}"
        )


def installed_files(folder: Path) -> dict[str, int]:
    """Relative POSIX path -> size, for every regular file under ``folder``."""
    found: dict[str, int] = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            path = Path(dirpath) / filename
            found[path.relative_to(folder).as_posix()] = path.lstat().st_size
    return found


def read_folder_manifest(folder: Path) -> Manifest:
    """The manifest of an installed extension's folder; ``ManifestError`` unless it is valid
    and names the folder's own id."""
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise ManifestError(["manifest.json: the folder has no manifest.json"])
    data = manifest_file.read_bytes()
    if len(data) > DEFAULT_LIMITS.max_manifest_bytes:
        raise ManifestError(["manifest.json: the file is too large"])
    manifest = parse_manifest(data)
    if manifest.id != folder.name:
        raise ManifestError([f"id: '{manifest.id}' does not match the folder name"])
    return manifest


def _manifest_or_none(folder: Path) -> Manifest | None:
    try:
        return read_folder_manifest(folder)
    except (ManifestError, OSError):
        return None


def version_differences(registry: Registry) -> list[VersionDifference]:
    """Every registered extension whose folder's valid manifest holds another version."""
    busy = _busy_extensions(registry)
    found = []
    for extension in registry.list_extensions():
        folder = registry.paths.extensions / extension.id
        if extension.id in busy or not folder.is_dir():
            continue
        manifest = _manifest_or_none(folder)
        if manifest is not None and str(manifest.version) != extension.version:
            found.append(VersionDifference(extension, manifest))
    return found


def _active_operation_ids(registry: Registry) -> set[int]:
    return {op.install_id for op in registry.list_operations(active_only=True)}


def _busy_extensions(registry: Registry) -> set[str]:
    """Extensions a running operation is changing right now: their folder may be between two
    renames, so neither a finding nor a repair may judge them."""
    return {
        op.extension_id
        for op in registry.list_operations(active_only=True)
        if op.extension_id and registry.owner_is_running(op, repairing=True)
    }


def _why_stuck(operation: OperationRecord) -> str:
    if operation.owner_pid is not None and operation.owner_started is None:
        return (
            f"no start time was recorded for its process (id {operation.owner_pid}), so the "
            "program now using that id cannot be confirmed to be the one that started it"
        )
    return "the process running it is gone"


def diagnose(registry: Registry) -> list[Finding]:
    findings: list[Finding] = []
    paths = registry.paths
    busy = _busy_extensions(registry)
    # The folders are listed before the registry is read: a folder created by an install that
    # commits in between is then registered, never reported as unregistered.
    folders = sorted(paths.extensions.iterdir()) if paths.extensions.is_dir() else []
    registered = {ext.id: ext for ext in registry.list_extensions()}
    differing = {d.extension.id: d for d in version_differences(registry)}

    for extension in registered.values():
        if extension.id in busy:
            continue
        folder = paths.extensions / extension.id
        if not folder.is_dir():
            findings.append(
                Finding(
                    f"{extension.name} ({extension.id}) is registered but its folder {folder} "
                    "is missing.",
                    "Its settings are kept: install it again from its .zip file to get it "
                    f"back with them, or run 'extension-manager uninstall {extension.id}' to "
                    "forget it and its settings.",
                    repairable=False,
                )
            )
            continue
        difference = differing.get(extension.id)
        if difference is not None:
            findings.append(
                Finding(
                    f"{difference.words}.",
                    "Repair records the version in the folder in the registry; its settings "
                    "and whether it is enabled are kept.",
                    repairable=True,
                )
            )
            continue
        if extension.files is None:
            continue  # installed before the registry recorded file lists
        expected = dict(extension.files)
        actual = installed_files(folder)
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
        if missing or extra or changed:
            details = []
            if missing:
                details.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if changed:
                details.append(f"{len(changed)} changed (e.g. {changed[0]})")
            if extra:
                details.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
            findings.append(
                Finding(
                    f"The files of {extension.name} ({extension.id}) do not match what was "
                    f"installed: {', '.join(details)}.",
                    "Reinstall the extension from its .zip file to restore them.",
                    repairable=False,
                )
            )

    for entry in folders:
        if entry.name not in registered and entry.name not in busy:
            findings.append(
                Finding(
                    f"The folder {entry} is not a registered extension.",
                    "Repair moves it to the orphans folder, where you can inspect it.",
                    repairable=True,
                )
            )

    stuck = [
        op
        for op in registry.list_operations(active_only=True)
        if not registry.owner_is_running(op, repairing=True)
    ]
    for op in stuck:
        findings.append(
            Finding(
                f"Operation {op.install_id} ({kind_of(op.kind).noun} of "
                f"{op.extension_id or op.archive_path}) is stuck at '{op.current_step}': "
                f"{_why_stuck(op)}.",
                "Repair marks it failed and puts the previous version back.",
                repairable=True,
            )
        )

    findings.extend(_missing_archive_findings(registry))

    active = _active_operation_ids(registry)
    for folder in (paths.staging, paths.trash):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            number = operation_number(entry.name)
            if number is None:
                findings.append(
                    Finding(
                        f"{entry} was not made by Extension Manager, so it is left alone.",
                        f"If it is yours, move it out of {folder}; otherwise delete it.",
                        repairable=False,
                    )
                )
                continue
            if number in active:
                continue
            findings.append(
                Finding(
                    f"{entry} is left over from an operation that has finished.",
                    "Repair removes it.",
                    repairable=True,
                )
            )
    return findings


def _missing_archive_findings(registry: Registry) -> list[Finding]:
    return [
        Finding(
            f"The kept archive of {version.extension_id} {version.version} "
            f"({registry.paths.kept_archive(version.archive_sha256)}) is missing, so it cannot "
            "be rolled back to.",
            "Repair forgets it, so that no rollback to it is offered; install that version "
            "from its .zip file if you need it again.",
            repairable=True,
        )
        for version in missing_archives(registry)
    ]


def _repair_kept_archives(registry: Registry) -> list[str]:
    """Forget kept versions whose archive is gone, drop what the preferences no longer keep,
    and remove archive files nothing refers to (only while no operation runs: a running
    install puts its archive in place just before its commit)."""
    done: list[str] = []
    missing = missing_archives(registry)
    if missing:
        registry.forget_kept_versions(missing)
        done.extend(
            f"Forgot the missing kept archive of {v.extension_id} {v.version}." for v in missing
        )
    retention = prune(registry)
    if retention.dropped:
        done.append(
            f"Dropped {len(retention.dropped)} kept version(s) beyond what the preferences "
            f"keep ({format_size(retention.freed_bytes)})."
        )
    if not _active_operation_ids(registry):
        for path in unreferenced_archives(registry):
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            done.append(f"Removed {path}, an archive nothing refers to ({format_size(size)}).")
    return done


def _change_kind(registered: str, on_disk: SemVer) -> OperationKind:
    try:
        before = SemVer.parse(registered)
    except ValueError:
        return OperationKind.REINSTALL
    if on_disk > before:
        return OperationKind.UPGRADE
    if on_disk < before:
        return OperationKind.DOWNGRADE
    return OperationKind.REINSTALL


def _record_versions_on_disk(registry: Registry) -> list[str]:
    """Bring the registry to the version each folder holds (the files are the truth when their
    manifest is valid), keeping the extension's settings and enabled state."""
    done = []
    for difference in version_differences(registry):
        extension, manifest = difference.extension, difference.manifest
        folder = registry.paths.extensions / extension.id
        files = sorted(installed_files(folder).items())
        note = (
            f"Recorded by the doctor from the files on disk: the registry said "
            f"{extension.version}, the folder holds {manifest.version}. Settings and the "
            "enabled state were kept."
        )
        registry.register_found(
            extension_values(manifest, folder, "", files),
            note,
            _change_kind(extension.version, manifest.version),
        )
        done.append(
            f"Recorded {extension.id} {manifest.version} (the version in its folder) in the "
            f"registry, which said {extension.version}; its settings were kept."
        )
    return done


def repair(registry: Registry) -> list[str]:
    """Fix what can be fixed safely; return what was done, in plain words."""
    done: list[str] = []
    recovery = recover_interrupted(registry, repairing=True)
    done.extend(f"Marked operation {n} as interrupted." for n in recovery.failed_operations)
    done.extend(f"Put back the previous version of {e}." for e in recovery.restored_extensions)
    done.extend(f"Removed leftover {p}." for p in recovery.removed_paths)
    done.extend(_record_versions_on_disk(registry))
    done.extend(_repair_kept_archives(registry))

    busy = _busy_extensions(registry)
    extensions_dir = registry.paths.extensions
    folders = sorted(extensions_dir.iterdir()) if extensions_dir.is_dir() else []
    registered = {ext.id for ext in registry.list_extensions()}
    orphans = registry.paths.root / "orphans"
    for entry in folders:
        if entry.name in registered or entry.name in busy or not entry.exists():
            continue
        orphans.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        destination = orphans / f"{entry.name}-{stamp}"
        entry.rename(destination)
        done.append(f"Moved unregistered folder {entry.name} to {destination}.")
    return done
