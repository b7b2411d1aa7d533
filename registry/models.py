"""peewee models mirroring the schema that ``migrations/`` creates (the models never create
tables themselves).

The classes here are bound to no database. Each open registry makes its own subclasses bound to
its own file (``bind_models``), so two registries in one process, used from any threads, never
write into each other's file. Only ``registry.store`` uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast

import peewee


class BaseModel(peewee.Model):
    class Meta:
        legacy_table_names = False


class Extension(BaseModel):
    id = peewee.TextField(primary_key=True)
    name = peewee.TextField()
    version = peewee.TextField()
    description = peewee.TextField(default="")
    author = peewee.TextField(default="")
    license = peewee.TextField(default="")
    homepage = peewee.TextField(default="")
    icon_path = peewee.TextField(null=True)
    manifest = peewee.TextField(default="{}")
    capabilities = peewee.TextField(default="[]")
    permissions = peewee.TextField(default="[]")
    enabled = peewee.BooleanField(default=True)
    install_path = peewee.TextField()
    archive_sha256 = peewee.TextField(default="")
    files = peewee.TextField(null=True)
    installed_at = peewee.TextField()
    updated_at = peewee.TextField()
    origin = peewee.TextField(default="")
    origin_source = peewee.TextField(null=True)
    held_at = peewee.TextField(null=True)
    hold_reason = peewee.TextField(null=True)
    compatibility_override = peewee.TextField(null=True)

    class Meta:
        table_name = "extensions"


class ExtensionInstall(BaseModel):
    install_id = peewee.AutoField()
    extension_id = peewee.TextField(null=True)
    kind = peewee.TextField(default="INSTALL")
    archive_path = peewee.TextField(default="")
    archive_sha256 = peewee.TextField(null=True)
    from_version = peewee.TextField(null=True)
    to_version = peewee.TextField(null=True)
    file_count = peewee.IntegerField(null=True)
    total_bytes = peewee.IntegerField(null=True)
    status = peewee.TextField()
    progress = peewee.IntegerField(default=0)
    current_step = peewee.TextField(default="")
    started_at = peewee.TextField()
    updated_at = peewee.TextField(null=True)
    ended_at = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    owner_pid = peewee.IntegerField(null=True)
    owner_started = peewee.FloatField(null=True)
    staging_dir = peewee.TextField(null=True)
    origin_source = peewee.TextField(null=True)
    download_bytes = peewee.IntegerField(null=True)
    download_total = peewee.IntegerField(null=True)
    settings_before = peewee.TextField(null=True)
    from_member = peewee.TextField(null=True)
    outer_sha256 = peewee.TextField(null=True)
    inner_offers = peewee.TextField(null=True)

    class Meta:
        table_name = "extension_installs"


class ExtensionConfig(BaseModel):
    extension_id = peewee.TextField()
    key = peewee.TextField()
    value = peewee.TextField()

    class Meta:
        table_name = "extension_configs"
        primary_key = peewee.CompositeKey("extension_id", "key")


class KeptVersion(BaseModel):
    extension_id = peewee.TextField()
    version = peewee.TextField()
    archive_sha256 = peewee.TextField()
    archive_size = peewee.IntegerField()
    origin = peewee.TextField(default="")
    origin_source = peewee.TextField(null=True)
    settings = peewee.TextField(default="{}")
    install_id = peewee.IntegerField(null=True)
    installed_at = peewee.TextField()
    replaced_at = peewee.TextField(null=True)

    class Meta:
        table_name = "kept_versions"
        primary_key = peewee.CompositeKey("extension_id", "archive_sha256")


class KeptSettings(BaseModel):
    extension_id = peewee.TextField(primary_key=True)
    name = peewee.TextField()
    version = peewee.TextField()
    settings = peewee.TextField()
    kept_at = peewee.TextField()

    class Meta:
        table_name = "kept_settings"


class UpdateSource(BaseModel):
    source_id = peewee.AutoField()
    location = peewee.TextField(unique=True)
    kind = peewee.TextField()
    added_at = peewee.TextField()
    checked_at = peewee.TextField(null=True)
    last_error = peewee.TextField(null=True)

    class Meta:
        table_name = "update_sources"


class SourceFile(BaseModel):
    path = peewee.TextField(primary_key=True)
    size = peewee.IntegerField()
    mtime_ns = peewee.IntegerField()
    sha256 = peewee.TextField()
    extension_id = peewee.TextField(null=True)
    version = peewee.TextField(null=True)
    min_app_version = peewee.TextField(null=True)
    max_app_version = peewee.TextField(null=True)
    problem = peewee.TextField(null=True)

    class Meta:
        table_name = "source_files"


class AppState(BaseModel):
    key = peewee.TextField(primary_key=True)
    value = peewee.TextField()

    class Meta:
        table_name = "app_state"


M = TypeVar("M", bound=BaseModel)


def _bound(model: type[M], database: peewee.Database) -> type[M]:
    # Subclasses inherit the fields; the table name is not inherited by peewee, so it is given.
    meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
    return cast(type[M], type(model.__name__, (model,), {"Meta": meta, "__module__": __name__}))


@dataclass(frozen=True, slots=True)
class BoundModels:
    """The tables of one registry file."""

    extension: type[Extension]
    install: type[ExtensionInstall]
    config: type[ExtensionConfig]
    kept: type[KeptVersion]
    source: type[UpdateSource]
    source_file: type[SourceFile]
    state: type[AppState]
    kept_settings: type[KeptSettings]


def bind_models(database: peewee.Database) -> BoundModels:
    return BoundModels(
        extension=_bound(Extension, database),
        install=_bound(ExtensionInstall, database),
        config=_bound(ExtensionConfig, database),
        kept=_bound(KeptVersion, database),
        source=_bound(UpdateSource, database),
        source_file=_bound(SourceFile, database),
        state=_bound(AppState, database),
        kept_settings=_bound(KeptSettings, database),
    )
