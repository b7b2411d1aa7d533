"""Compatibility over time: when the app's version changes, what no longer fits is turned off,
once, with the reason recorded and one summary for the person; turning one on anyway is the
person's choice, recorded, and kept while this app runs."""

from __future__ import annotations

import json
from pathlib import Path

from registry.compatibility import LAST_APP_VERSION, misfit, recheck, summary
from registry.doctor import diagnose
from registry.installer import Installer
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.store import Registry
from registry.version import APP_VERSION
from tests.conftest import run_cli
from tests.update_sources import build_notes

SUMMARY_0_2 = (
    "2 extensions were turned off: they need Extension Manager < 0.2.0 (Alpha, Beta). Turn one "
    "on again if you want it anyway (Enable, or 'extension-manager enable ID')."
)


def install_at(
    paths: DataPaths, app_version: str, folder: Path, **manifests: dict[str, str]
) -> None:
    """Launch as app ``app_version`` and install one extension per keyword (its id's last part)
    with those manifest fields."""
    with open_data_folder(paths, app_version=app_version) as registry:
        installer = Installer(registry, app_version=app_version)
        for name, fields in manifests.items():
            archive = build_notes(
                folder,
                "1.0.0",
                extension_id=f"example.{name}",
                min_app_version=fields.get("min_app_version"),
                max_app_version=fields.get("max_app_version"),
            )
            record = installer.install(archive)
            assert record.status == "COMPLETED", record.error


def enabled(registry: Registry) -> dict[str, bool]:
    return {e.id: e.enabled for e in registry.list_extensions()}


def operations(registry: Registry) -> list[tuple[str, str | None, str, str | None]]:
    return [
        (op.kind, op.extension_id, op.status, op.error)
        for op in reversed(registry.list_operations())
    ]


def test_a_new_app_version_turns_off_what_no_longer_fits_once(
    paths: DataPaths, tmp_path: Path
) -> None:
    install_at(
        paths,
        "0.1.0",
        tmp_path / "zips",
        alpha={"max_app_version": "0.2.0"},
        beta={"max_app_version": "0.2.0"},
        gamma={},
    )
    with open_data_folder(paths, app_version="0.1.0") as registry:
        assert registry.get_state(LAST_APP_VERSION) == "0.1.0"
        assert registry.launch.messages() == []
        before = registry.count_operations()

    with open_data_folder(paths, app_version="0.2.0") as registry:
        assert enabled(registry) == {
            "example.alpha": False,
            "example.beta": False,
            "example.gamma": True,
        }
        reason = "Turned off for Extension Manager 0.2.0: it needs Extension Manager < 0.2.0"
        assert operations(registry)[before:] == [
            ("DISABLE", "example.alpha", "COMPLETED", reason),
            ("DISABLE", "example.beta", "COMPLETED", reason),
        ]
        # One sentence for all of them, not one per extension.
        assert registry.launch.messages() == [SUMMARY_0_2]
        assert registry.get_state(LAST_APP_VERSION) == "0.2.0"
        after = registry.count_operations()
        assert diagnose(registry) == []

    # The same app again: nothing new to say, nothing new recorded.
    with open_data_folder(paths, app_version="0.2.0") as registry:
        assert registry.launch.messages() == []
        assert registry.count_operations() == after
        assert enabled(registry)["example.alpha"] is False

        # Turned on anyway, by the person: recorded, and not undone while this app runs.
        registry.override_compatibility(
            "example.alpha", "0.2.0", "it needs Extension Manager < 0.2.0"
        )
        [enable] = registry.list_operations(limit=1)
        assert (enable.kind, enable.extension_id, enable.status) == (
            "ENABLE",
            "example.alpha",
            "COMPLETED",
        )
        assert enable.error is not None and "Turned on by you for Extension Manager 0.2.0" in (
            enable.error
        )
        extension = registry.get_extension("example.alpha")
        assert extension is not None and extension.compatibility_override == "0.2.0"

    with open_data_folder(paths, app_version="0.2.0") as registry:
        assert registry.launch.messages() == []
        assert enabled(registry)["example.alpha"] is True
        overridden = registry.count_operations()

    # Another app version: the choice was for 0.2.0, so the check is made again. The one
    # already off (beta) is not recorded twice.
    with open_data_folder(paths, app_version="0.3.0") as registry:
        assert enabled(registry) == {
            "example.alpha": False,
            "example.beta": False,
            "example.gamma": True,
        }
        assert [op[:2] for op in operations(registry)[overridden:]] == [
            ("DISABLE", "example.alpha")
        ]
        assert registry.launch.messages() == [
            "1 extension was turned off: Alpha needs Extension Manager < 0.2.0. Turn one on "
            "again if you want it anyway (Enable, or 'extension-manager enable ID')."
        ]
        extension = registry.get_extension("example.alpha")
        assert extension is not None and extension.compatibility_override is None


def test_different_needs_are_each_named_in_the_one_summary(
    paths: DataPaths, tmp_path: Path
) -> None:
    install_at(
        paths,
        "0.5.0",
        tmp_path / "zips",
        alpha={"min_app_version": "0.5.0"},
        beta={"max_app_version": "0.6.0"},
        gamma={"min_app_version": "0.1.0", "max_app_version": "0.6.0"},
    )
    with open_data_folder(paths, app_version="0.4.0") as registry:
        assert enabled(registry) == {
            "example.alpha": False,
            "example.beta": True,
            "example.gamma": True,
        }
        [line] = registry.launch.messages()
        assert line.startswith("1 extension was turned off: Alpha needs Extension Manager ≥ 0.5.0.")
    with open_data_folder(paths, app_version="0.6.0") as registry:
        [line] = registry.launch.messages()
        assert line.startswith(
            "2 extensions were turned off: Beta needs Extension Manager < 0.6.0; Gamma needs "
            "Extension Manager ≥ 0.1.0 and < 0.6.0."
        )


def test_an_extension_the_person_turned_off_is_left_alone(paths: DataPaths, tmp_path: Path) -> None:
    install_at(paths, "0.1.0", tmp_path / "zips", alpha={"max_app_version": "0.2.0"})
    with open_data_folder(paths, app_version="0.1.0") as registry:
        registry.set_enabled("example.alpha", False)
        before = registry.count_operations()
    with open_data_folder(paths, app_version="0.2.0") as registry:
        assert registry.launch.messages() == []
        assert registry.count_operations() == before


def test_the_first_launch_checks_nothing_and_remembers_the_version(
    registry: Registry, tmp_path: Path
) -> None:
    """A registry that never recorded an app version (a new one, or one from before schema 4)
    has nothing that was checked against another app."""
    with registry.database.atomic():
        registry.database.execute_sql("DELETE FROM app_state")
    archive = build_notes(tmp_path, "1.0.0", max_app_version="0.2.0")
    assert Installer(registry, app_version="0.1.0").install(archive).status == "COMPLETED"
    with registry.database.atomic():
        registry.database.execute_sql("DELETE FROM app_state")
    assert recheck(registry, "0.5.0") == ()
    assert registry.get_state(LAST_APP_VERSION) == "0.5.0"
    extension = registry.get_extension("example.notes")
    assert extension is not None and extension.enabled
    # From now on a change is checked.
    [turned_off] = recheck(registry, "0.6.0")
    assert (turned_off.extension_id, turned_off.requirement) == (
        "example.notes",
        "Extension Manager < 0.2.0",
    )
    assert summary(()) is None


def test_a_stored_bound_this_app_cannot_read_is_not_enforced(
    registry: Registry, tmp_path: Path
) -> None:
    archive = build_notes(tmp_path, "1.0.0", max_app_version="0.2.0")
    assert Installer(registry, app_version="0.1.0").install(archive).status == "COMPLETED"
    extension = registry.get_extension("example.notes")
    assert extension is not None
    assert misfit(extension, "0.1.0") is None
    assert misfit(extension, "0.2.0") == "Extension Manager < 0.2.0"
    assert misfit(extension, "not a version") is None


def test_the_command_line_refuses_to_enable_a_misfit_without_anyway(
    paths: DataPaths, tmp_path: Path
) -> None:
    # Installed by an earlier app, for which it was made: it stops before this app's version.
    install_at(paths, "0.0.1", tmp_path / "zips", alpha={"max_app_version": APP_VERSION})
    listed = run_cli(paths.root, "list", "--json")  # this app's first launch turns it off
    assert [(e["id"], e["enabled"]) for e in json.loads(listed.stdout)] == [
        ("example.alpha", False)
    ]

    refused = run_cli(paths.root, "enable", "example.alpha")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(
        f"extension-manager: example.alpha needs Extension Manager < {APP_VERSION}, and this is "
        f"Extension Manager {APP_VERSION}. To turn it on anyway, run '"
    )
    assert line.endswith(" enable --anyway example.alpha'.")

    anyway = run_cli(paths.root, "enable", "--anyway", "example.alpha", "--json")
    assert anyway.returncode == 0, anyway.stderr
    assert json.loads(anyway.stdout) == {"id": "example.alpha", "enabled": True}
    with open_data_folder(paths) as registry:
        [enable] = registry.list_operations(limit=1)
        assert (enable.kind, enable.extension_id) == ("ENABLE", "example.alpha")
        extension = registry.get_extension("example.alpha")
        assert extension is not None
        assert (extension.enabled, extension.compatibility_override) == (True, APP_VERSION)
    # Later launches of the same app keep the person's choice.
    again = run_cli(paths.root, "list", "--json")
    assert [e["enabled"] for e in json.loads(again.stdout)] == [True]
