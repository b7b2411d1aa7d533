"""The headless command line: the same registry API the window uses, with exit codes and
``--json`` output for scripts. One table (``COMMANDS``) names every command, its help, its
arguments and its handler."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cli import transfer, versions
from cli.invocation import command_prefix, runnable
from cli.output import (
    ExitCode,
    ask,
    emit,
    fail,
    on_terminal,
    operation_payload,
    unconfirmed,
)
from registry.errors import UserFacingError
from registry.paths import DataPaths
from registry.store import ConfigValue, ExtensionRecord, OperationRecord, Registry
from registry.vocabulary import OperationStatus, kind_of, status_words

if TYPE_CHECKING:
    from registry.installer import Batch

# The installer, the doctor and the progress bar are imported by the commands that use them:
# the window's launch reads this table for the command names, and its start-up time counts.
log = logging.getLogger(__name__)


RegistryHandler = Callable[[argparse.Namespace, Registry], "ExitCode"]
FolderHandler = Callable[[argparse.Namespace, DataPaths], "ExitCode"]


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    # Most commands work on the open registry; a few must work when it cannot be opened.
    on_registry: RegistryHandler | None = None
    on_folder: FolderHandler | None = None


# -- status ----------------------------------------------------------------------------------


def status_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from migrations.runner import latest_version
    from registry.version import APP_VERSION

    applied = registry.applied_migrations()
    version = registry.schema_version()
    launch = registry.launch.messages()
    payload = {
        "app_version": APP_VERSION,
        "data_dir": str(registry.paths.root),
        "database": str(registry.paths.database),
        "schema_version": version,
        "latest_schema_version": latest_version(),
        "applied_migrations": [{"version": v, "name": n, "applied_at": a} for v, n, a in applied],
        "extensions": registry.count_extensions(),
        "operations": registry.count_operations(),
        "this_launch": launch,
    }
    lines = [
        f"Extension Manager {APP_VERSION}",
        f"Data folder:     {registry.paths.root}",
        f"Database:        {registry.paths.database}",
        f"Schema version:  {version} (latest {latest_version()})",
        f"Extensions:      {payload['extensions']}",
        f"Operations:      {payload['operations']}",
        "Applied migrations:",
        *(f"  {v:04d} {n} (applied {a})" for v, n, a in applied),
    ]
    if launch:
        lines += ["Done while opening the registry:", *(f"  {line}" for line in launch)]
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK


# -- installing ------------------------------------------------------------------------------


def _operation_line(record: OperationRecord) -> str:
    what = record.extension_id or Path(record.archive_path).name or "?"
    status = status_words(record.status)
    line = f"#{record.install_id:<5} {record.started_at[:19]}  {status:<12} {what}"
    line += f"  {record.change}"
    if record.error:
        line += f"\n        {record.error}"
    return line


def _configure_install(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "archives",
        nargs="+",
        metavar="ZIP",
        type=Path,
        help="extension archives (or folders holding an extension)",
    )
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    sub.add_argument("--reinstall", action="store_true", help="allow installing the same version")
    sub.add_argument(
        "--allow-downgrade",
        "--downgrade",
        dest="downgrade",
        action="store_true",
        help="allow installing an older version",
    )
    sub.add_argument(
        "--allow-breaking",
        action="store_true",
        help="allow a version that leaves an installed extension without what it needs",
    )
    sub.add_argument(
        "--from-member",
        metavar="PATH",
        help="install the inner zip or the folder at PATH inside the archive (one archive only)",
    )
    sub.add_argument(
        "--fresh-settings",
        action="store_true",
        help="do not restore the settings kept when the extension was uninstalled",
    )


def _plan_lines(batch: Batch, refused: list[OperationRecord]) -> list[str]:
    """The one confirmation of a command-line batch: every plan in full when there is one,
    else a line per file, then what cannot be installed and why."""
    if len(batch.ready) == 1 and not batch.held_back and not refused:
        return batch.ready[0].describe()
    lines = [f"{len(batch.ready)} to install:"] if batch.ready else []
    for plan in batch.ready:
        manifest = plan.manifest
        permissions = ", ".join(manifest.permissions) or "no permissions"
        lines.append(f"  • {manifest.name} ({manifest.id}): {plan.change}; asks for {permissions}")
        lines.extend(f"      {line}" for line in plan.describe()[3:] if line.startswith("Breaks"))
    if batch.held_back or refused:
        lines.append("Not installed:")
    lines.extend(f"  ✗ {plan.archive_name}: {reason}" for plan, reason in batch.held_back)
    lines.extend(
        f"  ✗ {Path(record.archive_path).name}: {runnable(record.error or '')}"
        for record in refused
    )
    return lines


def install_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    """Plan every file, ask once for all of them, then install them (what others need first;
    files that need each other all or nothing)."""
    from cli.progress import run_with_progress
    from registry.installer import Installer, InstallOptions, InstallPlan

    interactive = not args.yes and on_terminal()
    if not args.yes and not interactive:
        return unconfirmed("install --yes FILE.zip")
    if args.from_member is not None and len(args.archives) != 1:
        return fail("--from-member takes one archive: the one the member is inside.")
    installer = Installer(registry)
    options = InstallOptions(
        allow_reinstall=args.reinstall,
        allow_downgrade=args.downgrade,
        allow_breaking=args.allow_breaking,
    )
    show_bar = not args.json and sys.stderr.isatty()
    plans: list[InstallPlan] = []
    refused: list[OperationRecord] = []
    for archive in args.archives:
        install_id = installer.begin(archive)

        def make_plan(archive: Path = archive, install_id: int = install_id) -> object:
            return installer.plan(install_id, archive, member=args.from_member)

        planned = (
            run_with_progress(registry, install_id, archive.name, make_plan, sys.stderr)
            if show_bar
            else make_plan()
        )
        if not isinstance(planned, InstallPlan):
            refused.append(registry.get_operation(install_id))
        else:
            plans.append(planned.with_kept_settings(not args.fresh_settings))
    while True:
        batch = installer.arrange(plans)
        for plan, reason in batch.held_back:
            refused.append(installer.decline(plan.install_id, reason))
        # Unattended, a reinstall, a downgrade or breaking a dependent needs its flag; what
        # is left out may leave others without what they need, so the rest is arranged again.
        unattended = [] if interactive else [(p, p.refusal(options)) for p in batch.ready]
        not_allowed = [(plan, reason) for plan, reason in unattended if reason is not None]
        for plan, reason in not_allowed:
            refused.append(installer.decline(plan.install_id, reason))
        if not not_allowed:
            break
        plans = [plan for plan in batch.ready if plan.refusal(options) is None]
    results: list[OperationRecord] = []
    if batch.ready:
        lines = _plan_lines(batch, refused)
        if interactive:
            print("\n".join(lines), file=sys.stderr)
        verb = batch.ready[0].kind.verb if len(batch.ready) == 1 else "Install these"
        count = f" {len(batch.ready)}" if len(batch.ready) > 1 else ""
        if interactive and not ask(f"{verb}{count}?"):
            results.extend(installer.decline(plan.install_id) for plan in batch.ready)
        else:
            for group in batch.groups:

                def work(group: tuple[InstallPlan, ...] = group) -> list[OperationRecord]:
                    return installer.execute_group(group)

                ids = [plan.install_id for plan in group]
                label = group[0].manifest.name
                results.extend(
                    run_with_progress(registry, ids, label, work, sys.stderr)
                    if show_bar
                    else work()
                )
    results = refused + results
    if not args.json:
        for record in results:
            if record.status == OperationStatus.COMPLETED:
                print(f"{kind_of(record.kind).done} {record.extension_id} {record.to_version}")
            elif record.status != OperationStatus.CANCELLED or batch.ready:
                reason = runnable(record.error or "")
                name = Path(record.archive_path).name
                print(f"extension-manager: {name}: {reason}", file=sys.stderr)
                _print_offers(record)
    if args.json:
        print(json.dumps([operation_payload(r) for r in results], indent=2))
    succeeded = all(r.status == OperationStatus.COMPLETED for r in results)
    return ExitCode.OK if succeeded else ExitCode.FAILURE


def _print_offers(record: OperationRecord) -> None:
    """How to install from inside a refused archive: one command per extension in it."""
    from registry.nested import install_hint

    for offer in record.offers:
        command = install_hint(
            Path(record.archive_path), offer.member, f"{command_prefix()} install"
        )
        print(f"  {offer.name} {offer.version}: {command}", file=sys.stderr)


def _configure_extension_id(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("extension_id", metavar="ID", help="the extension's id, e.g. example.hello")


def _configure_uninstall(sub: argparse.ArgumentParser) -> None:
    _configure_extension_id(sub)
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    settings = sub.add_mutually_exclusive_group()
    settings.add_argument(
        "--keep-settings",
        dest="keep_settings",
        action="store_true",
        default=None,
        help="keep its settings for a later install (the default)",
    )
    settings.add_argument(
        "--remove-settings",
        dest="keep_settings",
        action="store_false",
        help="remove its settings too",
    )
    _configure_with_dependents(sub, "uninstall")


def _configure_with_dependents(sub: argparse.ArgumentParser, doing: str) -> None:
    sub.add_argument(
        "--with-dependents",
        action="store_true",
        help=f"also {doing} the installed extensions that need it",
    )


def _together(
    args: argparse.Namespace, registry: Registry, *, turning_off: bool
) -> list[ExtensionRecord] | ExitCode:
    """The extensions the command must change along with the one named (those that need it,
    each before what it needs), or the refusal when they were not included."""
    from registry.relations import removal_refusal

    refused = removal_refusal(registry, args.extension_id, turning_off=turning_off)
    if refused is None:
        return []
    message, needing = refused
    return needing if args.with_dependents else fail(message)


def uninstall_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.installer import Installer
    from registry.relations import names

    installed = registry.get_extension(args.extension_id)
    if installed is None:
        return fail(f"The extension '{args.extension_id}' is not installed.")
    together = _together(args, registry, turning_off=False)
    if isinstance(together, ExitCode):
        return together
    keep = args.keep_settings is not False
    if not args.yes:
        if not on_terminal():
            return unconfirmed(f"uninstall --yes {args.extension_id}")
        also = f" with {names(together)}, which need it" if together else ""
        settings = (
            "Their settings are kept for a later install (--remove-settings removes them)"
            if keep
            else "Their settings are removed"
        )
        question = (
            f"Uninstall {installed.name} {installed.version}{also}? Its files are removed. "
            f"{settings}; the history is kept."
        )
        if not ask(question):
            return fail("Nothing was uninstalled.")
    installer = Installer(registry)
    records = []
    for record in [*together, installed]:
        records.append(installer.uninstall(record.id, keep_settings=keep))
        if records[-1].status != OperationStatus.COMPLETED:
            return fail(records[-1].error or "The uninstall failed.")
    text = "\n".join(f"Uninstalled {r.extension_id}" for r in records)
    payload = [operation_payload(r) for r in records]
    emit(args, payload if together else payload[0], text)
    return ExitCode.OK


# -- managing --------------------------------------------------------------------------------


def list_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    extensions = registry.list_extensions()
    payload = [
        {
            "id": e.id,
            "name": e.name,
            "version": e.version,
            "enabled": e.enabled,
            "install_path": e.install_path,
            "archive_sha256": e.archive_sha256,
        }
        for e in extensions
    ]
    lines = [
        f"{e.id:<40} {e.version:<12} {'enabled' if e.enabled else 'disabled':<9} {e.name}"
        for e in extensions
    ] or ["No extensions installed."]
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK


def _set_enabled(args: argparse.Namespace, registry: Registry, enabled: bool) -> ExitCode:
    from registry.compatibility import misfit
    from registry.version import APP_VERSION

    if not enabled:
        together = _together(args, registry, turning_off=True)
        if isinstance(together, ExitCode):
            return together
        for record in together:
            registry.set_enabled(record.id, False)
            emit(args, {"id": record.id, "enabled": False}, f"{record.id} disabled")
    installed = registry.get_extension(args.extension_id)
    needs = misfit(installed, APP_VERSION) if installed is not None and enabled else None
    if needs is not None and not args.anyway:
        return fail(
            f"{args.extension_id} needs {needs}, and this is Extension Manager {APP_VERSION}. "
            f"To turn it on anyway, run 'extension-manager enable --anyway {args.extension_id}'."
        )
    if needs is not None:
        registry.override_compatibility(args.extension_id, APP_VERSION, f"it needs {needs}")
    else:
        registry.set_enabled(args.extension_id, enabled)
    state = "enabled" if enabled else "disabled"
    emit(args, {"id": args.extension_id, "enabled": enabled}, f"{args.extension_id} {state}")
    return ExitCode.OK


def _configure_enable(sub: argparse.ArgumentParser) -> None:
    _configure_extension_id(sub)
    sub.add_argument(
        "--anyway",
        action="store_true",
        help="turn it on even though it does not fit this app's version (recorded)",
    )


def enable_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    return _set_enabled(args, registry, True)


def _configure_disable(sub: argparse.ArgumentParser) -> None:
    _configure_extension_id(sub)
    _configure_with_dependents(sub, "disable")


def disable_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    return _set_enabled(args, registry, False)


def _configure_config(sub: argparse.ArgumentParser) -> None:
    _configure_extension_id(sub)
    sub.add_argument(
        "assignments",
        nargs="*",
        metavar="KEY[=VALUE]",
        help='settings to show or change; values are JSON (true, 3, 0.5, "text") or plain text',
    )
    sub.add_argument("--reset", action="store_true", help="restore every default")


def _parse_value(text: str) -> ConfigValue:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, bool | int | float | str):
        return value
    return text


def config_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    if args.reset:
        registry.reset_config(args.extension_id)
    changes: dict[str, ConfigValue] = {}
    shown: list[str] = []
    for assignment in args.assignments:
        key, sep, value = assignment.partition("=")
        if sep:
            changes[key] = _parse_value(value)
        else:
            shown.append(key)
    if changes:
        registry.set_config(args.extension_id, changes)
    values = registry.get_config(args.extension_id)
    unknown = [key for key in shown if key not in values]
    if unknown:
        known = ", ".join(values) or "none"
        return fail(
            f"'{unknown[0]}' is not a setting of {args.extension_id}. Its settings are: {known}."
        )
    if shown:
        values = {key: values[key] for key in shown}
    emit(
        args,
        values,
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        or "This extension has no settings.",
    )
    return ExitCode.OK


def _configure_history(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--limit", type=int, default=50, help="how many operations (default 50)")


def installs_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    records = registry.list_operations(limit=args.limit)
    emit(
        args,
        [operation_payload(r) for r in records],
        "\n".join(_operation_line(r) for r in records) or "No operations yet.",
    )
    return ExitCode.OK


# -- checking and rescuing -------------------------------------------------------------------


def _configure_doctor(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--repair", action="store_true", help="fix what can be fixed safely")


def doctor_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.doctor import diagnose, repair
    from registry.versions import reclaimable

    repaired = repair(registry) if args.repair else []
    findings = diagnose(registry)
    kept = reclaimable(registry)
    payload = {
        "healthy": not findings,
        "repaired": repaired,
        "kept_archives": {
            "bytes": kept.kept_bytes,
            "reclaimable_bytes": kept.reclaimable_bytes,
            "beyond_preferences": kept.beyond_preferences,
            "unreferenced_files": [str(path) for path in kept.unreferenced],
        },
        "findings": [
            {"problem": f.problem, "advice": f.advice, "repairable": f.repairable} for f in findings
        ],
    }
    lines = [f"Repaired: {line}" for line in repaired]
    lines += [f"Problem: {f.problem}\n  {f.advice}" for f in findings]
    lines += kept.lines()
    lines.append(
        "Healthy: the registry and the files on disk agree."
        if not findings
        else f"{len(findings)} problem(s) found."
        + (
            " Run 'extension-manager doctor --repair' to fix the repairable ones."
            if any(f.repairable for f in findings) and not args.repair
            else ""
        )
    )
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK if not findings else ExitCode.FAILURE


def _configure_rescue(sub: argparse.ArgumentParser) -> None:
    choice = sub.add_mutually_exclusive_group()
    choice.add_argument(
        "--restore-backup",
        action="store_true",
        help="replace the missing or damaged registry with the newest verified backup",
    )
    choice.add_argument(
        "--rebuild",
        action="store_true",
        help="start a new registry and re-register the extensions found on disk",
    )


def rescue_command(args: argparse.Namespace, paths: DataPaths) -> ExitCode:
    from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup
    from registry.version import APP_VERSION

    if args.restore_backup or args.rebuild:
        result = (
            restore_latest_backup(paths)
            if args.restore_backup
            else rebuild_from_disk(paths, APP_VERSION)
        )
        payload = {
            "rescued": True,
            "actions": list(result.actions),
            "moved_aside": [str(p) for p in result.moved_aside],
        }
        emit(args, payload, "\n".join(result.actions))
        return ExitCode.OK
    options = rescue_options(paths)
    backup = options.backup
    payload = {
        "needed": options.needed,
        "problem": options.problem,
        "backup": None
        if backup is None
        else {
            "path": str(backup.path),
            "schema_version": backup.schema_version,
            "taken_at": backup.taken_at,
            "extensions": backup.extensions,
        },
        "extension_folders": list(options.extension_folders),
    }
    emit(args, payload, "\n".join(options.describe()))
    return ExitCode.FAILURE if options.needed else ExitCode.OK


# -- the desktop ----------------------------------------------------------------------------


def _configure_desktop_entry(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "action",
        choices=("install", "remove"),
        help="install: add the launcher and icons for this user; remove: delete exactly those",
    )


def desktop_entry_command(args: argparse.Namespace, _paths: DataPaths) -> ExitCode:
    """Needs neither the registry nor the data folder: it works when they cannot be opened."""
    from cli import desktop_entry

    outcome = desktop_entry.install() if args.action == "install" else desktop_entry.remove()
    if args.json or outcome.done:
        payload = {"action": args.action, "done": list(outcome.done), "error": outcome.error}
        emit(args, payload, "\n".join(outcome.done))
    return ExitCode.OK if outcome.error is None else fail(outcome.error)


_HISTORY = Command(
    "list install, upgrade and uninstall operations, newest first",
    _configure_history,
    installs_command,
)

COMMANDS: dict[str, Command] = {
    "status": Command(
        "show the data folder, schema version, migrations and what opening the registry did",
        on_registry=status_command,
    ),
    "install": Command(
        "install or upgrade extensions from .zip files", _configure_install, install_command
    ),
    "uninstall": Command(
        "remove an installed extension (its history is kept)",
        _configure_uninstall,
        uninstall_command,
    ),
    "list": Command("list installed extensions", on_registry=list_command),
    "enable": Command("enable an installed extension", _configure_enable, enable_command),
    "disable": Command("disable an installed extension", _configure_disable, disable_command),
    "config": Command("show or change an extension's settings", _configure_config, config_command),
    "versions": Command(
        "list an extension's kept versions (what a rollback can go back to)",
        _configure_extension_id,
        versions.versions_command,
    ),
    "rollback": Command(
        "go back to a kept version, its files and its settings, and hold it there",
        versions.configure_rollback,
        versions.rollback_command,
    ),
    "hold": Command(
        "offer no updates for an extension until it is released",
        versions.configure_hold,
        versions.hold_command,
    ),
    "release": Command(
        "offer updates for a held extension again",
        _configure_extension_id,
        versions.release_command,
    ),
    "sources": Command(
        "list, add or remove update sources (folders of zips, index.json over http(s) or file://)",
        versions.configure_sources,
        versions.sources_command,
    ),
    "updates": Command(
        "show the updates the sources offer, and newer versions that do not fit this app",
        on_registry=versions.updates_command,
    ),
    "update": Command(
        "download and install updates from the sources",
        versions.configure_update,
        versions.update_command,
    ),
    "index": Command(
        "write DIR/index.json so that a folder of zips can be published as an update source",
        versions.configure_index,
        on_folder=versions.index_command,
    ),
    "preferences": Command(
        "show or change how many earlier versions are kept and whether sources are checked "
        "at launch",
        versions.configure_preferences,
        versions.preferences_command,
    ),
    "export": Command(
        "write the installed extensions, their versions, states and settings to FILE.json "
        "(--bundle: a zip with their archives too)",
        transfer.configure_export,
        transfer.export_command,
    ),
    "import": Command(
        "bring this data folder to the extensions of an exported FILE: one plan, then "
        "installs, upgrades and settings",
        transfer.configure_import,
        transfer.import_command,
    ),
    "installs": _HISTORY,
    # "history" reads better to some; both names stay.
    "history": _HISTORY,
    "doctor": Command(
        "check the registry against the files on disk", _configure_doctor, doctor_command
    ),
    "rescue": Command(
        "recover from a missing or damaged registry (without an option: show what is possible)",
        _configure_rescue,
        on_folder=rescue_command,
    ),
    "desktop-entry": Command(
        "add the app to your applications menu and its 'Open with' choices for zips, never "
        "as their default (install), or take it out again (remove)",
        _configure_desktop_entry,
        on_folder=desktop_entry_command,
    ),
}


def add_commands(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        if command.configure is not None:
            command.configure(sub)


def _one_line(error: UserFacingError) -> str:
    # Scripts read stderr line by line: one error, one line.
    return " ".join(str(error).split())


def run_command(args: argparse.Namespace, paths: DataPaths) -> ExitCode:
    """Every failure ends as one line on stderr and exit code 1, never a traceback."""
    from registry.startup import open_data_folder

    command = COMMANDS[args.command]
    try:
        if command.on_folder is not None:
            return command.on_folder(args, paths)
        assert command.on_registry is not None
        with open_data_folder(paths) as registry:
            turned_off = registry.launch.turned_off
            if turned_off is not None and args.command != "status":
                # Said once, by whichever command first runs on the new app version.
                print(f"extension-manager: {runnable(turned_off)}", file=sys.stderr)
            return command.on_registry(args, registry)
    except UserFacingError as error:
        message = _one_line(error)
    except BrokenPipeError:
        # The reader went away (``| head``): nobody is left to tell, and the flush at exit
        # must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILURE
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        message = (
            f"{error.strerror or error}{where}. Check the data folder's free space and "
            "permissions, then try again."
        )
    except Exception as error:
        log.exception("the %s command failed", args.command)
        message = (
            f"an unexpected error stopped '{args.command}' ({type(error).__name__}: {error}). "
            "Details are in the log file."
        )
    return fail(message)
