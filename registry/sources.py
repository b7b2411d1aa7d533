"""Update sources: where newer versions of installed extensions are found, offline or not.

A source is either a **folder of zips** (each zip's manifest read once and remembered by path,
size and time, so an unchanged folder is not read again) or an **index** (``index.json``, as
``write_index`` makes it next to a folder of zips) read over HTTP(S) or ``file://``, so that
anyone can publish a folder on a static web server.

The rules for what is offered: only a strictly greater version than the installed one, only
one that fits the running app (newer ones that do not are listed with the reason), never a
downgrade, nothing for a held extension. A download is checked against the size and SHA-256
the source gave before anything is extracted from it.

Nothing here is called at launch unless the person turned automatic checks on; listing,
enabling, uninstalling and rolling back never wait on a source.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from registry.durable import flush_folder
from registry.errors import InstallCancelledError, InstallRefusedError, UserFacingError
from registry.limits import DEFAULT_LIMITS, Limits
from registry.sizes import format_size
from registry.store import ExtensionRecord, Registry, SourceFileRecord, SourceRecord
from registry.version import APP_VERSION

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from jsonschema import Draft202012Validator

    from registry.manifest import Manifest

log = logging.getLogger(__name__)

FOLDER = "FOLDER"
INDEX = "INDEX"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
# A source that does not answer within this many seconds is reported as unreachable.
TIMEOUT_SECONDS = 10.0
MAX_INDEX_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
USER_AGENT = f"ExtensionManager/{APP_VERSION}"


class SourceError(UserFacingError):
    """A source could not be read: one plain sentence naming it and saying what to do."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One version of one extension that a source has."""

    extension_id: str
    version: str
    size: int
    sha256: str
    url: str  # absolute: http(s)://, file://, or a path for a folder source
    source: str  # the source's location, as added
    name: str = ""
    min_app_version: str | None = None
    max_app_version: str | None = None

    def unfit_reason(self, app_version: str) -> str | None:
        """Why this version does not fit ``app_version`` ("needs Extension Manager ≥ 3.1.0")."""
        from registry.manifest import app_version_fits, compatibility_requirement

        if app_version_fits(app_version, self.min_app_version, self.max_app_version) is None:
            return None
        return "needs " + compatibility_requirement(self.min_app_version, self.max_app_version)


@dataclass(frozen=True, slots=True)
class ExtensionUpdates:
    """What the sources have for one installed extension."""

    extension_id: str
    name: str
    installed_version: str
    offer: Offer | None  # the version to update to, if any
    blocked: tuple[tuple[Offer, str], ...] = ()  # newer, but not for this app: with why
    held: str | None = None  # the hold's reason: no update is offered while it is held
    origin_note: str | None = None  # said when the update would replace a hand-installed zip
    withheld: Offer | None = None  # what would be offered if it were not held

    @property
    def status(self) -> str:
        if self.held is not None and (self.withheld is not None or self.blocked):
            return "held"
        if self.offer is not None:
            return "update"
        if self.blocked:
            return "blocked"
        return "up to date"


@dataclass(frozen=True, slots=True)
class UpdateReport:
    extensions: tuple[ExtensionUpdates, ...]
    problems: tuple[str, ...] = ()  # sources that could not be read, in plain words

    @property
    def available(self) -> list[ExtensionUpdates]:
        return [e for e in self.extensions if e.status == "update"]

    def for_extension(self, extension_id: str) -> ExtensionUpdates | None:
        return next((e for e in self.extensions if e.extension_id == extension_id), None)


# -- where a source is ---------------------------------------------------------------------------


def classify(location: str) -> tuple[str, str]:
    """The stored location and kind for what the person typed: a folder of zips, an index
    file, or an http(s)/file URL of an index (or of the folder that holds it)."""
    text = location.strip()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https", "file"):
        if not text.lower().endswith(".json"):
            text = text.rstrip("/") + "/" + INDEX_NAME
        return text, INDEX
    if scheme and len(scheme) > 1:
        raise SourceError(
            f"'{location}' is not a source this app can read: use a folder, an index.json, or "
            "an http://, https:// or file:// address."
        )
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        return str(path), FOLDER
    if path.is_file() and path.suffix.lower() == ".json":
        return path.as_uri(), INDEX
    raise SourceError(
        f"There is no folder or index.json at {path}. Check the path, or give the address of "
        "an index (http://, https:// or file://)."
    )


# -- reading a source ----------------------------------------------------------------------------


def read_source(
    registry: Registry, source: SourceRecord, limits: Limits = DEFAULT_LIMITS
) -> list[Offer]:
    """Every version a source has; raises ``SourceError`` when it cannot be read."""
    if source.kind == FOLDER:
        folder = Path(source.location)
        if not folder.is_dir():
            raise SourceError(
                f"The source folder {folder} is not there (a disk that is not connected?). "
                "Connect it, or remove the source with 'extension-manager sources remove'."
            )
        return [
            _offer_from_file(record, source.location)
            for record in scan_folder(folder, registry, limits)
            if record.problem is None
        ]
    return offers_from_index(fetch_index(source.location), source.location)


def _offer_from_file(record: SourceFileRecord, source: str) -> Offer:
    assert record.extension_id is not None and record.version is not None
    return Offer(
        extension_id=record.extension_id,
        version=record.version,
        size=record.size,
        sha256=record.sha256,
        url=record.path,
        source=source,
        min_app_version=record.min_app_version,
        max_app_version=record.max_app_version,
    )


def scan_folder(
    folder: Path, registry: Registry | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[SourceFileRecord]:
    """What each zip directly in ``folder`` holds. With a registry, a zip whose path, size and
    modification time are unchanged since it was last read is not read again."""
    zips = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".zip" and p.is_file())
    known = registry.source_files(str(p) for p in zips) if registry is not None else {}
    records: list[SourceFileRecord] = []
    fresh: list[SourceFileRecord] = []
    for path in zips:
        stat = path.stat()
        cached = known.get(str(path))
        if cached is not None and (cached.size, cached.mtime_ns) == (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            records.append(cached)
            continue
        record = read_zip(path, stat.st_size, stat.st_mtime_ns, limits)
        records.append(record)
        fresh.append(record)
    if registry is not None and fresh:
        registry.remember_source_files(fresh)
    return records


def read_zip(path: Path, size: int, mtime_ns: int, limits: Limits) -> SourceFileRecord:
    """Check one zip as an install would and read its manifest; a bad one is remembered with
    its problem (and offered by no source)."""
    try:
        manifest, digest = _checked_manifest(path, limits)
    except UserFacingError as error:
        return SourceFileRecord(str(path), size, mtime_ns, "", None, None, None, None, str(error))
    return SourceFileRecord(
        path=str(path),
        size=size,
        mtime_ns=mtime_ns,
        sha256=digest,
        extension_id=manifest.id,
        version=str(manifest.version),
        min_app_version=str(manifest.min_app_version) if manifest.min_app_version else None,
        max_app_version=str(manifest.max_app_version) if manifest.max_app_version else None,
        problem=None,
    )


def _checked_manifest(path: Path, limits: Limits) -> tuple[Manifest, str]:
    from registry.archive import open_archive
    from registry.manifest import parse_manifest

    with open_archive(path, limits) as archive:
        manifest = parse_manifest(archive.read_member(archive.manifest, limits.max_manifest_bytes))
        return manifest, archive.sha256()


def index_schema_path() -> Traversable:
    return files(__name__.rpartition(".")[0]) / "index.schema.json"


@functools.cache
def _index_validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(index_schema_path().read_text(encoding="utf-8")))


def fetch_index(url: str) -> dict[str, Any]:
    """Read and check an index; ``SourceError`` in plain words when it cannot be used."""
    data = _fetch_bytes(url, MAX_INDEX_BYTES)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(
            f"The index at {url} is not valid JSON ({error}). Ask its owner to write it again "
            "with 'extension-manager index'."
        ) from error
    newer = isinstance(document, dict) and isinstance(document.get("format"), int)
    if newer and document["format"] > INDEX_FORMAT:
        raise SourceError(
            f"The index at {url} uses format {document['format']}, which needs a newer "
            f"Extension Manager (this one reads format {INDEX_FORMAT}). Update the app."
        )
    errors = sorted(_index_validator().iter_errors(document), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.path) or "the top level"
        raise SourceError(
            f"The index at {url} is not a valid update index ({where}: {first.message}). Ask "
            "its owner to write it again with 'extension-manager index'."
        )
    return dict(document)


def offers_from_index(document: dict[str, Any], url: str) -> list[Offer]:
    """The index's entries, with their URLs made absolute. An index on a web server may only
    point at web addresses: one that names a ``file://`` path (or anything else) would make the
    app read files of this computer on a stranger's say-so, so such entries are skipped."""
    remote = urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")
    allowed = ("http", "https") if remote else ("http", "https", "file")
    offers = []
    for entry in document["extensions"]:
        location = urllib.parse.urljoin(url, entry["url"])
        if urllib.parse.urlsplit(location).scheme.lower() not in allowed:
            log.warning("index %s: skipped %s, which is not a web address", url, location)
            continue
        offers.append(
            Offer(
                extension_id=entry["id"],
                version=entry["version"],
                size=entry["size"],
                sha256=entry["sha256"],
                url=location,
                source=url,
                name=entry.get("name", ""),
                min_app_version=entry.get("min_app_version"),
                max_app_version=entry.get("max_app_version"),
            )
        )
    return offers


def _open_url(url: str, offset: int = 0) -> Any:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise SourceError(f"'{url}' is not an http, https or file address.")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        raise SourceError(
            f"{url} answered {error.code} {error.reason}. Check the address, or ask the "
            "source's owner."
        ) from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror.lower()
        raise SourceError(
            f"Could not reach {url} ({reason}). Check the network or the address and try "
            "again; everything installed keeps working meanwhile."
        ) from error


def _fetch_bytes(url: str, limit: int) -> bytes:
    with _open_url(url) as response:
        try:
            data = bytes(response.read(limit + 1))
        except OSError as error:
            raise SourceError(
                f"Reading {url} stopped ({error}). Try again; nothing was changed."
            ) from error
    if len(data) > limit:
        raise SourceError(
            f"The index at {url} is larger than {format_size(limit)}, which no index of "
            "extensions needs. Check the address."
        )
    return data


# -- what to offer -------------------------------------------------------------------------------


def check_updates(
    registry: Registry,
    app_version: str = APP_VERSION,
    limits: Limits = DEFAULT_LIMITS,
) -> UpdateReport:
    """Read every source and decide, for each installed extension, what to offer."""
    offers: list[Offer] = []
    problems: list[str] = []
    for source in registry.list_sources():
        try:
            offers.extend(read_source(registry, source, limits))
        except SourceError as error:
            problems.append(str(error))
            registry.note_source_checked(source.source_id, str(error))
        else:
            registry.note_source_checked(source.source_id, None)
    return decide(registry.list_extensions(), offers, app_version, tuple(problems))


def decide(
    installed: Iterable[ExtensionRecord],
    offers: Iterable[Offer],
    app_version: str,
    problems: tuple[str, ...] = (),
) -> UpdateReport:
    from registry.manifest import SemVer

    by_id: dict[str, list[tuple[SemVer, Offer]]] = {}
    for offer in offers:
        try:
            version = SemVer.parse(offer.version)
        except ValueError:
            continue
        by_id.setdefault(offer.extension_id, []).append((version, offer))
    results = []
    for extension in installed:
        try:
            current = SemVer.parse(extension.version)
        except ValueError:
            continue
        newer = sorted(
            (pair for pair in by_id.get(extension.id, []) if pair[0] > current),
            key=lambda pair: pair[0],
            reverse=True,
        )
        fitting = [offer for _, offer in newer if offer.unfit_reason(app_version) is None]
        best = fitting[0] if fitting else None
        best_version = SemVer.parse(best.version) if best is not None else current
        blocked = tuple(
            (offer, reason)
            for version, offer in newer
            if version > best_version and (reason := offer.unfit_reason(app_version))
        )
        results.append(
            ExtensionUpdates(
                extension_id=extension.id,
                name=extension.name,
                installed_version=extension.version,
                offer=None if extension.held else best,
                blocked=_one_per_version(blocked),
                held=(extension.hold_reason or "held") if extension.held else None,
                origin_note=None if extension.held else _origin_note(extension, best),
                withheld=best if extension.held else None,
            )
        )
    return UpdateReport(tuple(results), problems)


def _one_per_version(blocked: tuple[tuple[Offer, str], ...]) -> tuple[tuple[Offer, str], ...]:
    seen: set[str] = set()
    unique = []
    for offer, reason in blocked:
        if offer.version not in seen:
            seen.add(offer.version)
            unique.append((offer, reason))
    return tuple(unique)


def _origin_note(extension: ExtensionRecord, offer: Offer | None) -> str | None:
    """Said before a source replaces a version that was installed from a file by hand."""
    if offer is None or extension.origin_source is not None:
        return None
    where = Path(extension.origin).name if extension.origin else "a file"
    return (
        f"{extension.name} {extension.version} was installed by hand from {where}; "
        f"{offer.version} comes from the source {offer.source}."
    )


# -- downloading ---------------------------------------------------------------------------------


def download(
    offer: Offer,
    destination: Path,
    on_bytes: Callable[[int], None],
    should_cancel: Callable[[], bool],
) -> None:
    """Fetch the offered zip into ``destination``, checking its size and SHA-256 as it comes.

    A file that is not the one the source described (another size, another hash) is refused
    before anything is extracted from it; ``InstallCancelledError`` when cancelled."""
    digest = hashlib.sha256()
    written = 0
    source = _read_offered(offer)

    def keep(chunk: bytes, out: BinaryIO) -> None:
        digest.update(chunk)
        out.write(chunk)

    # The next chunk is received while the last one is hashed and written on another thread
    # (both release the GIL), so the check costs little more than the transfer itself.
    with (
        ThreadPoolExecutor(1, thread_name_prefix="download") as keeper,
        destination.open("xb") as out,
    ):
        pending: Future[None] | None = None
        try:
            while True:
                if should_cancel():
                    raise InstallCancelledError()
                try:
                    chunk = source.read(CHUNK_BYTES)
                except OSError as error:
                    raise SourceError(
                        f"The download of {offer.extension_id} {offer.version} from "
                        f"{offer.url} stopped ({error}). Nothing was changed; try again."
                    ) from error
                if pending is not None:
                    pending.result()
                    pending = None
                if not chunk:
                    break
                written += len(chunk)
                if written > offer.size:
                    raise _not_as_described(offer, f"it is larger than {offer.size:,} bytes")
                pending = keeper.submit(keep, chunk, out)
                on_bytes(written)
        finally:
            # The file is closed only once the last chunk is written (or its write failed).
            if pending is not None:
                with contextlib.suppress(Exception):
                    pending.result()
            source.close()
    # Not flushed: the download lives in the operation's staging folder, which a crash throws
    # away; what is installed from it (its files, the kept copy) is flushed as it is written.
    declared = _declared_length(source)
    if declared is not None and written < declared:
        # The server said how much it would send and sent less: the transfer was cut short,
        # which says nothing about the file itself.
        raise SourceError(
            f"The download of {offer.extension_id} {offer.version} from {offer.url} stopped "
            f"after {written:,} of {declared:,} bytes. Nothing was changed; try again."
        )
    if written != offer.size:
        raise _not_as_described(offer, f"it is {written:,} bytes, not {offer.size:,}")
    if digest.hexdigest() != offer.sha256:
        raise _not_as_described(
            offer, f"its SHA-256 is {digest.hexdigest()}, the source says {offer.sha256}"
        )


def _declared_length(response: Any) -> int | None:
    """The Content-Length a server (or a file:// response) announced, if any."""
    headers = getattr(response, "headers", None)
    text = headers.get("Content-Length") if headers is not None else None
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_offered(offer: Offer) -> Any:
    scheme = urllib.parse.urlsplit(offer.url).scheme.lower()
    if scheme in ("http", "https", "file"):
        return _open_url(offer.url)
    try:
        return Path(offer.url).open("rb")
    except OSError as error:
        raise SourceError(
            f"{offer.url} cannot be read any more ({error.strerror}). Check the source "
            "folder and try again; nothing was changed."
        ) from error


def _not_as_described(offer: Offer, how: str) -> InstallRefusedError:
    return InstallRefusedError(
        f"The file for {offer.extension_id} {offer.version} at {offer.url} is not the one the "
        f"source describes ({how}). Nothing was changed; tell the source's owner, who may "
        "need to write the index again."
    )


# -- publishing a folder -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexResult:
    path: Path
    entries: int
    skipped: tuple[str, ...] = field(default=())  # zips left out, with why


def write_index(folder: Path, limits: Limits = DEFAULT_LIMITS) -> IndexResult:
    """Write ``folder/index.json`` describing every good zip directly in ``folder`` (the
    file is replaced in one rename, so a web server never serves half of it)."""
    folder = folder.absolute()
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder. Give the folder that holds the zips.")
    entries = []
    skipped = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".zip" and p.is_file()):
        try:
            manifest, digest = _checked_manifest(path, limits)
        except UserFacingError as error:
            skipped.append(f"{path.name}: {error}")
            continue
        entry: dict[str, Any] = {
            "id": manifest.id,
            "name": manifest.name,
            "version": str(manifest.version),
            "size": path.stat().st_size,
            "sha256": digest,
            "url": urllib.parse.quote(path.name),
        }
        for key in ("min_app_version", "max_app_version"):
            if getattr(manifest, key) is not None:
                entry[key] = str(getattr(manifest, key))
        entries.append(entry)
    document = {
        "format": INDEX_FORMAT,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generator": f"Extension Manager {APP_VERSION}",
        "extensions": entries,
    }
    _index_validator().validate(document)
    target = folder / INDEX_NAME
    partial = folder / f".{INDEX_NAME}.partial"
    with partial.open("w", encoding="utf-8") as out:
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    partial.replace(target)
    flush_folder(folder)
    return IndexResult(target, len(entries), tuple(skipped))
