"""What installed extensions need of each other: the registry's side of ``requires``.

``registry.requirements`` answers the questions over plain data; this module asks them of an
open registry, for the operations that must not leave an extension without what it needs
(uninstalling or turning off something another one needs, installing one whose requirements
are missing).
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.requirements import Installed, dependents_of, requires_of
from registry.store import ExtensionRecord, Registry, RequirementsRow


def installed(rows: Iterable[RequirementsRow]) -> list[Installed]:
    return [
        Installed(row.id, row.name, row.version, requires_of({"requires": row.requires}))
        for row in rows
    ]


def dependents(
    registry: Registry, extension_id: str, *, enabled_only: bool = False
) -> list[ExtensionRecord]:
    """The installed extensions that need ``extension_id``, directly or through others, in an
    order safe to remove or turn off (each before what it needs). ``enabled_only``: only the
    ones that are on (turning something off only matters to those)."""
    rows = [row for row in registry.list_requirements() if row.enabled or not enabled_only]
    needing = [item.id for item in dependents_of(extension_id, installed(rows))]
    records = [registry.get_extension(other) for other in needing]
    return [record for record in records if record is not None]


def names(records: Iterable[ExtensionRecord]) -> str:
    """'Word Tools and Spell Check' for a sentence."""
    shown = [record.name for record in records]
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def removal_refusal(
    registry: Registry, extension_id: str, *, turning_off: bool = False
) -> tuple[str, list[ExtensionRecord]] | None:
    """Why ``extension_id`` may not be uninstalled (or turned off) on its own, with the
    extensions that would have to go with it; None when nothing needs it."""
    needing = dependents(registry, extension_id, enabled_only=turning_off)
    if not needing:
        return None
    record = registry.get_extension(extension_id)
    name = record.name if record is not None else extension_id
    verb = "need" if len(needing) > 1 else "needs"
    doing, done = ("turn off", "turned off") if turning_off else ("uninstall", "uninstalled")
    command = "disable" if turning_off else "uninstall"
    message = (
        f"{names(needing)} {verb} {name}, so it was not {done}. To {doing} them together, "
        f"include them (extension-manager {command} {extension_id} --with-dependents), or "
        f"{doing} {names(needing)} first."
    )
    return message, needing
