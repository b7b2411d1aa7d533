"""Test setup: headless Qt, and every user folder (config, data, logs) inside a temp dir."""

from __future__ import annotations

import os
import shutil
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
