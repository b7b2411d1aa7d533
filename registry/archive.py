"""Decide, from an archive's bytes alone, what an extension zip contains, and unpack it safely.

:func:`open_archive` validates the whole archive before anything is read or written: names,
entry types, sizes, the byte layout of the file and the place of ``manifest.json``. It never
decompresses anything, so it costs one pass over the central directory plus one small read per
local header. The returned :class:`OpenArchive` keeps the one file handle that was validated;
every later read (a member, the extraction, the checksum) goes through that handle, so a file
swapped on disk after validation is never the one that gets installed.

Decompression is done here rather than through :meth:`zipfile.ZipFile.open`, because zipfile
decompresses bzip2 and LZMA chunks without an output bound and silently truncates an entry that
inflates past its declared size; here the output is bounded and such an entry is refused.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import hashlib
import io
import lzma
import os
import shutil
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Final, Self

from registry.durable import FileFlusher, FlushingWriter, flush_folders
from registry.errors import ArchiveError, InstallCancelledError
from registry.limits import DEFAULT_LIMITS, Limits
from registry.sizes import exact_size, format_size, sizes_apart

__all__ = [
    "ArchiveMember",
    "NestedArchiveError",
    "OpenArchive",
    "ZipContainer",
    "open_archive",
    "open_container",
]

CHUNK_BYTES: Final = 1024 * 1024
MANIFEST_NAME: Final = "manifest.json"

# Everything zipfile, zlib, bz2, lzma and struct may raise on hostile input.
_READ_ERRORS: Final = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    RuntimeError,
    NotImplementedError,
    OSError,
    EOFError,
    RecursionError,
    ValueError,
    OverflowError,
    struct.error,
    UnicodeDecodeError,
)

_STORED: Final = 0
_DEFLATED: Final = 8
_BZIP2: Final = 12
_LZMA: Final = 14
_SUPPORTED_METHODS: Final = frozenset({_STORED, _DEFLATED, _BZIP2, _LZMA})
_METHOD_NAMES: Final = {
    1: "Shrink",
    6: "Implode",
    9: "Deflate64",
    93: "Zstandard",
    95: "XZ",
    96: "JPEG",
    97: "WavPack",
    98: "PPMd",
    99: "AES",
}

_FLAG_ENCRYPTED: Final = 0x1
_FLAG_DATA_DESCRIPTOR: Final = 0x8
_FLAG_PATCHED: Final = 0x20
_FLAG_STRONG_ENCRYPTION: Final = 0x40
_FLAG_UTF8: Final = 0x800
_UNIX: Final = 3
# Hosts whose low byte of the external attributes holds MS-DOS attributes (FAT, HPFS, NTFS,
# VFAT): their tools marked a folder with the directory bit, not always with a trailing slash.
_MSDOS_HOSTS: Final = frozenset({0, 6, 11, 14})
_MSDOS_DIRECTORY: Final = 0x10

_LOCAL_HEADER: Final = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE: Final = b"PK\x03\x04"
_DESCRIPTOR_SIGNATURE: Final = b"PK\x07\x08"
# A data descriptor's length tells its form: an optional signature, then CRC and the two sizes
# in 4 bytes each, or in 8 bytes each in zip64 archives.
_DESCRIPTOR_FORMS: Final = {
    12: (False, struct.Struct("<3L")),
    16: (True, struct.Struct("<4x3L")),
    20: (False, struct.Struct("<L2Q")),
    24: (True, struct.Struct("<4xL2Q")),
}
_CENTRAL_HEADER_BYTES: Final = 46
_CRX_SIGNATURE: Final = b"Cr24"
_END_RECORD: Final = struct.Struct("<4s4H2LH")
_END_SIGNATURE: Final = b"PK\x05\x06"
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_END_RECORD: Final = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE: Final = b"PK\x06\x06"
_ZIP64_MARKER: Final = 0xFFFFFFFF

_BIDI_CONTROLS: Final = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_WINDOWS_FORBIDDEN: Final = frozenset('<>:"|?*')
_RESERVED_DEVICE_NAMES: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{digit}" for digit in range(1, 10)}
    | {f"LPT{digit}" for digit in range(1, 10)}
)
_JUNK_FILE_NAMES: Final = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_JUNK_FOLDER: Final = "__MACOSX"
_IMAGE_SUFFIXES: Final = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg", ".tif", ".tiff", ".heic"}
)
_CHOOSE_AGAIN: Final = "Choose the extension's .zip file."
_RECREATE: Final = "Re-create the zip with a standard zip tool."
_UNSAFE: Final = "This archive is unsafe and cannot be installed."


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """One file of the extension, as the central directory describes it."""

    name: str
    path: PurePosixPath
    size: int
    compressed_size: int
    info: zipfile.ZipInfo


@dataclass(frozen=True, slots=True)
class _Entry:
    """A central-directory record after name decoding and splitting."""

    info: zipfile.ZipInfo
    raw_name: bytes
    name: str
    shown: str
    parts: tuple[str, ...]
    is_dir: bool
    is_junk: bool


class _Inflater:
    """Raw deflate with the ``needs_input`` semantics of :class:`bz2.BZ2Decompressor`."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._inflate.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._inflate.decompress(self._inflate.unconsumed_tail + data, max_length)
        # A full output buffer means zlib may hold more output even with no input left.
        self.needs_input = not self._inflate.unconsumed_tail and len(out) < max_length
        return out


# The streaming interface shared by bz2/lzma decompressors and ``_Inflater``.
_Decoder = bz2.BZ2Decompressor | lzma.LZMADecompressor | _Inflater


class NestedArchiveError(ArchiveError):
    """The archive is no extension as it stands, but holds what may be one a level down: inner
    zips, or folders with a manifest.json deeper than the top. ``candidates`` are their paths
    in the archive (``"Plugin/real.zip"``, ``"src/x/y/"``: folders end with ``/``), for
    :mod:`registry.nested` to look into; the message alone still says what to do."""

    def __init__(self, message: str, candidates: tuple[str, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


class ZipContainer:
    """A validated zip archive, kept open on the handle that was validated.

    Every check of :func:`open_archive` is made (names, entry types, sizes, limits, byte
    layout), but none about what the archive holds: no manifest is looked for, and members
    keep their paths in the archive. :class:`OpenArchive` adds the extension's root and
    manifest. Use it as a context manager, or call :meth:`close`.
    """

    path: Path
    members: tuple[ArchiveMember, ...]
    # Folders the archive lists (as installed: relative to ``root_prefix``); created even when
    # empty.
    folders: tuple[PurePosixPath, ...]
    # The folder whose content is installed ("" for the top of the archive), ending with "/".
    root_prefix: str
    skipped_junk: tuple[str, ...]
    total_bytes: int
    _data_start: dict[int, int]
    _shown_names: dict[int, str]
    _by_path: dict[PurePosixPath, ArchiveMember]
    # Name components already found portable while validating (under the same limits).
    _portable_parts: set[str]

    def __init__(
        self, path: Path, limits: Limits = DEFAULT_LIMITS, *, name: str | None = None
    ) -> None:
        self.path = path
        self._label = _quote(path.name if name is None else name)
        self._free_before_extraction = 0
        self._fh: io.BufferedReader | None = _open_file(path, self._label)
        try:
            self._inspect(limits)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file handle; safe to call more than once."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def reopen(self) -> Self:
        """Open the file again after ``close`` to extract the members validated before, without
        validating them again. The caller must check that the file is still the same one
        (``identity`` of the new handle): everything here was checked against that file."""
        if self._fh is None:
            self._fh = _open_file(self.path, self._label)
        return self

    def identity(self) -> tuple[int, int, int, int]:
        """Device, inode, size and modification time (ns) of the open file."""
        info = os.fstat(self._require_open().fileno())
        return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns

    def find(self, relative_path: str) -> ArchiveMember | None:
        """The member installed at ``relative_path`` (as a manifest would name it), if any."""
        text = relative_path.replace("\\", "/")
        text = text.removeprefix("./")
        if not text or text.startswith("/"):
            return None
        parts = tuple(part for part in text.split("/") if part not in ("", "."))
        if not parts or ".." in parts:
            return None
        return self._by_path.get(PurePosixPath(*parts))

    def read_member(self, member: ArchiveMember, max_bytes: int) -> bytes:
        """The whole verified content of ``member``; refuses members above ``max_bytes``."""
        if member.size > max_bytes:
            size, limit = sizes_apart(member.size, max_bytes)
            raise ArchiveError(
                f"{self._label}: {self._shown(member)} is {size}, more than the {limit} "
                "allowed for this file. This archive cannot be installed."
            )
        return b"".join(self._stream(member))

    def write_member(self, member: ArchiveMember, target: Path) -> None:
        """Write the verified content of ``member`` to the new file ``target``, a chunk at a
        time (a member may be as large as the limits allow). On failure the partial file
        stays; the caller owns the folder and removes it."""
        with contextlib.suppress(OSError):  # only for the message should the disk fill up
            self._free_before_extraction = shutil.disk_usage(target.parent).free
        try:
            fd = os.open(target, _CREATE_FLAGS, 0o666)
        except OSError as exc:
            raise self._write_error(member, exc) from exc
        try:
            for chunk in self._stream(member):
                try:
                    _write_all(fd, chunk)
                except OSError as exc:
                    raise self._write_error(member, exc) from exc
        finally:
            os.close(fd)

    def extract_to(
        self,
        destination: Path,
        on_progress: Callable[[int], None],
        should_cancel: Callable[[], bool],
    ) -> None:
        """Write every member under ``destination``, which must exist and be empty, and create
        every folder the archive lists, empty ones included (an extension may expect them).

        Files are created exclusively with default permissions: the archive's mode bits are
        never applied. On failure or cancellation the files written so far stay in
        ``destination``; the caller owns that folder and removes it.

        Members are unpacked by up to ``EXTRACT_THREADS`` threads at once (zlib, bz2 and lzma
        release the GIL, and reads are positional, so they do not share a file offset), while
        the calling thread reports progress and checks for cancellation: the callbacks only
        ever run on the caller's thread.
        """
        self._require_open()
        self._check_destination(destination)
        if should_cancel():
            raise InstallCancelledError()
        # Measured before writing, for the message should the disk fill up meanwhile.
        self._free_before_extraction = shutil.disk_usage(destination).free
        parents = {m.path.parts[:-1] for m in self.members}
        parents.update(folder.parts for folder in self.folders)
        folders = {destination.joinpath(*parts) for parts in parents}
        try:
            for folder in sorted(folders):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(self.members[0], exc) from exc
        queue = sorted(self.members, key=lambda m: m.size, reverse=True)
        threads = min(EXTRACT_THREADS, len(queue)) if self.total_bytes > PARALLEL_ABOVE else 1
        # Every file is flushed before the swap (see registry.durable for why).
        with FileFlusher() as flusher:
            state = _ExtractionState(queue, max(threads, 1), flusher)
            if threads <= 1:
                self._extract_queue(destination, state, on_progress, should_cancel)
            else:
                self._extract_in_parallel(destination, state, threads, on_progress, should_cancel)
        if state.error is not None:
            raise state.error
        if flusher.error is not None:
            member, flush_error = flusher.error
            assert isinstance(member, ArchiveMember)
            raise self._write_error(member, flush_error) from flush_error
        try:
            flush_folders(folders | {destination})
        except OSError as exc:
            raise self._write_error(self.members[0], exc) from exc
        on_progress(state.written)

    def _extract_in_parallel(
        self,
        destination: Path,
        state: _ExtractionState,
        threads: int,
        on_progress: Callable[[int], None],
        should_cancel: Callable[[], bool],
    ) -> None:
        workers = [
            threading.Thread(
                target=self._extract_queue,
                args=(destination, state, None, None),
                name=f"extract-{n}",
                daemon=True,
            )
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        reported = -1
        while not state.finished.wait(PROGRESS_INTERVAL_SECONDS):
            if should_cancel():
                state.stop(InstallCancelledError())
            if state.written != reported:
                reported = state.written
                on_progress(reported)
        for worker in workers:
            worker.join()

    def _extract_queue(
        self,
        destination: Path,
        state: _ExtractionState,
        on_progress: Callable[[int], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        """Unpack members from the shared queue until it is empty or the extraction stops."""
        try:
            while (member := state.next_member()) is not None:
                if should_cancel is not None and should_cancel():
                    raise InstallCancelledError()
                target = destination.joinpath(*member.path.parts)
                try:
                    fd = os.open(target, _CREATE_FLAGS, 0o666)
                except OSError as exc:
                    raise self._write_error(member, exc) from exc
                handed_over = False
                try:
                    for chunk in self._stream(member):
                        try:
                            _write_all(fd, chunk)
                        except OSError as exc:
                            raise self._write_error(member, exc) from exc
                        state.add(len(chunk))
                        if on_progress is not None:
                            on_progress(state.written)
                        if should_cancel is not None and should_cancel():
                            raise InstallCancelledError()
                        if state.stopped:
                            return
                    state.flusher.hand_over(fd, member)
                    handed_over = True
                finally:
                    if not handed_over:
                        os.close(fd)
        except BaseException as error:
            state.stop(error)
        finally:
            state.worker_done()

    def sha256(self, copy_to: Path | None = None) -> str:
        """Hex SHA-256 of the whole archive file, read through the validated handle; with
        ``copy_to``, the same bytes are also written (and flushed) to that new file, so that
        what is kept is exactly what was hashed and checked.

        Reads are positional, so this may run on another thread while members are extracted.
        """
        fh = self._require_open()
        digest = hashlib.sha256()
        reader = _READER(fh.fileno(), 0)
        # A failure to write the copy (a full disk) stays an OSError for the installer to word.
        copy_fd = os.open(copy_to, _CREATE_FLAGS, 0o666) if copy_to is not None else None
        try:
            copy = FlushingWriter(copy_fd) if copy_fd is not None else None
            while True:
                try:
                    chunk = reader.read(CHUNK_BYTES)
                except OSError as exc:
                    raise ArchiveError(
                        f"{self._label} could not be read ({_reason(exc)}). Check the file and "
                        "try again."
                    ) from exc
                if not chunk:
                    break
                digest.update(chunk)
                if copy is not None:
                    copy.write(chunk)
            if copy is not None:
                copy.finish()
        finally:
            if copy_fd is not None:
                os.close(copy_fd)
        return digest.hexdigest()

    # -- validation -----------------------------------------------------------------------

    def _inspect(self, limits: Limits) -> None:
        fh = self._require_open()
        label = self._label
        size = _file_size(fh, label)
        end = _read_end_record(fh, size, label)
        if end.entries > limits.max_entries:
            raise _too_many_entries(label, end.entries, limits)
        try:
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                start_dir = zf.start_dir
        except _READ_ERRORS as exc:
            raise ArchiveError(
                f"{label} is damaged and cannot be read as a zip archive. "
                "Download the extension again."
            ) from exc
        if len(infos) > limits.max_entries:
            raise _too_many_entries(label, len(infos), limits)
        if len(infos) != end.entries:
            raise ArchiveError(
                f"{label} is damaged: its table of contents does not match its entry count. "
                "Download the extension again."
            )
        if start_dir != end.directory_offset:
            raise _prepended(label)
        if not infos:
            raise ArchiveError(
                f"{label} is an empty zip archive: it contains no files. " + _CHOOSE_AGAIN
            )

        self._portable_parts = set()
        entries = [self._entry(info, limits) for info in infos]
        installable = [e for e in entries if not e.is_junk and e.parts]
        files = [e for e in installable if not e.is_dir]
        # Limits first: a zip bomb is reported as one whatever else is wrong with it.
        total = self._check_sizes(files, limits)
        self._data_start = _check_layout(fh, entries, start_dir, label)
        _check_collisions(installable, label)
        self.root_prefix, manifest_entry = self._place(files, installable)
        root = tuple(self.root_prefix.removesuffix("/").split("/")) if self.root_prefix else ()
        strip = len(root)
        if strip:
            # Only what lies under the root is the extension; the rest is not installed.
            installable = [e for e in installable if e.parts[:strip] == root]
            files = [e for e in installable if not e.is_dir]
            total = sum(e.info.file_size for e in files)

        folders: set[PurePosixPath] = set()
        for entry in installable:
            relative = entry.parts[strip:]
            if len("/".join(relative)) > limits.max_path_chars:
                raise ArchiveError(
                    f"{label} contains a path longer than {limits.max_path_chars} characters "
                    f"({entry.shown}), which Windows cannot store. Shorten the folder or file "
                    "names."
                )
            if entry.is_dir and relative:
                folders.add(PurePosixPath(*relative))

        members: list[ArchiveMember] = []
        manifest: ArchiveMember | None = None
        for entry in files:
            relative = entry.parts[strip:]
            member = ArchiveMember(
                name=entry.info.filename,
                path=PurePosixPath(*relative),
                size=entry.info.file_size,
                compressed_size=entry.info.compress_size,
                info=entry.info,
            )
            members.append(member)
            if entry is manifest_entry:
                manifest = member
        self._found_manifest(manifest, limits)
        self.members = tuple(members)
        self.folders = tuple(sorted(folders))
        self.manifest = manifest
        self.skipped_junk = tuple(e.info.filename for e in entries if e.is_junk)
        self.total_bytes = total
        self._by_path = {member.path: member for member in members}
        self._shown_names = {e.info.header_offset: e.shown for e in files}

    def _place(self, files: list[_Entry], installable: list[_Entry]) -> tuple[str, _Entry | None]:
        """The folder prefix of what is installed and the manifest's entry: for a plain
        container, the whole archive and none."""
        return "", None

    def _found_manifest(self, manifest: ArchiveMember | None, limits: Limits) -> None:
        """Called with the manifest member ``_place`` chose, before the members are kept."""

    def _entry(self, info: zipfile.ZipInfo, limits: Limits) -> _Entry:
        label = self._label
        raw_name = info.orig_filename.encode("utf-8" if info.flag_bits & _FLAG_UTF8 else "cp437")
        name = _decode_name(info)
        shown = _quote(name)
        if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise ArchiveError(
                f"{label} is password-protected ({shown} is encrypted). "
                "Re-create the zip without a password."
            )
        if info.compress_type not in _SUPPORTED_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise ArchiveError(
                f"{label} uses a compression method this app cannot read ({method}, for "
                f"{shown}). Re-create the zip with standard (deflate) compression."
            )
        if info.flag_bits & _FLAG_PATCHED:
            raise ArchiveError(
                f"{label} stores {shown} as patch data, which this app cannot read. " + _RECREATE
            )
        parts, is_dir = _split_name(name, shown, label)
        if (
            not is_dir
            and info.create_system in _MSDOS_HOSTS
            and info.external_attr & _MSDOS_DIRECTORY
            and info.file_size == 0
        ):
            is_dir = True
        _check_file_type(info, shown, label)
        is_junk = _is_junk(parts, is_dir)
        if not is_junk:
            for part in parts:
                # Folder names repeat across entries; each distinct one is checked once.
                if part not in self._portable_parts:
                    _check_portable_component(part, shown, label, limits)
                    self._portable_parts.add(part)
        if is_dir and info.file_size:
            raise ArchiveError(
                f"{label} contains a folder entry that holds data ({shown}). " + _RECREATE
            )
        if info.compress_type == _STORED and info.compress_size != info.file_size:
            raise ArchiveError(
                f"{label} is damaged: {shown} declares two different sizes. "
                "Download the extension again."
            )
        return _Entry(info, raw_name, name, shown, parts, is_dir, is_junk)

    def _check_sizes(self, files: list[_Entry], limits: Limits) -> int:
        """Refuse files over the size and ratio limits; return the total unpacked size."""
        total = 0
        for entry in files:
            self._check_size(entry, limits)
            total += entry.info.file_size
            if total > limits.max_total_bytes:
                raise ArchiveError(
                    f"{self._label} unpacks to more than {format_size(limits.max_total_bytes)}, "
                    f"the most an extension may take (reached at {entry.shown}). "
                    "This archive cannot be installed."
                )
        return total

    def _check_size(self, entry: _Entry, limits: Limits) -> None:
        size = entry.info.file_size
        if size > limits.max_file_bytes:
            shown_size, limit = sizes_apart(size, limits.max_file_bytes)
            raise ArchiveError(
                f"{self._label}: {entry.shown} is {shown_size} when unpacked, more than the "
                f"{limit} allowed for one file. This archive cannot be installed."
            )
        ratio_limit = limits.max_compression_ratio
        if (
            size > limits.ratio_checked_above_bytes
            and size > entry.info.compress_size * ratio_limit
        ):
            raise ArchiveError(
                f"{self._label}: {entry.shown} is compressed more than {ratio_limit}:1, which "
                f"is typical of a zip bomb. {_UNSAFE}"
            )

    # -- reading --------------------------------------------------------------------------

    def _stream(self, member: ArchiveMember) -> Iterator[bytes]:
        """Yield the member's content in chunks, checking its size and CRC as it goes."""
        fh = self._require_open()
        start = self._data_start.get(member.info.header_offset)
        if start is None or self._by_path.get(member.path) is not member:
            raise ValueError(f"{member.name!r} is not a member of {self.path.name!r}")
        shown = self._shown(member)
        produced = 0
        crc = 0
        reader = _READER(fh.fileno(), start)
        try:
            remaining = member.compressed_size
            if member.info.compress_type == _STORED:
                while remaining:
                    data = reader.read(min(CHUNK_BYTES, remaining))
                    if not data:
                        break
                    remaining -= len(data)
                    produced += len(data)
                    crc = zlib.crc32(data, crc)
                    yield data
            else:
                decoder, remaining = self._decoder(member, reader, remaining)
                while not decoder.eof:
                    if decoder.needs_input:
                        if not remaining:
                            break
                        data = reader.read(min(CHUNK_BYTES, remaining))
                        if not data:
                            break
                        remaining -= len(data)
                    else:
                        data = b""
                    # One byte more than declared is enough to know the entry lies.
                    out = decoder.decompress(data, min(CHUNK_BYTES, member.size - produced + 1))
                    if not out:
                        if not data and not decoder.needs_input:
                            break  # no input, no output: the stream cannot progress
                        continue
                    produced += len(out)
                    if produced > member.size:
                        raise ArchiveError(
                            f"{self._label}: {shown} unpacks to more than its declared size of "
                            f"{format_size(member.size)}. {_UNSAFE}"
                        )
                    crc = zlib.crc32(out, crc)
                    yield out
        except _READ_ERRORS as exc:
            if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile):
                raise ArchiveError(
                    f"{self._label} could not be read while unpacking {shown} ({_reason(exc)}). "
                    "Check the file and try again."
                ) from exc
            raise _damaged(self._label, shown) from exc
        if produced != member.size or crc != member.info.CRC:
            raise _damaged(self._label, shown)

    def _decoder(
        self, member: ArchiveMember, fh: _PositionalReader, remaining: int
    ) -> tuple[_Decoder, int]:
        method = member.info.compress_type
        if method == _DEFLATED:
            return _Inflater(), remaining
        if method == _BZIP2:
            return bz2.BZ2Decompressor(), remaining
        # ZIP's LZMA: version (2 bytes), properties size (2 bytes), LZMA1 properties, raw data.
        header = fh.read(4)
        if len(header) != 4 or remaining < 4:
            raise _damaged(self._label, self._shown(member))
        props_size = struct.unpack("<H", header[2:])[0]
        props = fh.read(props_size)
        remaining -= 4 + props_size
        if props_size != 5 or len(props) != 5 or remaining < 0 or props[0] >= 9 * 5 * 5:
            raise _damaged(self._label, self._shown(member))
        lc, rest = props[0] % 9, props[0] // 9
        lp, pb = rest % 5, rest // 5
        # A dictionary larger than the declared output is never needed; capping it keeps a
        # hostile header from reserving gigabytes.
        dict_size = min(int.from_bytes(props[1:5], "little"), max(member.size, 4096))
        lzma_filter = {
            "id": lzma.FILTER_LZMA1,
            "dict_size": dict_size,
            "lc": lc,
            "lp": lp,
            "pb": pb,
        }
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma_filter]), remaining

    # -- helpers --------------------------------------------------------------------------

    def _shown(self, member: ArchiveMember) -> str:
        """The member's decoded name as messages show it."""
        return self._shown_names.get(member.info.header_offset) or _quote(member.name)

    def _require_open(self) -> io.BufferedReader:
        if self._fh is None:
            raise ValueError(f"the archive {self.path.name!r} is closed")
        return self._fh

    def _check_destination(self, destination: Path) -> None:
        try:
            not_empty = any(destination.iterdir())
        except OSError as exc:
            raise ArchiveError(
                f"Cannot unpack {self._label} into '{destination}' ({_reason(exc)}). "
                "Check that the folder exists and can be written."
            ) from exc
        if not_empty:
            raise ArchiveError(
                f"Cannot unpack {self._label} into '{destination}' because that folder is not "
                "empty. Try the installation again."
            )

    def _write_error(self, member: ArchiveMember, exc: OSError) -> ArchiveError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = self._free_before_extraction
            return ArchiveError(
                f"There is not enough disk space to install {self._label}: its files need "
                f"{format_size(self.total_bytes)}, and {format_size(free)} "
                f"{'was' if free == 1 else 'were'} free. Free some space and try again."
            )
        if exc.errno == errno.EROFS:
            return ArchiveError(
                f"Could not install {self._label}: the disk holding the data folder became "
                "read-only while its files were written (the system does this when a disk "
                "fails). Nothing was changed; check the disk, then try again."
            )
        return ArchiveError(
            f"Could not write {_quote(str(member.path))} from {self._label} ({_reason(exc)}). "
            "Check that the extensions folder can be written and try again."
        )


class OpenArchive(ZipContainer):
    """A validated extension archive, kept open on the handle that was validated.

    Its members are the extension's files, with paths relative to the extension's root (the
    top of the archive, its single top folder, or the folder ``root`` names), and
    :attr:`manifest` is the manifest.json at that root.
    """

    manifest: ArchiveMember

    def __init__(
        self,
        path: Path,
        limits: Limits = DEFAULT_LIMITS,
        *,
        root: str | None = None,
        name: str | None = None,
    ) -> None:
        self._root = None if root is None else _root_parts(root)
        super().__init__(path, limits, name=name)

    def _place(self, files: list[_Entry], installable: list[_Entry]) -> tuple[str, _Entry | None]:
        if self._root is None:
            return _locate_manifest(files, installable, self._label)
        return _locate_root(self._root, files, self._label)

    def _found_manifest(self, manifest: ArchiveMember | None, limits: Limits) -> None:
        assert manifest is not None  # _place returned one of ``files``
        if manifest.size > limits.max_manifest_bytes:
            shown_size, limit = sizes_apart(manifest.size, limits.max_manifest_bytes)
            raise ArchiveError(
                f"{self._label}: its manifest.json is {shown_size}, more than the {limit} a "
                "manifest may be. This archive cannot be installed."
            )
        self.manifest = manifest


class _PositionalReader:
    """Reads from a file descriptor at its own offset (``pread``), never moving the shared one,
    so that several threads can read different parts of the one validated handle at once."""

    def __init__(self, fd: int, position: int) -> None:
        self.fd = fd
        self.position = position

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.position)
        self.position += len(data)
        return data


class _SeekingReader(_PositionalReader):
    """The same, where there is no ``pread`` (Windows): a seek and a read made under one lock,
    after which the shared offset is put back where it was.

    A second handle would not do: ``dup`` shares the offset, and opening the path again could
    open another file than the one validated. The lock is one for all handles, so reads are
    serialised, but decompression, which is most of the work, still runs in parallel.
    """

    _lock: Final = threading.Lock()

    def read(self, size: int) -> bytes:
        with self._lock:
            before = os.lseek(self.fd, 0, os.SEEK_CUR)
            try:
                os.lseek(self.fd, self.position, os.SEEK_SET)
                data = os.read(self.fd, size)
            finally:
                os.lseek(self.fd, before, os.SEEK_SET)
        self.position += len(data)
        return data


# Chosen once: the readers of every archive use it.
_READER: Final[type[_PositionalReader]] = (
    _PositionalReader if hasattr(os, "pread") else _SeekingReader
)


class _ExtractionState:
    """The work queue, byte count, first error and file flusher shared by the extraction
    threads."""

    def __init__(self, queue: list[ArchiveMember], workers: int, flusher: FileFlusher) -> None:
        self._queue = list(reversed(queue))  # pop() from the end takes the largest first
        self.flusher = flusher
        self._lock = threading.Lock()
        self._running = workers
        self.written = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def next_member(self) -> ArchiveMember | None:
        with self._lock:
            if self.error is not None or not self._queue:
                return None
            return self._queue.pop()

    def add(self, count: int) -> None:
        with self._lock:
            self.written += count

    @property
    def stopped(self) -> bool:
        return self.error is not None

    def stop(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def worker_done(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running <= 0:
                self.finished.set()


def open_archive(
    path: Path,
    limits: Limits = DEFAULT_LIMITS,
    *,
    root: str | None = None,
    name: str | None = None,
) -> OpenArchive:
    """Validate the archive at ``path`` and return it open; raise :class:`ArchiveError`
    (:class:`NestedArchiveError` when what it holds may be an extension a level down).

    ``root`` (a folder path in the archive, such as ``"src/x/y/"``) makes that folder the
    extension: its manifest.json must be directly in it, and nothing outside it is installed,
    though the whole archive is still checked. ``name`` is what messages call the archive
    instead of the file's name (an inner zip unpacked to a work file, say).
    """
    return OpenArchive(path, limits, root=root, name=name)


def open_container(
    path: Path, limits: Limits = DEFAULT_LIMITS, *, name: str | None = None
) -> ZipContainer:
    """Validate the zip at ``path`` as :func:`open_archive` does, without asking it to be an
    extension, so that its members can be read by their paths in the archive."""
    return ZipContainer(path, limits, name=name)


# -- file level ---------------------------------------------------------------------------

# Two threads keep both cores of a small machine busy; more only add contention on the disk.
EXTRACT_THREADS: Final = max(1, min(4, os.cpu_count() or 1))
# Below this, starting threads costs more than it saves.
PARALLEL_ABOVE: Final = 8 * 1024 * 1024
# How often the calling thread reports progress and checks for cancellation meanwhile.
PROGRESS_INTERVAL_SECONDS: Final = 0.02
_CREATE_FLAGS: Final = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True, slots=True)
class _EndRecord:
    entries: int
    directory_offset: int


def _open_file(path: Path, label: str) -> io.BufferedReader:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ArchiveError(f"{label} is not a file. " + _CHOOSE_AGAIN)
        return path.open("rb")
    except FileNotFoundError as exc:
        raise ArchiveError(f"{label} does not exist. " + _CHOOSE_AGAIN) from exc
    except OSError as exc:
        raise ArchiveError(
            f"{label} could not be opened ({_reason(exc)}). Check the file and try again."
        ) from exc


def _file_size(fh: io.BufferedReader, label: str) -> int:
    try:
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise ArchiveError(
            f"{label} could not be read ({_reason(exc)}). Check the file and try again."
        ) from exc
    if size == 0:
        raise ArchiveError(f"{label} is empty (0 bytes). Download the extension again.")
    return size


def _read_end_record(fh: io.BufferedReader, size: int, label: str) -> _EndRecord:
    """Parse the end-of-central-directory record (zip64-aware) without trusting zipfile.

    The record must end the file, followed by exactly the comment it declares: anything more
    is data appended to the archive. Counts, sizes and offsets that cannot be true of a file
    this size (the all-ones values of a damaged zip64 record, say) are damage, not a count
    to show anyone.
    """
    try:
        fh.seek(0)
        head = fh.read(4)
        if head == _CRX_SIGNATURE:
            raise _browser_add_on(label)
        tail_size = min(size, _END_RECORD.size + 0xFFFF)
        fh.seek(size - tail_size)
        tail = fh.read(tail_size)
        at, surplus = _find_end_record(tail)
        if at < 0:
            if head == _LOCAL_SIGNATURE:
                raise ArchiveError(
                    f"{label} is incomplete or damaged: the end of the zip archive is missing. "
                    "Download the extension again."
                )
            raise ArchiveError(f"{label} is not a zip archive. " + _CHOOSE_AGAIN)
        if surplus > 0:
            amount = exact_size(surplus) if surplus < 1024 else format_size(surplus)
            raise ArchiveError(
                f"{label} has {amount} of extra data after the end of the zip archive (another "
                "file joined to it, or a download that went wrong). Download the extension "
                "again, or re-create the zip with a standard zip tool."
            )
        if surplus < 0:
            raise ArchiveError(
                f"{label} is incomplete: its last {exact_size(-surplus)} are missing. "
                "Download the extension again."
            )
        record = _END_RECORD.unpack_from(tail, at)
        disk_entries, entries, directory_size, directory_offset = record[3:7]
        if _ZIP64_MARKER in (directory_size, directory_offset) or 0xFFFF in (
            disk_entries,
            entries,
        ):
            position = size - tail_size + at - _ZIP64_LOCATOR.size
            if position >= 0:
                fh.seek(position)
                locator = _ZIP64_LOCATOR.unpack(fh.read(_ZIP64_LOCATOR.size))
                if locator[0] == _ZIP64_LOCATOR_SIGNATURE:
                    if locator[2] + _ZIP64_END_RECORD.size > position:
                        raise _damaged_end(label)
                    fh.seek(locator[2])
                    record64 = _ZIP64_END_RECORD.unpack(fh.read(_ZIP64_END_RECORD.size))
                    if record64[0] != _ZIP64_END_SIGNATURE:
                        raise _damaged_end(label)
                    entries, directory_size, directory_offset = record64[7:10]
    except _READ_ERRORS as exc:
        raise ArchiveError(
            f"{label} is damaged and cannot be read as a zip archive. Download the extension again."
        ) from exc
    # Every entry takes at least one fixed-size header in the central directory, which lies
    # inside the file.
    if directory_offset + directory_size > size or entries * _CENTRAL_HEADER_BYTES > directory_size:
        raise _damaged_end(label)
    return _EndRecord(entries, directory_offset)


def _find_end_record(tail: bytes) -> tuple[int, int]:
    """The end record's offset in ``tail`` (-1 if there is none) and how many bytes follow it
    beyond its comment: positive for appended data, negative for a comment cut short.

    The last record whose comment reaches exactly the end of the file wins; a comment may
    itself contain the record's signature.
    """
    fallback = (-1, 0)
    at = len(tail)
    while (at := tail.rfind(_END_SIGNATURE, 0, at)) >= 0:
        if at + _END_RECORD.size > len(tail):
            continue
        comment_size = _END_RECORD.unpack_from(tail, at)[7]
        surplus = len(tail) - at - _END_RECORD.size - comment_size
        if surplus == 0:
            return at, 0
        if fallback[0] < 0:
            fallback = (at, surplus)
    return fallback


def _check_layout(
    fh: io.BufferedReader, entries: list[_Entry], directory_start: int, label: str
) -> dict[int, int]:
    """Check that the entries' data tile the file from offset 0 to the central directory.

    Returns each entry's data start keyed by its local header offset. This refuses prepended
    data, overlapping entries (the non-recursive zip bomb), hidden data between entries, and
    local headers that disagree with the central directory.
    """
    ordered = sorted(entries, key=lambda e: e.info.header_offset)
    if ordered[0].info.header_offset != 0:
        raise _prepended(label)
    data_start: dict[int, int] = {}
    try:
        for index, entry in enumerate(ordered):
            info = entry.info
            following = ordered[index + 1] if index + 1 < len(ordered) else None
            boundary = following.info.header_offset if following else directory_start
            fh.seek(info.header_offset)
            header = fh.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size:
                raise _damaged(label, entry.shown)
            (signature, _, flags, method, _, _, crc, csize, _, name_len, extra_len) = (
                _LOCAL_HEADER.unpack(header)
            )
            if signature != _LOCAL_SIGNATURE:
                raise _damaged(label, entry.shown)
            local_name = fh.read(name_len)
            if local_name != entry.raw_name:
                local_shown = _quote(local_name.decode("utf-8", "replace"))
                raise ArchiveError(
                    f"{label}: the entry {entry.shown} is stored under another name "
                    f"({local_shown}) in the archive's data. The archive is damaged or was "
                    "tampered with; download the extension again."
                )
            has_descriptor = bool((flags | info.flag_bits) & _FLAG_DATA_DESCRIPTOR)
            consistent = method == info.compress_type and not flags & _FLAG_ENCRYPTED
            if not has_descriptor:
                consistent = consistent and crc == info.CRC
                consistent = consistent and csize in (info.compress_size, _ZIP64_MARKER)
            if not consistent:
                raise ArchiveError(
                    f"{label}: the entry {entry.shown} is described differently in two places "
                    "of the archive. The archive is damaged or was tampered with; download the "
                    "extension again."
                )
            start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            data_start[info.header_offset] = start
            end = start + info.compress_size
            if has_descriptor and end <= boundary:
                end = _descriptor_end(fh, entry, end, boundary, label)
            if following is not None and end > boundary:
                raise ArchiveError(
                    f"{label} has entries that share the same data ({entry.shown} and "
                    f"{following.shown}), which is typical of a zip bomb. {_UNSAFE}"
                )
            if end > boundary:
                raise _damaged(label, entry.shown)
            if end < boundary:
                if following is None:
                    where = f"after its last entry ({entry.shown})"
                else:
                    where = f"between {entry.shown} and {following.shown}"
                raise ArchiveError(
                    f"{label} has hidden data {where} that the archive does not list. " + _RECREATE
                )
    except _READ_ERRORS as exc:
        raise ArchiveError(
            f"{label} is damaged and cannot be read as a zip archive. Download the extension again."
        ) from exc
    return data_start


def _descriptor_end(
    fh: io.BufferedReader, entry: _Entry, data_end: int, boundary: int, label: str
) -> int:
    """Where the data descriptor announced by flag bit 3 ends, given that the entry's data ends
    at ``data_end`` and the next header starts at ``boundary``.

    A descriptor that is not there at all is accepted, as zipfile and Info-ZIP's unzip accept
    it: the central directory already gives the CRC and sizes, and the data is checked against
    those when it is read. A descriptor that is there must agree with the central directory.
    Bytes that are no descriptor are left for the caller to report as hidden data.
    """
    room = boundary - data_end
    form = _DESCRIPTOR_FORMS.get(room)
    if form is None:
        return data_end
    signed, layout = form
    fh.seek(data_end)
    descriptor = fh.read(room)
    if len(descriptor) != room or signed != descriptor.startswith(_DESCRIPTOR_SIGNATURE):
        return data_end
    info = entry.info
    if layout.unpack(descriptor) != (info.CRC, info.compress_size, info.file_size):
        raise ArchiveError(
            f"{label} is damaged: {entry.shown} is described differently in two places of the "
            "archive (its checksum or size). Download the extension again."
        )
    return boundary


# -- names --------------------------------------------------------------------------------


def _decode_name(info: zipfile.ZipInfo) -> str:
    """The entry's name, reading UTF-8 that was written without the UTF-8 flag as UTF-8."""
    name = info.orig_filename
    if not info.flag_bits & _FLAG_UTF8:
        try:
            utf8 = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            return name
        return utf8
    return name


def _split_name(name: str, shown: str, label: str) -> tuple[tuple[str, ...], bool]:
    """Split a raw name into safe components; ``./`` alone (bsdtar's root) gives ``()``."""
    # Printable ASCII has neither control nor bidi characters; only other names are looked at.
    for char in "" if name.isascii() and name.isprintable() else name:
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise ArchiveError(
                f"{label} contains an entry whose name has an invisible control character "
                f"({shown}). {_UNSAFE}"
            )
    text = name.replace("\\", "/")
    if not text:
        raise ArchiveError(f"{label} contains an entry with an empty name. " + _RECREATE)
    if text.startswith("//"):
        raise ArchiveError(f"{label} contains an entry with a network path ({shown}). {_UNSAFE}")
    if text.startswith("/"):
        raise ArchiveError(f"{label} contains an entry with an absolute path ({shown}). {_UNSAFE}")
    if len(text) >= 2 and text[1] == ":" and text[0].isascii() and text[0].isalpha():
        raise ArchiveError(f"{label} contains an entry with a drive letter ({shown}). {_UNSAFE}")
    if text == "./":
        return (), True
    text = text.removeprefix("./")
    is_dir = text.endswith("/")
    parts = tuple(text.removesuffix("/").split("/"))
    for part in parts:
        if part == "..":
            raise ArchiveError(
                f"{label} contains an entry that points outside the extension folder "
                f"({shown}). {_UNSAFE}"
            )
        if part in ("", "."):
            kind = "an empty folder name" if part == "" else "a '.' folder name"
            raise ArchiveError(f"{label} contains an entry with {kind} ({shown}). " + _RECREATE)
    return parts, is_dir


def _check_portable_component(part: str, shown: str, label: str, limits: Limits) -> None:
    """Refuse a name component that Windows cannot store."""
    forbidden = sorted(set(part) & _WINDOWS_FORBIDDEN)
    if forbidden:
        raise ArchiveError(
            f"{label} contains {shown}, whose name uses a character Windows cannot store "
            f"({' '.join(forbidden)}). Rename the file and re-create the zip."
        )
    if part.endswith((".", " ")):
        raise ArchiveError(
            f"{label} contains {shown}, whose name ends with a dot or a space, which Windows "
            "cannot store. Rename the file and re-create the zip."
        )
    # Windows ignores everything from the first dot, and spaces before it: "con .txt" is CON.
    device = part.split(".", 1)[0].rstrip(" ").upper()
    if device in _RESERVED_DEVICE_NAMES:
        raise ArchiveError(
            f"{label} contains {shown}, whose name uses the reserved Windows device name "
            f"{device}. Rename the file and re-create the zip."
        )
    if len(part) > limits.max_component_chars:
        raise ArchiveError(
            f"{label} contains a name longer than {limits.max_component_chars} characters "
            f"({len(part):,} characters in {shown}). Shorten the name and re-create the zip."
        )
    encoded = len(part.encode("utf-8", "surrogateescape"))
    if encoded > limits.max_component_bytes:
        raise ArchiveError(
            f"{label} contains a name longer than {limits.max_component_bytes} bytes "
            f"({encoded:,} bytes in {shown}), more than file systems can store for one name. "
            "Shorten the name and re-create the zip."
        )


def _check_file_type(info: zipfile.ZipInfo, shown: str, label: str) -> None:
    """Refuse symbolic links and special files declared in Unix mode bits."""
    if info.create_system != _UNIX:
        return
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise ArchiveError(
            f"{label} contains a symbolic link ({shown}). Extensions cannot include links; "
            "replace it with a copy of the file."
        )
    special = {
        stat.S_IFCHR: "a device",
        stat.S_IFBLK: "a device",
        stat.S_IFIFO: "a pipe",
        stat.S_IFSOCK: "a socket",
    }.get(kind)
    if special:
        raise ArchiveError(
            f"{label} contains a special file, {special} ({shown}). Extensions can only "
            "contain regular files and folders."
        )


def _is_junk(parts: tuple[str, ...], is_dir: bool) -> bool:
    """Files that macOS and Windows add on their own, which are never installed."""
    if _JUNK_FOLDER in parts:
        return True
    if is_dir or not parts:
        return False
    base = parts[-1]
    return base.casefold() in _JUNK_FILE_NAMES or base.startswith("._")


def _fold(parts: tuple[str, ...]) -> str:
    return unicodedata.normalize("NFC", "/".join(parts)).casefold()


def _check_collisions(entries: list[_Entry], label: str) -> None:
    """Refuse names that would overwrite each other on any supported file system."""
    files: dict[str, _Entry] = {}
    exact_files: dict[tuple[str, ...], _Entry] = {}
    folders: dict[str, tuple[tuple[str, ...], _Entry]] = {}
    for entry in entries:
        prefixes = [entry.parts[:depth] for depth in range(1, len(entry.parts))]
        if entry.is_dir:
            prefixes.append(entry.parts)
        else:
            if entry.parts in exact_files:
                raise ArchiveError(
                    f"{label} contains {entry.shown} twice. Re-create the zip so that each "
                    "file appears once."
                )
            exact_files[entry.parts] = entry
            key = _fold(entry.parts)
            other = files.get(key)
            if other is not None:
                raise _same_file(label, other.shown, entry.shown)
            files[key] = entry
        for prefix in prefixes:
            key = _fold(prefix)
            known = folders.get(key)
            if known is None:
                folders[key] = (prefix, entry)
            elif known[0] != prefix:
                raise _same_file(
                    label, _quote("/".join(known[0]) + "/"), _quote("/".join(prefix) + "/")
                )
    for key, entry in files.items():
        if key in folders:
            raise ArchiveError(
                f"{label} contains {entry.shown} both as a file and as a folder "
                f"({folders[key][1].shown}). Rename one of them and re-create the zip."
            )


def _locate_manifest(
    files: list[_Entry], installable: list[_Entry], label: str
) -> tuple[str, _Entry]:
    """Find manifest.json at the top or inside the single top-level folder."""
    if not files:
        raise ArchiveError(f"{label} contains no files to install. " + _CHOOSE_AGAIN)
    if all(e.parts[-1].casefold().endswith(".zip") for e in files):
        raise NestedArchiveError(
            f"{label} contains a zip of zips ({files[0].shown}): unzip it and install the "
            "inner file.",
            tuple("/".join(e.parts) for e in files),
        )
    at_top = [e for e in files if e.parts == (MANIFEST_NAME,)]
    in_folder = [e for e in files if len(e.parts) == 2 and e.parts[1] == MANIFEST_NAME]
    top_level = list(
        dict.fromkeys(
            e.parts[0] + ("/" if len(e.parts) > 1 or e.is_dir else "") for e in installable
        )
    )
    if at_top and in_folder:
        raise ArchiveError(
            f"{label} has a manifest.json at the top and another in {in_folder[0].shown}, so "
            "it is unclear which is the extension. Keep only the one at the top."
        )
    if at_top:
        return "", at_top[0]
    if len(in_folder) > 1:
        folders = ", ".join(_quote(e.parts[0] + "/") for e in in_folder[:3])
        raise ArchiveError(
            f"{label} contains several folders with a manifest.json ({folders}), so it is "
            "unclear which is the extension. Zip each extension separately."
        )
    if in_folder:
        folder = in_folder[0].parts[0]
        others = [name for name in top_level if name != folder + "/"]
        if others:
            listed = ", ".join(_quote(name) for name in others[:3])
            raise ArchiveError(
                f"{label} has its manifest.json inside {_quote(folder + '/')} but also other "
                f"items next to that folder ({listed}). Move everything into the folder or "
                "put manifest.json at the top of the archive."
            )
        return folder + "/", in_folder[0]
    deeper = [e for e in files if e.parts[-1] == MANIFEST_NAME]
    if deeper:
        raise NestedArchiveError(
            f"{label} has its manifest.json at {deeper[0].shown}, but it must be at the top of "
            "the archive or inside its single top-level folder. Re-create the zip from the "
            "extension's folder.",
            _outermost_folders(e.parts[:-1] for e in deeper),
        )
    misnamed = [e for e in files if e.parts[-1].casefold() == MANIFEST_NAME]
    if misnamed:
        raise ArchiveError(
            f"{label} contains {misnamed[0].shown}, but the file must be named exactly "
            "manifest.json (lower case). Rename it and re-create the zip."
        )
    listed = ", ".join(_quote(name) for name in top_level[:3])
    kind = _guess_kind(files)
    inner_zips = [e for e in files if e.parts[-1].casefold().endswith(".zip")]
    if inner_zips and kind is None:
        # A download with a read-me beside the real zip: the zips are what may be installed.
        raise NestedArchiveError(
            f"{label} contains no manifest.json, only other files and zips "
            f"({inner_zips[0].shown}): unzip it and install the inner file.",
            tuple("/".join(e.parts) for e in inner_zips),
        )
    looks = f"; it looks like {kind}" if kind else ""
    raise ArchiveError(
        f"{label} contains no manifest.json at the top of the archive or inside its single "
        f"top-level folder, so it is not an extension{looks} (it contains {listed}). "
        + _CHOOSE_AGAIN
    )


def _outermost_folders(folders: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """The folders, as ``a/b/`` paths, leaving out those inside another of them (the
    manifests of an extension's own dependencies, say)."""
    ordered = sorted(set(folders))
    kept: list[tuple[str, ...]] = []
    for folder in ordered:
        if not any(folder[: len(outer)] == outer for outer in kept):
            kept.append(folder)
    return tuple("/".join(folder) + "/" for folder in kept)


def _root_parts(root: str) -> tuple[str, ...]:
    """The components of a ``root`` folder path given to :func:`open_archive`."""
    parts = tuple(part for part in root.replace("\\", "/").split("/") if part not in ("", "."))
    if not parts or ".." in parts:
        raise ValueError(f"{root!r} is not a folder path inside an archive")
    return parts


def _locate_root(root: tuple[str, ...], files: list[_Entry], label: str) -> tuple[str, _Entry]:
    """The manifest directly in the folder ``root``, which becomes the extension's root."""
    shown = _quote("/".join(root) + "/")
    inside = [e for e in files if e.parts[: len(root)] == root]
    if not inside:
        raise ArchiveError(f"{label} has no folder {shown} with files in it. " + _CHOOSE_AGAIN)
    for entry in inside:
        if entry.parts[len(root) :] == (MANIFEST_NAME,):
            return "/".join(root) + "/", entry
    raise ArchiveError(
        f"{label} has no manifest.json directly in {shown}, so that folder is not an "
        "extension. " + _CHOOSE_AGAIN
    )


def _guess_kind(files: list[_Entry]) -> str | None:
    """A short description of common non-extension archives, for the error message."""
    names = {part.casefold() for e in files for part in e.parts[:2]}
    if "extension.vsixmanifest" in names:
        return "a VS Code extension (.vsix)"
    if names & {"setup.py", "pyproject.toml", "pkg-info", "setup.cfg"} or any(
        name.endswith(".dist-info") for name in names
    ):
        return "a Python package"
    if "[content_types].xml" in names:
        return "an Office document"
    if "meta-inf" in names:
        return "a Java archive"
    if all(PurePosixPath(e.parts[-1]).suffix.casefold() in _IMAGE_SUFFIXES for e in files):
        return "a folder of images"
    return None


# -- messages -----------------------------------------------------------------------------


def _quote(text: str, limit: int = 120) -> str:
    """``text`` in single quotes, invisible characters escaped and long names shortened."""
    if text.isascii() and text.isprintable():  # most names: nothing to escape
        shown = text
    else:
        shown = "".join(
            f"\\u{ord(char):04x}"
            if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS
            else char
            for char in text
        )
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return f"'{shown}'"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).rstrip(".").lower()


def _damaged(label: str, shown: str) -> ArchiveError:
    return ArchiveError(
        f"{label} is damaged: {shown} does not match its checksum or is incomplete. "
        "Download the extension again."
    )


def _prepended(label: str) -> ArchiveError:
    return ArchiveError(
        f"{label} has extra data before its first entry (for example a self-extracting "
        "program). " + _RECREATE
    )


def _same_file(label: str, first: str, second: str) -> ArchiveError:
    return ArchiveError(
        f"{label} contains both {first} and {second}, which are the same name on Windows and "
        "macOS. Rename one of them and re-create the zip."
    )


def _too_many_entries(label: str, count: int, limits: Limits) -> ArchiveError:
    return ArchiveError(
        f"{label} contains {count:,} entries, more than the {limits.max_entries:,} entries an "
        "extension may have. This archive cannot be installed."
    )


def _damaged_end(label: str) -> ArchiveError:
    return ArchiveError(
        f"{label} is damaged: the table of contents at the end of the zip archive cannot be "
        "read. Download the extension again."
    )


def _browser_add_on(label: str) -> ArchiveError:
    return ArchiveError(
        f"{label} is a browser add-on (a Chrome extension, .crx), not an Extension Manager "
        "extension: install it in your web browser instead."
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
