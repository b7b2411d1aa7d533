"""Test setup: real windows on a virtual screen, and every user folder (config, data, logs)
inside a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports Qt or platformdirs: never touch the real home (the Qt platform is
# chosen in pytest_configure, once pytest-xvfb has started the virtual screen or not).
_USER_DIRS = Path(tempfile.mkdtemp(prefix="extension-manager-tests-"))
for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[variable] = str(_USER_DIRS / variable.lower())
os.environ.pop("EXTENSION_MANAGER_DATA_DIR", None)

import pytest  # noqa: E402

from registry.installer import Installer  # noqa: E402
from registry.paths import DataPaths  # noqa: E402
from registry.startup import open_data_folder  # noqa: E402
from registry.store import Registry  # noqa: E402
from registry.version import APP_VERSION  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_app(
    *args: str,
    env: dict[str, str] | None = None,
    as_user: int | None = None,
    python: tuple[str, ...] = (sys.executable,),
    app: Path = REPO_ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``main.py`` in a new process, as a person would, with no standard input (so prompts
    refuse instead of waiting).

    ``as_user`` runs it unprivileged, where permissions apply. That user must be able to run
    ``python`` and read ``app`` (the folder holding ``main.py``, also the working directory),
    which a checkout and its virtualenv need not allow: ``tests/test_faults.py`` builds a copy
    of both that anyone can read.
    """
    prefix: list[str] = []
    if as_user is not None:
        prefix = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"]
    return subprocess.run(
        [*prefix, *python, str(app / "main.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=str(app),
    )


def run_cli(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    as_user: int | None = None,
    python: tuple[str, ...] = (sys.executable,),
    app: Path = REPO_ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return run_app(
        "--data-dir",
        str(data),
        *args,
        env=env,
        as_user=as_user,
        python=python,
        app=app,
        timeout=timeout,
    )


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path / "data")


@pytest.fixture
def registry(paths: DataPaths) -> Iterator[Registry]:
    with open_data_folder(paths) as opened:
        yield opened


@pytest.fixture
def v1_paths(paths: DataPaths) -> DataPaths:
    """A data folder whose registry is the checked-in schema-version-1 database."""
    paths.root.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "registry-v1.db", paths.database)
    return paths


def install_examples(
    paths: DataPaths, examples: dict[str, Path], *, disable_word_count: bool = False
) -> DataPaths:
    """Install the hello-world and word-count examples (built by ``build_all``, by name) in
    ``paths`` and change hello-world's greeting; ``disable_word_count`` also disables word-count.
    """
    with open_data_folder(paths) as registry:
        installer = Installer(registry, APP_VERSION)
        for name in ("hello-world", "word-count"):
            assert installer.install(examples[name]).status == "COMPLETED"
        registry.set_config("example.hello-world", {"greeting": "Hi"})
        if disable_word_count:
            registry.set_enabled("example.word-count", False)
    return paths


def state_of(paths: DataPaths) -> tuple[object, ...]:
    """What a person would notice: the extensions and their enabled states, hello-world's
    settings, and how long the history is."""
    with open_data_folder(paths) as registry:
        return (
            [(e.id, e.version, e.enabled) for e in registry.list_extensions()],
            registry.get_config("example.hello-world"),
            registry.count_operations(),
        )


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """The GUI tests run on the real X11 platform (xcb) on the virtual screen pytest-xvfb
    started: real focus, real key handling, real window-manager-free X. Without that screen
    (``--no-xvfb``, or no Xvfb installed) they fall back to the offscreen platform."""
    import pytest_xvfb

    has_virtual_screen = pytest_xvfb.xvfb_instance is not None
    os.environ["QT_QPA_PLATFORM"] = "xcb" if has_virtual_screen else "offscreen"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_USER_DIRS, ignore_errors=True)
