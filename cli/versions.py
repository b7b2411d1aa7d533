"""The commands about versions over time: kept versions, rollback, holds, update sources,
updates, and the preferences that bound what is kept. ``cli.commands`` lists them in its table.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.invocation import runnable
from cli.output import ExitCode, ask, emit, fail, on_terminal, operation_payload, unconfirmed
from registry.sizes import format_size
from registry.store import OperationRecord, Preferences, Registry
from registry.vocabulary import OperationStatus, kind_of

if TYPE_CHECKING:
    from registry.installer import InstallPlan
    from registry.sources import ExtensionUpdates, Offer, UpdateReport


def _run_operation(
    registry: Registry,
    install_id: int,
    label: str,
    work: Callable[[], Any],
    args: argparse.Namespace,
) -> Any:
    from cli.progress import run_with_progress

    if not args.json and sys.stderr.isatty():
        return run_with_progress(registry, install_id, label, work, sys.stderr)
    return work()


def _plan_then_execute(
    registry: Registry,
    args: argparse.Namespace,
    install_id: int,
    label: str,
    plan: Callable[[], InstallPlan | OperationRecord],
    notes: list[str],
) -> OperationRecord:
    """The install command's flow for a rollback or an update: plan on a worker with the bar,
    ask on this thread (unless --yes), execute on a worker with the bar."""
    from registry.installer import Installer, InstallPlan

    installer = Installer(registry)
    planned = _run_operation(registry, install_id, label, plan, args)
    if not isinstance(planned, InstallPlan):
        return registry.get_operation(install_id)
    if not args.yes:
        print("\n".join([*planned.describe(), *notes]), file=sys.stderr)
        if not ask(f"{planned.kind.verb}?"):
            return installer.decline(install_id)
    record: OperationRecord = _run_operation(
        registry,
        install_id,
        planned.manifest.name,
        functools.partial(installer.execute, planned),
        args,
    )
    return record


def _report(args: argparse.Namespace, records: list[OperationRecord]) -> ExitCode:
    for record in records:
        if args.json:
            continue
        if record.status == OperationStatus.COMPLETED:
            print(f"{kind_of(record.kind).done} {record.extension_id} {record.to_version}")
        else:
            print(f"extension-manager: {runnable(record.error or '')}", file=sys.stderr)
    if args.json:
        print(json.dumps([operation_payload(r) for r in records], indent=2))
    ok = all(r.status == OperationStatus.COMPLETED for r in records)
    return ExitCode.OK if ok else ExitCode.FAILURE


def _needs_confirmation(args: argparse.Namespace, example: str) -> ExitCode | None:
    if args.yes or on_terminal():
        return None
    return unconfirmed(example)


# -- kept versions and rollback ------------------------------------------------------------------


def versions_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.versions import describe_age

    installed = registry.get_extension(args.extension_id)
    kept = registry.list_kept_versions(args.extension_id)
    if installed is None and not kept:
        return fail(f"The extension '{args.extension_id}' is not installed.")
    rows: list[dict[str, Any]] = []
    for version in kept:
        archive = registry.paths.kept_archive(version.archive_sha256)
        current = installed is not None and installed.archive_sha256 == version.archive_sha256
        rows.append(
            {
                "version": version.version,
                "installed": current,
                "installed_at": version.installed_at,
                "replaced_at": version.replaced_at,
                "archive": str(archive),
                "archive_present": archive.is_file(),
                "size": version.archive_size,
                "origin": version.origin,
                "origin_source": version.origin_source,
                "settings": version.settings,
            }
        )
    lines = [
        f"{row['version']:<14} {'installed' if row['installed'] else '':<10} "
        f"installed {describe_age(str(row['installed_at']))}, "
        f"{format_size(int(row['size']))}"
        + ("" if row["archive_present"] else "  (archive missing)")
        for row in rows
    ] or [f"No versions of {args.extension_id} are kept."]
    if installed is not None and installed.held:
        lines.append(f"Held: {installed.hold_reason}. Release it with 'extension-manager release'.")
    emit(args, rows, "\n".join(lines))
    return ExitCode.OK


def rollback_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.installer import Installer

    refused = _needs_confirmation(args, f"rollback --yes {args.extension_id}")
    if refused is not None:
        return refused
    installer = Installer(registry)
    install_id = installer.begin_rollback(args.extension_id)
    record = _plan_then_execute(
        registry,
        args,
        install_id,
        args.extension_id,
        lambda: installer.plan_rollback(install_id, args.extension_id, args.to),
        [],
    )
    return _report(args, [record])


def _set_hold(args: argparse.Namespace, registry: Registry, held: bool) -> ExitCode:
    if held:
        registry.hold(args.extension_id, args.reason or "Held by you")
    else:
        registry.release(args.extension_id)
    words = "held: no update is offered until you release it" if held else "released"
    emit(args, {"id": args.extension_id, "held": held}, f"{args.extension_id} {words}")
    return ExitCode.OK


def hold_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    return _set_hold(args, registry, True)


def release_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    return _set_hold(args, registry, False)


# -- sources -------------------------------------------------------------------------------------


def sources_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.sources import classify

    if args.action in ("add", "remove") and not args.location:
        return fail(f"Say which source to {args.action}: a folder or an index address.")
    if args.action == "add":
        location, kind = classify(args.location)
        source = registry.add_source(location, kind)
        emit(
            args,
            {"location": source.location, "kind": source.kind},
            f"Added {'the folder' if kind == 'FOLDER' else 'the index'} {source.location}. "
            "Run 'extension-manager updates' to see what it offers.",
        )
        return ExitCode.OK
    if args.action == "remove":
        known = {s.location for s in registry.list_sources()}
        location = args.location
        if location not in known:
            try:
                location = classify(args.location)[0]
            except Exception:
                location = args.location
        if not registry.remove_source(location):
            return fail(
                f"'{args.location}' is not one of the sources. See them with "
                "'extension-manager sources list'."
            )
        emit(args, {"removed": location}, f"Removed the source {location}.")
        return ExitCode.OK
    sources = registry.list_sources()
    payload = [
        {
            "location": s.location,
            "kind": s.kind,
            "added_at": s.added_at,
            "checked_at": s.checked_at,
            "last_error": s.last_error,
        }
        for s in sources
    ]
    lines = [
        f"{s.kind.lower():<7} {s.location}"
        + (f"\n        last check failed: {s.last_error}" if s.last_error else "")
        for s in sources
    ] or [
        "No update sources. Add a folder of zips or an index with 'extension-manager sources add'."
    ]
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK


def index_command(args: argparse.Namespace, _paths: object) -> ExitCode:
    """Needs no registry: it describes a folder for others to use as a source."""
    from registry.sources import write_index

    result = write_index(args.folder)
    payload = {"index": str(result.path), "entries": result.entries, "skipped": result.skipped}
    lines = [f"Wrote {result.path} with {result.entries} extension archive(s)."]
    lines += [f"Left out {line}" for line in result.skipped]
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK


# -- updates -------------------------------------------------------------------------------------


def _offer_payload(offer: Offer) -> dict[str, Any]:
    return {
        "version": offer.version,
        "url": offer.url,
        "source": offer.source,
        "size": offer.size,
        "sha256": offer.sha256,
        "min_app_version": offer.min_app_version,
        "max_app_version": offer.max_app_version,
    }


def _update_payload(item: ExtensionUpdates) -> dict[str, Any]:
    return {
        "id": item.extension_id,
        "name": item.name,
        "installed": item.installed_version,
        "status": item.status,
        "available": None if item.offer is None else _offer_payload(item.offer),
        "blocked": [{**_offer_payload(o), "reason": reason} for o, reason in item.blocked],
        "held": item.held,
        "withheld": None if item.withheld is None else item.withheld.version,
        "note": item.origin_note,
    }


def _update_lines(item: ExtensionUpdates, complete: bool = True) -> list[str]:
    head = f"{item.extension_id} {item.installed_version}: "
    if item.offer is not None:
        head += f"{item.offer.version} available"
    elif item.held is not None and item.status == "held":
        head += f"held ({item.held}); nothing is offered until you release it"
        if item.withheld is not None:
            head += f" ({item.withheld.version} is available)"
    elif complete:
        head += "up to date"
    else:
        head += "no update in the sources that answered"
    lines = [head]
    lines += [f"  {offer.version} {reason}" for offer, reason in item.blocked]
    if item.origin_note:
        lines.append(f"  {item.origin_note}")
    return lines


def _report_problems(report: UpdateReport) -> None:
    for problem in report.problems:
        print(f"extension-manager: {runnable(problem)}", file=sys.stderr)


NO_SOURCES = (
    "There are no update sources. Add a folder of zips or an index first, for example "
    "'extension-manager sources add ~/extensions'."
)


def _none_answered(registry: Registry, report: UpdateReport) -> bool:
    return bool(report.problems) and len(report.problems) >= len(registry.list_sources())


def updates_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.sources import check_updates

    if not registry.list_sources():
        return fail(NO_SOURCES)
    report = check_updates(registry)
    # Each source that could not be read is one line on stderr, which is all there is to say
    # when none could be.
    _report_problems(report)
    payload = {
        "extensions": [_update_payload(item) for item in report.extensions],
        "problems": list(report.problems),
    }
    unreachable = _none_answered(registry, report)
    if unreachable and not args.json:
        return ExitCode.FAILURE
    complete = not report.problems
    lines = [line for item in report.extensions for line in _update_lines(item, complete)]
    emit(args, payload, "\n".join(lines) or "No extensions installed.")
    return ExitCode.FAILURE if unreachable else ExitCode.OK


def update_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    from registry.installer import Installer
    from registry.sources import check_updates

    if not args.all and not args.extension_ids:
        return fail("Say which extensions to update, or use --all.")
    refused = _needs_confirmation(args, "update --yes --all")
    if refused is not None:
        return refused
    if not registry.list_sources():
        return fail(NO_SOURCES)
    report = check_updates(registry)
    _report_problems(report)
    if _none_answered(registry, report):
        return ExitCode.FAILURE  # nothing is known about updates: said above, source by source
    complete = not report.problems
    wanted: list[tuple[str, ExtensionUpdates | None]] = (
        [(item.extension_id, item) for item in report.extensions if item.offer is not None]
        if args.all
        else [(name, report.for_extension(name)) for name in args.extension_ids]
    )
    records = []
    failed = False
    for extension_id, item in wanted:
        if item is None:
            failed = True
            print(
                f"extension-manager: The extension '{extension_id}' is not installed.",
                file=sys.stderr,
            )
            continue
        if item.offer is None:
            failed = failed or item.status == "held"
            print(
                _update_lines(item, complete)[0],
                file=sys.stderr if item.status == "held" else sys.stdout,
            )
            continue
        offer = item.offer
        installer = Installer(registry)
        install_id = installer.begin_update(offer)
        notes = [item.origin_note] if item.origin_note else []
        if item.origin_note and args.yes and not args.json:
            print(f"Note: {item.origin_note}", file=sys.stderr)
        records.append(
            _plan_then_execute(
                registry,
                args,
                install_id,
                f"{offer.extension_id} {offer.version}",
                functools.partial(installer.plan_update, install_id, offer),
                notes,
            )
        )
    if not records and not args.all:
        return ExitCode.FAILURE if failed else ExitCode.OK
    if not records:
        if not args.json:
            print(
                "Everything is up to date."
                if complete
                else "Nothing to update in the sources that answered."
            )
        return ExitCode.OK
    code = _report(args, records)
    return ExitCode.FAILURE if failed else code


# -- preferences ---------------------------------------------------------------------------------


def _parse_preference(name: str, text: str) -> object:
    from registry.sizes import parse_size

    if name == "keep_bytes":
        return parse_size(text)
    if name == "keep_versions":
        number = int(text)
        if number < 0:
            raise ValueError("must be 0 or more")
        return number
    if text.lower() in ("true", "yes", "on", "1"):
        return True
    if text.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def preferences_command(args: argparse.Namespace, registry: Registry) -> ExitCode:
    import dataclasses

    preferences = registry.preferences()
    changes: dict[str, object] = {}
    for assignment in args.assignments:
        name, sep, text = assignment.partition("=")
        if not sep or name not in Preferences.__slots__:
            known = ", ".join(Preferences.__slots__)
            return fail(f"'{assignment}' is not NAME=VALUE with NAME one of: {known}.")
        try:
            changes[name] = _parse_preference(name, text)
        except ValueError as error:
            return fail(f"The preference {name} {error} (got '{text}').")
    if changes:
        preferences = dataclasses.replace(preferences, **changes)  # type: ignore[arg-type]
        registry.set_preferences(preferences)
        from registry.versions import prune

        prune(registry)
    payload = {name: getattr(preferences, name) for name in Preferences.__slots__}
    lines = [
        f"keep_versions = {preferences.keep_versions}   (earlier versions kept per extension)",
        f"keep_bytes = {format_size(preferences.keep_bytes)}   (for all earlier versions)",
        f"check_at_launch = {str(preferences.check_at_launch).lower()}   (contact the sources "
        "when the app starts)",
    ]
    emit(args, payload, "\n".join(lines))
    return ExitCode.OK


# -- argument shapes -----------------------------------------------------------------------------


def configure_rollback(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("extension_id", metavar="ID", help="the extension's id")
    sub.add_argument("--to", metavar="VERSION", help="the kept version to go back to")
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def configure_hold(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("extension_id", metavar="ID", help="the extension's id")
    sub.add_argument("--reason", help="why, shown with the hold")


def configure_sources(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("action", choices=("add", "list", "remove"), nargs="?", default="list")
    sub.add_argument(
        "location",
        nargs="?",
        metavar="PATH_OR_URL",
        help="a folder of zips, an index.json, or an http(s):// or file:// index address",
    )


def configure_index(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("folder", metavar="DIR", type=Path, help="the folder of extension zips")


def configure_update(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("extension_ids", nargs="*", metavar="ID", help="extensions to update")
    sub.add_argument("--all", action="store_true", help="update every extension that can be")
    sub.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def configure_preferences(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "assignments",
        nargs="*",
        metavar="NAME=VALUE",
        help="keep_versions=2, keep_bytes=1GiB, check_at_launch=false",
    )
