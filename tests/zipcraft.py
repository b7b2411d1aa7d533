"""Build test archives by code, from ordinary zips to byte-level forgeries.

Two levels:

* :func:`make_zip` and :func:`write_entries` use :mod:`zipfile`, for archives a real tool could
  produce (including odd but legal entries: symlinks, flag bits, custom create_system).
* :func:`build_raw_zip` writes local headers, data and the central directory by hand, for
  archives no honest tool produces: overlapping entries, hidden bytes, lying sizes, names that
  differ between the local header and the central directory.

Plus in-place manipulations of an existing archive (:func:`prepend_data`, :func:`append_data`,
:func:`truncate`, :func:`corrupt_member_data`, :func:`set_end_record_entries`,
:func:`with_zip64_end_record`).
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE_MODE = stat.S_IFREG | 0o644
UNIX = 3

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_DATA_DESCRIPTOR_FLAG = 0x8
MSDOS = 0
MSDOS_DIRECTORY = 0x10


def minimal_manifest(**overrides: Any) -> bytes:
    """A valid manifest.json ("example.hello", "Hello", "1.0.0"); ``overrides`` replace keys."""
    manifest: dict[str, Any] = {"id": "example.hello", "name": "Hello", "version": "1.0.0"}
    manifest.update(overrides)
    return json.dumps(manifest, indent=2).encode("utf-8")


def make_zip(
    path: Path,
    files: Mapping[str, bytes],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    top_folder: str | None = None,
    directory_entries: bool = False,
) -> Path:
    """Write ``files`` (name -> content) as a zip; optionally all under ``top_folder/``.

    With ``directory_entries`` every folder also gets its own ``name/`` entry first, as
    GitHub's archives and most desktop tools write them.
    """
    prefix = f"{top_folder.strip('/')}/" if top_folder else ""
    names = {prefix + name: data for name, data in files.items()}
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        if directory_entries:
            for folder in _folders(names):
                zf.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in names.items():
            zf.writestr(name, data)
    return path


def make_extension_zip(path: Path, extra: Mapping[str, bytes] | None = None, **kwargs: Any) -> Path:
    """:func:`make_zip` with :func:`minimal_manifest` as manifest.json plus ``extra`` files."""
    files = {"manifest.json": minimal_manifest(), **(extra or {})}
    return make_zip(path, files, **kwargs)


def zip_info(
    name: str,
    *,
    mode: int = DEFAULT_FILE_MODE,
    create_system: int = UNIX,
    flag_bits: int = 0,
    compress_type: int = zipfile.ZIP_DEFLATED,
) -> zipfile.ZipInfo:
    """A ZipInfo with Unix ``mode`` in the high 16 bits of external_attr and chosen flags."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = (mode & 0xFFFF) << 16
    info.create_system = create_system
    info.flag_bits = flag_bits
    info.compress_type = compress_type
    return info


def symlink_info(name: str) -> zipfile.ZipInfo:
    """A ZipInfo declaring a Unix symbolic link (its content is the link target)."""
    return zip_info(name, mode=stat.S_IFLNK | 0o777, compress_type=zipfile.ZIP_STORED)


def write_entries(path: Path, entries: Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    """Write ``(info or name, content)`` pairs with zipfile, keeping each ZipInfo as given."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


class NonSeekableWriter(io.RawIOBase):
    """A write-only stream that cannot seek or tell, so zipfile writes data descriptors."""

    def __init__(self, target: io.BufferedIOBase | io.RawIOBase) -> None:
        super().__init__()
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = self._target.write(data)
        return len(data) if written is None else written


def make_streamed_zip(path: Path, files: Mapping[str, bytes], *, zip64: bool = False) -> Path:
    """Like :func:`make_zip` but written to a non-seekable stream (data descriptors, flag 0x8).

    With ``zip64`` every entry is forced into zip64 form (24-byte descriptors).
    """
    with (
        path.open("wb") as raw,
        NonSeekableWriter(raw) as stream,
        zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for name, data in files.items():
            with zf.open(name, "w", force_zip64=zip64) as member:
                member.write(data)
    return path


def make_zip64(path: Path, files: Mapping[str, bytes]) -> Path:
    """A seekable zip whose entries are all forced into zip64 form."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            with zf.open(name, "w", force_zip64=True) as member:
                member.write(data)
    return path


def deflate_raw(data: bytes) -> bytes:
    """``data`` as a raw deflate stream, the way zip stores method 8."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@dataclass
class RawEntry:
    """One entry for :func:`build_raw_zip`; every field a real writer would derive is settable.

    ``content`` is the uncompressed content, ``method`` 0 (stored) or 8 (deflated) chooses how
    it is stored unless ``stored_data`` gives the exact bytes. ``size`` and ``crc`` default to
    the truth about ``content``. ``external_attr``, when given, replaces the attributes made
    from ``mode`` (MS-DOS writers put their attribute bits in the low byte). ``descriptor`` is
    written right after the data (see :func:`data_descriptor`); ``local_flag_bits`` and
    ``local_zeroed`` make the local header differ from the central directory the way streaming
    writers do (flag bit 3, CRC and sizes 0).
    """

    name: str | bytes
    content: bytes = b""
    method: int = zipfile.ZIP_STORED
    stored_data: bytes | None = None
    size: int | None = None
    crc: int | None = None
    flag_bits: int = 0
    create_system: int = UNIX
    mode: int = DEFAULT_FILE_MODE
    local_name: str | bytes | None = None
    padding_before: bytes = field(default=b"", repr=False)
    external_attr: int | None = None
    descriptor: bytes = field(default=b"", repr=False)
    local_flag_bits: int | None = None
    local_zeroed: bool = False

    def payload(self) -> bytes:
        """The bytes written after the local header."""
        if self.stored_data is not None:
            return self.stored_data
        if self.method == zipfile.ZIP_DEFLATED:
            return deflate_raw(self.content)
        return self.content

    def attributes(self) -> int:
        """The central directory's external attributes."""
        if self.external_attr is not None:
            return self.external_attr
        return (self.mode & 0xFFFF) << 16


def data_descriptor(
    entry: RawEntry, *, signature: bool = True, zip64: bool = False, crc: int | None = None
) -> bytes:
    """The data descriptor a streaming writer puts after ``entry``'s data.

    ``signature`` adds the optional ``PK\\x07\\x08``; ``zip64`` writes 8-byte sizes; ``crc``
    replaces the true CRC (a descriptor that contradicts the central directory).
    """
    sizes = struct.pack("<QQ" if zip64 else "<LL", len(entry.payload()), _size(entry))
    value = _crc(entry) if crc is None else crc
    return (b"PK\x07\x08" if signature else b"") + struct.pack("<L", value) + sizes


def build_raw_zip(
    entries: Sequence[RawEntry],
    *,
    prefix: bytes = b"",
    absolute_offsets: bool = True,
    before_directory: bytes = b"",
    shared_data: Sequence[tuple[str, int]] = (),
    comment: bytes = b"",
    after_end: bytes = b"",
) -> bytes:
    """Assemble a zip by hand.

    ``prefix`` is written before the first entry; with ``absolute_offsets`` the central
    directory counts it (as ``zip -A`` would), otherwise offsets ignore it (plain
    concatenation). ``before_directory`` is written between the last entry and the central
    directory. ``shared_data`` adds central-directory records ``(name, index)`` that reuse the
    local header and data of ``entries[index]``: overlapping entries. ``comment`` is the zip
    comment (counted by the end record); ``after_end`` is written after the end record and the
    comment without being counted (appended data).
    """
    out = bytearray(prefix)
    base = 0 if absolute_offsets else len(prefix)
    records: list[tuple[RawEntry, bytes, int]] = []
    for entry in entries:
        out += entry.padding_before
        name = _encode(entry.name, entry.flag_bits)
        local_name = name if entry.local_name is None else _encode(entry.local_name, 0)
        payload = entry.payload()
        offset = len(out) - base
        zeroed = entry.local_zeroed
        out += _LOCAL.pack(
            b"PK\x03\x04",
            20,
            entry.flag_bits if entry.local_flag_bits is None else entry.local_flag_bits,
            entry.method,
            0,
            0x21,
            0 if zeroed else _crc(entry),
            0 if zeroed else len(payload),
            0 if zeroed else _size(entry),
            len(local_name),
            0,
        )
        out += local_name + payload + entry.descriptor
        records.append((entry, name, offset))
    for shared_name, index in shared_data:
        entry, _, offset = records[index]
        records.append((entry, _encode(shared_name, entry.flag_bits), offset))
    out += before_directory
    directory_offset = len(out) - base
    for entry, name, offset in records:
        out += _CENTRAL.pack(
            b"PK\x01\x02",
            (entry.create_system << 8) | 20,
            20,
            entry.flag_bits,
            entry.method,
            0,
            0x21,
            _crc(entry),
            len(entry.payload()),
            _size(entry),
            len(name),
            0,
            0,
            0,
            0,
            entry.attributes(),
            offset,
        )
        out += name
    directory_size = len(out) - base - directory_offset
    out += _END.pack(
        b"PK\x05\x06",
        0,
        0,
        len(records),
        len(records),
        directory_size,
        directory_offset,
        len(comment),
    )
    return bytes(out + comment + after_end)


def write_raw_zip(path: Path, entries: Sequence[RawEntry], **kwargs: Any) -> Path:
    """:func:`build_raw_zip` written to ``path``."""
    path.write_bytes(build_raw_zip(entries, **kwargs))
    return path


def prepend_data(path: Path, data: bytes) -> Path:
    """Put ``data`` before the archive without fixing offsets (like a self-extractor stub)."""
    path.write_bytes(data + path.read_bytes())
    return path


def append_data(path: Path, data: bytes) -> Path:
    """Put ``data`` after the archive's end record (two files joined, or a stray tail)."""
    path.write_bytes(path.read_bytes() + data)
    return path


def msdos_folder(name: str) -> RawEntry:
    """A folder entry as old Windows tools wrote it: no trailing slash, only the MS-DOS
    directory attribute says it is a folder."""
    return RawEntry(name, b"", create_system=MSDOS, external_attr=MSDOS_DIRECTORY)


def streamed_entry(name: str, content: bytes, **descriptor: Any) -> RawEntry:
    """A deflated entry written the way a streaming writer does: flag bit 3, zeros in the local
    header, and a data descriptor after the data (``descriptor`` goes to :func:`data_descriptor`).
    """
    entry = RawEntry(
        name,
        content,
        method=zipfile.ZIP_DEFLATED,
        flag_bits=_DATA_DESCRIPTOR_FLAG,
        local_zeroed=True,
    )
    entry.descriptor = data_descriptor(entry, **descriptor)
    return entry


def set_end_record_entries(path: Path, entries: int) -> Path:
    """Overwrite both entry counts of the end record (the last one in the file)."""
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", raw, end + 8, entries, entries)
    path.write_bytes(bytes(raw))
    return path


def with_zip64_end_record(path: Path, *, entries: int | None = None) -> Path:
    """Rewrite the end of an archive in zip64 form: a zip64 end record and its locator, then a
    classic end record holding only the "see zip64" sentinels. ``entries`` replaces the true
    count in the zip64 record (0xFFFFFFFFFFFFFFFF is what a damaged or hostile file holds).
    """
    raw = path.read_bytes()
    end = raw.rfind(b"PK\x05\x06")
    _, _, _, _, count, directory_size, directory_offset, _ = _END.unpack_from(raw, end)
    stated = count if entries is None else entries
    zip64_end = _ZIP64_END.pack(
        b"PK\x06\x06",
        _ZIP64_END.size - 12,
        45,
        45,
        0,
        0,
        stated,
        stated,
        directory_size,
        directory_offset,
    )
    locator = _ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end, 1)
    sentinel_end = _END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(raw[:end] + zip64_end + locator + sentinel_end)
    return path


def truncate(path: Path, keep: int) -> Path:
    """Cut the file down to its first ``keep`` bytes (a partial download)."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def corrupt_member_data(path: Path, name: str) -> Path:
    """Flip the first data byte of member ``name``, so only its CRC check can notice."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    header = _LOCAL.unpack_from(raw, info.header_offset)
    data_start = info.header_offset + _LOCAL.size + header[9] + header[10]
    raw[data_start] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _folders(names: Iterable[str]) -> list[str]:
    folders: dict[str, None] = {}
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folders["/".join(parts[:depth]) + "/"] = None
    return list(folders)


def _encode(name: str | bytes, flag_bits: int) -> bytes:
    if isinstance(name, bytes):
        return name
    return name.encode("utf-8" if flag_bits & 0x800 else "cp437")


def _crc(entry: RawEntry) -> int:
    return zlib.crc32(entry.content) if entry.crc is None else entry.crc


def _size(entry: RawEntry) -> int:
    return len(entry.content) if entry.size is None else entry.size
