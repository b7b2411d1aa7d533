"""Putting the app in this user's applications menu, and taking it out again.

``install`` writes, under ``$XDG_DATA_HOME`` (else ``~/.local/share``), the desktop entry in
``applications/`` and the icons in ``icons/hicolor/``, then refreshes the menu's and the icon
theme's caches with ``update-desktop-database`` and ``gtk-update-icon-cache`` when those programs
exist (desktops that watch the folders need neither). The entry starts the app the way it is
running now, by absolute paths, so it works from a virtualenv or pipx without ``PATH``.

The entry lists zips among the types the app opens, which makes it an "Open with" choice. It
never writes ``mimeapps.list``, the only place a default handler is chosen, so a default the
person has for zips stays theirs. (With no default chosen at all, desktops fall back to any
application that opens the type, this one included; that is the desktop's choice, not ours.)

``remove`` deletes exactly the files ``install`` writes. Both return an :class:`Outcome` rather
than raising: a folder that cannot be written is an expected failure. No Qt here: the command
line and the window's Help menu both call this.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import assets

DESKTOP_FILE_NAME = f"{assets.APP_ID}.desktop"
SVG_NAME = "extension-manager.svg"
# Desktop entries are a freedesktop.org convention: Linux and the BSDs.
SUPPORTED = sys.platform not in ("win32", "darwin", "cygwin")
# Characters the Desktop Entry spec reserves in an Exec argument: such an argument is quoted.
_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
_CACHE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Outcome:
    """What was done, one line per thing, and why it stopped if it did (one plain sentence)."""

    done: tuple[str, ...]
    error: str | None = None


def data_home(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``; the spec says to ignore a relative value."""
    value = environ.get("XDG_DATA_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path.home() / ".local" / "share"


@dataclass(frozen=True, slots=True)
class Places:
    """Where the entry and the icons go under one data home."""

    home: Path

    @property
    def applications(self) -> Path:
        return self.home / "applications"

    @property
    def desktop_file(self) -> Path:
        return self.applications / DESKTOP_FILE_NAME

    @property
    def hicolor(self) -> Path:
        return self.home / "icons" / "hicolor"

    def icon_paths(self) -> list[Path]:
        """The PNGs by size, then the SVG."""
        pngs = [
            self.hicolor / f"{s}x{s}" / "apps" / f"{assets.APP_ID}.png" for s in assets.ICON_SIZES
        ]
        return [*pngs, self.hicolor / "scalable" / "apps" / f"{assets.APP_ID}.svg"]

    def icons(self) -> list[tuple[Path, bytes]]:
        """Every icon file with its content."""
        contents = [assets.icon_png(size).read_bytes() for size in assets.ICON_SIZES]
        contents.append(assets.asset(SVG_NAME).read_bytes())
        return list(zip(self.icon_paths(), contents, strict=True))


# -- the command line the entry runs ---------------------------------------------------------


class UnknownLaunchError(Exception):
    """The running app was not started from a file we can point a launcher at."""


def _existing_file(argv0: str) -> Path | None:
    if not argv0:
        return None
    path = Path(argv0)
    if os.sep not in argv0 and not path.exists():
        found = shutil.which(argv0)
        path = Path(found) if found else path
    return path.absolute() if path.is_file() else None


def launch_command(
    argv0: str | None = None, executable: str | None = None, main_file: str | None = None
) -> list[str]:
    """How the app is running now, as absolute paths: the entry point's script when it is one
    (``.venv/bin/extension-manager``, pipx's ``~/.local/bin/extension-manager``), else the
    interpreter plus the main module's file (``python main.py`` from a checkout). Module names
    are not used, so a renamed entry point changes nothing. The defaults read this process."""
    argv0 = (sys.argv[0] if sys.argv else "") if argv0 is None else argv0
    script = _existing_file(argv0)
    # A script run by an interpreter (``python main.py``, even an executable one, whose shebang
    # may name another Python) needs that interpreter: it has the app's packages.
    if script is not None and os.access(script, os.X_OK) and script.suffix not in (".py", ".pyw"):
        return [str(script)]
    executable = sys.executable if executable is None else executable
    if main_file is None:
        # argv[0] is the file Python runs (``main.py``, or the module's file with ``-m``).
        main_file = str(script) if script else getattr(sys.modules["__main__"], "__file__", None)
    if not executable or not main_file:
        raise UnknownLaunchError(
            "The app's start command cannot be told from how it runs now (no entry point "
            "script and no main file). Start it with 'extension-manager' or 'python main.py' "
            "and try again."
        )
    return [str(Path(executable).absolute()), str(Path(main_file).absolute())]


def _quote_argument(argument: str) -> str:
    """One Exec argument per the Desktop Entry spec: double-quoted when it holds a reserved
    character, with ``"`` `` ` `` ``$`` ``\\`` backslash-escaped inside the quotes; a literal
    ``%`` is ``%%``."""
    argument = argument.replace("%", "%%")
    if argument and not _RESERVED.intersection(argument):
        return argument
    return '"' + re.sub(r'([`"$\\])', r"\\\1", argument) + '"'


def _string_value(text: str) -> str:
    """The escapes of the spec's string type, which apply to every value, Exec included."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def exec_value(command: Sequence[str]) -> str:
    """The Exec value for ``command``, with ``%F``: several zips open in one launch."""
    return _string_value(" ".join([*map(_quote_argument, command), "%F"]))


def entry_text(command: Sequence[str]) -> str:
    """The shipped desktop entry with its Exec replaced by ``command`` and a TryExec on the
    program, so a launcher whose virtualenv was deleted hides itself instead of failing."""
    lines = []
    for line in assets.asset(DESKTOP_FILE_NAME).read_text(encoding="utf-8").splitlines():
        if line.startswith("TryExec="):
            continue
        if line.startswith("Exec="):
            lines.append(f"TryExec={_string_value(command[0])}")
            line = f"Exec={exec_value(command)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- writing and removing --------------------------------------------------------------------


def _write(path: Path, data: bytes) -> bool:
    """Replace ``path`` with ``data`` in one step (a menu never reads half a file); False when
    it already held exactly that."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return True


def _refresh(what: str, program: str, *args: str) -> str | None:
    """Run a cache tool when it is installed; a line saying what happened, None when absent."""
    found = shutil.which(program)
    if found is None:
        return None
    # Imported here: the window imports this module at launch (for SUPPORTED), not to run tools.
    import subprocess

    try:
        result = subprocess.run(
            [found, *args],
            capture_output=True,
            text=True,
            timeout=_CACHE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    else:
        if result.returncode == 0:
            return f"Refreshed the {what} ({program})"
        output = " ".join((result.stderr or result.stdout).split())
        problem = f"exit status {result.returncode}" + (f": {output}" if output else "")
    return (
        f"Could not refresh the {what} with {program} ({problem}); the desktop may show the "
        "change only after the next log-in"
    )


def _refresh_icons(places: Places) -> str | None:
    return _refresh("icon cache", "gtk-update-icon-cache", "-q", "-t", "-f", str(places.hicolor))


def _refresh_menu(places: Places) -> str | None:
    return _refresh("applications cache", "update-desktop-database", "-q", str(places.applications))


def _failure(error: OSError, places: Places) -> str:
    where = error.filename or places.home
    return (
        f"Could not change {where}: {error.strerror or error}. Check that {places.home} "
        "(XDG_DATA_HOME, else ~/.local/share) can be written, then try again."
    )


def _icons_line(verb: str, count: int, total: int, places: Places, others: str) -> str:
    line = f"{verb} {count} icons under {places.hicolor}"
    return line if count == total else f"{line} (the other {total - count} {others})"


def install(home: Path | None = None, command: Sequence[str] | None = None) -> Outcome:
    """Write the icons, then the entry (so it never shows without its icon), then refresh the
    caches. Running it again rewrites only what differs (a new start command, new icons)."""
    places = Places(data_home() if home is None else home)
    done: list[str] = []
    if not SUPPORTED:
        return Outcome(
            (),
            "Desktop entries are how Linux and BSD desktops list applications; on "
            f"{sys.platform}, pin the app to the menu or dock by hand.",
        )
    try:
        command = launch_command() if command is None else command
        text = entry_text(command).encode("utf-8")
    except UnknownLaunchError as error:
        return Outcome((), str(error))
    except UnicodeEncodeError:
        return Outcome(
            (),
            f"The app's path ({command[0] if command else '?'}) is not valid UTF-8, which a "
            "desktop entry cannot hold. Move the app to a folder with a plain name and try again.",
        )
    try:
        icons = places.icons()
        written = sum(_write(path, data) for path, data in icons)
        if written:
            done.append(_icons_line("Wrote", written, len(icons), places, "were already there"))
        else:
            done.append(f"Already in place: {len(icons)} icons under {places.hicolor}")
        if _write(places.desktop_file, text):
            done.append(f"Wrote {places.desktop_file} (it runs {' '.join(command)})")
        else:
            done.append(f"Already in place: {places.desktop_file}")
    except OSError as error:
        return Outcome(tuple(done), _failure(error, places))
    done += filter(None, (_refresh_icons(places), _refresh_menu(places)))
    return Outcome(tuple(done))


def _only_cache_left(folder: Path, cache: str) -> bool:
    return folder.is_dir() and {p.name for p in folder.iterdir()} <= {cache}


def _prune(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _tidy(folder: Path, cache: str, refresh: Callable[[], str | None], stop: Path) -> str | None:
    """After a removal: refresh a folder's cache, or when the cache is all that is left (it
    was written for our files alone), delete it and the emptied folders."""
    if not folder.is_dir():
        return None
    if not _only_cache_left(folder, cache):
        return refresh()
    line = None
    if (folder / cache).exists():
        (folder / cache).unlink()
        line = f"Removed {folder / cache}, which listed only this app"
    _prune(folder, stop)
    return line


def remove(home: Path | None = None) -> Outcome:
    """Delete the entry, then the icons, then refresh the caches (or delete caches that only
    described our files, and the folders that end up empty)."""
    places = Places(data_home() if home is None else home)
    done: list[str] = []
    try:
        if places.desktop_file.is_file():
            places.desktop_file.unlink()
            done.append(f"Removed {places.desktop_file}")
        icons = places.icon_paths()
        removed = 0
        for path in icons:
            if path.is_file():
                path.unlink()
                removed += 1
            _prune(path.parent, places.hicolor)
        if removed:
            done.append(_icons_line("Removed", removed, len(icons), places, "were not there"))
        if not done:
            return Outcome(
                (f"Nothing to remove: {places.desktop_file} and the app's icons are not there",)
            )
        tidied = (
            _tidy(places.hicolor, "icon-theme.cache", lambda: _refresh_icons(places), places.home),
            _tidy(
                places.applications, "mimeinfo.cache", lambda: _refresh_menu(places), places.home
            ),
        )
    except OSError as error:
        return Outcome(tuple(done), _failure(error, places))
    done += filter(None, tidied)
    return Outcome(tuple(done))
