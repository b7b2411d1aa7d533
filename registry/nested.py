"""Install from one level inside an archive that is not an extension as it stands, and pack a
dropped folder into a zip.

People download a zip that holds the extension's zip (one per platform, often), or zip a
project whose extension lives a few folders down. :func:`registry.archive.open_archive` refuses
both with :class:`~registry.archive.NestedArchiveError`; here :func:`find_candidates` looks at
what it named, :func:`refusal` words the offer, and :func:`open_member` opens the one the
person chose as the archive to install. Only one level is opened: an inner zip goes through
every check and limit of a fresh archive, and its bytes count against the outer archive's
budget, so nesting cannot be used to get past a limit.

:func:`pack_folder` turns a dropped folder into a zip, so that it goes through the same
checks as any archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO, Final, Literal

from registry.archive import (
    MANIFEST_NAME,
    NestedArchiveError,
    OpenArchive,
    ZipContainer,
    _quote,
    open_archive,
    open_container,
)
from registry.errors import ArchiveError, ManifestError
from registry.limits import Limits
from registry.manifest import parse_manifest
from registry.sizes import format_size, sizes_apart

__all__ = [
    "Candidate",
    "OpenedMember",
    "find_candidates",
    "open_member",
    "pack_folder",
    "refusal",
]

CandidateKind = Literal["zip", "folder"]

# What ``install`` takes to open a member, for the hint in the refusal.
COMMAND: Final = "extension-manager install"
MEMBER_OPTION: Final = "--from-member"
INNER_ZIP_NAME: Final = "inner.zip"

_ONE_LEVEL: Final = "only one level is opened"
# Left out of a packed folder: version control, caches and what file managers add.
_SKIPPED_FOLDERS: Final = frozenset({".git", "__pycache__", "__MACOSX"})
_SKIPPED_FILES: Final = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_PACK_CHUNK: Final = 1024 * 1024
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something inside an archive that may be the extension.

    ``member`` is its path in the archive (folders end with ``/``). ``extension_id``, ``name``
    and ``version`` come from its manifest and are ``None`` when it cannot be installed;
    ``problem`` then says why, in a clause that names it.
    """

    member: str
    kind: CandidateKind
    extension_id: str | None
    name: str | None
    version: str | None
    problem: str | None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def title(self) -> str:
        """ "Hello World 1.0.0", or the member's path when it is not usable."""
        if self.name is None or self.version is None:
            return self.member
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class OpenedMember:
    """The chosen member, opened as the archive to install.

    ``archive`` is validated and open: for a folder member it is the outer file with that
    folder as its root, for a zip member the inner zip unpacked to ``work_dir/inner.zip``
    (install from that file; its own ``sha256`` is the inner zip's). ``outer_sha256`` is the
    checksum of the file the person chose. Close it, or use it as a context manager.
    """

    archive: OpenArchive
    outer_sha256: str
    member: str
    kind: CandidateKind

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> OpenedMember:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def find_candidates(path: Path, limits: Limits, work_dir: Path) -> tuple[Candidate, ...]:
    """What the archive at ``path`` offers one level down, each read through its manifest.

    Empty when the archive is an extension as it stands. Other refusals of the archive itself
    (damage, limits, unsafe names) are raised as :class:`ArchiveError`: nothing inside an
    unsafe archive is offered. Inner zips are unpacked to a folder made in ``work_dir`` and
    removed before returning.
    """
    try:
        open_archive(path, limits).close()
    except NestedArchiveError as error:
        members = error.candidates
    else:
        return ()
    found: list[Candidate] = []
    with contextlib.ExitStack() as stack:
        container: ZipContainer | None = None
        scratch: Path | None = None
        for index, member in enumerate(members):
            if member.endswith("/"):
                found.append(_folder_candidate(path, member, limits))
                continue
            if container is None or scratch is None:
                container = stack.enter_context(open_container(path, limits))
                scratch = stack.enter_context(_scratch_folder(work_dir))
            found.append(_zip_candidate(container, member, limits, scratch / f"{index}.zip"))
    return tuple(found)


def refusal(path: Path, candidates: tuple[Candidate, ...]) -> str:
    """One message saying what the archive holds inside and how to install it, or why
    nothing in it can be."""
    label = _quote(path.name)
    usable = [c for c in candidates if c.usable]
    unusable = [c for c in candidates if not c.usable]
    kinds = {c.kind for c in candidates}
    if kinds == {"zip"}:
        what = f"{label} is a zip of zips"
    elif kinds == {"folder"}:
        what = f"{label} has its manifest.json in a sub-folder, not at the top"
    else:
        what = f"{label} holds extensions inside it"
    if not candidates:
        return f"{label} holds nothing that can be installed. Choose the extension's .zip file."
    if not usable:
        reasons = "; ".join(str(c.problem) for c in unusable)
        return f"{what}, and nothing in it can be installed: {reasons}."
    offers = "; ".join(f"{_quote(c.member)} contains {c.title}" for c in usable)
    not_offered = ""
    if unusable:
        not_offered = " Not offered: " + "; ".join(str(c.problem) for c in unusable) + "."
    # How to choose is the front end's to say: a button in the window, a command line hint.
    if len(usable) == 1:
        return f"{what}: {offers}.{not_offered} It can be installed from inside the archive."
    return f"{what}: {offers}.{not_offered} Choose one to install from inside the archive."


def install_hint(path: Path, member: str, command: str = COMMAND) -> str:
    """The command that installs ``member`` from inside the archive at ``path``."""
    return f"{command} {_shell(str(path))} {MEMBER_OPTION} {_shell(member, always=True)}"


def open_member(path: Path, member: str, limits: Limits, work_dir: Path) -> OpenedMember:
    """Open ``member`` of the archive at ``path`` (an inner zip or a folder holding a
    manifest.json) as the archive to install; raise :class:`ArchiveError` saying why not.

    The outer archive is checked as a whole first. An inner zip is unpacked to
    ``work_dir/inner.zip``, which must not exist yet, then checked as a fresh archive whose
    unpacked size, added to the outer archive's, must stay within ``limits.max_total_bytes``.
    A folder member becomes the extension's root; nothing outside it is installed.
    """
    label = _quote(path.name)
    with open_container(path, limits) as container:
        found = container.find(member)
        if found is not None and found.path.name.casefold().endswith(".zip"):
            shown = str(found.path)
            inner_path = work_dir / INNER_ZIP_NAME
            sha256 = container.sha256()
            try:
                container.write_member(found, inner_path)
                archive = _open_inner(inner_path, shown, container, limits)
            except ArchiveError as error:
                inner_path.unlink(missing_ok=True)
                if isinstance(error, NestedArchiveError):
                    problem = _too_deep(shown, error.candidates)
                    raise ArchiveError(
                        f"{label}: {problem}. Unzip {label}, then install "
                        f"{_quote(found.path.name)} from it."
                    ) from error
                raise
            except BaseException:
                inner_path.unlink(missing_ok=True)
                raise
            return OpenedMember(archive, sha256, shown, "zip")
        folder = _folder_of(container, member)
        if folder is None:
            choices = _choices(container)
            if found is not None or _is_folder(container, member):
                raise ArchiveError(
                    f"{label}: {_quote(member)} is neither a zip nor a folder with a "
                    "manifest.json directly in it, so there is nothing to install from it. "
                    + _choose_from(choices)
                )
            raise ArchiveError(f"{label} contains no {_quote(member)}. " + _choose_from(choices))
    archive = open_archive(path, limits, root=folder)
    try:
        sha256 = archive.sha256()
    except BaseException:
        archive.close()
        raise
    return OpenedMember(archive, sha256, folder, "folder")


def pack_folder(folder: Path, destination: Path, limits: Limits) -> None:
    """Write the extension folder ``folder`` as a new zip at ``destination``, its files at
    the zip's top, so that it is checked and installed like any archive.

    Everything is checked before anything is written: the folder must hold manifest.json at
    its top and no links or special files, and stay within ``limits``. Version control,
    caches and what file managers add (``.git``, ``__pycache__``, ``.DS_Store``…) are left
    out. Entries are written in sorted order, so the same folder gives the same entries.
    Raises :class:`ArchiveError`; a partial ``destination`` is removed.
    """
    label = _quote(folder.name or str(folder))
    _check_is_extension_folder(folder, label)
    folders, files = _walk(folder, label, limits)
    try:
        packed = destination.open("xb")
    except OSError as exc:
        raise ArchiveError(
            f"Could not pack {label} into '{destination}' ({_reason(exc)}). Check that the "
            "folder can be written and try again."
        ) from exc
    try:
        with packed, zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for relative in folders:
                info = zipfile.ZipInfo.from_file(
                    folder.joinpath(*relative.parts), relative, strict_timestamps=False
                )
                zf.writestr(info, b"")
            for relative, size in files:
                _pack_file(zf, folder, relative, size, label)
    except OSError as exc:
        # A failure to read a file is worded where it happens; this is the zip being written.
        destination.unlink(missing_ok=True)
        raise ArchiveError(
            f"Could not pack {label} into '{destination}' ({_reason(exc)}). Check that there "
            "is enough disk space and try again."
        ) from exc
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


# -- candidates ---------------------------------------------------------------------------


def _zip_candidate(container: ZipContainer, member: str, limits: Limits, target: Path) -> Candidate:
    found = container.find(member)
    if found is None:  # the refusal named a file the container does not have
        return Candidate(member, "zip", None, None, None, f"{_quote(member)} cannot be read")
    try:
        container.write_member(found, target)
        with _open_inner(target, member, container, limits) as inner:
            return _candidate(member, "zip", inner, limits)
    except NestedArchiveError as error:
        return Candidate(member, "zip", None, None, None, _too_deep(member, error.candidates))
    except ArchiveError as error:
        return Candidate(member, "zip", None, None, None, _clause(str(error)))
    finally:
        target.unlink(missing_ok=True)


def _folder_candidate(path: Path, member: str, limits: Limits) -> Candidate:
    try:
        with open_archive(path, limits, root=member) as archive:
            return _candidate(member, "folder", archive, limits)
    except ArchiveError as error:
        return Candidate(member, "folder", None, None, None, _clause(str(error)))


def _candidate(member: str, kind: CandidateKind, archive: OpenArchive, limits: Limits) -> Candidate:
    try:
        manifest = parse_manifest(archive.read_member(archive.manifest, limits.max_manifest_bytes))
    except ManifestError as error:
        problem = f"the manifest.json of {_quote(member)} is invalid ({'; '.join(error.problems)})"
        return Candidate(member, kind, None, None, None, _clause(problem))
    return Candidate(member, kind, manifest.id, manifest.name, str(manifest.version), None)


def _open_inner(
    inner_path: Path, shown: str, container: ZipContainer, limits: Limits
) -> OpenArchive:
    """The inner zip checked as a fresh archive, within what the outer one left of the
    budget, its messages naming it by its path in the outer archive.

    Its size is read first on its own, so that going over the budget only because of the
    outer archive is said in those words rather than as a smaller limit."""
    outer_total = container.total_bytes
    with open_container(inner_path, limits, name=shown) as inner:
        inner_total = inner.total_bytes
    if inner_total + outer_total > limits.max_total_bytes:
        label = _quote(container.path.name)
        raise ArchiveError(
            f"{label}: {_quote(shown)} unpacks to {format_size(inner_total)}, which with the "
            f"{format_size(outer_total)} of {label} itself is more than the "
            f"{format_size(limits.max_total_bytes)} an extension may take. This archive "
            "cannot be installed."
        )
    left = limits.max_total_bytes - outer_total
    return open_archive(inner_path, dataclasses.replace(limits, max_total_bytes=left), name=shown)


def _too_deep(member: str, inner_candidates: tuple[str, ...]) -> str:
    """Why an inner zip that is itself nested is not offered."""
    if all(not c.endswith("/") for c in inner_candidates):
        return f"{_quote(member)} is itself a zip of zips; {_ONE_LEVEL}"
    where = _quote(inner_candidates[0] + MANIFEST_NAME)
    return f"{_quote(member)} has its manifest.json deeper inside, at {where}; {_ONE_LEVEL}"


def _clause(message: str) -> str:
    """A refusal's sentences as a clause for a list: no closing full stop."""
    return message.strip().removesuffix(".")


def _folder_of(container: ZipContainer, member: str) -> str | None:
    """``member`` as a folder path ending with ``/`` if the archive has a manifest.json
    directly in that folder."""
    parts = _member_parts(member)
    if not parts or container.find("/".join((*parts, MANIFEST_NAME))) is None:
        return None
    return "/".join(parts) + "/"


def _is_folder(container: ZipContainer, member: str) -> bool:
    parts = _member_parts(member)
    if not parts:
        return False
    if PurePosixPath(*parts) in container.folders:
        return True
    return any(m.path.parts[: len(parts)] == parts for m in container.members)


def _member_parts(member: str) -> tuple[str, ...]:
    text = member.replace("\\", "/")
    return tuple(part for part in text.split("/") if part not in ("", "."))


def _choices(container: ZipContainer) -> list[str]:
    """What there is to install from in the archive: its zips and its folders holding a
    manifest.json."""
    zips = [str(m.path) for m in container.members if m.path.name.casefold().endswith(".zip")]
    folders = [
        "/".join(m.path.parts[:-1]) + "/"
        for m in container.members
        if m.path.name == MANIFEST_NAME and len(m.path.parts) > 1
    ]
    return zips + sorted(folders)


def _choose_from(choices: list[str]) -> str:
    if not choices:
        return "It holds no zip and no folder with a manifest.json to install from."
    listed = ", ".join(_quote(choice) for choice in choices[:10])
    more = f" and {len(choices) - 10:,} more" if len(choices) > 10 else ""
    return f"Choose one of: {listed}{more}."


@contextlib.contextmanager
def _scratch_folder(work_dir: Path) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="nested-", dir=work_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _shell(text: str, *, always: bool = False) -> str:
    """``text`` as one shell word, in single quotes when it needs them (or ``always``)."""
    if not always and text and all(c.isalnum() or c in "@%+=:,./-_" for c in text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


# -- packing a folder ---------------------------------------------------------------------


def _check_is_extension_folder(folder: Path, label: str) -> None:
    try:
        if not folder.is_dir():
            raise ArchiveError(f"{label} is not a folder. Choose the extension's folder.")
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as exc:
        raise ArchiveError(
            f"{label} could not be read ({_reason(exc)}). Check the folder and try again."
        ) from exc
    if MANIFEST_NAME in names:
        return
    misnamed = [name for name in names if name.casefold() == MANIFEST_NAME]
    if misnamed:
        raise ArchiveError(
            f"{label} contains {_quote(misnamed[0])}, but the file must be named exactly "
            "manifest.json (lower case). Rename it and try again."
        )
    inside = [name for name in names if (folder / name / MANIFEST_NAME).is_file()]
    if inside:
        hint = f"; its manifest.json is in {_quote(inside[0] + '/')}: choose that folder instead"
    elif names:
        listed = ", ".join(_quote(name) for name in names[:3])
        hint = f" (it contains {listed}). Choose the extension's folder or its .zip file"
    else:
        hint = ": it is empty. Choose the extension's folder or its .zip file"
    raise ArchiveError(
        f"{label} contains no manifest.json at its top, so it is not an extension{hint}."
    )


def _walk(
    folder: Path, label: str, limits: Limits
) -> tuple[list[PurePosixPath], list[tuple[PurePosixPath, int]]]:
    """Every folder and file to pack (file with its size), in sorted order, checked against
    the limits as they are found, so that a huge folder is refused early."""
    folders: list[PurePosixPath] = []
    files: list[tuple[PurePosixPath, int]] = []
    total = 0
    pending: list[PurePosixPath] = [PurePosixPath()]
    while pending:
        relative_folder = pending.pop()
        try:
            with os.scandir(folder.joinpath(*relative_folder.parts)) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            raise ArchiveError(
                f"{label} could not be read ({_reason(exc)}). Check the folder and try again."
            ) from exc
        subfolders: list[PurePosixPath] = []
        for entry in entries:
            relative = relative_folder / entry.name
            shown = _quote(str(relative))
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                raise ArchiveError(
                    f"{label}: {shown} could not be read ({_reason(exc)}). Check the folder "
                    "and try again."
                ) from exc
            if stat.S_ISLNK(mode):
                raise ArchiveError(
                    f"{label} contains a symbolic link ({shown}). Extensions cannot include "
                    "links; replace it with a copy of the file."
                )
            if stat.S_ISDIR(mode):
                if entry.name in _SKIPPED_FOLDERS:
                    continue
                folders.append(relative)
                subfolders.append(relative)
            elif stat.S_ISREG(mode):
                if entry.name.casefold() in _SKIPPED_FILES or entry.name.startswith("._"):
                    continue
                size = entry.stat(follow_symlinks=False).st_size
                _check_file_size(label, shown, size, limits)
                total += size
                if total > limits.max_total_bytes:
                    raise ArchiveError(
                        f"{label} takes more than {format_size(limits.max_total_bytes)}, the "
                        f"most an extension may take (reached at {shown}). This folder "
                        "cannot be installed."
                    )
                files.append((relative, size))
            else:
                raise ArchiveError(
                    f"{label} contains a special file, {_special_kind(mode)} ({shown}). "
                    "Extensions can only contain regular files and folders."
                )
            if len(folders) + len(files) > limits.max_entries:
                raise ArchiveError(
                    f"{label} contains more than the {limits.max_entries:,} entries an "
                    "extension may have. This folder cannot be installed."
                )
        pending.extend(reversed(subfolders))
    return sorted(folders), sorted(files)


def _check_file_size(label: str, shown: str, size: int, limits: Limits) -> None:
    if size > limits.max_file_bytes:
        shown_size, limit = sizes_apart(size, limits.max_file_bytes)
        raise ArchiveError(
            f"{label}: {shown} is {shown_size}, more than the {limit} allowed for one file. "
            "This folder cannot be installed."
        )


def _pack_file(
    zf: zipfile.ZipFile, folder: Path, relative: PurePosixPath, size: int, label: str
) -> None:
    """Copy one file into the zip, no more than the size that was checked."""
    source = folder.joinpath(*relative.parts)
    shown = _quote(str(relative))
    info = zipfile.ZipInfo.from_file(source, str(relative), strict_timestamps=False)
    info.compress_type = zipfile.ZIP_DEFLATED
    try:
        fd = os.open(source, _READ_FLAGS)
    except OSError as exc:
        raise ArchiveError(
            f"{label}: {shown} could not be read ({_reason(exc)}). Check the folder and try again."
        ) from exc
    with os.fdopen(fd, "rb") as source_file, zf.open(info, "w") as target:
        left = size
        while left:
            chunk = _read(source_file, min(_PACK_CHUNK, left), label, shown)
            if not chunk:
                break
            target.write(chunk)
            left -= len(chunk)
        if left or _read(source_file, 1, label, shown):
            raise ArchiveError(
                f"{label}: {shown} changed while it was being packed. Try again once "
                "nothing is writing to the folder."
            )


def _read(source: BinaryIO, size: int, label: str, shown: str) -> bytes:
    try:
        return source.read(size)
    except OSError as exc:
        raise ArchiveError(
            f"{label}: {shown} could not be read ({_reason(exc)}). Check the folder and try again."
        ) from exc


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()
