"""Test setup: headless Qt, and every user folder (config, data, logs) inside a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Qt or platformdirs: no display, and never touch the real home.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
_USER_DIRS = Path(tempfile.mkdtemp(prefix="extension-manager-tests-"))
for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[variable] = str(_USER_DIRS / variable.lower())
os.environ.pop("EXTENSION_MANAGER_DATA_DIR", None)

import pytest  # noqa: E402

from registry.paths import DataPaths  # noqa: E402
from registry.startup import open_registry  # noqa: E402
from registry.store import Registry  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_app(
    *args: str, env: dict[str, str] | None = None, as_user: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``main.py`` in a new process, as a person would, with no standard input (so prompts
    refuse instead of waiting); ``as_user`` runs it unprivileged, where permissions apply."""
    prefix: list[str] = []
    if as_user is not None:
        prefix = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, str(REPO_ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=str(REPO_ROOT),
    )


def run_cli(data: Path, *args: str, as_user: int | None = None) -> subprocess.CompletedProcess[str]:
    return run_app("--data-dir", str(data), *args, as_user=as_user)


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path / "data")


@pytest.fixture
def registry(paths: DataPaths) -> Iterator[Registry]:
    opened = open_registry(paths)
    yield opened.registry
    opened.registry.close()


@pytest.fixture
def v1_paths(paths: DataPaths) -> DataPaths:
    """A data folder whose registry is the checked-in schema-version-1 database."""
    paths.root.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "registry-v1.db", paths.database)
    return paths


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_USER_DIRS, ignore_errors=True)
