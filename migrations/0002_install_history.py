"""Install history and integrity data.

Operations record what kind of change they were, the version change, the archive's sha256,
file count and size, and which process owns them (so that a launch can tell an interrupted
operation from one that another running process is still performing). Extensions record the
list of installed files (so that ``doctor`` can compare the registry with the disk), licence,
homepage and icon, and ``enabled`` becomes a checked boolean.

Both tables are rebuilt (SQLite cannot add a CHECK to an existing table). The runner has turned
foreign keys off for this connection, so dropping ``extensions`` does not cascade into
``extension_configs``; it checks ``foreign_key_check`` before committing.
"""

from __future__ import annotations

import sqlite3

NAME = "install history"

STATEMENTS = (
    """
    CREATE TABLE extensions_new (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        author TEXT NOT NULL DEFAULT '',
        license TEXT NOT NULL DEFAULT '',
        homepage TEXT NOT NULL DEFAULT '',
        icon_path TEXT,
        manifest TEXT NOT NULL DEFAULT '{}',
        capabilities TEXT NOT NULL DEFAULT '[]',
        permissions TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        install_path TEXT NOT NULL,
        archive_sha256 TEXT NOT NULL DEFAULT '',
        files TEXT,
        installed_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    INSERT INTO extensions_new (
        id, name, version, description, author, manifest, capabilities, permissions,
        enabled, install_path, archive_sha256, installed_at, updated_at
    )
    SELECT id, name, version, description, author, manifest, capabilities, permissions,
           CASE WHEN enabled THEN 1 ELSE 0 END, install_path, archive_sha256,
           installed_at, updated_at
    FROM extensions
    """,
    "DROP TABLE extensions",
    "ALTER TABLE extensions_new RENAME TO extensions",
    """
    CREATE TABLE extension_installs_new (
        install_id INTEGER PRIMARY KEY AUTOINCREMENT,
        extension_id TEXT,
        kind TEXT NOT NULL DEFAULT 'INSTALL'
            CHECK (kind IN ('INSTALL', 'UPGRADE', 'REINSTALL', 'DOWNGRADE', 'UNINSTALL')),
        archive_path TEXT NOT NULL DEFAULT '',
        archive_sha256 TEXT,
        from_version TEXT,
        to_version TEXT,
        file_count INTEGER CHECK (file_count IS NULL OR file_count >= 0),
        total_bytes INTEGER CHECK (total_bytes IS NULL OR total_bytes >= 0),
        status TEXT NOT NULL
            CHECK (status IN ('INSTALLING', 'COMPLETED', 'FAILED', 'UNINSTALLING')),
        progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        current_step TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL,
        updated_at TEXT,
        ended_at TEXT,
        error TEXT,
        owner_pid INTEGER,
        owner_started REAL,
        staging_dir TEXT
    )
    """,
    """
    INSERT INTO extension_installs_new (
        install_id, extension_id, kind, archive_path, status, progress, current_step,
        started_at, updated_at, ended_at, error
    )
    SELECT install_id, extension_id,
           CASE WHEN status = 'UNINSTALLING' THEN 'UNINSTALL' ELSE 'INSTALL' END,
           archive_path, status, progress, current_step, started_at, started_at, ended_at, error
    FROM extension_installs
    """,
    "DROP TABLE extension_installs",
    "ALTER TABLE extension_installs_new RENAME TO extension_installs",
    "CREATE INDEX extension_installs_extension_id ON extension_installs (extension_id)",
    "CREATE INDEX extension_installs_status ON extension_installs (status)",
    "CREATE INDEX extension_installs_started_at ON extension_installs (started_at)",
)


def apply(connection: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        connection.execute(statement)
