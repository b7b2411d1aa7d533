"""The app installs like a real desktop app: a complete wheel, working entry points, a valid
.desktop file with its icons."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import assets
from build_package import UnsupportedImportError, rewrite_imports
from examples.build_examples import build_example
from migrations.runner import load_steps
from registry.version import APP_VERSION
from tests.conftest import REPO_ROOT

DESKTOP_FILE = REPO_ROOT / "assets" / f"{assets.APP_ID}.desktop"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # A copy of the tree, so that building never writes into the checkout.
    source = tmp_path_factory.mktemp("source") / "tree"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "*.egg-info",
            "__pycache__",
            ".mypy_cache",
            ".ruff_cache",
            ".hypothesis",
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("extension_manager-*.whl")
    return built


def test_wheel_installs_one_package_with_migrations_assets_and_schema(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top_level = {name.split("/", 1)[0] for name in names}
    # The wheel's version is the app's own constant, which the build reads.
    assert top_level == {"extension_manager", f"extension_manager-{APP_VERSION}.dist-info"}
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"extension_manager-{APP_VERSION}.dist-info/METADATA").decode()
    assert f"\nVersion: {APP_VERSION}\n" in metadata
    package = "extension_manager/"
    for step in load_steps():
        assert f"{package}{step.module.replace('.', '/')}.py" in names
    assert f"{package}registry/manifest.schema.json" in names
    assert f"{package}assets/{assets.APP_ID}.desktop" in names
    assert f"{package}assets/extension-manager.svg" in names
    for size in assets.ICON_SIZES:
        assert f"{package}assets/icons/extension-manager-{size}.png" in names
    assert f"{package}main.py" in names and f"{package}__main__.py" in names
    with zipfile.ZipFile(wheel) as archive:
        sources = {name: archive.read(name).decode() for name in names if name.endswith(".py")}
    for name, text in sources.items():
        for part in ("cli", "gui", "registry", "migrations", "assets", "main"):
            assert not re.search(rf"^\s*(from|import) {part}\b", text, re.MULTILINE), name


def test_wheel_installs_into_a_fresh_environment_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    # The dependencies (Qt alone is hundreds of MB) come from this environment through a .pth
    # line; the project itself only from the wheel. Paths in a .pth are added to sys.path without
    # processing the .pth files inside them, so the checkout's editable install stays out.
    purelib = Path(
        subprocess.run(
            [
                str(bin_dir / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # This environment's own install of the project stays out: only its dependencies are seen.
    dependencies = tmp_path / "dependencies"
    dependencies.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.lower().startswith(("extension_manager", "extension-manager")):
            (dependencies / entry.name).symlink_to(entry)
    (purelib / "_dependencies.pth").write_text(f"{dependencies}\n")
    subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import extension_manager.registry as r, extension_manager.gui.main_window; "
            "print(r.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert str(venv) in where.stdout, "the project must come from the wheel, not the checkout"
    for generic in ("registry", "migrations", "gui", "cli", "assets", "main"):
        absent = subprocess.run(
            [str(bin_dir / "python"), "-c", f"import {generic}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            check=False,
        )
        assert absent.returncode != 0, f"the wheel installed a top-level '{generic}'"

    version = subprocess.run(
        [str(bin_dir / "extension-manager-cli"), "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.stdout == f"extension-manager {APP_VERSION}\n", version.stderr

    data = tmp_path / "data"
    smoke = subprocess.run(
        [str(bin_dir / "extension-manager"), "--data-dir", str(data), "--smoke-test"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.startswith("ready in ")

    archive = build_example("word-count", tmp_path / "zips")
    install = subprocess.run(
        [
            str(bin_dir / "extension-manager-cli"),
            "--data-dir",
            str(data),
            "install",
            "--yes",
            str(archive),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    assert "Installed example.word-count 1.2.0" in install.stdout
    assert (data / "extensions" / "example.word-count" / "manifest.json").exists()


def test_desktop_file_validates() -> None:
    validator = shutil.which("desktop-file-validate")
    assert validator, "install desktop-file-utils (make test does this via .ci/system-packages)"
    result = subprocess.run(
        [validator, str(DESKTOP_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_desktop_file_matches_the_app_and_its_icons_exist() -> None:
    entries = dict(
        line.split("=", 1) for line in DESKTOP_FILE.read_text().splitlines() if "=" in line
    )
    assert entries["Icon"] == assets.APP_ID
    assert entries["Exec"].endswith("%F")
    assert "application/zip" in entries["MimeType"].split(";")
    for size in assets.ICON_SIZES:
        png = assets.icon_png(size).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert (width, height) == (size, size)
    assert assets.asset("extension-manager.svg").read_text().lstrip().startswith("<?xml")


def test_the_build_rewrites_only_import_statements_of_the_apps_parts() -> None:
    source = '''"""Docstrings may say: from registry import x."""
import os
import assets
import migrations.runner as runner
from registry.store import Registry
from registryish import thing
from . import sibling

if TYPE_CHECKING:
    # a comment first
    from gui.main_window import (
        MainWindow,
    )
text = "import registry"
'''
    rewritten = rewrite_imports(source, "example.py")
    assert rewritten.splitlines() == [
        '"""Docstrings may say: from registry import x."""',
        "import os",
        "from extension_manager import assets",
        "import extension_manager.migrations.runner as runner",
        "from extension_manager.registry.store import Registry",
        "from registryish import thing",
        "from . import sibling",
        "",
        "if TYPE_CHECKING:",
        "    # a comment first",
        "    from extension_manager.gui.main_window import (",
        "        MainWindow,",
        "    )",
        'text = "import registry"',
    ]


def test_the_build_refuses_an_import_it_cannot_rewrite_faithfully() -> None:
    # ``import registry.store`` binds ``registry``; rewritten it would bind another name.
    with pytest.raises(UnsupportedImportError, match=r"example.py:1"):
        rewrite_imports("import registry.store\n", "example.py")
