"""The headless command line: terminal progress and confirmation, history, settings, flags."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from examples.build_examples import build_all
from tests.conftest import REPO_ROOT, run_app, run_cli


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.stem: path for path in build_all(tmp_path_factory.mktemp("examples"))}


def run_on_terminal(data: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, answering its question; return exit code and screen."""
    controller, terminal = pty.openpty()
    # 24 rows of 80 columns, as a terminal window has (a new pseudo-terminal has no size).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
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
    # The bar is redrawn in place; its last frame shows the operation's row when it ended.
    frames = [frame.strip() for frame in screen.split("\r")]
    assert any(f.startswith("Word Count") and "100%" in f and f.endswith("Done") for f in frames)
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


# -- every command, run the way a script runs it ------------------------------------------------

HELLO = "example.hello-world"
WORD_COUNT = "example.word-count"
# The README's commands (``history`` is another name for ``installs``): a usage error names them.
COMMAND_NAMES = (
    "install",
    "uninstall",
    "list",
    "enable",
    "disable",
    "config",
    "installs",
    "rescue",
    "doctor",
    "status",
)


def succeeds(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(data, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def as_json(data: Path, *args: str) -> Any:
    return json.loads(succeeds(data, *args, "--json").stdout)


def enabled_states(data: Path) -> dict[str, bool]:
    return {e["id"]: e["enabled"] for e in as_json(data, "list")}


def test_disable_and_enable_change_only_the_named_extension(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    succeeds(tmp_path, "install", "--yes", str(examples["hello-world"]))
    succeeds(tmp_path, "install", "--yes", str(examples["word-count"]))
    assert enabled_states(tmp_path) == {HELLO: True, WORD_COUNT: True}

    succeeds(tmp_path, "disable", HELLO)
    assert enabled_states(tmp_path) == {HELLO: False, WORD_COUNT: True}
    succeeds(tmp_path, "enable", HELLO)
    assert enabled_states(tmp_path) == {HELLO: True, WORD_COUNT: True}


def test_config_reset_restores_every_default(tmp_path: Path, examples: dict[str, Path]) -> None:
    manifest = json.loads((REPO_ROOT / "examples" / "word-count" / "manifest.json").read_text())
    defaults = manifest["config"]
    succeeds(tmp_path, "install", "--yes", str(examples["word-count"]))
    assert as_json(tmp_path, "config", WORD_COUNT) == defaults

    changed = as_json(tmp_path, "config", WORD_COUNT, "max_file_mb=25", "encoding=latin-1")
    assert changed == {**defaults, "max_file_mb": 25, "encoding": "latin-1"}
    assert as_json(tmp_path, "config", WORD_COUNT, "--reset") == defaults
    assert as_json(tmp_path, "config", WORD_COUNT) == defaults


@pytest.mark.parametrize("limit", [1, 3])
def test_installs_limit_lists_exactly_that_many_newest_first(
    tmp_path: Path, examples: dict[str, Path], limit: int
) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    for archive in ("hello-world", "word-count", "hello-world-1.1"):
        succeeds(tmp_path, "install", "--yes", str(examples[archive]))
    assert run_cli(tmp_path, "install", "--yes", str(broken)).returncode == 1

    everything = as_json(tmp_path, "installs")
    ids = [record["install_id"] for record in everything]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)
    assert [(r["extension_id"], r["status"]) for r in everything] == [
        (None, "FAILED"),
        (HELLO, "COMPLETED"),
        (WORD_COUNT, "COMPLETED"),
        (HELLO, "COMPLETED"),
    ]
    assert as_json(tmp_path, "installs", "--limit", str(limit)) == everything[:limit]


def test_installing_the_same_version_again_needs_reinstall(
    tmp_path: Path, examples: dict[str, Path]
) -> None:
    archive = str(examples["hello-world"])
    succeeds(tmp_path, "install", "--yes", archive)
    installed = as_json(tmp_path, "list")

    refused = run_cli(tmp_path, "install", "--yes", archive)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    [line] = refused.stderr.splitlines()
    assert line.startswith("extension-manager: ")
    assert "already installed" in line and "--reinstall" in line
    assert as_json(tmp_path, "list") == installed

    reinstalled = succeeds(tmp_path, "install", "--yes", "--reinstall", archive)
    assert f"Reinstalled {HELLO} 1.0.0" in reinstalled.stdout
    [latest] = as_json(tmp_path, "installs", "--limit", "1")
    assert (latest["kind"], latest["status"]) == ("REINSTALL", "COMPLETED")
    assert [(e["id"], e["version"]) for e in as_json(tmp_path, "list")] == [(HELLO, "1.0.0")]


def test_version_is_the_installed_distribution_version() -> None:
    result = run_app("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"extension-manager {metadata.version('extension-manager')}\n"


def test_uninstall_off_a_terminal_needs_yes(tmp_path: Path, examples: dict[str, Path]) -> None:
    succeeds(tmp_path, "install", "--yes", str(examples["hello-world"]))
    installed, history = as_json(tmp_path, "list"), as_json(tmp_path, "installs")
    folder = tmp_path / "extensions" / HELLO

    refused = run_cli(tmp_path, "uninstall", HELLO)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert as_json(tmp_path, "list") == installed
    assert as_json(tmp_path, "installs") == history
    assert folder.is_dir()

    removed = succeeds(tmp_path, "uninstall", "--yes", HELLO)
    assert f"Uninstalled {HELLO}" in removed.stdout
    assert as_json(tmp_path, "list") == []
    assert not folder.exists()


def test_an_unknown_command_is_a_usage_error_not_a_window(tmp_path: Path) -> None:
    assert not (REPO_ROOT / "rolback").exists()
    env = {
        "EXTENSION_MANAGER_DATA_DIR": str(tmp_path / "data"),
        # Every module the process imports, on stderr: a window needs Qt.
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    try:
        result = run_app("rolback", "x", env=env, timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError("'extension-manager rolback x' still ran after 10 s") from None
    lines = result.stderr.splitlines()
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")
    }
    message = "\n".join(line for line in lines if not line.startswith("import time:"))
    assert result.returncode == 2, (result.stdout, message)
    assert result.stdout == ""
    assert "rolback" in message
    missing = [name for name in COMMAND_NAMES if not re.search(rf"\b{name}\b", message)]
    assert missing == [], message
    assert "Traceback" not in message
    window_code = sorted(n for n in imported if n.split(".")[0] in ("PySide6", "shiboken6", "gui"))
    assert window_code == []
