"""The headless command line: the same registry API the window uses, with exit codes
(0 ok, 1 failure with a message on stderr, 2 usage error) and ``--json`` output for scripts."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from migrations.runner import read_status
from registry.errors import UserFacingError
from registry.paths import DataPaths
from registry.startup import open_registry
from registry.store import ConfigValue, OperationRecord, Registry

if TYPE_CHECKING:
    from registry.installer import InstallPlan

# The installer and the doctor are imported by the commands that use them: the window's launch
# only needs the command names, and its start-up time is measured.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger(__name__)

CommandHandler = Callable[[argparse.Namespace, Registry, str], int]
FolderHandler = Callable[[argparse.Namespace, DataPaths, str], int]
COMMANDS: dict[str, tuple[str, CommandHandler]] = {}
# Commands that must work when the registry cannot be opened; they get the data folder instead.
FOLDER_COMMANDS: dict[str, FolderHandler] = {}


def command(name: str, help_text: str) -> Callable[[CommandHandler], CommandHandler]:
    def register(handler: CommandHandler) -> CommandHandler:
        COMMANDS[name] = (help_text, handler)
        return handler

    return register


def folder_command(name: str, help_text: str) -> Callable[[FolderHandler], FolderHandler]:
    def register(handler: FolderHandler) -> FolderHandler:
        FOLDER_COMMANDS[name] = handler
        COMMANDS[name] = (help_text, _refuse_registry)
        return handler

    return register


def _refuse_registry(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    raise RuntimeError(f"'{args.command}' runs on the data folder, not on an open registry")


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


@command("status", "show the data folder, database path, schema version and migrations")
def status_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    status = read_status(registry.paths.database)
    applied = registry.applied_migrations()
    payload = {
        "app_version": app_version,
        "data_dir": str(registry.paths.root),
        "database": str(registry.paths.database),
        "schema_version": status.version,
        "latest_schema_version": status.latest,
        "applied_migrations": [{"version": v, "name": n, "applied_at": a} for v, n, a in applied],
        "extensions": len(registry.list_extensions()),
        "operations": registry.count_operations(),
    }
    lines = [
        f"Extension Manager {app_version}",
        f"Data folder:     {registry.paths.root}",
        f"Database:        {registry.paths.database}",
        f"Schema version:  {status.version} (latest {status.latest})",
        f"Extensions:      {payload['extensions']}",
        f"Operations:      {payload['operations']}",
        "Applied migrations:",
        *(f"  {v:04d} {n} (applied {a})" for v, n, a in applied),
    ]
    emit(args, payload, "\n".join(lines))
    return EXIT_OK


def _operation_payload(record: OperationRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in OperationRecord.__slots__}


def _operation_line(record: OperationRecord) -> str:
    change = record.to_version or ""
    if record.from_version and record.to_version:
        change = f"{record.from_version} -> {record.to_version}"
    elif record.from_version:
        change = record.from_version
    what = record.extension_id or Path(record.archive_path).name or "?"
    line = f"#{record.install_id:<5} {record.started_at[:19]}  {record.kind:<9} {record.status:<12}"
    line += f" {what} {change}".rstrip()
    if record.error:
        line += f"\n        {record.error}"
    return line


PAST_TENSE = {
    "INSTALL": "Installed",
    "UPGRADE": "Upgraded",
    "REINSTALL": "Reinstalled",
    "DOWNGRADE": "Downgraded",
}


class TerminalProgress:
    """A one-line progress bar on stderr, drawn from the operation's registry row (the same
    numbers the window shows), paused while the confirmation question is on screen."""

    WIDTH = 30

    def __init__(self, registry: Registry, stream: TextIO) -> None:
        self.registry = registry
        self.stream = stream
        self.asking = threading.Event()
        self._drawn = False

    def ask(self, plan: InstallPlan) -> bool:
        self.asking.set()
        try:
            self.clear()
            print("\n".join(plan.describe()), file=self.stream)
            verb = {"INSTALL": "Install", "UPGRADE": "Upgrade", "REINSTALL": "Reinstall"}.get(
                plan.kind, "Downgrade"
            )
            try:
                answer = input(f"{verb}? [y/N] ")
            except EOFError:
                return False
            return answer.strip().lower() in ("y", "yes")
        finally:
            self.asking.clear()

    def draw(self, install_id: int, label: str) -> None:
        if self.asking.is_set():
            return
        record = self.registry.get_operation(install_id)
        filled = record.progress * self.WIDTH // 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{label[:30]:<30} [{bar}] {record.progress:3d}% {record.current_step:<36}"
        )
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def run(
        self, install_id: int, label: str, work: Callable[[], OperationRecord]
    ) -> OperationRecord:
        """Run the install on a thread and redraw the bar until it ends."""
        results: list[OperationRecord] = []
        failures: list[BaseException] = []

        def target() -> None:
            try:
                results.append(work())
            except BaseException as error:
                failures.append(error)
            finally:
                self.registry.close_thread_connection()

        worker = threading.Thread(target=target, name="install", daemon=True)
        worker.start()
        while worker.is_alive():
            self.draw(install_id, label)
            worker.join(PROGRESS_REDRAW_SECONDS)
        self.draw(install_id, label)
        self.clear()
        if failures:
            raise failures[0]
        return results[0]


PROGRESS_REDRAW_SECONDS = 0.1


def _configure_install(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("archives", nargs="+", metavar="ZIP", type=Path, help="extension archives")
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    sub.add_argument("--reinstall", action="store_true", help="allow installing the same version")
    sub.add_argument(
        "--allow-downgrade",
        "--downgrade",
        dest="downgrade",
        action="store_true",
        help="allow installing an older version",
    )


@command("install", "install or upgrade extensions from .zip files")
def install_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    from registry.installer import Installer, InstallOptions

    installer = Installer(registry, app_version)
    options = InstallOptions(allow_reinstall=args.reinstall, allow_downgrade=args.downgrade)
    interactive = not args.yes and sys.stdin is not None and sys.stdin.isatty()
    if not args.yes and not interactive:
        print(
            "extension-manager: nothing installed. Confirm with --yes when not running on a "
            "terminal (for example: extension-manager install --yes FILE.zip).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    results = []
    terminal = TerminalProgress(registry, sys.stderr)
    show_bar = not args.json and sys.stderr.isatty()
    for archive in args.archives:
        confirm = terminal.ask if interactive else None
        if show_bar:
            install_id = installer.begin(archive)
            record = terminal.run(
                install_id,
                archive.name,
                functools.partial(
                    installer.install,
                    archive,
                    options=options,
                    confirm=confirm,
                    install_id=install_id,
                ),
            )
        else:
            record = installer.install(archive, options=options, confirm=confirm)
        results.append(record)
        if not args.json:
            if record.status == "COMPLETED":
                done = PAST_TENSE.get(record.kind, "Installed")
                print(f"{done} {record.extension_id} {record.to_version}")
            else:
                print(f"extension-manager: {archive}: {record.error}", file=sys.stderr)
    if args.json:
        print(json.dumps([_operation_payload(r) for r in results], indent=2))
    return EXIT_OK if all(r.status == "COMPLETED" for r in results) else EXIT_FAILURE


def _configure_extension_id(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("extension_id", metavar="ID", help="the extension's id, e.g. example.hello")


@command("uninstall", "remove an installed extension (its history is kept)")
def uninstall_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    from registry.installer import Installer

    record = Installer(registry, app_version).uninstall(args.extension_id)
    if record.status != "COMPLETED":
        print(f"extension-manager: {record.error}", file=sys.stderr)
        return EXIT_FAILURE
    emit(args, _operation_payload(record), f"Uninstalled {args.extension_id}")
    return EXIT_OK


@command("list", "list installed extensions")
def list_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
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
    return EXIT_OK


def _set_enabled(args: argparse.Namespace, registry: Registry, enabled: bool) -> int:
    registry.set_enabled(args.extension_id, enabled)
    state = "enabled" if enabled else "disabled"
    emit(args, {"id": args.extension_id, "enabled": enabled}, f"{args.extension_id} {state}")
    return EXIT_OK


@command("enable", "enable an installed extension")
def enable_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    return _set_enabled(args, registry, True)


@command("disable", "disable an installed extension")
def disable_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    return _set_enabled(args, registry, False)


def _configure_config(sub: argparse.ArgumentParser) -> None:
    _configure_extension_id(sub)
    sub.add_argument(
        "assignments",
        nargs="*",
        metavar="KEY=VALUE",
        help='settings to change; values are JSON (true, 3, 0.5, "text") or plain text',
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


@command("config", "show or change an extension's settings")
def config_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
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
        print(
            f"extension-manager: '{unknown[0]}' is not a setting of {args.extension_id}. "
            f"Its settings are: {known}.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if shown:
        values = {key: values[key] for key in shown}
    emit(
        args,
        values,
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        or "This extension has no settings.",
    )
    return EXIT_OK


def _configure_history(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--limit", type=int, default=50, help="how many operations (default 50)")


@command("installs", "list install, upgrade and uninstall operations, newest first")
def installs_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    records = registry.list_operations(limit=args.limit)
    emit(
        args,
        [_operation_payload(r) for r in records],
        "\n".join(_operation_line(r) for r in records) or "No operations yet.",
    )
    return EXIT_OK


# "history" reads better to some; both names stay.
COMMANDS["history"] = ("same as installs", installs_command)


def _configure_doctor(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--repair", action="store_true", help="fix what can be fixed safely")


@command("doctor", "check the registry against the files on disk")
def doctor_command(args: argparse.Namespace, registry: Registry, app_version: str) -> int:
    from registry.doctor import diagnose, repair

    repaired = repair(registry) if args.repair else []
    findings = diagnose(registry)
    payload = {
        "healthy": not findings,
        "repaired": repaired,
        "findings": [
            {"problem": f.problem, "advice": f.advice, "repairable": f.repairable} for f in findings
        ],
    }
    lines = [f"Repaired: {line}" for line in repaired]
    lines += [f"Problem: {f.problem}\n  {f.advice}" for f in findings]
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
    return EXIT_OK if not findings else EXIT_FAILURE


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


@folder_command(
    "rescue",
    "recover from a missing or damaged registry (without an option: show what is possible)",
)
def rescue_command(args: argparse.Namespace, paths: DataPaths, app_version: str) -> int:
    from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup

    if args.restore_backup or args.rebuild:
        result = (
            restore_latest_backup(paths)
            if args.restore_backup
            else rebuild_from_disk(paths, app_version)
        )
        payload = {
            "rescued": True,
            "actions": list(result.actions),
            "moved_aside": [str(p) for p in result.moved_aside],
        }
        emit(args, payload, "\n".join(result.actions))
        return EXIT_OK
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
    return EXIT_FAILURE if options.needed else EXIT_OK


COMMAND_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "install": _configure_install,
    "uninstall": _configure_extension_id,
    "enable": _configure_extension_id,
    "disable": _configure_extension_id,
    "config": _configure_config,
    "installs": _configure_history,
    "history": _configure_history,
    "doctor": _configure_doctor,
    "rescue": _configure_rescue,
}


def add_commands(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, _handler) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        configure = COMMAND_ARGUMENTS.get(name)
        if configure is not None:
            configure(sub)


def _one_line(error: UserFacingError) -> str:
    # Scripts read stderr line by line: one error, one line.
    return " ".join(str(error).split())


def run_command(args: argparse.Namespace, paths: DataPaths, app_version: str) -> int:
    """Every failure ends as one line on stderr and exit code 1, never a traceback."""
    try:
        folder_handler = FOLDER_COMMANDS.get(args.command)
        if folder_handler is not None:
            return folder_handler(args, paths, app_version)
        _help, handler = COMMANDS[args.command]
        opened = open_registry(paths)
        try:
            return handler(args, opened.registry, app_version)
        finally:
            opened.registry.close()
    except UserFacingError as error:
        message = _one_line(error)
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
    print(f"extension-manager: {message}", file=sys.stderr)
    return EXIT_FAILURE
