"""Compare the registry with the disk, report every disagreement, and fix the safe ones.

Safe repairs never delete anything a person might want: interrupted operations are rolled back
exactly as a launch would, leftovers of finished operations are removed, a folder nobody
registered is moved to ``orphans/`` (not deleted), and a registered extension whose folder is
gone is unregistered with an operation row recording why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from registry.recovery import operation_number, recover_interrupted
from registry.store import Registry, process_is_alive
from registry.vocabulary import kind_of


@dataclass(frozen=True, slots=True)
class Finding:
    problem: str
    advice: str
    repairable: bool


def installed_files(folder: Path) -> dict[str, int]:
    """Relative POSIX path -> size, for every regular file under ``folder``."""
    found: dict[str, int] = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            path = Path(dirpath) / filename
            found[path.relative_to(folder).as_posix()] = path.lstat().st_size
    return found


def _active_operation_ids(registry: Registry) -> set[int]:
    return {op.install_id for op in registry.list_operations(active_only=True)}


def _busy_extensions(registry: Registry) -> set[str]:
    """Extensions a running operation is changing right now: their folder may be between two
    renames, so neither a finding nor a repair may judge them."""
    return {
        op.extension_id
        for op in registry.list_operations(active_only=True)
        if op.extension_id and process_is_alive(op.owner_pid, op.owner_started)
    }


def diagnose(registry: Registry) -> list[Finding]:
    findings: list[Finding] = []
    paths = registry.paths
    busy = _busy_extensions(registry)
    # The folders are listed before the registry is read: a folder created by an install that
    # commits in between is then registered, never reported as unregistered.
    folders = sorted(paths.extensions.iterdir()) if paths.extensions.is_dir() else []
    registered = {ext.id: ext for ext in registry.list_extensions()}

    for extension in registered.values():
        if extension.id in busy:
            continue
        folder = paths.extensions / extension.id
        if not folder.is_dir():
            findings.append(
                Finding(
                    f"{extension.name} ({extension.id}) is registered but its folder {folder} "
                    "is missing.",
                    "Repair unregisters it; install it again to get it back.",
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
        if not process_is_alive(op.owner_pid, op.owner_started)
    ]
    for op in stuck:
        findings.append(
            Finding(
                f"Operation {op.install_id} ({kind_of(op.kind).noun} of "
                f"{op.extension_id or op.archive_path}) is stuck at '{op.current_step}': the "
                "process running it is gone.",
                "Repair marks it failed and puts the previous version back.",
                repairable=True,
            )
        )

    active = _active_operation_ids(registry)
    for folder in (paths.staging, paths.trash):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if operation_number(entry.name) in active:
                continue
            findings.append(
                Finding(
                    f"{entry} is left over from an operation that has finished.",
                    "Repair removes it.",
                    repairable=True,
                )
            )
    return findings


def repair(registry: Registry) -> list[str]:
    """Fix what can be fixed safely; return what was done, in plain words."""
    done: list[str] = []
    recovery = recover_interrupted(registry)
    done.extend(f"Marked operation {n} as interrupted." for n in recovery.failed_operations)
    done.extend(f"Put back the previous version of {e}." for e in recovery.restored_extensions)
    done.extend(f"Removed leftover {p}." for p in recovery.removed_paths)

    busy = _busy_extensions(registry)
    extensions_dir = registry.paths.extensions
    folders = sorted(extensions_dir.iterdir()) if extensions_dir.is_dir() else []
    registered = {ext.id: ext for ext in registry.list_extensions()}
    for extension in registered.values():
        if extension.id in busy or (registry.paths.extensions / extension.id).is_dir():
            continue
        registry.unregister(
            extension.id, "Unregistered by the doctor: the extension's folder was missing."
        )
        done.append(f"Unregistered {extension.id}: its folder was missing.")

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
