"""Render the window offscreen into docs/screenshots/ (for the README and for reviewing looks).

Runs against a throwaway data folder and throwaway settings, so it never touches a real
registry. Usage: ``python tools/screenshots.py [OUTDIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = (1040, 660)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir", nargs="?", default=str(REPO_ROOT / "docs" / "screenshots"))
    parser.add_argument(
        "--dark", action="store_true", help="in a dark palette (files end in -dark.png)"
    )
    args = parser.parse_args(argv)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="extension-manager-screens-"))
    # Before Qt is imported: no display needed, and window geometry is saved in the scratch dir.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")
    sys.path.insert(0, str(REPO_ROOT))

    from PySide6.QtWidgets import QWidget

    from examples.build_examples import build_all
    from gui.app import ensure_application
    from gui.confirm_dialog import ConfirmDialog
    from gui.install_panel import Operation, OperationRow
    from gui.main_window import MainWindow
    from registry import open_registry
    from registry.installer import Installer, InstallPlan
    from registry.vocabulary import OperationKind

    app = ensure_application()
    suffix = ""
    if args.dark:
        from gui.colors import dark_palette, with_readable_placeholders

        app.setStyle("Fusion")
        app.setPalette(with_readable_placeholders(dark_palette()))
        suffix = "-dark"
    registry = open_registry(scratch / "data")
    installer = Installer(registry)
    archives = {path.stem: path for path in build_all(scratch / "zips")}

    def settle() -> None:
        for _ in range(5):
            app.processEvents()

    def save(widget: QWidget, name: str) -> None:
        settle()
        target = outdir / f"{name}{suffix}.png"
        widget.grab().save(str(target))
        print(target)

    window = MainWindow(registry)
    window.resize(*SIZE)
    window.show()
    save(window, "01-empty")

    # The confirmation, as the word-count example asks it (it needs a permission).
    plans: list[InstallPlan] = []

    def capture(plan: InstallPlan) -> bool:
        plans.append(plan)
        return True

    installer.install(archives["word-count"], confirm=capture)
    installer.install(archives["hello-world"], confirm=lambda plan: True)
    window.refresh()
    window.select_extension("example.word-count")
    save(window, "02-extensions")

    dialog = ConfirmDialog(plans[0], window)
    dialog.show()
    save(dialog, "05-confirmation")
    dialog.close()

    # An install in flight and a failure. The still image drives the panel with records
    # shaped like the registry's, so the bar stops mid-way.
    panel = window.install_panel
    garbage = scratch / "zips" / "holiday-photos.zip"
    garbage.write_bytes(b"PK\x03\x04 this archive was cut short")
    failed = installer.install(garbage)
    running = dataclasses.replace(
        failed,
        install_id=failed.install_id + 1,
        archive_path=str(archives["hello-world-1.1"]),
        status="INSTALLING",
        error=None,
        ended_at=None,
        extension_id="example.hello-world",
        kind="UPGRADE",
        from_version="1.0.0",
        to_version="1.1.0",
        progress=57,
        current_step="Extracting files",
    )
    in_flight = Operation(OperationRow("Hello World", cancellable=True), OperationKind.INSTALL)
    panel._add(in_flight)
    in_flight.row.show_record(running)
    panel._fit_height()
    save(window, "03-installing")

    broken = Operation(OperationRow(garbage.name, cancellable=True), OperationKind.INSTALL)
    panel._add(broken)
    broken.row.show_record(failed)
    panel._fit_height()
    save(window, "04-failure")

    window.show_activity()
    save(window, "06-activity")

    # The rows above were stills with no worker behind them: nothing to stop when closing.
    for operation in panel.operations:
        operation.final = True
    window.close()
    registry.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
