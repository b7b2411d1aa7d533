"""The command words, apart from the commands themselves: every launch reads them to tell a
command from the window, and the window's launch must not pay for importing the commands.
``cli.commands`` builds its table in this order, and a test keeps the two in step."""

from __future__ import annotations

COMMAND_NAMES: tuple[str, ...] = (
    "status",
    "install",
    "uninstall",
    "list",
    "enable",
    "disable",
    "config",
    "versions",
    "rollback",
    "hold",
    "release",
    "sources",
    "updates",
    "update",
    "index",
    "preferences",
    "export",
    "import",
    "installs",
    "history",
    "doctor",
    "rescue",
    "desktop-entry",
)
