"""Random sequences of operations against the registry, checked after every step against a
plain-Python model of what it should contain.

Example-based tests pin down single transitions; this one looks for the sequences nobody thought
of: a downgrade after a disable, settings that survive an upgrade that drops one of them, a
cancelled reinstall of a version that an uninstall just removed. After each step the registry,
the files on disk and the doctor must all agree with the model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from registry import open_registry
from registry.doctor import diagnose, installed_files
from registry.errors import ConfigError, RegistryError
from registry.installer import CancelToken, Installer, InstallOptions, InstallPlan
from registry.manifest import SemVer
from registry.store import ConfigValue, OperationRecord, Registry
from registry.version import APP_VERSION

NO_OPTIONS = InstallOptions()
IDS = ("prop.alpha", "prop.beta", "prop.gamma")
VERSIONS = ("1.0.0", "1.1.0", "2.0.0")

# Each version changes the settings: 1.1.0 adds one, 2.0.0 drops one and changes two defaults,
# so upgrades and downgrades must both prune stored values and bring defaults back.
CONFIG_DEFAULTS: dict[str, dict[str, ConfigValue]] = {
    "1.0.0": {"verbose": False, "count": 3, "ratio": 0.5},
    "1.1.0": {"verbose": False, "count": 3, "ratio": 0.5, "label": "hi"},
    "2.0.0": {"verbose": True, "ratio": 1.5, "label": "hey"},
}

# A valid value for each type of setting, and values of every other type that must be refused.
VALID_VALUES: dict[type, st.SearchStrategy[ConfigValue]] = {
    bool: st.booleans(),
    int: st.integers(-1000, 1000),
    float: st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.integers(-10, 10)
    ),
    str: st.text(max_size=12),
}
ANY_VALUES: tuple[ConfigValue, ...] = (True, 1, "x")
WRONG_VALUES: dict[type, tuple[ConfigValue, ...]] = {
    bool: (1, 0, "true", 1.0),
    int: (True, "3", 2.5),
    float: (False, "0.5"),
    str: (True, 7, 1.5),
}


@dataclass(frozen=True)
class Build:
    """One version of one extension: its archive and what it must install."""

    path: Path
    files: dict[str, bytes]


def build_catalogue(folder: Path) -> dict[tuple[str, str], Build]:
    """Small archives with distinct contents (and sizes) per id and version.

    Some files exist only in some versions, so an upgrade that left the old version's files
    behind, or a swap that mixed two versions, shows up as an unexpected or missing file.
    """
    catalogue: dict[tuple[str, str], Build] = {}
    for ext_index, extension_id in enumerate(IDS):
        for ver_index, version in enumerate(VERSIONS):
            manifest = {
                "id": extension_id,
                "name": f"Prop {extension_id.split('.')[1].title()}",
                "version": version,
                "config": CONFIG_DEFAULTS[version],
            }
            files = {
                "manifest.json": json.dumps(manifest, indent=2).encode(),
                "common.txt": f"{extension_id} {version}\n".encode() * (ext_index + ver_index + 1),
                f"only-{version}.txt": version.encode() * (ver_index + 2),
            }
            if version != "2.0.0":
                files["lib/legacy.txt"] = f"legacy {extension_id} {version}".encode()
            path = folder / f"{extension_id}-{version}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, data in files.items():
                    archive.writestr(name, data)
            catalogue[extension_id, version] = Build(path, files)
    return catalogue


@dataclass
class ModelExtension:
    version: str
    enabled: bool = True
    stored: dict[str, ConfigValue] = field(default_factory=dict)

    def config(self) -> dict[str, ConfigValue]:
        return {**CONFIG_DEFAULTS[self.version], **self.stored}


def expected_kind(installed: ModelExtension | None, version: str) -> str:
    if installed is None:
        return "INSTALL"
    new, old = SemVer.parse(version), SemVer.parse(installed.version)
    if new > old:
        return "UPGRADE"
    return "REINSTALL" if new == old else "DOWNGRADE"


class RegistryMachine(RuleBasedStateMachine):
    """A fresh data folder per example; the model says what the registry must contain."""

    catalogue: ClassVar[dict[tuple[str, str], Build]] = {}
    scratch: ClassVar[Path] = Path()

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="machine-", dir=self.scratch))
        self.registry: Registry = open_registry(self.root / "data")
        self.installer = Installer(self.registry, APP_VERSION)
        self.model: dict[str, ModelExtension] = {}
        # The settings an uninstall kept, which the next install of that id restores.
        self.kept_settings: dict[str, dict[str, ConfigValue]] = {}
        self.operations = 0

    def teardown(self) -> None:
        self.registry.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _install(
        self,
        extension_id: str,
        version: str,
        *,
        options: InstallOptions = NO_OPTIONS,
        answer: bool | None = None,
        cancel: CancelToken | None = None,
    ) -> tuple[OperationRecord, list[InstallPlan]]:
        plans: list[InstallPlan] = []

        def confirm(plan: InstallPlan) -> bool:
            plans.append(plan)
            assert answer is not None
            return answer

        record = self.installer.install(
            self.catalogue[extension_id, version].path,
            options=options,
            confirm=confirm if answer is not None else None,
            cancel=cancel,
        )
        self.operations += 1
        return record, plans

    def _apply_install(self, extension_id: str, version: str) -> None:
        current = self.model.get(extension_id)
        if current is None:
            kept = self.kept_settings.pop(extension_id, {})
            restored = {k: v for k, v in kept.items() if k in CONFIG_DEFAULTS[version]}
            self.model[extension_id] = ModelExtension(version, stored=restored)
            return
        # Enabled state survives a version change; settings the new version lacks are dropped.
        defaults = CONFIG_DEFAULTS[version]
        current.stored = {k: v for k, v in current.stored.items() if k in defaults}
        current.version = version

    def _assert_unchanged_failure(self, record: OperationRecord) -> None:
        assert record.status == "FAILED", record
        assert record.error, record
        assert record.progress < 100, record

    def _assert_cancelled(self, record: OperationRecord) -> None:
        assert (record.status, record.error) == ("CANCELLED", "Cancelled: nothing was changed.")
        assert record.progress < 100, record

    # -- rules -----------------------------------------------------------------------------------

    @rule(
        extension_id=st.sampled_from(IDS),
        version=st.sampled_from(VERSIONS),
        allow_reinstall=st.booleans(),
        allow_downgrade=st.booleans(),
    )
    def install(
        self, extension_id: str, version: str, allow_reinstall: bool, allow_downgrade: bool
    ) -> None:
        """Install, upgrade, reinstall or downgrade without a confirmation: the options decide."""
        installed = self.model.get(extension_id)
        kind = expected_kind(installed, version)
        options = InstallOptions(allow_reinstall=allow_reinstall, allow_downgrade=allow_downgrade)
        record, _plans = self._install(extension_id, version, options=options)
        allowed = (
            (kind == "REINSTALL" and allow_reinstall)
            or (kind == "DOWNGRADE" and allow_downgrade)
            or kind in ("INSTALL", "UPGRADE")
        )
        assert record.extension_id == extension_id
        assert record.to_version == version
        assert record.kind == kind
        assert record.from_version == (installed.version if installed else None)
        if allowed:
            assert record.status == "COMPLETED", record.error
            assert (record.progress, record.error) == (100, None)
            self._apply_install(extension_id, version)
        else:
            self._assert_unchanged_failure(record)
            flag = "--reinstall" if kind == "REINSTALL" else "--allow-downgrade"
            assert record.error is not None and flag in record.error

    @rule(extension_id=st.sampled_from(IDS), version=st.sampled_from(VERSIONS))
    def install_confirmed(self, extension_id: str, version: str) -> None:
        """A person who saw the plan and said yes needs no option, whatever the version change."""
        installed = self.model.get(extension_id)
        record, plans = self._install(extension_id, version, answer=True)
        assert [plan.kind for plan in plans] == [expected_kind(installed, version)]
        assert plans[0].installed_version == (installed.version if installed else None)
        assert record.status == "COMPLETED", record.error
        self._apply_install(extension_id, version)

    @rule(extension_id=st.sampled_from(IDS), version=st.sampled_from(VERSIONS))
    def install_declined(self, extension_id: str, version: str) -> None:
        record, plans = self._install(extension_id, version, answer=False)
        assert len(plans) == 1
        self._assert_cancelled(record)

    @rule(
        extension_id=st.sampled_from(IDS),
        version=st.sampled_from(VERSIONS),
        consent=st.booleans(),
    )
    def install_cancelled_before_start(
        self, extension_id: str, version: str, consent: bool
    ) -> None:
        token = CancelToken()
        token.cancel()
        options = InstallOptions(allow_reinstall=consent, allow_downgrade=consent)
        record, _plans = self._install(extension_id, version, options=options, cancel=token)
        self._assert_cancelled(record)

    @rule(extension_id=st.sampled_from(IDS), version=st.sampled_from(VERSIONS))
    def install_cancelled_while_confirming(self, extension_id: str, version: str) -> None:
        """Cancel pressed while the dialog was up: a late "yes" must not install anything."""
        token = CancelToken()

        def confirm(plan: InstallPlan) -> bool:
            token.cancel()
            return True

        record = self.installer.install(
            self.catalogue[extension_id, version].path, confirm=confirm, cancel=token
        )
        self.operations += 1
        self._assert_cancelled(record)

    @rule(extension_id=st.sampled_from(IDS))
    def uninstall(self, extension_id: str) -> None:
        installed = self.model.get(extension_id)
        record = self.installer.uninstall(extension_id)
        self.operations += 1
        assert record.kind == "UNINSTALL"
        if installed is None:
            self._assert_unchanged_failure(record)
            assert record.error is not None and "not installed" in record.error
        else:
            assert record.status == "COMPLETED", record.error
            assert (record.progress, record.from_version) == (100, installed.version)
            del self.model[extension_id]
            self.kept_settings.pop(extension_id, None)
            if installed.stored:
                self.kept_settings[extension_id] = dict(installed.stored)

    @rule(extension_id=st.sampled_from(IDS), enabled=st.booleans())
    def set_enabled(self, extension_id: str, enabled: bool) -> None:
        installed = self.model.get(extension_id)
        if installed is None:
            with pytest.raises(RegistryError, match="not installed"):
                self.registry.set_enabled(extension_id, enabled)
            return
        self.registry.set_enabled(extension_id, enabled)
        installed.enabled = enabled

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def set_config_valid(self, data: st.DataObject) -> None:
        extension_id = data.draw(st.sampled_from(sorted(self.model)))
        installed = self.model[extension_id]
        defaults = CONFIG_DEFAULTS[installed.version]
        keys = data.draw(st.lists(st.sampled_from(sorted(defaults)), min_size=1, unique=True))
        values = {key: data.draw(VALID_VALUES[type(defaults[key])]) for key in keys}
        self.registry.set_config(extension_id, values)
        installed.stored.update(values)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def set_config_invalid(self, data: st.DataObject) -> None:
        """A batch with one bad value is refused whole: not even its good values are stored."""
        extension_id = data.draw(st.sampled_from(sorted(self.model)))
        defaults = CONFIG_DEFAULTS[self.model[extension_id].version]
        values: dict[str, ConfigValue] = {}
        if data.draw(st.booleans(), label="with a valid value too"):
            key = data.draw(st.sampled_from(sorted(defaults)))
            values[key] = data.draw(VALID_VALUES[type(defaults[key])])
        if data.draw(st.booleans(), label="unknown key"):
            # A key of another version is a real mistake: settings of 1.x shown for 2.0.0.
            unknown = sorted(set().union(*CONFIG_DEFAULTS.values()) - set(defaults))
            key = data.draw(st.sampled_from([*unknown, "no-such-setting"]))
            values[key] = data.draw(st.sampled_from(ANY_VALUES))
        else:
            key = data.draw(st.sampled_from(sorted(defaults)))
            values[key] = data.draw(st.sampled_from(WRONG_VALUES[type(defaults[key])]))
        with pytest.raises(ConfigError):
            self.registry.set_config(extension_id, values)

    @rule(extension_id=st.sampled_from(IDS))
    def set_config_not_installed(self, extension_id: str) -> None:
        if extension_id in self.model:
            return
        with pytest.raises(RegistryError, match="not installed"):
            self.registry.set_config(extension_id, {"verbose": True})

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def reset_config(self, data: st.DataObject) -> None:
        extension_id = data.draw(st.sampled_from(sorted(self.model)))
        self.registry.reset_config(extension_id)
        self.model[extension_id].stored.clear()

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def extensions_match_the_model(self) -> None:
        listed = {e.id: (e.version, e.enabled) for e in self.registry.list_extensions()}
        assert listed == {i: (m.version, m.enabled) for i, m in self.model.items()}
        for extension_id, installed in self.model.items():
            assert self.registry.get_config(extension_id) == installed.config()
        for extension_id in set(IDS) - set(self.model):
            kept = self.registry.kept_settings(extension_id)
            assert (kept.settings if kept else None) == self.kept_settings.get(extension_id)

    @invariant()
    def files_on_disk_match_the_installed_archives(self) -> None:
        paths = self.registry.paths
        assert sorted(p.name for p in paths.extensions.iterdir()) == sorted(self.model)
        for extension_id, installed in self.model.items():
            folder = paths.extensions / extension_id
            expected = self.catalogue[extension_id, installed.version].files
            assert installed_files(folder) == {n: len(d) for n, d in expected.items()}
            for name, data in expected.items():
                assert (folder / name).read_bytes() == data, (extension_id, name)
        assert list(paths.staging.iterdir()) == []
        assert list(paths.trash.iterdir()) == []

    @invariant()
    def operations_are_finished_and_consistent(self) -> None:
        assert self.registry.list_operations(active_only=True) == []
        records = self.registry.list_operations()
        assert len(records) == self.operations == self.registry.count_operations()
        for record in records:
            assert record.status in ("COMPLETED", "FAILED", "CANCELLED"), record
            assert (record.progress == 100) == (record.status == "COMPLETED"), record
            assert record.ended_at is not None, record

    @invariant()
    def the_doctor_finds_nothing(self) -> None:
        assert diagnose(self.registry) == []


# A pass takes ~15 s; a failure is then shrunk to a short sequence, which Hypothesis gives up to
# five minutes. The default timeout would interrupt that and report a confusing error instead.
@pytest.mark.timeout(420)
def test_registry_agrees_with_a_model_over_random_operations(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    class Machine(RegistryMachine):
        catalogue = build_catalogue(tmp_path_factory.mktemp("archives"))
        scratch = tmp_path_factory.mktemp("machines")

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
