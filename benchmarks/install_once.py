"""Time one extraction in a fresh process: ``zipfile`` (the floor) or a full install.

    python benchmarks/install_once.py zipfile|zipfile-sync|install ZIP DIR  ->  prints seconds

``zipfile-sync`` extracts and then waits for the data to reach the disk (``sync``): the floor
for an install that, like ours, survives a power cut once it reports done.

For ``install`` the registry is opened first and not timed: a person installs into an app that
is already running. The first install of a session still pays for importing the manifest
validator, and that is timed, as are validation, hashing, registry writes and progress.
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def main() -> int:
    mode, archive, target = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if mode in ("zipfile", "zipfile-sync"):
        started = time.perf_counter()
        with zipfile.ZipFile(archive) as source:
            source.extractall(target)
        if mode == "zipfile-sync":
            os.sync()
        print(time.perf_counter() - started)
        return 0
    from registry import open_registry
    from registry.installer import Installer

    registry = open_registry(target)
    installer = Installer(registry)
    started = time.perf_counter()
    record = installer.install(archive)
    elapsed = time.perf_counter() - started
    registry.close()
    if record.status != "COMPLETED":
        print(record.error, file=sys.stderr)
        return 1
    print(elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
