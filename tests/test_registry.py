"""The registry API and the guarantees the schema enforces."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from migrations.runner import latest_version
from registry import open_registry
from registry.errors import ConfigError, OperationNotFoundError, RegistryError
from registry.store import Registry, utc_now
from registry.vocabulary import OperationStatus


def add_extension(
    registry: Registry, extension_id: str = "example.hello", **overrides: object
) -> None:
    manifest = {
        "id": extension_id,
        "name": "Hello",
        "version": "1.0.0",
        "config": {"greeting": "hi", "count": 3, "ratio": 0.5, "loud": False},
    }
    values: dict[str, object] = {
        "id": extension_id,
        "name": "Hello",
        "version": "1.0.0",
        "manifest": json.dumps(manifest),
        "install_path": str(registry.paths.extensions / extension_id),
        "installed_at": utc_now(),
        "updated_at": utc_now(),
    }
    values.update(overrides)
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with registry.database.atomic():
        registry.database.execute_sql(
            f"INSERT INTO extensions ({columns}) VALUES ({marks})", tuple(values.values())
        )


def test_operation_exists_before_its_extension_is_known(registry: Registry) -> None:
    install_id = registry.create_operation("/downloads/thing.zip")
    record = registry.get_operation(install_id)
    assert (record.status, record.progress, record.extension_id) == ("INSTALLING", 0, None)
    assert record.owner_pid is not None
    registry.update_operation(install_id, extension_id="example.thing", current_step="Reading")
    assert registry.get_operation(install_id).extension_id == "example.thing"


def test_progress_never_goes_backwards(registry: Registry) -> None:
    install_id = registry.create_operation("a.zip")
    registry.update_operation(install_id, progress=40)
    registry.update_operation(install_id, progress=30)
    assert registry.get_operation(install_id).progress == 40
    registry.finish_operation(install_id, OperationStatus.COMPLETED)
    done = registry.get_operation(install_id)
    assert (done.status, done.progress, done.ended_at is not None) == ("COMPLETED", 100, True)


def test_missing_operation_is_reported_by_number(registry: Registry) -> None:
    with pytest.raises(OperationNotFoundError, match="number 999"):
        registry.get_operation(999)
    with pytest.raises(OperationNotFoundError):
        registry.update_operation(999, current_step="x")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE extension_installs SET progress = 101",
        "UPDATE extension_installs SET progress = -1",
        "UPDATE extension_installs SET status = 'DONE'",
        "UPDATE extension_installs SET kind = 'SIDELOAD'",
    ],
)
def test_check_constraints_are_enforced(registry: Registry, sql: str) -> None:
    registry.create_operation("a.zip")
    with pytest.raises(peewee.IntegrityError, match="CHECK"):
        registry.database.execute_sql(sql)


def test_foreign_keys_are_enforced_on_every_connection(registry: Registry) -> None:
    errors: list[BaseException] = []

    def insert_orphan() -> None:
        try:
            with registry.database.atomic():
                registry.database.execute_sql(
                    "INSERT INTO extension_configs VALUES ('nobody', 'k', '1')"
                )
        except peewee.IntegrityError as error:
            errors.append(error)
        finally:
            registry.database.close()

    insert_orphan()
    worker = threading.Thread(target=insert_orphan)
    worker.start()
    worker.join()
    assert len(errors) == 2 and all("FOREIGN KEY" in str(e) for e in errors)


def test_history_outlives_the_extension(registry: Registry) -> None:
    add_extension(registry)
    install_id = registry.create_operation("hello.zip", extension_id="example.hello")
    registry.finish_operation(install_id, OperationStatus.COMPLETED)
    registry.set_config("example.hello", {"greeting": "hello"})
    with registry.database.atomic():
        registry.database.execute_sql("DELETE FROM extensions WHERE id = 'example.hello'")
    assert registry.get_extension("example.hello") is None
    assert registry.get_operation(install_id).extension_id == "example.hello"
    # The settings went with the extension (ON DELETE CASCADE).
    assert registry.scalar("SELECT count(*) FROM extension_configs") == 0


def test_config_defaults_stored_values_and_type_checks(registry: Registry) -> None:
    add_extension(registry)
    assert registry.get_config("example.hello") == {
        "greeting": "hi",
        "count": 3,
        "ratio": 0.5,
        "loud": False,
    }
    registry.set_config("example.hello", {"greeting": "hey", "count": 5, "ratio": 2, "loud": True})
    assert registry.get_config("example.hello") == {
        "greeting": "hey",
        "count": 5,
        "ratio": 2,
        "loud": True,
    }
    with pytest.raises(ConfigError, match="'count' of example.hello must be a whole number"):
        registry.set_config("example.hello", {"count": "many"})
    with pytest.raises(ConfigError, match="must be a whole number"):
        registry.set_config("example.hello", {"count": True})
    with pytest.raises(ConfigError, match="must be true or false"):
        registry.set_config("example.hello", {"loud": 1})
    with pytest.raises(ConfigError, match="'colour' is not a setting"):
        registry.set_config("example.hello", {"colour": "red"})
    # A refused batch stores nothing of it.
    with pytest.raises(ConfigError):
        registry.set_config("example.hello", {"greeting": "partial", "count": "x"})
    assert registry.get_config("example.hello")["greeting"] == "hey"
    registry.reset_config("example.hello")
    assert registry.get_config("example.hello")["greeting"] == "hi"


def test_enable_disable_persists(registry: Registry) -> None:
    add_extension(registry)
    registry.set_enabled("example.hello", False)
    record = registry.get_extension("example.hello")
    assert record is not None and not record.enabled
    with pytest.raises(RegistryError, match="not installed"):
        registry.set_enabled("example.absent", True)


def test_worker_writes_while_the_main_thread_reads(registry: Registry) -> None:
    """No "database is locked": writers use short IMMEDIATE transactions, readers autocommit."""
    install_ids = [registry.create_operation(f"{n}.zip") for n in range(3)]
    failures: list[BaseException] = []

    def write(install_id: int) -> None:
        try:
            for progress in range(101):
                registry.update_operation(install_id, progress=progress, current_step="Extracting")
            registry.finish_operation(install_id, OperationStatus.COMPLETED)
            with pytest.raises(peewee.IntegrityError):
                registry.database.execute_sql(
                    "UPDATE extension_installs SET progress = 500 WHERE install_id = ?",
                    (install_id,),
                )
        except BaseException as error:
            failures.append(error)
        finally:
            registry.database.close()

    workers = [threading.Thread(target=write, args=(i,)) for i in install_ids]
    for worker in workers:
        worker.start()
    seen: dict[int, list[int]] = {i: [] for i in install_ids}
    while any(worker.is_alive() for worker in workers):
        for install_id, record in registry.get_operations(install_ids).items():
            seen[install_id].append(record.progress)
        registry.list_operations(limit=50)
    for worker in workers:
        worker.join()
    assert failures == []
    for install_id, values in seen.items():
        assert values == sorted(values), f"operation {install_id} went backwards"
        assert registry.get_operation(install_id).progress == 100


def test_saving_a_form_stores_only_what_differs_from_the_defaults(registry: Registry) -> None:
    add_extension(registry)
    registry.set_config("example.hello", {"greeting": "Yo"})
    # The form shows every setting; "count" and "loud" are left at their defaults, and the
    # greeting is set back to its default.
    registry.save_config(
        "example.hello", {"greeting": "hi", "count": 9, "ratio": 0.5, "loud": False}
    )
    stored = {
        key: json.loads(value)
        for key, value in registry.fetch_all("SELECT key, value FROM extension_configs")
    }
    assert stored == {"count": 9}
    assert registry.get_config("example.hello")["count"] == 9
    with pytest.raises(ConfigError):
        registry.save_config("example.hello", {"count": "many"})
    assert registry.fetch_all("SELECT key FROM extension_configs") == [("count",)]


def test_history_pages_by_operation_id(registry: Registry) -> None:
    ids = [registry.create_operation(f"{n}.zip") for n in range(7)]
    first = registry.list_operations(limit=3)
    second = registry.list_operations(limit=3, before_id=first[-1].install_id)
    assert [r.install_id for r in first + second] == ids[::-1][:6]


def test_two_registries_in_one_process_keep_their_own_files(tmp_path: Path) -> None:
    """Each registry writes only its own file, from any thread, whichever was opened last."""
    first = open_registry(tmp_path / "first")
    second = open_registry(tmp_path / "second")
    per_thread = 25
    failures: list[BaseException] = []

    def write(registry: Registry, label: str) -> None:
        try:
            for number in range(per_thread):
                install_id = registry.create_operation(f"{label}-{number}.zip")
                with registry.database.atomic():
                    registry.update_operation(install_id, current_step=label)
                registry.finish_operation(install_id, OperationStatus.COMPLETED)
        except BaseException as error:
            failures.append(error)
        finally:
            registry.close_thread_connection()

    try:
        threads = [
            threading.Thread(target=write, args=(registry, label))
            for registry, label in ((first, "first"), (second, "second")) * 3
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        for registry, label in ((first, "first"), (second, "second")):
            operations = registry.list_operations()
            assert len(operations) == 3 * per_thread
            assert {Path(op.archive_path).name.split("-")[0] for op in operations} == {label}
            assert {op.status for op in operations} == {"COMPLETED"}
        # Read back through plain SQLite, bypassing the objects: the files themselves.
        for name, label in (("first", "first"), ("second", "second")):
            with sqlite3.connect(tmp_path / name / "registry.db") as connection:
                steps = connection.execute("SELECT DISTINCT current_step FROM extension_installs")
                assert [row[0] for row in steps] == ["Done"]
                files = connection.execute("SELECT archive_path FROM extension_installs")
                assert all(Path(row[0]).name.startswith(label) for row in files)
    finally:
        first.close()
        second.close()


def test_open_registry_is_the_way_in_for_a_host_application(tmp_path: Path) -> None:
    with open_registry(tmp_path / "data") as registry:
        assert registry.list_extensions() == []
        assert registry.list_operations() == []
        assert registry.schema_version() == latest_version()
        with pytest.raises(RegistryError, match="not installed"):
            registry.set_enabled("example.missing", False)
        assert registry.get_extension("example.missing") is None
    # Closed: no connection left open, and the data folder's lock released.
    assert registry.open_connections == 0
    assert registry.lock is not None and registry.lock.mode == "none"
