"""Commands named in messages, written the way the reader can run them.

Messages everywhere say ``'extension-manager doctor'``. That is right for someone who installed
the app with pipx (the command is on PATH), but not for someone who started it from a checkout
with ``make run`` or from a virtual environment that is not activated. Before a message is
shown, :func:`runnable` rewrites those names to how this very process was started: the command
on PATH, the script's path as typed, ``.venv/bin/extension-manager`` in a checkout, or
``python -m extension_manager``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from pathlib import Path

COMMAND = "extension-manager"
_QUOTED_COMMAND = re.compile(rf"'{COMMAND}(?=[ '])")
_CHECKOUT_ENTRY = "main.py"
_PACKAGE_ENTRY = "__main__.py"


def runnable(message: str) -> str:
    """``message`` with every quoted ``'extension-manager …'`` made runnable as written."""
    prefix = command_prefix()
    if prefix == COMMAND:
        return message
    return _QUOTED_COMMAND.sub(lambda _match: f"'{prefix}", message)


@functools.cache
def command_prefix() -> str:
    """What to type instead of ``extension-manager`` to run a command of this installation."""
    started_as = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started_as is None:
        return COMMAND
    if started_as.name == _PACKAGE_ENTRY:
        return f"{_shown(Path(sys.executable))} -m extension_manager"
    if started_as.name == _CHECKOUT_ENTRY:
        # A checkout: ``make run`` and ``make test`` install the commands into .venv.
        installed = started_as.resolve().parent / ".venv" / "bin" / COMMAND
        if installed.exists():
            return _shown(installed)
        return f"{_shown(Path(sys.executable))} {_shown(started_as)}"
    on_path = shutil.which(started_as.name)
    if on_path is not None and Path(on_path).resolve() == started_as.resolve():
        return COMMAND  # installed with its commands on PATH (pipx, an activated venv)
    return _shown(started_as.parent / COMMAND)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it, else absolute."""
    absolute = path.absolute()
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        text = str(absolute)
    else:
        text = str(relative) if relative.parts else "."
    return f'"{text}"' if " " in text else text if os.sep in text else f".{os.sep}{text}"
