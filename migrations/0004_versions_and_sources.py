"""Versions over time: kept archives, rollback, holds, update sources, compatibility re-checks.

* ``kept_versions``: every installed version's archive, kept in ``archives/<sha256>.zip``, with
  where it came from and the settings it last ran with (restored by a rollback).
* ``extensions`` gains where the installed version came from (``origin``, and the update
  source when it came from one), a hold (no update is offered while it is set) and the app
  version for which the person turned on an extension that does not fit it.
* ``extension_installs`` is rebuilt (SQLite cannot change a CHECK constraint in place) to allow
  the kinds ROLLBACK, DISABLE and ENABLE, and gains the origin, the download's byte counts and
  the settings as they were before the operation.
* ``update_sources`` (folders of zips and index URLs), ``source_files`` (what a folder's zips
  hold, so a folder is not re-read when nothing changed) and ``app_state`` (preferences and
  the app version of the last launch).
"""

from __future__ import annotations

import sqlite3

NAME = "versions and sources"

STATEMENTS = (
    "ALTER TABLE extensions ADD COLUMN origin TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE extensions ADD COLUMN origin_source TEXT",
    "ALTER TABLE extensions ADD COLUMN held_at TEXT",
    "ALTER TABLE extensions ADD COLUMN hold_reason TEXT",
    "ALTER TABLE extensions ADD COLUMN compatibility_override TEXT",
    """
    CREATE TABLE extension_installs_new (
        install_id INTEGER PRIMARY KEY AUTOINCREMENT,
        extension_id TEXT,
        kind TEXT NOT NULL DEFAULT 'INSTALL'
            CHECK (kind IN ('INSTALL', 'UPGRADE', 'REINSTALL', 'DOWNGRADE', 'UNINSTALL',
                            'ROLLBACK', 'DISABLE', 'ENABLE')),
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
        staging_dir TEXT,
        origin_source TEXT,
        download_bytes INTEGER CHECK (download_bytes IS NULL OR download_bytes >= 0),
        download_total INTEGER CHECK (download_total IS NULL OR download_total >= 0),
        settings_before TEXT
    )
    """,
    """
    INSERT INTO extension_installs_new (
        install_id, extension_id, kind, archive_path, archive_sha256, from_version, to_version,
        file_count, total_bytes, status, progress, current_step, started_at, updated_at,
        ended_at, error, owner_pid, owner_started, staging_dir
    )
    SELECT install_id, extension_id, kind, archive_path, archive_sha256, from_version,
           to_version, file_count, total_bytes, status, progress, current_step, started_at,
           updated_at, ended_at, error, owner_pid, owner_started, staging_dir
    FROM extension_installs
    """,
    "DROP TABLE extension_installs",
    "ALTER TABLE extension_installs_new RENAME TO extension_installs",
    "CREATE INDEX extension_installs_extension_id ON extension_installs (extension_id)",
    "CREATE INDEX extension_installs_status ON extension_installs (status)",
    "CREATE INDEX extension_installs_started_at ON extension_installs (started_at)",
    # What was installed before this schema came from the archive it names. Without
    # statistics SQLite would search by status (nearly every row is COMPLETED) for each
    # extension: a hundred thousand operations took half a minute instead of a blink.
    "UPDATE extensions SET origin = COALESCE((SELECT archive_path FROM extension_installs"
    " INDEXED BY extension_installs_extension_id"
    " WHERE extension_installs.extension_id = extensions.id AND status = 'COMPLETED'"
    " AND kind != 'UNINSTALL' ORDER BY install_id DESC LIMIT 1), '')",
    """
    CREATE TABLE kept_versions (
        extension_id TEXT NOT NULL,
        version TEXT NOT NULL,
        archive_sha256 TEXT NOT NULL CHECK (length(archive_sha256) = 64),
        archive_size INTEGER NOT NULL CHECK (archive_size >= 0),
        origin TEXT NOT NULL DEFAULT '',
        origin_source TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        install_id INTEGER,
        installed_at TEXT NOT NULL,
        replaced_at TEXT,
        PRIMARY KEY (extension_id, archive_sha256)
    )
    """,
    "CREATE INDEX kept_versions_archive ON kept_versions (archive_sha256)",
    """
    CREATE TABLE update_sources (
        source_id INTEGER PRIMARY KEY AUTOINCREMENT,
        location TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('FOLDER', 'INDEX')),
        added_at TEXT NOT NULL,
        checked_at TEXT,
        last_error TEXT
    )
    """,
    """
    CREATE TABLE source_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        extension_id TEXT,
        version TEXT,
        min_app_version TEXT,
        max_app_version TEXT,
        problem TEXT
    )
    """,
    "CREATE TABLE app_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def apply(connection: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        connection.execute(statement)
