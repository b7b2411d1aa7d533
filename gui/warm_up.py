"""What the window does once it is on screen, for the rest of its life to go smoothly.

The first install, uninstall or dialog of a session imports what it needs: the manifest's JSON
Schema validator alone is about 70 ms of imports. An import holds Python's interpreter lock in
long stretches (loading a compiled module is one call), so on a worker it stalls the window's
thread as surely as on that thread: 25 ms at a time was measured here. Imported right after the
first paint, while the person looks at the window, those stalls are over before anything runs.

Then everything made so far (modules, widgets, the list of extensions) is frozen out of the
garbage collector's reach: it lives as long as the process, and a full collection walking it
took 20 to 100 ms at ten thousand extensions, on whichever thread happened to allocate.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading

log = logging.getLogger(__name__)

# Imported where they are first used, on a worker or on the window's thread.
MODULES = (
    "registry.archive",
    "registry.manifest",
    "registry.nested",
    "registry.requirements",
    "registry.relations",
    "registry.transfer",
    "gui.batch_dialog",
    "gui.confirm_dialog",
    "gui.config_dialog",
)

_started = threading.Event()


def after_first_paint() -> threading.Thread | None:
    """Import ``MODULES`` on a thread of their own, then freeze what exists; once per process
    (tests open many windows). Returns the thread, or None when it ran already."""
    if _started.is_set():
        return None
    _started.set()
    thread = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
    thread.start()
    return thread


def _warm_up() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the module's first real use reports what is wrong
            log.exception("could not import %s ahead of its use", name)
    gc.freeze()
