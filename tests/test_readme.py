"""The README's Python example runs as written, against a fresh data folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from examples.build_examples import build_all
from tests.conftest import REPO_ROOT


def test_the_host_application_example_works(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    # The first example is the complete one; later ones continue it.
    example = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    zips = {path.name: path for path in build_all(tmp_path / "zips")}
    shutil.copy(zips["word-count.zip"], tmp_path / "word-count.zip")
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "New install of version 1.2.0" in result.stdout
    assert result.stdout.splitlines()[-1].split()[1:4] == ["COMPLETED", "Install", "1.2.0"]
    data = tmp_path / "home" / "my-app" / "extensions"
    assert (data / "extensions" / "example.word-count" / "manifest.json").is_file()
