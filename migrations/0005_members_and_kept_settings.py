"""Installing from inside an archive, and settings kept across an uninstall.

* ``extension_installs`` gains, for an install taken from inside another archive (a zip of
  zips, or a folder deeper down), the member's path and the outer file's sha256 (the
  operation's own ``archive_sha256`` stays the one of what was installed); and, for an archive
  refused because its extension is inside it, what it offered (JSON: member, id, name,
  version), so the window can offer the choice again.
* ``kept_settings``: the settings of an uninstalled extension that the person chose to keep,
  offered back when the same id is installed again.
"""

from __future__ import annotations

import sqlite3

NAME = "members and kept settings"

STATEMENTS = (
    "ALTER TABLE extension_installs ADD COLUMN from_member TEXT",
    "ALTER TABLE extension_installs ADD COLUMN outer_sha256 TEXT",
    "ALTER TABLE extension_installs ADD COLUMN inner_offers TEXT",
    """
    CREATE TABLE kept_settings (
        extension_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        settings TEXT NOT NULL,
        kept_at TEXT NOT NULL
    )
    """,
)


def apply(connection: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        connection.execute(statement)
