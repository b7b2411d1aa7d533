"""Commands named in messages are ones the reader can run, however the app was started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import invocation
from tests.conftest import REPO_ROOT

MESSAGE = "Run 'extension-manager doctor --repair' to fix it, or 'extension-manager rescue'."


def prefix_when_started_as(
    monkeypatch: pytest.MonkeyPatch, argv0: str, cwd: Path, path: str = ""
) -> str:
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", path)
    invocation.command_prefix.cache_clear()
    try:
        return invocation.runnable(MESSAGE)
    finally:
        invocation.command_prefix.cache_clear()


def test_a_command_on_path_is_named_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "bin" / "extension-manager"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    shown = prefix_when_started_as(monkeypatch, str(script), tmp_path, path=str(script.parent))
    assert shown == MESSAGE


def test_a_venv_that_is_not_activated_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "venv" / "bin" / "extension-manager-cli"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    shown = prefix_when_started_as(monkeypatch, str(script), tmp_path)
    assert "'venv/bin/extension-manager doctor --repair'" in shown
    assert "'venv/bin/extension-manager rescue'" in shown


def test_a_checkout_names_the_commands_make_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / "main.py").write_text("")
    (checkout / ".venv" / "bin" / "extension-manager").write_text("")
    shown = prefix_when_started_as(monkeypatch, str(checkout / "main.py"), checkout)
    assert "'.venv/bin/extension-manager doctor --repair'" in shown


def test_the_package_run_with_python_m_names_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = tmp_path / "extension_manager" / "__main__.py"
    shown = prefix_when_started_as(monkeypatch, str(entry), tmp_path)
    assert f"'{sys.executable} -m extension_manager rescue'" in shown


def test_the_command_line_of_a_checkout_names_a_command_that_runs(tmp_path: Path) -> None:
    """End to end: the advice in a real message, run as printed, works."""
    data = tmp_path / "data"

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            cwd=REPO_ROOT,
            env={**os.environ, "PATH": os.defpath},
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    assert run(sys.executable, "main.py", "--data-dir", str(data), "status").returncode == 0
    (data / "extensions" / "stray").mkdir()  # a folder nobody registered: doctor advises
    doctor = run(sys.executable, "main.py", "--data-dir", str(data), "doctor")
    advice = doctor.stdout + doctor.stderr
    assert "'.venv/bin/extension-manager doctor --repair'" in advice, advice
    repaired = run(".venv/bin/extension-manager", "--data-dir", str(data), "doctor", "--repair")
    assert repaired.returncode == 0, repaired.stderr
