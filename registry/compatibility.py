"""Compatibility over time: when the app's version changes, every extension is checked again.

The registry remembers the app version of the last launch. When this launch's differs (after
the migrations, before any view), each enabled extension whose manifest does not fit the new
version is turned off, with the reason recorded as an operation, and the launch report says so
in one summary. An extension the person turns on again anyway keeps that choice (recorded as
an override) until the app changes once more.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.store import ExtensionRecord, Registry

LAST_APP_VERSION = "last_app_version"


@dataclass(frozen=True, slots=True)
class TurnedOff:
    extension_id: str
    name: str
    requirement: str  # "Extension Manager < 0.2.0"


def misfit(extension: ExtensionRecord, app_version: str) -> str | None:
    """What ``extension`` needs that ``app_version`` is not ("Extension Manager < 0.2.0"), or
    None when it fits. Reads the stored manifest, so no archive is opened."""
    from registry.manifest import app_version_fits, compatibility_requirement

    low = extension.manifest.get("min_app_version")
    high = extension.manifest.get("max_app_version")
    low = low if isinstance(low, str) else None
    high = high if isinstance(high, str) else None
    try:
        if app_version_fits(app_version, low, high) is None:
            return None
    except ValueError:
        return None  # a stored bound this app cannot read was never enforced
    return compatibility_requirement(low, high)


def recheck(registry: Registry, app_version: str) -> tuple[TurnedOff, ...]:
    """Turn off what no longer fits, once per change of the app's version."""
    last = registry.get_state(LAST_APP_VERSION)
    if last == app_version:
        return ()
    turned_off = []
    if last is not None:  # a first launch has nothing that was checked against another app
        for extension in registry.list_extensions():
            needs = misfit(extension, app_version) if extension.enabled else None
            if needs is None:
                continue
            if registry.turn_off_incompatible(extension.id, app_version, f"it needs {needs}"):
                turned_off.append(TurnedOff(extension.id, extension.name, needs))
    registry.set_state(LAST_APP_VERSION, app_version)
    return tuple(turned_off)


def summary(turned_off: tuple[TurnedOff, ...]) -> str | None:
    """One sentence for the person: '2 extensions were turned off: they need ...'."""
    if not turned_off:
        return None
    names = ", ".join(item.name for item in turned_off)
    needs = {item.requirement for item in turned_off}
    if len(turned_off) == 1:
        item = turned_off[0]
        head = f"1 extension was turned off: {item.name} needs {item.requirement}."
    elif len(needs) == 1:
        head = f"{len(turned_off)} extensions were turned off: they need {needs.pop()} ({names})."
    else:
        reasons = "; ".join(f"{item.name} needs {item.requirement}" for item in turned_off)
        head = f"{len(turned_off)} extensions were turned off: {reasons}."
    return (
        f"{head} Turn one on again if you want it anyway (Enable, or 'extension-manager "
        "enable ID')."
    )
