"""The installed set as a file: export what a data folder holds, and bring another to it.

An export is one JSON document (format ``FORMAT``): the app version that wrote it, when, and
per installed extension its id, name, version, the sha256 of its archive, whether it is
enabled, its settings and where it came from (plus what it requires, when its manifest says).
Only the settings that differ from the manifest's defaults are written, as ``save_config``
stores them: an import then gets the defaults of the version it installs for every setting
the person never changed. A bundle is a zip holding the same document as
``installed-set.json`` and each extension's archive as ``archives/<sha256>.zip``.

Importing is two steps with the person's decision between them, as an install is:
``plan_import`` compares the file with the data folder and says per entry what it needs
(nothing, an install, upgrade, downgrade or reinstall, its settings, its enabled state) or why
it cannot be done; ``run_import`` carries that plan out, each install as an operation of the
``Installer`` that the history shows. Before any plan is made, every archive a bundle holds is
hashed against the document: a damaged bundle is refused as a whole, with nothing changed.

A bundled archive is read straight from the bundle for that check, and taken out only when it
is installed, into its own operation's staging folder (``staging/op-N/``): the installer
removes it with the rest of that folder, and a crash leaves nothing the recovery would not
clean up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from registry.durable import flush_folder
from registry.errors import ConfigError, UserFacingError
from registry.store import ConfigValue, ExtensionRecord, OperationRecord, Registry, utc_now
from registry.version import APP_VERSION
from registry.vocabulary import OperationKind, OperationStatus

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

    from registry.installer import CancelToken, Installer, InstallPlan

FORMAT: Final = 1
BUNDLE_DOCUMENT: Final = "installed-set.json"
BUNDLE_ARCHIVES: Final = "archives/"
# In an install's staging folder, while it is installed from a bundle.
BUNDLED_ARCHIVE: Final = "bundled.zip"
# Ten thousand extensions with their settings take a few megabytes.
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
CHUNK_BYTES: Final = 1024 * 1024
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_BUNDLED_RE: Final = re.compile(rf"{BUNDLE_ARCHIVES}([0-9a-f]{{64}})\.zip")
# Everything zipfile and zlib may raise on a damaged or hostile zip.
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)

_SEMVER_PATTERN: Final = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)

SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Extension Manager installed set",
    "description": (
        "What 'extension-manager export' writes: the extensions of a data folder, for "
        "'extension-manager import' to bring another data folder to."
    ),
    "type": "object",
    "required": ["format", "extensions"],
    "properties": {
        "format": {"type": "integer", "const": FORMAT},
        "app_version": {"type": "string"},
        "exported_at": {"type": "string"},
        "extensions": {"type": "array", "items": {"$ref": "#/$defs/extension"}},
    },
    "$defs": {
        "extension": {
            "type": "object",
            "required": ["id", "version", "sha256"],
            "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": 128},
                "name": {"type": "string"},
                "version": {
                    "type": "string",
                    "pattern": _SEMVER_PATTERN,
                    "description": "a version like 1.2.3",
                },
                # null: the data folder had no archive for it (re-registered from its folder).
                "sha256": {
                    "type": ["string", "null"],
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "a SHA-256 digest (64 lowercase hexadecimal digits)",
                },
                "enabled": {"type": "boolean"},
                "settings": {
                    "type": "object",
                    "additionalProperties": {"type": ["boolean", "integer", "number", "string"]},
                },
                "origin": {"type": "string"},
                "requires": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


class TransferError(UserFacingError):
    """An export or import that cannot be done; nothing was written or changed."""


# -- the document ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetEntry:
    """One extension as the file describes it."""

    id: str
    name: str
    version: str
    # None: the exporting data folder had no archive for it (re-registered from its folder).
    sha256: str | None
    enabled: bool = True
    # Only what differs from the manifest's defaults.
    settings: Mapping[str, ConfigValue] = field(default_factory=dict)
    origin: str = ""
    # The manifest's ``requires`` (id -> version range), for installing requirements first.
    requires: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "enabled": self.enabled,
            "settings": dict(self.settings),
            "origin": self.origin,
        }
        if self.requires:
            entry["requires"] = dict(self.requires)
        return entry


@dataclass(frozen=True, slots=True)
class InstalledSet:
    """A read export: the document, and for a bundle which archives it holds."""

    file: Path
    entries: tuple[SetEntry, ...]
    app_version: str = ""
    exported_at: str = ""
    # None for a JSON document; for a bundle, the sha256 of every archive it holds.
    bundled: frozenset[str] | None = None
    # The bundled archives that ``check_bundle`` hashed and found as the document says.
    checked: frozenset[str] = frozenset()

    @property
    def is_bundle(self) -> bool:
        return self.bundled is not None

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "app_version": self.app_version,
            "exported_at": self.exported_at,
            "extensions": [entry.document() for entry in self.entries],
        }


def _same_value(first: object, second: object) -> bool:
    # 2 is not the same choice as a float default of 2.0, nor 1 as true.
    return type(first) is type(second) and first == second


def _same_settings(first: Mapping[str, object], second: Mapping[str, object]) -> bool:
    return first.keys() == second.keys() and all(
        _same_value(value, second[key]) for key, value in first.items()
    )


def chosen_settings(registry: Registry, extension: ExtensionRecord) -> dict[str, ConfigValue]:
    """The settings of ``extension`` that differ from its manifest's defaults."""
    defaults = extension.config_defaults
    return {
        key: value
        for key, value in registry.get_config(extension.id).items()
        if key not in defaults or not _same_value(value, defaults[key])
    }


def current_set(registry: Registry, file: Path) -> InstalledSet:
    """What ``registry`` holds now, as an export to ``file`` would describe it."""
    entries = []
    for extension in registry.list_extensions():
        requires = extension.manifest.get("requires")
        entries.append(
            SetEntry(
                id=extension.id,
                name=extension.name,
                version=extension.version,
                sha256=extension.archive_sha256 or None,
                enabled=extension.enabled,
                settings=chosen_settings(registry, extension),
                origin=extension.origin,
                requires=(
                    {str(k): str(v) for k, v in requires.items()}
                    if isinstance(requires, dict)
                    else {}
                ),
            )
        )
    return InstalledSet(
        file=file,
        entries=tuple(entries),
        app_version=APP_VERSION,
        exported_at=utc_now(),
    )


def _document_bytes(installed_set: InstalledSet) -> bytes:
    text = json.dumps(installed_set.document(), indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


# -- export ----------------------------------------------------------------------------------


def export_set(registry: Registry, file: Path) -> InstalledSet:
    """Write the installed set as a JSON document to ``file`` (replaced whole, or not at all)."""
    installed_set = current_set(registry, file)
    with _replacing(file) as handle:
        handle.write(_document_bytes(installed_set))
    return installed_set


def export_bundle(registry: Registry, file: Path) -> InstalledSet:
    """Write a bundle: the document plus every installed extension's kept archive, each hashed
    as it is copied. An archive that is missing or damaged is a refusal naming it, and no
    file is written."""
    installed_set = dataclasses.replace(current_set(registry, file), bundled=frozenset())
    paths = registry.paths
    unknown = [f"{e.id} {e.version}" for e in installed_set.entries if e.sha256 is None]
    if unknown:
        raise TransferError(
            f"No archive is kept for {_listed(unknown)}: it was registered again from its "
            "folder, not installed from a file. Install it from its .zip file again, then "
            "export; or export without --bundle. Nothing was written."
        )
    missing = [
        f"{e.id} {e.version} ({paths.kept_archive(e.sha256)})"
        for e in installed_set.entries
        if e.sha256 is not None and not paths.kept_archive(e.sha256).is_file()
    ]
    if missing:
        raise TransferError(
            f"The kept archive of {_listed(missing)} is missing, so no bundle was written. "
            "Run 'extension-manager doctor', and install the missing version from its .zip "
            "file again."
        )
    with _replacing(file) as handle, zipfile.ZipFile(handle, "w") as bundle:
        bundle.writestr(BUNDLE_DOCUMENT, _document_bytes(installed_set), zipfile.ZIP_DEFLATED)
        written: set[str] = set()
        for entry in installed_set.entries:
            assert entry.sha256 is not None
            if entry.sha256 in written:
                continue
            written.add(entry.sha256)
            _add_archive(bundle, paths.kept_archive(entry.sha256), entry)
    return dataclasses.replace(installed_set, bundled=frozenset(written))


def _add_archive(bundle: zipfile.ZipFile, source: Path, entry: SetEntry) -> None:
    # Zips are compressed already: stored, they cost no time and read back cheaply.
    info = zipfile.ZipInfo(f"{BUNDLE_ARCHIVES}{entry.sha256}.zip", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    digest = hashlib.sha256()
    size = source.stat().st_size
    with source.open("rb") as archive, bundle.open(info, "w", force_zip64=size >= 2**31) as out:
        while chunk := archive.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != entry.sha256:
        raise TransferError(
            f"The kept archive of {entry.id} {entry.version} ({source}) is damaged: its content "
            "no longer matches its sha256, so no bundle was written. Run 'extension-manager "
            "doctor', and install that version from its .zip file again."
        )


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[IO[bytes]]:
    """A new file next to ``target`` that replaces it once written and flushed: a failure
    (or a crash) leaves the old file, or none, never half of one."""
    target = target.absolute()
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        # Made with the permissions any file of this user gets (the umask applies).
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _write_error(target, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(target)
        flush_folder(target.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _write_error(target, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_error(target: Path, error: OSError) -> TransferError:
    if not target.parent.is_dir():
        why = f"the folder {target.parent} does not exist"
    elif target.is_dir():
        why = "that is a folder"
    else:
        why = (error.strerror or str(error)).lower()
    return TransferError(f"{target} cannot be written ({why}). Nothing was written.")


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


# -- reading ---------------------------------------------------------------------------------


def read_set(file: Path) -> InstalledSet:
    """Read an export, a JSON document or a bundle (told apart by their content, not their
    name), and check it against ``SCHEMA``. ``TransferError`` says what is wrong, in words."""
    try:
        with file.open("rb") as handle:
            head = handle.read(4)
            if head.startswith(b"PK"):
                return _read_bundle(file)
            handle.seek(0)
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except IsADirectoryError as error:
        raise TransferError(f"{file} is a folder, not an exported file.") from error
    except OSError as error:
        raise TransferError(
            f"{file} cannot be read ({(error.strerror or str(error)).lower()})."
        ) from error
    if len(data) > MAX_DOCUMENT_BYTES:
        raise TransferError(f"{file} is too large to be an export of Extension Manager.")
    return _installed_set(_parse(data, file), file)


def _read_bundle(file: Path) -> InstalledSet:
    try:
        with zipfile.ZipFile(file) as bundle:
            names = bundle.namelist()
            if BUNDLE_DOCUMENT not in names:
                raise TransferError(
                    f"{file} is a zip without {BUNDLE_DOCUMENT}, so it is not a bundle made by "
                    "'extension-manager export --bundle'. To install an extension from its "
                    "zip, use 'extension-manager install'."
                )
            info = bundle.getinfo(BUNDLE_DOCUMENT)
            if info.file_size > MAX_DOCUMENT_BYTES:
                raise TransferError(f"The {BUNDLE_DOCUMENT} in {file} is too large.")
            with bundle.open(info) as member:
                data = member.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as error:
        raise TransferError(
            f"{file} cannot be read ({(error.strerror or str(error)).lower()})."
        ) from error
    except _ZIP_ERRORS as error:
        raise TransferError(
            f"{file} is a damaged zip ({error}); it cannot be imported. Export it again with "
            "'extension-manager export --bundle'."
        ) from error
    bundled = frozenset(
        match[1] for name in names if (match := _BUNDLED_RE.fullmatch(name)) is not None
    )
    return _installed_set(_parse(data, file), file, bundled)


def _parse(data: bytes, file: Path) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TransferError(
            f"{file} is not an export of Extension Manager: it is not valid JSON ({error}). "
            "Write it with 'extension-manager export'."
        ) from error
    if isinstance(document, dict):
        declared = document.get("format")
        if isinstance(declared, int) and not isinstance(declared, bool) and declared > FORMAT:
            raise TransferError(
                f"{file} was written by a newer Extension Manager (format {declared}; this one "
                f"reads format {FORMAT}). Update the app, then import it again."
            )
    problems = _problems(document)
    if problems:
        raise TransferError(
            f"{file} is not a valid export of Extension Manager: {'; '.join(problems)}."
        )
    return dict(document)


def _problems(document: object) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
    problems = [_plain(error, document) for error in errors[:5]]
    if len(errors) > 5:
        problems.append(f"and {len(errors) - 5} more problems")
    if not problems and isinstance(document, dict):
        seen: set[str] = set()
        for entry in document["extensions"]:
            if entry["id"] in seen:
                problems.append(f"it lists {entry['id']} more than once")
            seen.add(entry["id"])
    return problems


_TYPE_WORDS: Final = {
    "object": "an object ({...})",
    "array": "a list ([...])",
    "string": "text",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "null",
}


def _plain(error: ValidationError, document: object) -> str:
    """One problem in words, naming where it is: "extension 2 (example.hello): sha256 ..."."""
    where = _where(list(error.absolute_path), document)
    instance: Any = error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    shown = json.dumps(instance, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if error.validator == "required" and isinstance(instance, dict):
        missing = [str(key) for key in expected if key not in instance]
        return f"{where}: '{missing[0]}' is missing"
    if error.validator == "type":
        kinds = [str(kind) for kind in (expected if isinstance(expected, list) else [expected])]
        if set(kinds) >= {"boolean", "integer", "number", "string"}:
            words = "true or false, a number or text"
        else:
            words = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
        return f"{where}: must be {words}, not {shown}"
    if error.validator == "pattern" and isinstance(schema, dict):
        return f"{where}: {shown} is not {schema.get('description', 'valid')}"
    if error.validator == "const":
        return f"{where}: must be {json.dumps(expected)}, not {shown}"
    if error.validator == "minLength":
        return f"{where}: must not be empty"
    return f"{where}: {error.message}"


def _where(path: list[str | int], document: object) -> str:
    if not path:
        return "the file"
    if path[0] == "extensions" and len(path) >= 2 and isinstance(path[1], int):
        entries = document.get("extensions") if isinstance(document, dict) else None
        entry = entries[path[1]] if isinstance(entries, list) else None
        named = entry.get("id") if isinstance(entry, dict) else None
        head = f"extension {path[1] + 1}" + (f" ({named})" if isinstance(named, str) else "")
        rest = ".".join(str(part) for part in path[2:])
        return f"{head}: {rest}" if rest else head
    return ".".join(str(part) for part in path)


def _installed_set(
    document: dict[str, Any], file: Path, bundled: frozenset[str] | None = None
) -> InstalledSet:
    entries = tuple(
        SetEntry(
            id=entry["id"],
            name=entry.get("name") or entry["id"],
            version=entry["version"],
            sha256=entry["sha256"],
            enabled=entry.get("enabled", True),
            settings=dict(entry.get("settings", {})),
            origin=entry.get("origin", ""),
            requires=dict(entry.get("requires", {})),
        )
        for entry in document["extensions"]
    )
    return InstalledSet(
        file=file,
        entries=entries,
        app_version=document.get("app_version", ""),
        exported_at=document.get("exported_at", ""),
        bundled=bundled,
    )


# -- checking a bundle -----------------------------------------------------------------------


def _member_name(sha256: str) -> str:
    return f"{BUNDLE_ARCHIVES}{sha256}.zip"


def check_bundle(
    installed_set: InstalledSet,
    cancel: CancelToken | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> InstalledSet:
    """Hash every archive the bundle holds for its entries against the sha256 the document
    gives, reading them straight from the bundle (nothing is written). Returns the set with
    those archives marked checked; a damaged one is a ``TransferError`` naming every such
    entry. ``on_progress(done, total)`` counts bytes; ``cancel`` stops between chunks.
    A JSON document (no bundle) comes back as it is."""
    from registry.errors import InstallCancelledError

    if installed_set.bundled is None:
        return installed_set
    wanted = {
        entry.sha256: entry
        for entry in installed_set.entries
        if entry.sha256 is not None and entry.sha256 in installed_set.bundled
    }
    damaged: list[str] = []
    file = installed_set.file
    try:
        with zipfile.ZipFile(file) as bundle:
            infos = {sha256: bundle.getinfo(_member_name(sha256)) for sha256 in wanted}
            total = sum(info.file_size for info in infos.values())
            done = 0
            for sha256, info in infos.items():
                entry = wanted[sha256]
                digest = hashlib.sha256()
                try:
                    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                        raise zipfile.BadZipFile("compressed in a way bundles never are")
                    with bundle.open(info) as member:
                        while chunk := member.read(CHUNK_BYTES):
                            if cancel is not None and cancel.cancelled:
                                raise InstallCancelledError()
                            digest.update(chunk)
                            done += len(chunk)
                            if on_progress is not None:
                                on_progress(done, total)
                except _ZIP_ERRORS as error:
                    damaged.append(f"{entry.id} {entry.version} ({info.filename}: {error})")
                    continue
                if digest.hexdigest() != sha256:
                    damaged.append(f"{entry.id} {entry.version} ({info.filename})")
    except OSError as error:
        raise TransferError(
            f"{file} cannot be read ({(error.strerror or str(error)).lower()}). Nothing was "
            "changed."
        ) from error
    except _ZIP_ERRORS as error:
        raise TransferError(
            f"{file} changed or is damaged ({error}). Nothing was changed; export it again "
            "with 'extension-manager export --bundle'."
        ) from error
    if damaged:
        raise TransferError(
            f"{file} is damaged: the archive of {_listed(damaged)} does not match the sha256 "
            "the bundle gives for it. Nothing was changed; export the bundle again with "
            "'extension-manager export --bundle'."
        )
    return dataclasses.replace(installed_set, checked=frozenset(wanted))


# -- planning --------------------------------------------------------------------------------


class ImportAction(StrEnum):
    NOTHING = "nothing"  # already as in the file
    INSTALL = "install"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    # The same version from another archive than the one installed here.
    REINSTALL = "reinstall"
    SETTINGS = "settings"  # settings, and the enabled state if that differs too
    ENABLED = "enabled"  # the enabled state only
    REFUSED = "refused"

    @property
    def installs(self) -> bool:
        return self in _INSTALL_KINDS


_INSTALL_KINDS: Final = {
    ImportAction.INSTALL: OperationKind.INSTALL,
    ImportAction.UPGRADE: OperationKind.UPGRADE,
    ImportAction.DOWNGRADE: OperationKind.DOWNGRADE,
    ImportAction.REINSTALL: OperationKind.REINSTALL,
}


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """What one entry of the file needs in this data folder."""

    entry: SetEntry
    action: ImportAction
    installed_version: str | None = None
    # Where an install's archive is: this data folder's kept copy, or the bundle.
    archive: Path | None = None
    from_bundle: bool = False
    # For SETTINGS: every setting's value as it will be.
    settings: Mapping[str, ConfigValue] | None = None
    enabled_change: bool = False
    reason: str = ""  # REFUSED: why

    @property
    def changes(self) -> bool:
        return self.action not in (ImportAction.NOTHING, ImportAction.REFUSED)

    def describe(self) -> str:
        """One line: "install example.hello 1.0.0", "upgrade example.hello 1.0.0 → 1.2.0"."""
        entry, action = self.entry, self.action
        what = f"{entry.id} {entry.version}"
        state = "enabled" if entry.enabled else "disabled"
        if action == ImportAction.NOTHING:
            return f"{what}: already as in the file"
        if action == ImportAction.REFUSED:
            return f"refused {what}: {self.reason}"
        if action == ImportAction.SETTINGS:
            shown = ", ".join(f"{k} = {json.dumps(v)}" for k, v in (self.settings or {}).items())
            line = f"settings of {entry.id}: {shown or 'the defaults'}"
            return line + (f"; then {state}" if self.enabled_change else "")
        if action == ImportAction.ENABLED:
            return f"{'enable' if entry.enabled else 'disable'} {entry.id}"
        line = {
            ImportAction.INSTALL: f"install {what}",
            ImportAction.UPGRADE: f"upgrade {entry.id} {self.installed_version} → {entry.version}",
            ImportAction.DOWNGRADE: (
                f"downgrade {entry.id} {self.installed_version} → {entry.version} (older than "
                "installed)"
            ),
            ImportAction.REINSTALL: f"reinstall {what} (another archive of the same version)",
        }[action]
        details = []
        if entry.settings:
            details.append(f"{len(entry.settings)} changed setting(s)")
        if action == ImportAction.INSTALL and not entry.enabled:
            details.append("disabled")
        elif action != ImportAction.INSTALL and self.enabled_change:
            details.append(f"then {state}")
        return line + (f", {', '.join(details)}" if details else "")


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """The one plan an import shows before it changes anything."""

    source: InstalledSet
    # In the order ``run_import`` takes them: requirements before what requires them.
    entries: tuple[PlannedEntry, ...]
    # Installed here but not in the file: an import leaves them as they are.
    left_alone: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[PlannedEntry, ...]:
        return tuple(p for p in self.entries if p.changes)

    @property
    def refused(self) -> tuple[PlannedEntry, ...]:
        return tuple(p for p in self.entries if p.action == ImportAction.REFUSED)

    def describe(self) -> list[str]:
        lines = [p.describe() for p in self.entries]
        if self.left_alone:
            lines.append(
                f"Installed here and not in {self.source.file.name}, left as they are: "
                + _listed(self.left_alone)
            )
        return lines


def plan_import(
    registry: Registry,
    installed_set: InstalledSet,
    *,
    app_version: str = APP_VERSION,
    cancel: CancelToken | None = None,
) -> ImportPlan:
    """Compare the file with the data folder; nothing is written. A bundle not checked yet is
    checked first (``check_bundle``), and an archive kept in this data folder is hashed, so
    that every install the plan names has an archive known to be the right one."""
    if installed_set.is_bundle and not installed_set.checked:
        installed_set = check_bundle(installed_set, cancel)
    installed = {extension.id: extension for extension in registry.list_extensions()}
    planned = [
        _plan_entry(registry, installed_set, entry, installed.get(entry.id), app_version)
        for entry in installed_set.entries
    ]
    listed = {entry.id for entry in installed_set.entries}
    return ImportPlan(
        source=installed_set,
        entries=requirements_first(planned),
        left_alone=tuple(sorted(set(installed) - listed)),
    )


def _plan_entry(
    registry: Registry,
    installed_set: InstalledSet,
    entry: SetEntry,
    current: ExtensionRecord | None,
    app_version: str,
) -> PlannedEntry:
    # No archive in the file (the exporting folder had none) matches whatever is here.
    same_archive = entry.sha256 is None or (
        current is not None and current.archive_sha256 == entry.sha256
    )
    if current is not None and current.version == entry.version and same_archive:
        return _plan_state(registry, entry, current, app_version)
    action = _install_action(entry, current)
    installed_version = current.version if current is not None else None
    enabled_change = current is not None and current.enabled != entry.enabled
    refused = _refuser(entry, installed_version)
    if entry.sha256 is None:
        return refused(
            f"{installed_set.file.name} has no archive for it (the data folder it was exported "
            "from had re-registered it from its folder); install it from its .zip file"
        )
    if entry.sha256 in installed_set.checked:
        return PlannedEntry(
            entry, action, installed_version, from_bundle=True, enabled_change=enabled_change
        )
    kept = registry.paths.kept_archive(entry.sha256)
    if not kept.is_file():
        where = "the bundle" if installed_set.is_bundle else installed_set.file.name
        return refused(
            f"its archive is not in {where} and not kept in this data folder; export it "
            "with --bundle"
        )
    try:
        digest = _file_sha256(kept)
    except OSError as error:
        return refused(f"its kept archive {kept} cannot be read ({error.strerror or error})")
    if digest != entry.sha256:
        return refused(
            f"the archive kept for it in this data folder ({kept}) does not match its sha256; "
            "run 'extension-manager doctor'"
        )
    return PlannedEntry(entry, action, installed_version, kept, enabled_change=enabled_change)


def _refuser(entry: SetEntry, installed_version: str | None) -> Callable[[str], PlannedEntry]:
    def refused(reason: str) -> PlannedEntry:
        return PlannedEntry(entry, ImportAction.REFUSED, installed_version, reason=reason)

    return refused


def _install_action(entry: SetEntry, current: ExtensionRecord | None) -> ImportAction:
    """The same comparison the installer makes, so the plan names the operation it will run."""
    from registry.manifest import SemVer

    if current is None:
        return ImportAction.INSTALL
    try:
        installed = SemVer.parse(current.version)
    except ValueError:
        return ImportAction.UPGRADE
    wanted = SemVer.parse(entry.version)
    if wanted > installed:
        return ImportAction.UPGRADE
    if wanted == installed:
        return ImportAction.REINSTALL
    return ImportAction.DOWNGRADE


def _plan_state(
    registry: Registry, entry: SetEntry, current: ExtensionRecord, app_version: str
) -> PlannedEntry:
    from registry.compatibility import misfit
    from registry.store import check_config_value

    defaults = current.config_defaults
    try:
        for key, value in entry.settings.items():
            check_config_value(entry.id, defaults, key, value)
    except ConfigError as error:
        return PlannedEntry(
            entry, ImportAction.REFUSED, current.version, reason=str(error).rstrip(".")
        )
    wanted = {**defaults, **entry.settings}
    settings_change = not _same_settings(registry.get_config(entry.id), wanted)
    enabled_change = current.enabled != entry.enabled
    needs = misfit(current, app_version) if entry.enabled and enabled_change else None
    if needs is not None:
        return PlannedEntry(
            entry,
            ImportAction.REFUSED,
            current.version,
            reason=(
                f"it needs {needs}, and this is Extension Manager {app_version}; to turn it on "
                f"anyway, run 'extension-manager enable --anyway {entry.id}'"
            ),
        )
    if settings_change:
        action = ImportAction.SETTINGS
    elif enabled_change:
        action = ImportAction.ENABLED
    else:
        action = ImportAction.NOTHING
    return PlannedEntry(
        entry,
        action,
        current.version,
        settings=wanted if settings_change else None,
        enabled_change=enabled_change,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def requirements_first(planned: Iterable[PlannedEntry]) -> tuple[PlannedEntry, ...]:
    """The entries in file order, except that an entry comes after the entries of the file it
    requires (its manifest's ``requires``, as exported); with a cycle, the file's order."""
    from registry.requirements import install_order, requires_of

    entries = tuple(planned)
    by_id = {p.entry.id: p for p in entries}
    try:
        order = install_order(
            {p.entry.id: requires_of({"requires": dict(p.entry.requires)}) for p in entries}
        )
    except ValueError:
        return entries
    return tuple(by_id[extension_id] for extension_id in order)


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What became of one entry: ``done`` when it is now as in the file."""

    planned: PlannedEntry
    done: bool
    message: str
    # The install's operation, for the entries that ran one.
    operation: OperationRecord | None = None


@dataclass(frozen=True, slots=True)
class ImportReport:
    outcomes: tuple[EntryOutcome, ...]

    @property
    def succeeded(self) -> bool:
        """Every entry is as in the file (a refused one is not)."""
        return all(outcome.done for outcome in self.outcomes)


def run_import(
    registry: Registry,
    plan: ImportPlan,
    *,
    installer: Installer | None = None,
    cancel: CancelToken | None = None,
    on_operation: Callable[[PlannedEntry, int], None] | None = None,
    on_outcome: Callable[[EntryOutcome], None] | None = None,
) -> ImportReport:
    """Carry out a plan the person agreed to, entry by entry in the plan's order. Each install
    is an operation (begin, plan, execute) with the entry's settings committed with it, and
    turned on right after if it should be; settings and enabled states alone are written
    directly. What the file has disabled is turned off last, once everything is in: an install
    needs what it requires turned on. An entry whose requirement did not come in is not
    installed. ``on_operation`` is told each operation's id as it starts (to follow its
    progress), ``on_outcome`` each entry's end."""
    from registry.installer import Installer

    installer = installer or Installer(registry)
    failed: set[str] = set()
    outcomes: list[EntryOutcome] = []
    to_turn_off: list[int] = []
    for planned in plan.entries:
        entry = planned.entry
        missing = [r for r in entry.requires if r in failed]
        if cancel is not None and cancel.cancelled:
            outcome = EntryOutcome(planned, False, "Cancelled: nothing was changed for it.")
        elif planned.action == ImportAction.REFUSED:
            outcome = EntryOutcome(planned, False, planned.reason)
        elif planned.action == ImportAction.NOTHING:
            outcome = EntryOutcome(planned, True, "already as in the file")
        elif missing and planned.action.installs:
            outcome = EntryOutcome(
                planned,
                False,
                f"{entry.id} was not installed: it needs {_listed(missing)}, which did not "
                "come in.",
            )
        else:
            try:
                if planned.action.installs:
                    outcome = _run_install(
                        registry, installer, plan.source, planned, cancel, on_operation
                    )
                else:
                    outcome = _run_state(registry, planned)
            except UserFacingError as error:
                outcome = EntryOutcome(planned, False, str(error))
        deferred = outcome.done and not entry.enabled and planned.changes
        if not outcome.done:
            failed.add(entry.id)
        elif deferred:
            to_turn_off.append(len(outcomes))
        outcomes.append(outcome)
        if on_outcome is not None and not deferred:
            on_outcome(outcome)
    # Dependents first, then what they require.
    for index in reversed(to_turn_off):
        outcomes[index] = _turned_off(registry, outcomes[index])
        if on_outcome is not None:
            on_outcome(outcomes[index])
    return ImportReport(tuple(outcomes))


def _turned_off(registry: Registry, outcome: EntryOutcome) -> EntryOutcome:
    entry = outcome.planned.entry
    try:
        current = registry.get_extension(entry.id)
        if current is None:
            return outcome
        if current.enabled:
            registry.set_enabled(entry.id, False)
    except UserFacingError as error:
        return dataclasses.replace(
            outcome, done=False, message=f"{outcome.message}, but it could not be disabled: {error}"
        )
    if outcome.planned.action == ImportAction.ENABLED:
        return dataclasses.replace(outcome, message=f"Disabled {entry.id}")
    return dataclasses.replace(outcome, message=f"{outcome.message}, disabled")


def _run_state(registry: Registry, planned: PlannedEntry) -> EntryOutcome:
    entry = planned.entry
    current = registry.get_extension(entry.id)
    if current is None or current.version != entry.version:
        return EntryOutcome(planned, False, _changed_meanwhile(entry, current))
    if planned.settings is not None:
        registry.save_config(entry.id, planned.settings)
    # Turning off waits for the end of the import (``run_import``).
    if entry.enabled and not current.enabled:
        registry.set_enabled(entry.id, True)
    if planned.settings is not None:
        return EntryOutcome(planned, True, f"Settings of {entry.id} set")
    return EntryOutcome(planned, True, f"Enabled {entry.id}" if entry.enabled else "")


def _changed_meanwhile(entry: SetEntry, current: ExtensionRecord | None) -> str:
    now = f"{current.version} is installed" if current is not None else "it is not installed"
    return (
        f"{entry.id} changed in this data folder after the import was planned ({now}). "
        "Nothing was changed for it; run the import again."
    )


def _run_install(
    registry: Registry,
    installer: Installer,
    source: InstalledSet,
    planned: PlannedEntry,
    cancel: CancelToken | None,
    on_operation: Callable[[PlannedEntry, int], None] | None,
) -> EntryOutcome:
    from registry.installer import InstallPlan

    entry = planned.entry
    archive = source.file if planned.from_bundle else planned.archive
    assert archive is not None
    install_id = installer.begin(archive)
    if on_operation is not None:
        on_operation(planned, install_id)
    if planned.from_bundle:
        try:
            archive = _take_out_of_bundle(registry, source, entry, install_id)
        except TransferError as error:
            return _failed(planned, installer.decline(install_id, str(error)))
    planned_install = installer.plan(
        install_id, archive, cancel, origin=entry.origin or str(source.file.absolute())
    )
    if not isinstance(planned_install, InstallPlan):
        return _failed(planned, planned_install)
    refusal = _mismatch(planned_install, planned, source, registry)
    if refusal is not None:
        return _failed(planned, installer.decline(install_id, refusal))
    record = installer.execute(
        dataclasses.replace(planned_install, restore_settings=dict(entry.settings)), cancel
    )
    if record.status != OperationStatus.COMPLETED:
        return _failed(planned, record)
    done = f"{_INSTALL_KINDS[planned.action].done} {entry.id} {entry.version}"
    try:
        current = registry.get_extension(entry.id)
        # Turning off waits for the end of the import (``run_import``).
        if current is not None and entry.enabled and not current.enabled:
            registry.set_enabled(entry.id, True)
    except UserFacingError as error:
        return EntryOutcome(planned, False, f"{done}, but it could not be enabled: {error}", record)
    return EntryOutcome(planned, True, done, record)


def _failed(planned: PlannedEntry, record: OperationRecord) -> EntryOutcome:
    return EntryOutcome(planned, False, record.error or "It failed.", record)


def _mismatch(
    install: InstallPlan, planned: PlannedEntry, source: InstalledSet, registry: Registry
) -> str | None:
    """Why the install the installer planned is not the one the import plan showed."""
    from registry.store import check_config_value

    entry, manifest = planned.entry, install.manifest
    if manifest.id != entry.id or str(manifest.version) != entry.version:
        return (
            f"The archive given for {entry.id} {entry.version} in {source.file.name} holds "
            f"{manifest.id} {manifest.version}. Nothing was changed for it; export it again."
        )
    if install.kind != _INSTALL_KINDS[planned.action]:
        return _changed_meanwhile(entry, registry.get_extension(entry.id))
    try:
        for key, value in entry.settings.items():
            check_config_value(entry.id, manifest.config, key, value)
    except ConfigError as error:
        return f"{error} Nothing was changed for it."
    return None


def _take_out_of_bundle(
    registry: Registry, source: InstalledSet, entry: SetEntry, install_id: int
) -> Path:
    """Copy an entry's archive out of the bundle into its operation's staging folder, hashed
    again on the way: the bundle may have changed since it was checked."""
    from registry.installer import plain_os_error
    from registry.recovery import staging_dir_for

    assert entry.sha256 is not None
    staging = staging_dir_for(registry, install_id)
    target = staging / BUNDLED_ARCHIVE
    digest = hashlib.sha256()
    try:
        staging.mkdir(parents=True, exist_ok=True)
        registry.update_operation(
            install_id,
            staging_dir=str(staging),
            current_step="Taking the archive out of the bundle",
        )
        with (
            zipfile.ZipFile(source.file) as bundle,
            bundle.open(_member_name(entry.sha256)) as member,
            target.open("wb") as out,
        ):
            while chunk := member.read(CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    except _ZIP_ERRORS as error:
        raise TransferError(
            f"The archive of {entry.id} {entry.version} cannot be read from {source.file} "
            f"({error}). Nothing was changed for it; export the bundle again."
        ) from error
    except OSError as error:
        raise TransferError(
            plain_os_error(error, f"taking {entry.id}'s archive out of {source.file.name}")
        ) from error
    if digest.hexdigest() != entry.sha256:
        raise TransferError(
            f"{source.file} changed after it was checked: the archive of {entry.id} "
            f"{entry.version} no longer matches. Nothing was changed for it; run the import "
            "again."
        )
    return target
