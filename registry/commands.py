"""The headless command line: the same registry API the window uses, with exit codes
(0 ok, 1 failure with a message on stderr, 2 usage error) and ``--json`` output for scripts."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from migrations.runner import read_status
from registry.errors import UserFacingError
from registry.paths import DataPaths
from registry.startup import open_registry
from registry.store import Registry

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger(__name__)

CommandHandler = Callable[[argparse.Namespace, Registry, str], int]
COMMANDS: dict[str, tuple[str, CommandHandler]] = {}


def command(name: str, help_text: str) -> Callable[[CommandHandler], CommandHandler]:
    def register(handler: CommandHandler) -> CommandHandler:
        COMMANDS[name] = (help_text, handler)
        return handler

    return register


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


def add_commands(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, _handler) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print machine-readable JSON")
        configure = COMMAND_ARGUMENTS.get(name)
        if configure is not None:
            configure(sub)


COMMAND_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


def run_command(args: argparse.Namespace, paths: DataPaths, app_version: str) -> int:
    _help, handler = COMMANDS[args.command]
    try:
        opened = open_registry(paths)
    except UserFacingError as error:
        print(f"extension-manager: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return handler(args, opened.registry, app_version)
    except UserFacingError as error:
        print(f"extension-manager: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        opened.registry.close()
