"""The launch sequence's database half: preflight, backup, migrate, refuse what we must not
touch."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import peewee
import pytest
from hypothesis import given
from hypothesis import strategies as st

import migrations.runner as runner
from migrations.runner import (
    APPLICATION_ID,
    CHECKSUM_PREFIX,
    LEGACY_CHECKSUMS,
    MigrationReport,
    Step,
    backup_database,
    latest_version,
    load_steps,
    normalise_statement,
    read_status,
    statements_checksum,
)
from registry.errors import (
    MigrationError,
    RegistryBusyError,
    RegistryError,
    RegistryNotMigratedError,
)
from registry.lock import RegistryLock, prepare_registry
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Registry
from registry.vocabulary import OperationKind, OperationStatus
from tests.conftest import FIXTURES, REPO_ROOT, run_app

LATEST = latest_version()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_fresh_custom_data_dir_is_migrated_and_records_are_readable(paths: DataPaths) -> None:
    result = run_app("--data-dir", str(paths.root), "status")
    assert result.returncode == 0, result.stderr
    assert f"Schema version:  {LATEST} (latest {LATEST})" in result.stdout

    registry = Registry(paths)
    try:
        install_id = registry.create_operation("/somewhere/hello.zip")
        record = registry.get_operation(install_id)
        assert record.status == "INSTALLING"
        assert record.extension_id is None
        assert record.archive_path == "/somewhere/hello.zip"
    finally:
        registry.close()


def test_fresh_default_location_is_migrated(tmp_path: Path) -> None:
    # platformdirs follows XDG_DATA_HOME on Linux; no --data-dir and no environment override.
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = run_app("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    database = tmp_path / "xdg" / "ExtensionManager" / "registry.db"
    assert f'"database": "{database}"' in result.stdout
    assert query(database, "PRAGMA user_version") == [(LATEST,)]

    registry = Registry(DataPaths(database.parent))
    try:
        install_id = registry.create_operation("a.zip")
        assert registry.get_operation(install_id).install_id == install_id
    finally:
        registry.close()


def test_environment_variable_selects_the_data_dir(tmp_path: Path) -> None:
    result = run_app("status", env={"EXTENSION_MANAGER_DATA_DIR": str(tmp_path / "env-dir")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env-dir" / "registry.db").exists()


def test_fresh_database_has_the_three_tables_and_is_marked_ours(registry: Registry) -> None:
    db = registry.paths.database
    tables = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"extensions", "extension_installs", "extension_configs"} <= tables
    assert query(db, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert [v for v, *_ in query(db, "SELECT * FROM schema_migrations")] == list(
        range(1, latest_version() + 1)
    )


def test_relaunch_changes_nothing(paths: DataPaths) -> None:
    open_data_folder(paths).close()
    before = query(paths.database, "SELECT * FROM schema_migrations")
    opened = open_data_folder(paths)
    opened.close()
    assert opened.launch.migration is not None
    assert opened.launch.migration.applied == ()
    assert opened.launch.migration.backup is None
    assert query(paths.database, "SELECT * FROM schema_migrations") == before
    assert list(paths.backups.iterdir()) == []


def test_upgrade_from_version_1_keeps_data_and_foreign_key_children(v1_paths: DataPaths) -> None:
    db = v1_paths.database
    configs_before = query(db, "SELECT * FROM extension_configs ORDER BY extension_id, key")
    installs_before = query(db, "SELECT install_id, extension_id, status FROM extension_installs")
    assert len(configs_before) == 4

    registry = open_data_folder(v1_paths)
    migration = registry.launch.migration
    try:
        assert migration is not None
        assert migration.from_version == 1
        assert migration.to_version == LATEST
        # The extensions table was rebuilt; its children must all still be there.
        assert query(db, "SELECT * FROM extension_configs ORDER BY extension_id, key") == (
            configs_before
        )
        assert (
            query(db, "SELECT install_id, extension_id, status FROM extension_installs")
            == installs_before
        )
        assert query(db, "PRAGMA foreign_key_check") == []
        hello = registry.get_extension("example.hello-world")
        assert hello is not None and hello.enabled and hello.version == "1.0.0"
        word_count = registry.get_extension("example.word-count")
        assert word_count is not None and not word_count.enabled
        assert registry.get_config("example.hello-world") == {
            "greeting": "hello from v1",
            "count": 7,
        }
        # History of an extension that is no longer installed is kept.
        gone = [op for op in registry.list_operations() if op.extension_id == "example.gone"]
        assert len(gone) == 1 and gone[0].kind == "INSTALL"
        # New operations continue the numbering instead of reusing ids.
        newest_before = max(int(str(row[0])) for row in installs_before)
        assert registry.create_operation("new.zip") == newest_before + 1
        # Foreign keys are on again for normal connections.
        with pytest.raises(Exception, match="FOREIGN KEY"):
            registry.database.execute_sql(
                "INSERT INTO extension_configs VALUES ('no.such-extension', 'k', '1')"
            )
    finally:
        registry.close()

    backups = list(v1_paths.backups.glob("registry-v1-*.db"))
    assert len(backups) == 1
    assert query(backups[0], "PRAGMA user_version") == [(1,)]
    assert query(backups[0], "SELECT count(*) FROM extension_configs") == [(4,)]


def test_newer_database_is_refused_byte_identical(paths: DataPaths) -> None:
    open_data_folder(paths).close()
    connection = sqlite3.connect(paths.database)
    connection.execute(f"PRAGMA user_version = {LATEST + 5}")
    connection.commit()
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.close()
    before = paths.database.read_bytes()

    with pytest.raises(RegistryError, match="newer Extension Manager") as caught:
        open_data_folder(paths)
    assert "left untouched" in str(caught.value)
    assert paths.database.read_bytes() == before
    assert list(paths.backups.iterdir()) == []


def failing_steps() -> tuple[Step, ...]:
    def explode(connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE half_done (x INTEGER)")
        connection.execute("INSERT INTO no_such_table VALUES (1)")

    return (*load_steps(), Step(LATEST + 1, "broken step", "test", "0" * 64, explode))


def test_failing_step_leaves_old_version_with_data_and_keeps_backup(v1_paths: DataPaths) -> None:
    db = v1_paths.database
    rows_before = query(db, "SELECT * FROM extension_configs ORDER BY 1, 2")
    with pytest.raises(MigrationError) as caught:
        prepare_registry(db, v1_paths.lock, v1_paths.backups, steps=failing_steps())
    message = str(caught.value)
    assert "broken step" in message and "version 1, unchanged" in message
    assert "backup is kept" in message
    assert query(db, "PRAGMA user_version") == [(1,)]
    assert query(db, "SELECT * FROM extension_configs ORDER BY 1, 2") == rows_before
    tables = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables and "extensions_new" not in tables
    assert [v for v, *_ in query(db, "SELECT * FROM schema_migrations")] == [1]
    assert len(list(v1_paths.backups.glob("registry-v1-*.db"))) == 1
    # And the next, normal launch still upgrades it.
    open_data_folder(v1_paths).close()
    assert query(db, "PRAGMA user_version") == [(LATEST,)]


def test_foreign_key_violation_rolls_back(v1_paths: DataPaths) -> None:
    def orphan(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO extension_configs VALUES ('nobody.here', 'k', '1')")

    steps = (*load_steps(), Step(LATEST + 1, "orphan", "test", "1" * 64, orphan))
    with pytest.raises(MigrationError, match="references between tables"):
        prepare_registry(v1_paths.database, v1_paths.lock, v1_paths.backups, steps=steps)
    assert query(v1_paths.database, "PRAGMA user_version") == [(1,)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a database at all, just some text\n" * 20, "not a SQLite database"),
        (b"SQLite format 3\x00" + b"\xff" * 2000, "cannot be read|damaged"),
    ],
    ids=["garbage", "corrupt-sqlite"],
)
def test_corrupt_files_are_refused_untouched(
    paths: DataPaths, content: bytes, expected: str
) -> None:
    paths.root.mkdir(parents=True)
    paths.database.write_bytes(content)
    with pytest.raises(RegistryError, match=expected):
        open_data_folder(paths)
    assert paths.database.read_bytes() == content


def test_damaged_pages_are_refused_untouched(v1_paths: DataPaths) -> None:
    data = bytearray(v1_paths.database.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size * 2 : page_size * 3] = b"\x07" * page_size  # scribble over a table page
    v1_paths.database.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="damaged|cannot be read"):
        open_data_folder(v1_paths)
    assert v1_paths.database.read_bytes() == bytes(data)


def test_foreign_sqlite_file_is_refused_untouched(paths: DataPaths) -> None:
    paths.root.mkdir(parents=True)
    connection = sqlite3.connect(paths.database)
    connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    connection.execute("INSERT INTO photos (path) VALUES ('/tmp/cat.jpg')")
    connection.commit()
    connection.close()
    before = paths.database.read_bytes()
    with pytest.raises(RegistryError, match="another program"):
        open_data_folder(paths)
    assert paths.database.read_bytes() == before


def test_edited_applied_step_is_refused(v1_paths: DataPaths) -> None:
    connection = sqlite3.connect(v1_paths.database)
    connection.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    connection.commit()
    connection.close()
    with pytest.raises(RegistryError, match="was changed after it was applied"):
        open_data_folder(v1_paths)
    assert query(v1_paths.database, "PRAGMA user_version") == [(1,)]


def test_querying_an_unmigrated_database_raises_a_clear_error(v1_paths: DataPaths) -> None:
    with pytest.raises(RegistryNotMigratedError, match="schema version 1, but this app needs"):
        Registry(v1_paths)
    empty = DataPaths(v1_paths.root.parent / "empty")
    with pytest.raises(RegistryNotMigratedError, match="no registry"):
        Registry(empty)


def test_missing_table_is_reported_as_not_migrated(registry: Registry) -> None:
    registry.database.execute_sql("DROP TABLE extension_installs")
    with pytest.raises(RegistryNotMigratedError, match="not been migrated"):
        registry.get_operation(1)


def test_migration_refused_while_another_process_has_the_registry_open(
    v1_paths: DataPaths,
) -> None:
    # Another (older) window of the app holds the registry open: it holds the shared lock.
    v1_paths.root.mkdir(exist_ok=True)
    with RegistryLock(v1_paths.lock) as other_window:
        assert other_window.try_shared()
        with pytest.raises(RegistryBusyError, match="another Extension Manager is using it"):
            open_data_folder(v1_paths, wait_seconds=1)
    assert query(v1_paths.database, "PRAGMA user_version") == [(1,)]
    open_data_folder(v1_paths).close()
    assert query(v1_paths.database, "PRAGMA user_version") == [(LATEST,)]


def test_launch_waits_for_a_running_migration(v1_paths: DataPaths) -> None:
    with RegistryLock(v1_paths.lock) as migrating:
        assert migrating.try_exclusive()
        with pytest.raises(RegistryBusyError, match="upgrading the registry"):
            open_data_folder(v1_paths, wait_seconds=0.2)


def test_backups_keep_the_newest_five(v1_paths: DataPaths) -> None:
    made = [backup_database(v1_paths.database, v1_paths.backups, 1) for _ in range(7)]
    kept = sorted(v1_paths.backups.glob("registry-v1-*.db"))
    assert len(kept) == 5
    assert set(kept) == set(made[-5:])


def test_two_processes_launching_at_once_on_an_old_database(v1_paths: DataPaths) -> None:
    command = [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(v1_paths.root)]
    with (
        subprocess.Popen([*command, "status"], stderr=subprocess.PIPE, text=True) as first,
        subprocess.Popen([*command, "status"], stderr=subprocess.PIPE, text=True) as second,
    ):
        errors = [first.communicate(timeout=60)[1], second.communicate(timeout=60)[1]]
    assert (first.returncode, second.returncode) == (0, 0), errors
    # Exactly one of them migrated: one backup of version 1, each step recorded once.
    assert len(list(v1_paths.backups.glob("registry-v1-*.db"))) == 1
    versions = query(v1_paths.database, "SELECT version FROM schema_migrations")
    assert versions == [(v,) for v in range(1, LATEST + 1)]


KILL_SCRIPT = """
import sys, threading
sys.path.insert(0, {root!r})
import migrations.runner as runner
real_steps = runner.load_steps()
last = real_steps[-1]
def stall(connection):
    last.apply(connection)
    print("inside the migration transaction", flush=True)
    threading.Event().wait()
patched = (
    *real_steps[:-1],
    runner.Step(last.version, last.name, last.module, last.checksum, stall),
)
runner.load_steps = lambda: patched
import main
sys.exit(main.main(["--data-dir", {data!r}, "status"]))
"""


def test_kill_9_mid_migration_keeps_old_version_and_next_launch_completes(
    v1_paths: DataPaths,
) -> None:
    script = KILL_SCRIPT.format(root=str(REPO_ROOT), data=str(v1_paths.root))
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        # Blocks until the child is inside the migration's transaction (or exits).
        line = process.stdout.readline().strip()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert line == "inside the migration transaction"
    assert query(v1_paths.database, "PRAGMA user_version") == [(1,)]
    assert query(v1_paths.database, "SELECT count(*) FROM extension_configs") == [(4,)]

    result = run_app("--data-dir", str(v1_paths.root), "status")
    assert result.returncode == 0, result.stderr
    assert query(v1_paths.database, "PRAGMA user_version") == [(LATEST,)]
    assert query(v1_paths.database, "SELECT count(*) FROM extension_configs") == [(4,)]


def test_status_of_a_fresh_file_reports_pending_steps(tmp_path: Path) -> None:
    status = read_status(tmp_path / "none.db")
    assert not status.exists
    assert status.pending == LATEST


def test_checked_in_fixtures_cover_every_older_version() -> None:
    for version in range(1, LATEST):
        fixture = FIXTURES / f"registry-v{version}.db"
        assert fixture.exists(), f"add tests/fixtures/registry-v{version}.db"
        assert query(fixture, "PRAGMA user_version") == [(version,)]


# --- A step's identity is its SQL, not its file ------------------------------------------------

STEP_FILES = sorted((REPO_ROOT / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py"))


def prepare(paths: DataPaths, steps: tuple[Step, ...] | None = None) -> MigrationReport:
    lock, report = prepare_registry(paths.database, paths.lock, paths.backups, steps=steps)
    lock.release()
    return report


def recorded_checksums(db: Path) -> list[tuple[object, ...]]:
    return query(db, "SELECT version, checksum FROM schema_migrations ORDER BY version")


def stamp_legacy_checksums(db: Path) -> None:
    """Make the history look as the first releases wrote it."""
    connection = sqlite3.connect(db)
    try:
        for version, known in LEGACY_CHECKSUMS.items():
            connection.execute(
                "UPDATE schema_migrations SET checksum = ? WHERE version = ?",
                (known.file_sha256, version),
            )
        connection.commit()
    finally:
        connection.close()


def copy_of_steps(
    tmp_path: Path, edit: Callable[[str], str] | None = None, name: str = "0001_initial_schema.py"
) -> Path:
    """The shipped step files in a folder of their own, ``name`` rewritten by ``edit``."""
    folder = tmp_path / "steps"
    folder.mkdir()
    for source in STEP_FILES:
        shutil.copyfile(source, folder / source.name)
    if edit is not None:
        target = folder / name
        before = target.read_text()
        after = edit(before)
        assert after != before, "the edit changed nothing"
        target.write_text(after)
    return folder


def reformat_and_redocument(source: str) -> str:
    """A new docstring, and the statements laid out differently, with comments."""
    docstring_end = source.index('"""', 3) + 3
    statements, code = source[docstring_end:].split("\n\ndef apply", 1)
    statements = statements.replace("        ", "\t\t").replace("    )", ")")
    statements = statements.replace(
        "CREATE TABLE extensions (", "CREATE   TABLE extensions (  -- what is installed"
    )
    statements = statements.replace(
        '"CREATE INDEX extension_installs_status ON extension_installs (status)"',
        '"""\n  CREATE INDEX extension_installs_status\n'
        '  /* the activity view filters on it */ ON extension_installs (status)\n"""',
    )
    return (
        '"""The first schema, explained in other words."""\n' + statements + "\n\ndef apply" + code
    )


def change_a_default(source: str) -> str:
    return source.replace(
        "description TEXT NOT NULL DEFAULT '',", "description TEXT NOT NULL DEFAULT 'none',", 1
    )


@pytest.mark.parametrize(
    ("statement", "normalised"),
    [
        ("SELECT 1", "SELECT 1"),
        ("\n\t  SELECT\r\n   1  \f", "SELECT 1"),
        ("SELECT a -- the column\nFROM t /* the table */ WHERE b", "SELECT a FROM t WHERE b"),
        ("SELECT 1 -- a last comment without a newline", "SELECT 1"),
        ("SELECT 1 /* never closed", "SELECT 1"),
        ("SELECT a/**/FROM t", "SELECT a FROM t"),
        (
            "SELECT '  spaced   text  ',  'it''s  --  kept'",
            "SELECT '  spaced   text  ', 'it''s  --  kept'",
        ),
        (
            'SELECT "odd  ""name"" /*x*/",  [a  b],  `c  d`',
            'SELECT "odd  ""name"" /*x*/", [a  b], `c  d`',
        ),
        ("SELECT x'00  ff'", "SELECT x'00  ff'"),
        ("SELECT 'never closed  --", "SELECT 'never closed  --"),
        ("-- only a comment", ""),
    ],
)
def test_statements_are_normalised_outside_quoted_text(statement: str, normalised: str) -> None:
    assert normalise_statement(statement) == normalised


def normalised_char_by_char(statement: str) -> str:
    """The normalisation the released checksums were taken with, one character at a time: the
    runner's own (a regular expression) must read every text the same way."""
    out: list[str] = []
    space_pending = False
    index, end = 0, len(statement)
    while index < end:
        char = statement[index]
        if char in " \t\n\f\r":
            space_pending, index = True, index + 1
            continue
        if statement.startswith("--", index):
            newline = statement.find("\n", index)
            index, space_pending = (end if newline < 0 else newline + 1), True
            continue
        if statement.startswith("/*", index):
            close = statement.find("*/", index + 2)
            index, space_pending = (end if close < 0 else close + 2), True
            continue
        token_end = index + 1
        if char in "'\"`[":
            closer = "]" if char == "[" else char
            while True:
                found = statement.find(closer, token_end)
                if found < 0:
                    token_end = end
                elif closer != "]" and statement.startswith(closer * 2, found):
                    token_end = found + 2
                    continue
                else:
                    token_end = found + 1
                break
        if space_pending and out:
            out.append(" ")
        space_pending = False
        out.append(statement[index:token_end])
        index = token_end
    return "".join(out)


@given(st.text(alphabet=" \t\n\f\r\v-/*'\"`[]ab;(", max_size=60))
def test_normalisation_reads_any_text_as_the_released_checksums_did(statement: str) -> None:
    assert normalise_statement(statement) == normalised_char_by_char(statement)


def test_the_shipped_statements_normalise_as_the_released_checksums_did() -> None:
    for step in load_steps():
        for statement in step.statements:
            assert normalise_statement(statement) == normalised_char_by_char(statement)


def test_checksum_covers_every_statement_in_order_and_quoted_text() -> None:
    original = statements_checksum(("CREATE TABLE a (x TEXT DEFAULT 'a b')", "DROP TABLE c"))
    assert re.fullmatch(rf"{re.escape(CHECKSUM_PREFIX)}[0-9a-f]{{64}}", original)
    relaid = ("\n  CREATE TABLE a (x  TEXT  DEFAULT 'a b')  -- why\n", "DROP\n TABLE c", "-- end")
    assert statements_checksum(relaid) == original
    for changed in [
        ("CREATE TABLE a (x TEXT DEFAULT 'a  b')", "DROP TABLE c"),
        ("DROP TABLE c", "CREATE TABLE a (x TEXT DEFAULT 'a b')"),
        ("CREATE TABLE a (x TEXT DEFAULT 'a b') DROP TABLE c",),
        ("CREATE TABLE a (x TEXT DEFAULT 'a b')",),
    ]:
        assert statements_checksum(changed) != original, changed


def test_released_steps_keep_the_statements_they_shipped_with() -> None:
    steps = load_steps()
    for version, known in LEGACY_CHECKSUMS.items():
        assert steps[version - 1].checksum == known.statements, (
            f"migration {version:04d} was released: its statements must not change"
        )


def test_reformatted_and_redocumented_step_still_opens_the_registry(
    paths: DataPaths, tmp_path: Path
) -> None:
    prepare(paths)
    before = recorded_checksums(paths.database)
    reformatted = load_steps(copy_of_steps(tmp_path, reformat_and_redocument))
    assert [step.checksum for step in reformatted] == [step.checksum for step in load_steps()]
    report = prepare(paths, reformatted)
    assert report.applied == ()
    assert report.to_version == LATEST
    assert recorded_checksums(paths.database) == before


def test_reformatted_step_still_upgrades_a_registry_with_a_legacy_checksum(
    v1_paths: DataPaths, tmp_path: Path
) -> None:
    reformatted = load_steps(copy_of_steps(tmp_path, reformat_and_redocument))
    report = prepare(v1_paths, reformatted)
    assert (report.from_version, report.to_version, report.restamped) == (1, LATEST, (1,))


def test_changed_statement_of_an_applied_step_is_refused(paths: DataPaths, tmp_path: Path) -> None:
    prepare(paths)
    history = recorded_checksums(paths.database)
    contents = paths.database.read_bytes()
    changed = load_steps(copy_of_steps(tmp_path, change_a_default))
    with pytest.raises(RegistryError) as caught:
        prepare(paths, changed)
    message = str(caught.value)
    assert (
        f"Migration 0001 (initial schema) was changed after it was applied to {paths.database}"
        in message
    )
    assert f"this app's {changed[0].checksum}" in message
    assert "left untouched" in message and "add a new step instead" in message
    assert paths.database.read_bytes() == contents
    assert recorded_checksums(paths.database) == history
    with RegistryLock(paths.lock) as after_refusal:
        assert after_refusal.try_exclusive(), "the refused launch kept its lock"


def test_legacy_checksum_does_not_cover_a_changed_statement(
    v1_paths: DataPaths, tmp_path: Path
) -> None:
    contents = v1_paths.database.read_bytes()
    changed = load_steps(copy_of_steps(tmp_path, change_a_default))
    with pytest.raises(RegistryError, match="Migration 0001 .* was changed after it was applied"):
        prepare(v1_paths, changed)
    assert v1_paths.database.read_bytes() == contents


def test_v1_fixture_legacy_checksum_is_accepted_then_restamped_by_the_upgrade(
    v1_paths: DataPaths,
) -> None:
    db = v1_paths.database
    assert recorded_checksums(db) == [(1, LEGACY_CHECKSUMS[1].file_sha256)]
    contents = db.read_bytes()
    status = read_status(db)
    assert (status.version, status.legacy_checksums) == (1, (1,))
    assert db.read_bytes() == contents, "the preflight wrote to the database"
    configs = query(db, "SELECT * FROM extension_configs ORDER BY 1, 2")

    report = prepare(v1_paths)
    assert (report.from_version, report.to_version, report.restamped) == (1, LATEST, (1,))
    assert recorded_checksums(db) == [(step.version, step.checksum) for step in load_steps()]
    assert all(str(checksum).startswith(CHECKSUM_PREFIX) for _, checksum in recorded_checksums(db))
    assert query(db, "SELECT * FROM extension_configs ORDER BY 1, 2") == configs
    assert read_status(db).legacy_checksums == ()
    assert prepare(v1_paths).restamped == ()


def test_legacy_checksums_are_restamped_only_under_the_exclusive_lock(paths: DataPaths) -> None:
    prepare(paths)
    stamp_legacy_checksums(paths.database)
    legacy = recorded_checksums(paths.database)
    with RegistryLock(paths.lock) as other_window:
        assert other_window.try_shared()
        report = prepare(paths)  # opened shared beside the other window: accepted, not rewritten
        assert report.restamped == ()
        assert recorded_checksums(paths.database) == legacy
    report = prepare(paths)
    assert report.restamped == tuple(LEGACY_CHECKSUMS)
    assert report.applied == () and report.backup is None
    assert recorded_checksums(paths.database) == [
        (step.version, step.checksum) for step in load_steps()
    ]


def test_legacy_checksums_are_those_of_the_shipped_step_files(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the project's git history")

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
        ).stdout

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for version, known in LEGACY_CHECKSUMS.items():
        relative = STEP_FILES[version - 1].relative_to(REPO_ROOT).as_posix()
        added = git("log", "--diff-filter=A", "--format=%H", "--", relative).split()
        assert added, f"{relative} is not in the git history"
        content = git("show", f"{added[-1].decode()}:{relative}")
        assert hashlib.sha256(content.replace(b"\r\n", b"\n")).hexdigest() == known.file_sha256
        (shipped / STEP_FILES[version - 1].name).write_bytes(content)
    for step in load_steps(shipped):
        assert step.checksum == LEGACY_CHECKSUMS[step.version].statements


@pytest.mark.parametrize(
    "extra",
    [
        '    connection.execute("UPDATE extensions SET enabled = 1")\n',
        '    connection.execute("SELECT count(*) FROM extensions").fetchone()\n',
    ],
    ids=["another-statement", "reads-a-result"],
)
def test_step_whose_apply_does_more_than_its_statements_is_refused(
    tmp_path: Path, extra: str
) -> None:
    def add_work(source: str) -> str:
        return source + (
            "\n\ndef apply(connection: sqlite3.Connection) -> None:  # noqa: F811\n"
            "    for statement in STATEMENTS:\n"
            "        connection.execute(statement)\n" + extra
        )

    folder = copy_of_steps(tmp_path, add_work, name="0002_install_history.py")
    with pytest.raises(RuntimeError, match="apply\\(\\) does more than execute STATEMENTS"):
        load_steps(folder)


def test_a_failed_restamp_does_not_keep_anyone_out(
    paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(paths)
    stamp_legacy_checksums(paths.database)
    legacy = recorded_checksums(paths.database)

    def disk_full(db_path: Path, steps: tuple[Step, ...]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(runner, "restamp_checksums", disk_full)
    report = prepare(paths)
    assert report.restamped == ()
    assert recorded_checksums(paths.database) == legacy
    monkeypatch.undo()
    assert prepare(paths).restamped == tuple(LEGACY_CHECKSUMS)


@pytest.fixture
def v2_paths(paths: DataPaths) -> DataPaths:
    """A data folder whose registry is the checked-in schema-version-2 database."""
    paths.root.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "registry-v2.db", paths.database)
    return paths


def test_upgrade_from_v2_gives_cancelled_operations_their_own_status(v2_paths: DataPaths) -> None:
    before = query(v2_paths.database, "SELECT * FROM extension_installs ORDER BY install_id")
    with open_data_folder(v2_paths) as registry:
        report = registry.launch.migration
        assert report is not None and (report.from_version, report.to_version) == (2, LATEST)
        operations = {op.install_id: op for op in registry.list_operations()}
        assert [op.status for _, op in sorted(operations.items())] == [
            "COMPLETED",
            "COMPLETED",
            "FAILED",
            "CANCELLED",
        ]
        cancelled = operations[4]
        assert (cancelled.kind, cancelled.current_step, cancelled.error) == (
            "DOWNGRADE",
            "Cancelled",
            "Cancelled: nothing was changed.",
        )
        # Everything else about every row, every extension and every setting is kept.
        after = query(v2_paths.database, "SELECT * FROM extension_installs ORDER BY install_id")
        unchanged = [row for row in before if row[0] != 4]
        # Schema 4 adds columns after the ones schema 2 had.
        assert [row[: len(before[0])] for row in after if row[0] != 4] == unchanged
        assert [(e.id, e.version) for e in registry.list_extensions()] == [
            ("example.hello-world", "1.1.0"),
            ("example.word-count", "1.2.0"),
        ]
        assert registry.get_config("example.hello-world")["greeting"] == "v2"
        # The CHECK constraint was extended, not dropped.
        with pytest.raises(peewee.IntegrityError, match="CHECK"):
            registry.database.execute_sql("UPDATE extension_installs SET status = 'DONE'")
        install_id = registry.create_operation("new.zip")
        registry.finish_operation(install_id, OperationStatus.CANCELLED, "no")
        assert registry.get_operation(install_id).status == "CANCELLED"


def test_upgrade_from_v3_keeps_everything_and_adds_versions_over_time(paths: DataPaths) -> None:
    paths.root.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "registry-v3.db", paths.database)
    before = query(paths.database, "SELECT * FROM extension_installs ORDER BY install_id")
    extensions_before = query(paths.database, "SELECT * FROM extensions ORDER BY id")
    with open_data_folder(paths) as registry:
        report = registry.launch.migration
        assert report is not None and (report.from_version, report.to_version) == (3, LATEST)
        after = query(paths.database, "SELECT * FROM extension_installs ORDER BY install_id")
        assert [row[: len(before[0])] for row in after] == before
        extensions_after = query(paths.database, "SELECT * FROM extensions ORDER BY id")
        assert [row[: len(extensions_before[0])] for row in extensions_after] == extensions_before
        # Where each installed version came from: the archive of its last completed change.
        hello = registry.get_extension("example.hello-world")
        words = registry.get_extension("example.word-count")
        assert hello is not None and words is not None
        assert (hello.origin, hello.origin_source, hello.held) == (
            "/home/u/hw-1.1.0.zip",
            None,
            False,
        )
        assert words.origin == "/home/u/wc-1.2.0.zip" and not words.enabled
        assert registry.get_config("example.hello-world")["greeting"] == "v3"
        # Nothing was kept before schema 4: a rollback says so instead of failing obscurely.
        assert registry.list_kept_versions() == []
        from registry.installer import Installer

        record = Installer(registry).rollback("example.hello-world")
        assert record.status == OperationStatus.FAILED
        assert record.error is not None and "no earlier version kept" in record.error
        # The new kinds are allowed, and the CHECK constraint still refuses others.
        assert registry.get_operation(record.install_id).kind == "ROLLBACK"
        with pytest.raises(peewee.IntegrityError, match="CHECK"):
            registry.database.execute_sql("UPDATE extension_installs SET kind = 'BOGUS'")
        registry.hold("example.hello-world", "testing")
        assert registry.get_extension("example.hello-world").held  # type: ignore[union-attr]
        assert registry.list_sources() == [] and registry.preferences().keep_versions == 2


def test_upgrade_from_v4_keeps_everything_and_can_keep_settings(paths: DataPaths) -> None:
    paths.root.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "registry-v4.db", paths.database)
    tables = ("extension_installs", "extensions", "kept_versions", "update_sources")
    before = {table: query(paths.database, f"SELECT * FROM {table}") for table in tables}
    with open_data_folder(paths) as registry:
        report = registry.launch.migration
        assert report is not None and (report.from_version, report.to_version) == (4, LATEST)
        for table in tables:
            after = query(paths.database, f"SELECT * FROM {table}")
            assert [row[: len(before[table][0])] for row in after] == before[table], table
        hello = registry.get_extension("example.hello-world")
        words = registry.get_extension("example.word-count")
        assert hello is not None and words is not None and words.held and not words.enabled
        assert registry.get_config("example.hello-world")["greeting"] == "v4"
        assert registry.preferences().keep_versions == 3
        [kept] = registry.list_kept_versions()
        assert (kept.version, kept.settings) == ("1.0.0", {"greeting": "old"})
        # Nothing was kept at an uninstall before schema 5; an uninstall now keeps them.
        assert registry.kept_settings("example.gone") is None
        install_id = registry.create_operation(kind=OperationKind.UNINSTALL, extension_id=hello.id)
        registry.commit_uninstall(install_id, hello.id)
        kept_settings = registry.kept_settings(hello.id)
        assert kept_settings is not None
        assert (kept_settings.version, kept_settings.settings) == ("1.1.0", {"greeting": "v4"})
        operation = registry.get_operation(install_id)
        assert (operation.from_member, operation.outer_sha256, operation.offers) == (None, None, ())


# -- room for an upgrade: checked first, partial files never left, backups not piled up ----------


def backup_leftovers(backups: Path) -> list[str]:
    return sorted(p.name for p in backups.iterdir() if ".partial" in p.name)


def test_an_upgrade_the_disk_has_no_room_for_is_refused_before_the_backup(
    tmp_path: Path,
) -> None:
    """Room for the backup, not for the upgrade as well (about three times the registry): each
    try used to leave a full-size backup, then fail; now none starts, and the message says how
    much is needed and how much is free."""
    from tests.disks import mount_small_disk, unmount

    disk = mount_small_disk(tmp_path / "disk", size="2m")
    try:
        paths = DataPaths(disk.path / "data")
        paths.root.mkdir()
        shutil.copyfile(FIXTURES / "registry-v1.db", paths.database)
        before = paths.database.read_bytes()
        disk.fill(leave=len(before) + 16 * 1024)
        for _try in range(2):
            with pytest.raises(MigrationError) as caught:
                open_data_folder(paths)
            message = str(caught.value)
            assert message.startswith("The disk is full: upgrading the registry"), message
            assert re.search(r"a [\d.]+ KiB backup and [\d.]+ KiB of working space", message)
            assert re.search(r"needs about [\d.]+ KiB free .* which has [\d.]+ KiB free", message)
            assert "nothing was changed" in message and "rescue" not in message
            assert paths.database.read_bytes() == before
            assert list(paths.backups.iterdir()) == []
        disk.empty()
        open_data_folder(paths).close()
        assert query(paths.database, "PRAGMA user_version") == [(LATEST,)]
        assert len(list(paths.backups.glob("registry-v1-*.db"))) == 1
    finally:
        unmount(disk)


def test_failed_upgrades_leave_one_backup_and_no_partial_files(v1_paths: DataPaths) -> None:
    v1_paths.backups.mkdir()
    # What a backup killed midway leaves: the partial copy and the journal beside it.
    for leftover in ("registry-v1-1.partial", "registry-v1-1.partial-journal"):
        (v1_paths.backups / leftover).write_bytes(b"half a copy")
    for _try in range(3):
        with pytest.raises(MigrationError, match="backup is kept"):
            prepare(v1_paths, failing_steps())
        assert backup_leftovers(v1_paths.backups) == []
    [backup] = v1_paths.backups.glob("registry-v1-*.db")
    assert query(backup, "SELECT count(*) FROM extensions") == [(2,)]
    # A change to the registry since then makes the next try take a new backup.
    connection = sqlite3.connect(v1_paths.database)
    connection.execute("UPDATE extensions SET description = 'changed since'")
    connection.commit()
    connection.close()
    report = prepare(v1_paths)
    assert report.backup is not None and report.backup != backup
    assert query(report.backup, "SELECT DISTINCT description FROM extensions") == [
        ("changed since",)
    ]


def test_a_full_disk_during_the_upgrade_itself_is_said_plainly(
    v1_paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite finding the file full in the middle of the step (``max_page_count``, the page
    limit SQLite checks before every new page, on the migration's own connection) is a full
    disk, in the same words, and nothing is changed."""
    real_apply_pending = runner.apply_pending

    def apply_with_no_room(db_path: Path, steps: tuple[Step, ...]) -> tuple[str, ...]:
        real_connect = sqlite3.connect

        def connect(*args: object, **kwargs: object) -> sqlite3.Connection:
            connection = real_connect(*args, **kwargs)  # type: ignore[call-overload]
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages}")
            return connection  # type: ignore[no-any-return]

        # Only the migration's own connection gets the page limit.
        monkeypatch.setattr(sqlite3, "connect", connect)
        try:
            return real_apply_pending(db_path, steps)
        finally:
            monkeypatch.setattr(sqlite3, "connect", real_connect)

    monkeypatch.setattr(runner, "apply_pending", apply_with_no_room)
    before = v1_paths.database.read_bytes()
    with pytest.raises(MigrationError) as caught:
        open_data_folder(v1_paths)
    message = str(caught.value)
    assert message.startswith("The disk is full"), message
    assert "nothing was changed" in message and "backup is kept" in message
    assert "no transaction is active" not in message
    assert v1_paths.database.read_bytes() == before


def test_the_shipped_step_files_are_listed_as_the_package_resources_list_them() -> None:
    from importlib import resources

    listed = sorted(runner._package_file_names("migrations"))
    assert listed == sorted(entry.name for entry in resources.files("migrations").iterdir())
    assert [step.module for step in load_steps()] == sorted(
        f"migrations.{name.removesuffix('.py')}" for name in listed if runner.STEP_FILE.match(name)
    )
