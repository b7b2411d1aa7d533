"""What a launch imports, and when: the window's launch reads the command names without the
commands, and starts opening the registry before Qt is loaded."""

from __future__ import annotations

import subprocess
import sys

from cli.commands import COMMANDS
from cli.names import COMMAND_NAMES
from tests.conftest import REPO_ROOT


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` in the checkout."""
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_the_command_names_are_the_commands_table_in_its_order() -> None:
    assert tuple(COMMANDS) == COMMAND_NAMES


def test_the_entry_point_does_not_import_the_commands_or_qt() -> None:
    modules = imported_after("import main")
    assert "cli.commands" not in modules
    assert not {name for name in modules if name.startswith(("PySide6", "gui"))}


def test_the_launch_before_qt_imports_no_qt() -> None:
    """``gui.launch`` starts the registry's thread; Qt is loaded only after it has started."""
    modules = imported_after("import gui.launch, gui.handoff")
    assert not {name for name in modules if name.startswith(("PySide6", "shiboken6"))}
    assert "registry.store" not in modules  # imported by the launch itself, just before Qt


def test_the_window_needs_no_network_module_until_it_listens() -> None:
    modules = imported_after("import gui.app")
    assert "PySide6.QtNetwork" not in modules
    assert "cli.commands" not in modules


def test_the_version_is_known_without_reading_package_metadata() -> None:
    modules = imported_after("import main")
    assert not {"importlib.metadata", "tomllib", "email"} & modules


def test_the_window_imports_its_dialogs_and_tools_only_when_used() -> None:
    """The confirmation and batch dialogs (and html, which they use) come with the first one
    shown or the warm-up after the first paint; subprocess with the menu's cache refresh."""
    modules = imported_after("import gui.app")
    assert not {"gui.batch_dialog", "gui.confirm_dialog", "html", "subprocess"} & modules
