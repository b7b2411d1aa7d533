"""The app as a person runs it: its own process, a real window on the virtual screen, answered
with real key presses sent through the X server (xdotool), not by calling into the app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.build_examples import build_all
from tests.conftest import REPO_ROOT, run_cli

WINDOW_SECONDS = 30

pytestmark = pytest.mark.skipif(
    os.environ.get("QT_QPA_PLATFORM") != "xcb" or shutil.which("xdotool") is None,
    reason="needs the virtual X screen of the test command (pytest-xvfb) and xdotool",
)


def xdotool(*args: str) -> str:
    result = subprocess.run(
        ["xdotool", *args], capture_output=True, text=True, timeout=WINDOW_SECONDS, check=True
    )
    return result.stdout


def window_titled(title: str) -> str:
    """The id of the visible window with exactly this title, once it is there."""
    return xdotool("search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[0]


def keys(window: str, *names: str) -> None:
    """Give ``window`` the keyboard focus, then press ``names`` as a person would."""
    xdotool("windowfocus", "--sync", window)
    xdotool("key", "--delay", "50", *names)


@pytest.fixture
def app_process(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    started: list[subprocess.Popen[str]] = []
    yield tmp_path / "data", started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WINDOW_SECONDS)


def launch(data: Path, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """Start the app; what it prints goes to ``output.txt`` beside the data folder."""
    with (data.parent / "output.txt").open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(data)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    started.append(process)
    return process


def output_of(data: Path) -> str:
    return (data.parent / "output.txt").read_text()


def lose_the_registry(data: Path, tmp_path: Path, example: str) -> None:
    """An installed extension whose registry file was then deleted."""
    zips = {path.stem: path for path in build_all(tmp_path / "zips")}
    assert run_cli(data, "install", "--yes", str(zips[example])).returncode == 0
    for sidecar in data.glob("registry.db*"):
        sidecar.unlink()


def test_the_rescue_offered_at_launch_rescues_and_opens_the_window(
    tmp_path: Path, app_process: tuple[Path, list[subprocess.Popen[str]]]
) -> None:
    data, started = app_process
    lose_the_registry(data, tmp_path, "hello-world")
    process = launch(data, started)
    question = window_titled("Extension Manager needs to rescue its registry")
    # Cancel is the default and has the focus; Shift+Tab reaches "Re-register", Space presses.
    keys(question, "shift+Tab", "space")
    keys(window_titled("Registry rescued"), "Return")
    main_window = window_titled("Extension Manager")
    assert process.poll() is None, output_of(data)
    listed = run_cli(data, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [entry["id"] for entry in json.loads(listed.stdout)] == ["example.hello-world"]
    keys(main_window, "ctrl+q")
    assert process.wait(timeout=WINDOW_SECONDS) == 0
    assert not list(data.glob("registry.db.damaged-*"))  # it was missing, not damaged


def test_cancelling_the_rescue_quits_and_changes_nothing(
    tmp_path: Path, app_process: tuple[Path, list[subprocess.Popen[str]]]
) -> None:
    data, started = app_process
    lose_the_registry(data, tmp_path, "word-count")
    process = launch(data, started)
    keys(window_titled("Extension Manager needs to rescue its registry"), "Return")
    assert process.wait(timeout=WINDOW_SECONDS) == 1
    assert not (data / "registry.db").exists()
    assert (data / "extensions" / "example.word-count" / "manifest.json").is_file()


def test_at_twice_the_scale_the_first_window_fits_the_screen(
    app_process: tuple[Path, list[subprocess.Popen[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, started = app_process
    monkeypatch.setenv("QT_SCALE_FACTOR", "2")
    process = launch(data, started)
    window = window_titled("Extension Manager")
    screen_width, screen_height = map(int, xdotool("getdisplaygeometry").split())
    geometry = dict(
        line.strip().split(": ", 1)
        for line in xdotool("getwindowgeometry", window).splitlines()[1:]
    )
    width, height = map(int, geometry["Geometry"].split("x"))
    assert width <= screen_width and height <= screen_height, (geometry, output_of(data))
    keys(window, "ctrl+q")
    assert process.wait(timeout=WINDOW_SECONDS) == 0
