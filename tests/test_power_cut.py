"""Power cuts at random moments of installs, reinstalls, upgrades, downgrades, settings saves and
uninstalls, on a real ext4 filesystem (see ``tests/power_cut.py``): nothing the app reported done
may be lost, and no extension may be registered with files that are not its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.power_cut import can_mount, run_cuts

CUTS = 32

cannot_mount = can_mount()
pytestmark = pytest.mark.skipif(cannot_mount is not None, reason=cannot_mount or "")


def test_nothing_reported_done_is_lost_at_a_power_cut(tmp_path: Path) -> None:
    results = run_cuts(tmp_path, CUTS)
    lost = {
        f"seed {result.seed}, cut at {result.delay:.2f} s": result.problems
        for result in results
        if result.problems
    }
    assert lost == {}
    # The cuts landed while work was being acknowledged, most after a first operation.
    assert sum(len(result.acknowledged) for result in results) >= CUTS
    assert sum(1 for result in results if result.acknowledged) >= CUTS // 2
