"""The seed's schema: extensions, one row per install operation, per-extension settings.

``extension_installs.extension_id`` is deliberately not a foreign key: the row is created the
moment a file is accepted (before its manifest, and so its id, is known) and it must outlive an
uninstall so that the history stays complete.
"""

from __future__ import annotations

import sqlite3

NAME = "initial schema"

STATEMENTS = (
    """
    CREATE TABLE extensions (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT '',
        manifest TEXT NOT NULL DEFAULT '{}',
        capabilities TEXT NOT NULL DEFAULT '[]',
        permissions TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1,
        install_path TEXT NOT NULL,
        archive_sha256 TEXT NOT NULL DEFAULT '',
        installed_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE extension_installs (
        install_id INTEGER PRIMARY KEY AUTOINCREMENT,
        extension_id TEXT,
        archive_path TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL
            CHECK (status IN ('INSTALLING', 'COMPLETED', 'FAILED', 'UNINSTALLING')),
        progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        current_step TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL,
        ended_at TEXT,
        error TEXT
    )
    """,
    "CREATE INDEX extension_installs_extension_id ON extension_installs (extension_id)",
    "CREATE INDEX extension_installs_status ON extension_installs (status)",
    """
    CREATE TABLE extension_configs (
        extension_id TEXT NOT NULL REFERENCES extensions (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (extension_id, key)
    )
    """,
)


def apply(connection: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        connection.execute(statement)
