"""Many files at once, extensions inside other archives, dropped folders, dependencies and
settings kept across an uninstall: through the real command line, and through the installer
where two steps must be interleaved."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry.installer import Installer, InstallPlan
from registry.paths import DataPaths
from registry.startup import open_data_folder
from registry.vocabulary import OperationStatus
from tests.conftest import REPO_ROOT, run_cli
from tests.test_cli import run_on_terminal
from tests.zipcraft import make_zip, minimal_manifest

CONFIGURED = {"greeting": "hello", "count": 3}


def extension(
    path: Path,
    extension_id: str,
    version: str = "1.0.0",
    *,
    requires: dict[str, str] | None = None,
    name: str | None = None,
    top_folder: str | None = None,
    **fields: Any,
) -> Path:
    if requires is not None:
        fields["requires"] = requires
    manifest = minimal_manifest(
        id=extension_id, name=name or extension_id.split(".")[-1].title(), version=version, **fields
    )
    return make_zip(
        path, {"manifest.json": manifest, "main.py": b"print('hi')\n"}, top_folder=top_folder
    )


def listed(data: Path) -> dict[str, tuple[str, bool]]:
    result = run_cli(data, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {item["id"]: (item["version"], item["enabled"]) for item in json.loads(result.stdout)}


def history(data: Path) -> list[dict[str, Any]]:
    result = run_cli(data, "history", "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def folder_state(data: Path) -> list[str]:
    extensions = data / "extensions"
    return (
        sorted(str(p.relative_to(data)) for p in extensions.rglob("*"))
        if extensions.exists()
        else []
    )


# -- many files, one confirmation -----------------------------------------------------------------


def test_five_files_with_one_bad_install_four_and_name_the_fifth(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = [extension(tmp_path / f"e{n}.zip", f"example.e{n}") for n in range(4)]
    bad = tmp_path / "notes.zip"
    make_zip(bad, {"README.txt": b"no manifest here"})
    result = run_cli(data, "install", "--yes", *map(str, files[:2]), str(bad), *map(str, files[2:]))
    assert result.returncode == 1
    assert listed(data) == {f"example.e{n}": ("1.0.0", True) for n in range(4)}
    errors = [line for line in result.stderr.splitlines() if line.startswith("extension-manager:")]
    assert len(errors) == 1 and errors[0].startswith("extension-manager: notes.zip:")
    assert "no manifest.json" in errors[0]


def test_several_files_on_a_terminal_are_one_question(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = extension(tmp_path / "a.zip", "example.alpha", permissions=["network"])
    second = extension(tmp_path / "b.zip", "example.beta")
    bad = make_zip(tmp_path / "bad.zip", {"x.txt": b"x"})
    code, screen = run_on_terminal(data, b"y\n", "install", str(first), str(second), str(bad))
    assert screen.count("[y/N]") == 1, screen
    assert "2 to install:" in screen and "Install these 2? [y/N]" in screen
    assert "Alpha (example.alpha): New install of version 1.0.0; asks for network" in screen
    assert "✗ bad.zip:" in screen
    assert code == 1 and set(listed(data)) == {"example.alpha", "example.beta"}


def test_no_to_the_one_question_installs_none(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = [extension(tmp_path / f"{n}.zip", f"example.n{n}") for n in range(2)]
    code, screen = run_on_terminal(data, b"n\n", "install", *map(str, files))
    assert code == 1 and listed(data) == {}
    assert "Install these 2? [y/N]" in screen
    assert {op["status"] for op in history(data)} == {"CANCELLED"}


# -- dependencies ---------------------------------------------------------------------------------


def test_an_extension_whose_requirement_is_missing_is_refused_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    needs = extension(tmp_path / "b.zip", "example.b", requires={"example.a": ">=1.2.0, <2.0.0"})
    result = run_cli(data, "install", "--yes", str(needs))
    assert result.returncode == 1 and listed(data) == {}
    assert "B needs example.a >=1.2.0, <2.0.0 (not installed)" in result.stderr
    assert "install them together" in result.stderr
    old = extension(tmp_path / "a-1.0.zip", "example.a", "1.0.0")
    assert run_cli(data, "install", "--yes", str(old)).returncode == 0
    result = run_cli(data, "install", "--yes", str(needs))
    assert "(1.0.0 is installed)" in result.stderr and "example.b" not in listed(data)


def test_what_is_needed_installs_first_and_removing_it_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    needed = extension(tmp_path / "a.zip", "example.a", "1.3.0")
    needing = extension(tmp_path / "b.zip", "example.b", requires={"example.a": "^1.2"})
    # Given in the wrong order on purpose.
    result = run_cli(data, "install", "--yes", str(needing), str(needed))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Installed example.a 1.3.0", "Installed example.b 1.0.0"]
    done = [op for op in history(data) if op["status"] == "COMPLETED"]
    assert [op["extension_id"] for op in sorted(done, key=lambda op: op["ended_at"])] == [
        "example.a",
        "example.b",
    ]

    refused = run_cli(data, "uninstall", "--yes", "example.a")
    assert refused.returncode == 1
    assert "B needs A, so it was not uninstalled" in refused.stderr
    assert "--with-dependents" in refused.stderr
    refused = run_cli(data, "disable", "example.a")
    assert refused.returncode == 1 and "so it was not turned off" in refused.stderr
    assert listed(data) == {"example.a": ("1.3.0", True), "example.b": ("1.0.0", True)}

    assert run_cli(data, "disable", "example.a", "--with-dependents").returncode == 0
    assert listed(data) == {"example.a": ("1.3.0", False), "example.b": ("1.0.0", False)}
    removed = run_cli(data, "uninstall", "--yes", "--with-dependents", "example.a")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == ["Uninstalled example.b", "Uninstalled example.a"]
    assert listed(data) == {} and folder_state(data) == []


def test_an_upgrade_that_breaks_a_dependent_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    needed = extension(tmp_path / "a.zip", "example.a", "1.3.0")
    needing = extension(tmp_path / "b.zip", "example.b", requires={"example.a": "<2"})
    assert run_cli(data, "install", "--yes", str(needed), str(needing)).returncode == 0
    newer = extension(tmp_path / "a2.zip", "example.a", "2.0.0")
    code, screen = run_on_terminal(data, b"n\n", "install", str(newer))
    assert "Breaks: B 1.0.0 needs example.a <2" in screen, screen
    assert code == 1 and listed(data)["example.a"] == ("1.3.0", True)
    unattended = run_cli(data, "install", "--yes", str(newer))
    assert unattended.returncode == 1 and listed(data)["example.a"] == ("1.3.0", True)
    assert "it would break what needs it (B 1.0.0 needs example.a <2)" in unattended.stderr
    # The same batch bringing a dependent that accepts the new version breaks nothing.
    accepting = extension(tmp_path / "b2.zip", "example.b", "2.0.0", requires={"example.a": "^2"})
    code, screen = run_on_terminal(data, b"y\n", "install", str(newer), str(accepting))
    assert "Breaks" not in screen and code == 0, screen
    assert listed(data) == {"example.a": ("2.0.0", True), "example.b": ("2.0.0", True)}
    # Asked for, a version that breaks a dependent goes ahead.
    older = extension(tmp_path / "a19.zip", "example.a", "2.1.0")
    strict = extension(tmp_path / "b3.zip", "example.b", "3.0.0", requires={"example.a": "=2.0.0"})
    assert run_cli(data, "install", "--yes", str(strict)).returncode == 0
    forced = run_cli(data, "install", "--yes", "--allow-breaking", str(older))
    assert forced.returncode == 0, forced.stderr
    assert listed(data)["example.a"] == ("2.1.0", True)


def test_extensions_that_need_each_other_install_all_or_nothing(paths: DataPaths) -> None:
    """The second archive is replaced after it was checked: it cannot be staged, so the first,
    already extracted, is not put in place either."""
    folder = paths.root.parent
    needed = extension(folder / "a.zip", "example.a")
    needing = extension(folder / "b.zip", "example.b", requires={"example.a": "1.0.0"})
    with open_data_folder(paths) as registry:
        installer = Installer(registry)
        plans = []
        for archive in (needing, needed):
            planned = installer.plan(installer.begin(archive), archive)
            assert isinstance(planned, InstallPlan)
            plans.append(planned)
        batch = installer.arrange(plans)
        assert [p.manifest.id for p in batch.ready] == ["example.a", "example.b"]
        [group] = batch.groups
        extension(needing, "example.b", "1.0.1", requires={"example.a": "1.0.0"})
        records = installer.execute_group(group)
        assert [r.status for r in records] == [OperationStatus.FAILED, OperationStatus.FAILED]
        assert "changed after it was checked" in (records[1].error or "")
        assert records[0].error == (
            "A was not installed: it goes with B, which could not be installed. Nothing was "
            "changed for it."
        )
        assert registry.list_extensions() == []
        assert not any((paths.root / "extensions").iterdir())
        assert not any(paths.staging.iterdir()) if paths.staging.exists() else True


# -- from inside another archive, and folders ------------------------------------------------------


def test_a_zip_of_zips_is_refused_with_the_offer_and_installs_from_member(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inner = extension(tmp_path / "real.zip", "example.hello", name="Hello World")
    outer = make_zip(tmp_path / "download.zip", {"Plugin/real.zip": inner.read_bytes()})
    refused = run_cli(data, "install", "--yes", str(outer))
    assert refused.returncode == 1 and listed(data) == {}
    assert "'Plugin/real.zip' contains Hello World 1.0.0" in refused.stderr, refused.stderr
    hint = next(line for line in refused.stderr.splitlines() if line.startswith("  Hello World"))
    assert hint.endswith(f" install {outer} --from-member 'Plugin/real.zip'"), hint
    [offer_op] = history(data)
    assert json.loads(offer_op["inner_offers"]) == [
        {
            "member": "Plugin/real.zip",
            "id": "example.hello",
            "name": "Hello World",
            "version": "1.0.0",
        }
    ]

    result = run_cli(data, "install", "--yes", str(outer), "--from-member", "Plugin/real.zip")
    assert result.returncode == 0, result.stderr
    assert listed(data) == {"example.hello": ("1.0.0", True)}
    op = history(data)[0]
    assert op["from_member"] == "Plugin/real.zip"
    assert op["outer_sha256"] == hashlib.sha256(outer.read_bytes()).hexdigest()
    assert op["archive_sha256"] == hashlib.sha256(inner.read_bytes()).hexdigest()
    assert (data / "extensions" / "example.hello" / "main.py").is_file()


def test_a_manifest_three_folders_down_installs_from_that_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manifest = minimal_manifest(id="example.deep", name="Deep", version="2.1.0")
    outer = make_zip(
        tmp_path / "source.zip",
        {
            "project-main/README.md": b"readme",
            "project-main/src/plugin/manifest.json": manifest,
            "project-main/src/plugin/tool.py": b"x = 1\n",
        },
    )
    refused = run_cli(data, "install", "--yes", str(outer))
    assert "'project-main/src/plugin/' contains Deep 2.1.0" in refused.stderr, refused.stderr
    member = "project-main/src/plugin/"
    result = run_cli(data, "install", "--yes", str(outer), "--from-member", member)
    assert result.returncode == 0, result.stderr
    installed = data / "extensions" / "example.deep"
    assert sorted(p.name for p in installed.iterdir()) == ["manifest.json", "tool.py"]
    op = history(data)[0]
    assert op["from_member"] == member
    assert op["outer_sha256"] == hashlib.sha256(outer.read_bytes()).hexdigest()
    # What is kept is an extension zip of that folder alone: a rollback to it needs no member.
    kept = data / "archives" / f"{op['archive_sha256']}.zip"
    assert op["archive_sha256"] != op["outer_sha256"] and kept.is_file()
    newer = extension(tmp_path / "deep-2.2.zip", "example.deep", "2.2.0", name="Deep")
    assert run_cli(data, "install", "--yes", str(newer)).returncode == 0
    back = run_cli(data, "rollback", "--yes", "example.deep")
    assert back.returncode == 0, back.stderr
    assert listed(data) == {"example.deep": ("2.1.0", True)}
    assert sorted(p.name for p in installed.iterdir()) == ["manifest.json", "tool.py"]


def test_two_levels_of_nesting_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inner = extension(tmp_path / "real.zip", "example.hello")
    middle = make_zip(tmp_path / "middle.zip", {"real.zip": inner.read_bytes()})
    outer = make_zip(tmp_path / "outer.zip", {"middle.zip": middle.read_bytes()})
    refused = run_cli(data, "install", "--yes", str(outer))
    assert refused.returncode == 1 and listed(data) == {}
    assert "--from-member" not in refused.stderr
    forced = run_cli(data, "install", "--yes", str(outer), "--from-member", "middle.zip")
    assert forced.returncode == 1 and listed(data) == {}
    assert "one level" in forced.stderr, forced.stderr


def test_a_folder_installs_like_an_archive(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "my-extension"
    (folder / "lib").mkdir(parents=True)
    (folder / "manifest.json").write_bytes(minimal_manifest(id="example.folder", name="Folder"))
    (folder / "lib" / "code.py").write_text("y = 2\n")
    result = run_cli(data, "install", "--yes", str(folder))
    assert result.returncode == 0, result.stderr
    assert listed(data) == {"example.folder": ("1.0.0", True)}
    installed = data / "extensions" / "example.folder"
    assert (installed / "lib" / "code.py").read_text() == "y = 2\n"
    assert history(data)[0]["archive_path"] == str(folder)


# -- settings across an uninstall ------------------------------------------------------------------


def configured_extension(tmp_path: Path) -> Path:
    return extension(tmp_path / "c.zip", "example.conf", config=CONFIGURED)


def config_of(data: Path, extension_id: str) -> dict[str, Any]:
    result = run_cli(data, "config", extension_id, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize("flags", [(), ("--keep-settings",)])
def test_settings_kept_at_uninstall_come_back_with_the_next_install(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    archive = configured_extension(tmp_path)
    assert run_cli(data, "install", "--yes", str(archive)).returncode == 0
    assert run_cli(data, "config", "example.conf", "greeting=bonjour").returncode == 0
    assert run_cli(data, "uninstall", "--yes", *flags, "example.conf").returncode == 0
    code, screen = run_on_terminal(data, b"y\n", "install", str(archive))
    assert "Settings kept when 1.0.0 was uninstalled: restored" in screen, screen
    assert code == 0
    assert config_of(data, "example.conf")["greeting"] == "bonjour"


def test_remove_settings_and_fresh_settings_start_from_the_defaults(tmp_path: Path) -> None:
    data = tmp_path / "data"
    archive = configured_extension(tmp_path)
    for uninstall_flags, install_flags in (
        (("--remove-settings",), ()),
        ((), ("--fresh-settings",)),
    ):
        assert run_cli(data, "install", "--yes", str(archive)).returncode == 0
        assert run_cli(data, "config", "example.conf", "count=9").returncode == 0
        args = ("uninstall", "--yes", *uninstall_flags, "example.conf")
        assert run_cli(data, *args).returncode == 0
        assert run_cli(data, "install", "--yes", *install_flags, str(archive)).returncode == 0
        assert config_of(data, "example.conf")["count"] == 3
        assert (
            run_cli(data, "uninstall", "--yes", "--remove-settings", "example.conf").returncode == 0
        )


def test_the_command_line_never_shows_a_traceback_for_a_bad_member(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inner = extension(tmp_path / "real.zip", "example.hello")
    outer = make_zip(tmp_path / "outer.zip", {"a/real.zip": inner.read_bytes()})
    result = run_cli(data, "install", "--yes", str(outer), "--from-member", "a/none.zip")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a/real.zip" in result.stderr  # what there is to choose
    both = run_cli(data, "install", "--yes", str(outer), str(inner), "--from-member", "a/real.zip")
    assert both.returncode == 1 and "one archive" in both.stderr


def test_one_inner_zip_per_platform_lists_them_all(tmp_path: Path) -> None:
    data = tmp_path / "data"
    platforms = ("linux", "mac", "windows")
    inner = {
        f"{platform}/hello.zip": extension(
            tmp_path / f"{platform}.zip", "example.hello", name="Hello World"
        ).read_bytes()
        for platform in platforms
    }
    outer = make_zip(tmp_path / "hello-all.zip", inner)
    refused = run_cli(data, "install", "--yes", str(outer))
    assert refused.returncode == 1 and listed(data) == {}
    for platform in platforms:
        assert f"'{platform}/hello.zip' contains Hello World 1.0.0" in refused.stderr
        assert f"install {outer} --from-member '{platform}/hello.zip'" in refused.stderr
    chosen = run_cli(data, "install", "--yes", str(outer), "--from-member", "mac/hello.zip")
    assert chosen.returncode == 0, chosen.stderr
    assert history(data)[0]["from_member"] == "mac/hello.zip"


def test_an_inner_zip_bomb_is_refused_under_the_outer_budget(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bomb = make_zip(
        tmp_path / "bomb.zip",
        {"manifest.json": minimal_manifest(id="example.bomb"), "zeros.bin": bytes(64 * 1024**2)},
    )
    outer = make_zip(tmp_path / "outer.zip", {"inner/bomb.zip": bomb.read_bytes()})
    refused = run_cli(data, "install", "--yes", str(outer), "--from-member", "inner/bomb.zip")
    assert refused.returncode == 1 and listed(data) == {}
    assert "zip bomb" in refused.stderr, refused.stderr
    assert not any((data / "staging").iterdir()) if (data / "staging").exists() else True


def test_a_read_me_beside_the_inner_zip_still_gets_the_offer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inner = extension(tmp_path / "plugin.zip", "example.hello", name="Hello World")
    outer = make_zip(
        tmp_path / "purchase.zip",
        {"README.txt": b"Install plugin.zip", "LICENSE": b"MIT", "plugin.zip": inner.read_bytes()},
    )
    refused = run_cli(data, "install", "--yes", str(outer))
    assert "'plugin.zip' contains Hello World 1.0.0" in refused.stderr, refused.stderr
    chosen = run_cli(data, "install", "--yes", str(outer), "--from-member", "plugin.zip")
    assert chosen.returncode == 0, chosen.stderr


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    """`extension-manager history | head -1`: the pipe closes before everything is written."""
    data = tmp_path / "data"
    assert run_cli(data, "install", "--yes", str(configured_extension(tmp_path))).returncode == 0
    command = [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(data), "history"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        errors = child.stderr.read().decode()
    assert child.returncode == 1
    assert errors == ""
