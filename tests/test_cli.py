"""The headless command line: terminal progress and confirmation, history, settings, flags."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from examples.build_examples import build_all
from tests.conftest import REPO_ROOT, run_cli


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


def run_on_terminal(data: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, answering its question; return exit code and screen."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "main.py"), "--data-dir", str(data), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    ) as child:
        os.close(terminal)
        screen = b""
        answered = False
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closes when the child exits
                break
            if not chunk:
                break
            screen += chunk
            if b"[y/N]" in screen and not answered:
                os.write(controller, answer)
                answered = True
        child.wait(timeout=60)
    os.close(controller)
    return child.returncode, screen.decode()


def test_terminal_install_asks_then_draws_the_registry_progress(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    code, screen = run_on_terminal(tmp_path, b"y\n", "install", str(examples["word-count"]))
    assert code == 0, screen
    assert "It asks permission to:" in screen and "Read files on your computer" in screen
    assert "Install? [y/N]" in screen
    assert "[##############################] 100% Done" in screen
    assert "Installed example.word-count 1.2.0" in screen


def test_terminal_install_declined_changes_nothing(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    code, screen = run_on_terminal(tmp_path, b"n\n", "install", str(examples["word-count"]))
    assert code == 1
    assert "Cancelled: nothing was changed." in screen
    assert json.loads(run_cli(tmp_path, "list", "--json").stdout) == []


def test_installs_lists_the_history_with_its_fields(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    assert run_cli(tmp_path, "install", "--yes", str(examples["hello-world"])).returncode == 0
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"nope")
    assert run_cli(tmp_path, "install", "--yes", str(broken)).returncode == 1
    result = run_cli(tmp_path, "installs", "--json")
    assert result.returncode == 0
    newest, oldest = json.loads(result.stdout)
    for field in (
        "install_id",
        "extension_id",
        "status",
        "progress",
        "current_step",
        "error",
        "started_at",
        "ended_at",
    ):
        assert field in newest
    assert (newest["status"], newest["extension_id"]) == ("FAILED", None)
    assert "is not a zip archive" in newest["error"]
    assert (oldest["status"], oldest["progress"]) == ("COMPLETED", 100)
    assert run_cli(tmp_path, "history").stdout == run_cli(tmp_path, "installs").stdout


def test_config_shows_one_key_changes_values_and_refuses_bad_ones(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    assert run_cli(tmp_path, "install", "--yes", str(examples["word-count"])).returncode == 0
    shown = run_cli(tmp_path, "config", "example.word-count", "max_file_mb", "--json")
    assert json.loads(shown.stdout) == {"max_file_mb": 10}
    changed = run_cli(tmp_path, "config", "example.word-count", "max_file_mb=25", "--json")
    assert json.loads(changed.stdout)["max_file_mb"] == 25
    refused = run_cli(tmp_path, "config", "example.word-count", "max_file_mb=lots")
    assert refused.returncode == 1 and "must be a whole number" in refused.stderr
    unknown = run_cli(tmp_path, "config", "example.word-count", "colour")
    assert unknown.returncode == 1 and "'colour' is not a setting" in unknown.stderr


def test_downgrade_needs_allow_downgrade(tmp_path: Path, examples: dict[str, Path]) -> None:
    assert run_cli(tmp_path, "install", "-y", str(examples["hello-world-1.1"])).returncode == 0
    refused = run_cli(tmp_path, "install", "-y", str(examples["hello-world"]))
    assert refused.returncode == 1 and "Downgrade" in refused.stderr
    allowed = run_cli(tmp_path, "install", "-y", "--allow-downgrade", str(examples["hello-world"]))
    assert allowed.returncode == 0 and "Downgraded example.hello-world 1.0.0" in allowed.stdout
