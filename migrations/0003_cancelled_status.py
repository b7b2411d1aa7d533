"""A status of its own for operations the person declined or cancelled.

Saying no is not a failure: such operations were stored as FAILED with the message "Cancelled:
nothing was changed.", which filled the history with red. The table is rebuilt (SQLite cannot
change a CHECK constraint in place) with CANCELLED added to the allowed statuses, every other
constraint kept, and the operations that were cancelled before are given the new status.
"""

from __future__ import annotations

import sqlite3

NAME = "cancelled status"

STATEMENTS = (
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
            CHECK (status IN ('INSTALLING', 'COMPLETED', 'FAILED', 'CANCELLED', 'UNINSTALLING')),
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
        install_id, extension_id, kind, archive_path, archive_sha256, from_version, to_version,
        file_count, total_bytes, status, progress, current_step, started_at, updated_at,
        ended_at, error, owner_pid, owner_started, staging_dir
    )
    SELECT install_id, extension_id, kind, archive_path, archive_sha256, from_version,
           to_version, file_count, total_bytes,
           CASE WHEN status = 'FAILED' AND error = 'Cancelled: nothing was changed.'
                THEN 'CANCELLED' ELSE status END,
           progress,
           CASE WHEN status = 'FAILED' AND error = 'Cancelled: nothing was changed.'
                THEN 'Cancelled' ELSE current_step END,
           started_at, updated_at, ended_at, error, owner_pid, owner_started, staging_dir
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
