"""The installed set as a file: ``export FILE [--bundle]`` and ``import FILE``. ``cli.commands``
lists them in its table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.invocation import runnable
from cli.output import ExitCode, ask, emit, fail, on_terminal, operation_payload, unconfirmed
from registry.store import Registry

if TYPE_CHECKING:
    from registry.transfer import EntryOutcome, ImportPlan, InstalledSet, PlannedEntry

# registry.transfer (zipfile, hashlib, jsonschema) is imported by the commands that use it: the
# window's launch reads the command table, and its start-up time counts.


def configure_export(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("file", metavar="FILE", type=Path, help="the file to write, e.g. set.json")
    sub.add_argument(
        "--bundle",
        action="store_true",
        help="write a zip holding the extensions' archives too, so that it can be imported "
        "where they are not kept",
    )


def export_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.transfer import export_bundle, export_set

    written = export_bundle(registry, args.file) if args.bundle else export_set(registry, args.file)
    count = len(written.entries)
    archives = " with their archives" if args.bundle else ""
    payload = {
        "file": str(args.file.absolute()),
        "bundle": bool(args.bundle),
        "extensions": [entry.document() for entry in written.entries],
    }
    emit(args, payload, f"Exported {count} extension(s){archives} to {args.file}.")
    return ExitCode.OK


def configure_import(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "file", metavar="FILE", type=Path, help="a file written by 'export' (JSON or bundle)"
    )
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _planned_payload(planned: PlannedEntry) -> dict[str, Any]:
    entry = planned.entry
    return {
        "id": entry.id,
        "version": entry.version,
        "action": str(planned.action),
        "installed_version": planned.installed_version,
        "enabled": entry.enabled,
        "settings": dict(entry.settings),
        "from_bundle": planned.from_bundle,
        "reason": planned.reason or None,
        "line": planned.describe(),
    }


def _outcome_payload(outcome: EntryOutcome) -> dict[str, Any]:
    return {
        "id": outcome.planned.entry.id,
        "action": str(outcome.planned.action),
        "done": outcome.done,
        "message": outcome.message,
        "operation": None if outcome.operation is None else operation_payload(outcome.operation),
    }


def _payload(
    source: InstalledSet, plan: ImportPlan, outcomes: list[EntryOutcome] | None
) -> dict[str, Any]:
    return {
        "file": str(source.file.absolute()),
        "bundle": source.is_bundle,
        "exported_at": source.exported_at,
        "app_version": source.app_version,
        "plan": [_planned_payload(p) for p in plan.entries],
        "left_alone": list(plan.left_alone),
        "results": None if outcomes is None else [_outcome_payload(o) for o in outcomes],
    }


def import_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    """Read and check the file, show the one plan, ask once (or --yes), then run it."""
    from registry.transfer import check_bundle, plan_import, read_set, run_import

    source = check_bundle(read_set(args.file))
    plan = plan_import(registry, source)
    if not args.json:
        print(f"To bring this data folder to {args.file}:")
        print("\n".join(f"  {line}" for line in plan.describe()))
    if not plan.changes:
        if args.json:
            print(json.dumps(_payload(source, plan, []), indent=2))
        if plan.refused:
            return fail(f"Nothing was changed: {len(plan.refused)} extension(s) refused.")
        if not args.json:
            print("Nothing to do: this data folder already is as in the file.")
        return ExitCode.OK
    if not args.yes:
        if not on_terminal():
            if args.json:
                print(json.dumps(_payload(source, plan, None), indent=2))
            return unconfirmed(f"import --yes {args.file}")
        if not ask(f"Make these {len(plan.changes)} change(s)?"):
            return fail("Nothing was changed.")

    def report(outcome: EntryOutcome) -> None:
        if args.json or outcome.planned.action.value == "nothing":
            return
        if outcome.done:
            print(outcome.message)
        else:
            reason = runnable(" ".join(outcome.message.split()))
            print(f"extension-manager: {outcome.planned.entry.id}: {reason}", file=sys.stderr)

    outcomes = run_import(registry, plan, on_outcome=report).outcomes
    if args.json:
        print(json.dumps(_payload(source, plan, list(outcomes)), indent=2))
    failed = [o for o in outcomes if not o.done]
    if failed:
        return fail(
            f"{len(failed)} of {len(outcomes)} extension(s) are not as in the file; the rest are."
        )
    return ExitCode.OK
