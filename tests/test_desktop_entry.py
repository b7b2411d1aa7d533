"""The app installs its own launcher: ``extension-manager desktop-entry install|remove`` and
Help → Add to applications menu, run as a person would in a temporary HOME and checked with the
desktop's own tools (desktop-file-validate, xdg-mime, gio)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

import assets
from cli import desktop_entry
from gui import messages
from gui.app import ensure_application
from gui.main_window import MainWindow
from registry.store import Registry
from tests.conftest import REPO_ROOT, run_cli

ENTRY_NAME = f"{assets.APP_ID}.desktop"
ARCHIVER = "org.example.Archiver.desktop"
# Variables that make xdg-mime ask a particular desktop (GNOME, KDE…) instead of reading the
# files; the tests read the files of their temporary HOME.
DESKTOP_SESSION_VARIABLES = ("XDG_CURRENT_DESKTOP", "DESKTOP_SESSION", "KDE_FULL_SESSION")


class Home:
    """A temporary HOME with its data home inside, and a "system" data folder beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.data_home = self.home / ".local" / "share"
        self.config_home = self.home / ".config"
        self.system = root / "system"
        # A HOME as a desktop session has it: the data home exists (and outlives a remove).
        self.data_home.mkdir(parents=True)
        self.env = {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_DATA_DIRS": f"{self.system}:/usr/local/share:/usr/share",
            # The app's log goes beside the HOME, so the HOME holds only what the command wrote.
            "XDG_STATE_HOME": str(root / "state"),
        }

    @property
    def entry(self) -> Path:
        return self.data_home / "applications" / ENTRY_NAME

    def icons(self) -> list[Path]:
        hicolor = self.data_home / "icons" / "hicolor"
        pngs = [
            hicolor / f"{size}x{size}" / "apps" / f"{assets.APP_ID}.png"
            for size in assets.ICON_SIZES
        ]
        return [*pngs, hicolor / "scalable" / "apps" / f"{assets.APP_ID}.svg"]

    def desktop_entry(self, action: str) -> subprocess.CompletedProcess[str]:
        """``python main.py desktop-entry ACTION`` from this checkout."""
        return run_cli(self.root / "data", "desktop-entry", action, env=self.env)

    def tool(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A desktop tool reading this HOME's files and nothing of the session running the tests."""
        env = {k: v for k, v in os.environ.items() if k not in DESKTOP_SESSION_VARIABLES}
        return subprocess.run(
            command,
            env={**env, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def tree(self) -> set[str]:
        """Every file and folder under the HOME."""
        return {str(path.relative_to(self.home)) for path in self.home.rglob("*")}

    def chosen_default(self) -> None:
        """An archiver the person made the default for zips, as a desktop does it."""
        applications = self.system / "applications"
        applications.mkdir(parents=True)
        (applications / ARCHIVER).write_text(
            "[Desktop Entry]\nType=Application\nName=Archiver\nExec=true %F\n"
            "MimeType=application/zip;\n"
        )
        self.config_home.mkdir(parents=True)
        (self.config_home / "mimeapps.list").write_text(
            f"[Default Applications]\napplication/zip={ARCHIVER}\n"
        )


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path)


def entries(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def exec_words(path: Path) -> list[str]:
    """The Exec line as a launcher splits it (no quoting in these tests' paths but the spec's)."""
    return shlex.split(entries(path)["Exec"].replace("\\\\", "\\"))


def need(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        pytest.skip(f"{program} is not installed (.ci/system-packages installs it)")
    return found


def validate(path: Path) -> None:
    validator = need("desktop-file-validate")
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def default_for_zips(home: Home) -> str:
    result = home.tool(need("xdg-mime"), "query", "default", "application/zip")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# -- the command line ------------------------------------------------------------------------


def test_install_writes_a_valid_entry_that_starts_this_checkout_and_its_icons(
    home: Home,
) -> None:
    result = home.desktop_entry("install")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Wrote {home.entry}" in result.stdout
    validate(home.entry)
    # Run as `python main.py`: the interpreter that has the app's packages, then main.py.
    assert exec_words(home.entry) == [sys.executable, str(REPO_ROOT / "main.py"), "%F"]
    program = Path(exec_words(home.entry)[0])
    assert program.is_absolute() and os.access(program, os.X_OK)
    entry = entries(home.entry)
    assert entry["TryExec"] == sys.executable
    assert entry["Icon"] == assets.APP_ID
    assert "application/zip" in entry["MimeType"].split(";")
    pngs, svg = home.icons()[:-1], home.icons()[-1]
    for size, png in zip(assets.ICON_SIZES, pngs, strict=True):
        assert png.read_bytes() == assets.icon_png(size).read_bytes()
    assert svg.read_bytes() == assets.asset("extension-manager.svg").read_bytes()


def test_from_an_installed_entry_point_the_entry_starts_that_script(home: Home) -> None:
    script = Path(sys.executable).parent / "extension-manager"
    if not script.is_file():
        pytest.skip(f"the entry point is not installed in this environment ({script})")
    result = subprocess.run(
        [str(script), "--data-dir", str(home.root / "data"), "desktop-entry", "install"],
        env={**os.environ, **home.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr
    validate(home.entry)
    assert exec_words(home.entry) == [str(script), "%F"]


def test_installing_twice_is_harmless_and_remove_leaves_nothing_behind(home: Home) -> None:
    before = home.tree()

    assert home.desktop_entry("install").returncode == 0
    again = home.desktop_entry("install")

    assert again.returncode == 0, again.stderr
    assert f"Already in place: {home.entry}" in again.stdout
    # Exactly the entry, the icons and the caches they go in: no mimeapps.list, no default.
    written = {home.entry, *home.icons()}
    if shutil.which("update-desktop-database"):
        written.add(home.entry.parent / "mimeinfo.cache")
    if shutil.which("gtk-update-icon-cache"):
        written.add(home.data_home / "icons" / "hicolor" / "icon-theme.cache")
    files = {path for path in home.home.rglob("*") if path.is_file()}
    assert files == written
    validate(home.entry)

    removed = home.desktop_entry("remove")

    assert removed.returncode == 0, removed.stderr
    assert f"Removed {home.entry}" in removed.stdout
    assert f"Removed {len(home.icons())} icons under " in removed.stdout
    assert home.tree() == before
    nothing = home.desktop_entry("remove")
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout.startswith("Nothing to remove")


def test_remove_keeps_other_applications_and_their_caches(home: Home) -> None:
    other = home.data_home / "applications" / "org.example.Other.desktop"
    other.parent.mkdir(parents=True)
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=true %F\n")
    assert home.desktop_entry("install").returncode == 0

    result = home.desktop_entry("remove")

    assert result.returncode == 0, result.stderr
    assert other.is_file()
    assert not home.entry.exists()
    cache = other.parent / "mimeinfo.cache"
    if shutil.which("update-desktop-database"):
        assert "Refreshed the applications cache" in result.stdout
        assert ENTRY_NAME not in cache.read_text()


def test_a_default_the_person_chose_for_zips_stays_the_default(home: Home) -> None:
    home.chosen_default()
    mimeapps = (home.config_home / "mimeapps.list").read_bytes()
    before = default_for_zips(home)
    assert before == ARCHIVER

    assert home.desktop_entry("install").returncode == 0

    assert default_for_zips(home) == before
    assert (home.config_home / "mimeapps.list").read_bytes() == mimeapps
    if shutil.which("gio"):
        # GIO (GNOME's file manager, most toolkits' "Open with") agrees, and lists the app.
        mime = home.tool("gio", "mime", "application/zip")
        assert mime.returncode == 0, mime.stderr
        lines = mime.stdout.splitlines()
        assert lines[0].endswith(f": {ARCHIVER}"), mime.stdout
        assert f"\t{ENTRY_NAME}" in lines, mime.stdout

    assert home.desktop_entry("remove").returncode == 0
    assert default_for_zips(home) == before


def test_the_types_in_the_entry_are_what_the_desktop_calls_a_zip(
    home: Home, tmp_path: Path
) -> None:
    archive = tmp_path / "some.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("manifest.json", "{}")
    assert home.desktop_entry("install").returncode == 0

    result = home.tool(need("xdg-mime"), "query", "filetype", str(archive))

    if result.returncode != 0 or not result.stdout.strip():
        pytest.skip(f"xdg-mime cannot tell file types here: {result.stderr.strip()}")
    assert result.stdout.strip() in entries(home.entry)["MimeType"].split(";")


def test_a_home_that_cannot_be_written_is_one_sentence_and_exit_1(home: Home) -> None:
    not_a_folder = home.root / "not-a-folder"
    not_a_folder.write_text("")
    env = {**home.env, "HOME": str(not_a_folder), "XDG_DATA_HOME": ""}

    result = run_cli(home.root / "data", "desktop-entry", "install", env=env)

    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"extension-manager: Could not change {not_a_folder}/.local/share/")
    assert "can be written, then try again." in line


# -- the Exec line ---------------------------------------------------------------------------


def test_paths_with_spaces_and_quotes_reach_the_program_intact(tmp_path: Path) -> None:
    """Through GLib's own launcher: the quoting is the spec's, not merely plausible."""
    gio = need("gio")
    folder = tmp_path / 'my apps "new" $HOME 100% ;&(`'
    folder.mkdir()
    fifo = tmp_path / "argv"
    os.mkfifo(fifo)
    script = folder / "extension-manager"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {shlex.quote(str(fifo))}\n')
    entry = tmp_path / ENTRY_NAME
    entry.write_text(desktop_entry.entry_text(["/bin/sh", str(script)]))
    validate(entry)
    zips = [str(tmp_path / "a b.zip"), str(tmp_path / "c$d's.zip")]

    # The reader waits on the pipe until the launched program has written its arguments.
    with subprocess.Popen(
        ["timeout", "30", "cat", str(fifo)], stdout=subprocess.PIPE, text=True
    ) as reader:
        launched = subprocess.run(
            [gio, "launch", str(entry), *zips],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
        received, _ = reader.communicate(timeout=60)
    assert launched.returncode == 0
    assert received.splitlines() == [str(script), *zips]


@pytest.mark.parametrize(
    ("argv0", "executable_script", "expected"),
    [
        # An entry point script (a virtualenv's bin/, pipx's ~/.local/bin): itself.
        ("bin/extension-manager", True, ["{root}/bin/extension-manager"]),
        # `python main.py` from a checkout: the interpreter, then the file.
        ("main.py", False, ["{python}", "{root}/main.py"]),
        # An executable main.py: still through the interpreter running it (its shebang may
        # name a Python without the app's packages).
        ("main.py", True, ["{python}", "{root}/main.py"]),
    ],
)
def test_the_entry_starts_the_app_the_way_it_is_running(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv0: str,
    executable_script: bool,
    expected: list[str],
) -> None:
    script = tmp_path / argv0
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755 if executable_script else 0o644)
    monkeypatch.chdir(tmp_path)
    python = "/opt/python/bin/python3"

    command = desktop_entry.launch_command(argv0, python, argv0)

    assert command == [word.format(root=tmp_path, python=python) for word in expected]


# -- the window ------------------------------------------------------------------------------


@pytest.fixture
def window(qtbot: QtBot, qapp: QApplication, registry: Registry) -> Iterator[MainWindow]:
    ensure_application()
    main_window = MainWindow(registry)
    qtbot.addWidget(main_window)
    main_window.show()
    yield main_window
    main_window.close()
    qtbot.waitUntil(lambda: main_window.closed, timeout=30_000)
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_help_add_to_applications_menu_writes_the_entry(
    window: MainWindow, qtbot: QtBot, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(home.data_home))
    # As if started with `python main.py` (under pytest, argv[0] is pytest's script).
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "main.py")])
    shown: list[tuple[str, str]] = []

    def show_info(parent: QWidget | None, title: str, text: str) -> None:
        shown.append((title, text))

    monkeypatch.setattr(messages, "show_info", show_info)
    menu = window.help_menu
    (action,) = [
        a for a in menu.actions() if a.text().replace("&", "") == "Add to applications menu"
    ]

    menu.popup(window.mapToGlobal(window.rect().center()))
    qtbot.waitUntil(menu.isVisible)
    QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())

    qtbot.waitUntil(lambda: bool(shown), timeout=30_000)
    ((title, text),) = shown
    assert title == "Added to the applications menu"
    assert str(home.entry) in text
    validate(home.entry)
    assert exec_words(home.entry) == [sys.executable, str(REPO_ROOT / "main.py"), "%F"]
    assert all(icon.is_file() for icon in home.icons())
