"""A rollback journal or write-ahead log next to ``registry.db`` is used only if it is the
registry's own. SQLite itself would play another database's hot journal back into the registry
and read another's log as if it were the registry's; either then looks like damage, and the
rescue would discard an intact registry. Such a file is moved aside (renamed, never deleted)
before SQLite opens the database, and the person is told."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import migrations.runner as runner
from examples.build_examples import build_all
from registry.errors import RegistryNeedsRescueError
from registry.paths import DataPaths
from registry.rescue import rebuild_from_disk, rescue_options, restore_latest_backup
from registry.startup import open_data_folder
from registry.version import APP_VERSION
from tests.conftest import REPO_ROOT, install_examples, state_of

# Another program's database, killed in the middle of a transaction: in rollback-journal mode
# it leaves a hot journal; in WAL mode, committed frames that were never checkpointed.
OTHER_PROGRAM = """
import os, sqlite3, sys
path, mode = sys.argv[1], sys.argv[2]
connection = sqlite3.connect(path, isolation_level=None)
connection.execute(f"PRAGMA journal_mode = {mode}")
connection.execute("CREATE TABLE notes (body BLOB)")
connection.execute("BEGIN")
for _ in range(200):
    connection.execute("INSERT INTO notes VALUES (randomblob(500))")
connection.execute("COMMIT")
connection.execute("PRAGMA cache_size = 2")  # the transaction spills pages into the database
connection.execute("BEGIN")
connection.execute("UPDATE notes SET body = randomblob(600)")
if mode == "wal":
    connection.execute("COMMIT")
os._exit(0)
"""

# The registry itself, killed after a commit that is still only in its log.
REGISTRY_KILLED_AFTER_A_COMMIT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from registry import open_registry
registry = open_registry(Path(sys.argv[2]))
registry.set_enabled("example.word-count", False)
os._exit(0)
"""


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


def other_programs_file(folder: Path, mode: str) -> Path:
    """The hot journal ("delete") or the log ("wal") another program's crash left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "notes.db"
    subprocess.run([sys.executable, "-c", OTHER_PROGRAM, str(database), mode], check=True)
    left = database.with_name(database.name + ("-wal" if mode == "wal" else "-journal"))
    assert left.stat().st_size > 0
    return left


@pytest.fixture
def installed(paths: DataPaths, examples: dict[str, Path]) -> DataPaths:
    install_examples(paths, examples)
    assert sorted(p.name for p in paths.root.glob("registry.db*")) == ["registry.db"]
    return paths


def moved_aside(paths: DataPaths, name: str) -> Path:
    [kept] = paths.root.glob(f"{name}.*-*")
    return kept


@pytest.mark.parametrize("mode", ["delete", "wal"], ids=["journal", "log"])
def test_another_databases_journal_or_log_is_moved_aside_at_launch(
    installed: DataPaths, tmp_path: Path, mode: str
) -> None:
    paths = installed
    before = state_of(paths)
    database_bytes = paths.database.read_bytes()
    foreign = other_programs_file(tmp_path / "other", mode)
    placed = paths.root / f"registry.db{foreign.name.removeprefix('notes.db')}"
    shutil.copyfile(foreign, placed)

    with open_data_folder(paths) as registry:
        # Nothing of the other database reached the registry's file before it was opened.
        messages = registry.launch.messages()
    assert paths.database.read_bytes()[:100] == database_bytes[:100]
    assert any(
        placed.name in line and "moved aside" in line and "nothing was deleted" in line
        for line in messages
    ), messages
    kept = moved_aside(paths, placed.name)
    assert kept.read_bytes() == foreign.read_bytes()
    assert state_of(paths) == before
    assert not rescue_options(paths).needed


def test_a_journal_next_to_a_registry_in_rollback_mode_is_checked_too(
    v1_paths: DataPaths, tmp_path: Path
) -> None:
    """The schema-1 registry predates WAL: a hot journal could be its own, so only its header
    and its copy of page 1 can tell (here: another program's application id)."""
    foreign = other_programs_file(tmp_path / "other", "delete")
    placed = v1_paths.root / "registry.db-journal"
    shutil.copyfile(foreign, placed)
    assert runner.journal_problem(v1_paths.database, placed) is not None
    with open_data_folder(v1_paths) as registry:
        assert [e.id for e in registry.list_extensions()] == [
            "example.hello-world",
            "example.word-count",
        ]
        assert "registry.db-journal" in registry.launch.messages()[0]
    assert moved_aside(v1_paths, "registry.db-journal").read_bytes() == foreign.read_bytes()


def test_the_registrys_own_journal_and_log_pass_the_checks(v1_paths: DataPaths) -> None:
    """A kill in the middle of the registry's own transaction (here: an upgrade, in rollback
    mode) leaves a journal that is its own; a kill after a commit in WAL mode, a log that is."""
    script = (
        "import os, sys, sqlite3\n"
        "connection = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "connection.execute('PRAGMA cache_size = 1')\n"
        "connection.execute('BEGIN IMMEDIATE')\n"
        "connection.execute(\"UPDATE extensions SET description = printf('%.3000c', 'x')\")\n"
        "connection.execute('CREATE TABLE padding AS SELECT randomblob(9000) FROM extensions')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(v1_paths.database)], check=True)
    journal = v1_paths.root / "registry.db-journal"
    assert journal.stat().st_size > 0
    assert runner.journal_problem(v1_paths.database, journal) is None
    with open_data_folder(v1_paths) as registry:
        assert registry.launch.messages()[0].startswith("Registry upgraded")
        descriptions = {e.description for e in registry.list_extensions()}
    assert "x" * 3000 not in descriptions  # rolled back, as the kill left it
    subprocess.run(
        [sys.executable, "-c", REGISTRY_KILLED_AFTER_A_COMMIT, str(REPO_ROOT), str(v1_paths.root)],
        check=True,
    )
    log = v1_paths.root / "registry.db-wal"
    assert log.stat().st_size > 0
    assert runner.wal_problem(v1_paths.database, log) is None


def damage_a_page_keeping_checksums(log: Path) -> None:
    """Make one committed page other than page 1 unreadable (its b-tree page type becomes
    invalid) and recompute the running checksums, as a log of some other database with the
    registry's page 1 would look: SQLite accepts every frame and then cannot read the page."""
    data = bytearray(log.read_bytes())
    magic, _version, page_size = struct.unpack_from(">III", data, 0)
    big_endian = magic & 1 == 1
    s0, s1 = struct.unpack_from(">II", data, 24)
    frame = 24 + page_size
    damaged = False
    for offset in range(32, len(data) - frame + 1, frame):
        number = struct.unpack_from(">I", data, offset)[0]
        body = offset + 24
        if not damaged and number > 1 and data[body] in (2, 5, 10, 13):
            data[body] = 0x77
            damaged = True
        s0, s1 = runner.wal_checksum(bytes(data[offset : offset + 8]), big_endian, s0, s1)
        s0, s1 = runner.wal_checksum(bytes(data[body : body + page_size]), big_endian, s0, s1)
        struct.pack_into(">II", data, offset + 16, s0, s1)
    assert damaged, "the log holds no b-tree page to damage"
    log.write_bytes(bytes(data))


@pytest.mark.parametrize("rescue", ["options", "rebuild", "restore"])
def test_an_intact_registry_that_only_its_log_makes_unreadable_is_not_discarded(
    installed: DataPaths, rescue: str
) -> None:
    """The log passes every check of its header and frames, but the registry cannot be read
    through it, while it can without it: the rescue keeps the registry (with its settings and
    history) and moves only the log aside."""
    paths = installed
    # A backup of the registry as it is, so that a restore is possible.
    runner.backup_database(paths.database, paths.backups, runner.latest_version())
    subprocess.run(
        [sys.executable, "-c", REGISTRY_KILLED_AFTER_A_COMMIT, str(REPO_ROOT), str(paths.root)],
        check=True,
    )
    log = paths.root / "registry.db-wal"
    damage_a_page_keeping_checksums(log)
    damaged_log = log.read_bytes()
    # Read only (a writable connection would checkpoint the damaged page into the file).
    with pytest.raises(RegistryNeedsRescueError):
        runner.read_status(paths.database)

    if rescue == "options":
        options = rescue_options(paths)
        assert not options.needed, options.problem
        said = options.describe()
    elif rescue == "rebuild":
        said = list(rebuild_from_disk(paths, APP_VERSION).actions)
    else:
        said = list(restore_latest_backup(paths).actions)
    assert any("registry.db-wal" in line and "moved aside" in line for line in said), said
    assert list(paths.root.glob("registry.db.damaged-*")) == []
    assert moved_aside(paths, "registry.db-wal").read_bytes() == damaged_log
    with open_data_folder(paths) as registry:
        # As last saved before the log: settings and history kept, the lost commit not there.
        assert registry.get_config("example.hello-world")["greeting"] == "Hi"
        assert [(e.id, e.enabled) for e in registry.list_extensions()] == [
            ("example.hello-world", True),
            ("example.word-count", True),
        ]
        assert all("Re-registered" not in (op.error or "") for op in registry.list_operations())


def test_a_launch_also_keeps_a_registry_that_only_its_log_makes_unreadable(
    installed: DataPaths,
) -> None:
    paths = installed
    subprocess.run(
        [sys.executable, "-c", REGISTRY_KILLED_AFTER_A_COMMIT, str(REPO_ROOT), str(paths.root)],
        check=True,
    )
    damage_a_page_keeping_checksums(paths.root / "registry.db-wal")
    with open_data_folder(paths) as registry:
        assert "registry.db-wal" in registry.launch.messages()[0]
        assert registry.get_config("example.hello-world")["greeting"] == "Hi"
    assert moved_aside(paths, "registry.db-wal").exists()
