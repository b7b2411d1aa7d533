"""The extensions list sorts and filters itself; selection follows the extension, not the row."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QApplication

from gui.extensions_model import INSTALLED, NAME, VERSION, ExtensionsModel
from registry.store import ExtensionSummary


def summary(
    ext_id: str, name: str, version: str, installed: str = "2026-01-01"
) -> ExtensionSummary:
    return ExtensionSummary(
        id=ext_id,
        name=name,
        version=version,
        description=f"about {name}",
        enabled=True,
        icon_path=None,
        install_path=f"/x/{ext_id}",
        installed_at=installed,
        updated_at=installed,
    )


def names(model: ExtensionsModel) -> list[str]:
    return [model.record(row).name for row in range(model.rowCount())]


def test_sorts_by_name_ignoring_case_and_by_semantic_version(qapp: QApplication) -> None:
    model = ExtensionsModel()
    model.set_records(
        [
            summary("a.b", "beta", "1.10.0"),
            summary("a.c", "Alpha", "1.9.0"),
            summary("a.d", "gamma", "1.9.0-rc.1"),
        ]
    )
    assert names(model) == ["Alpha", "beta", "gamma"]
    model.sort(VERSION, Qt.SortOrder.AscendingOrder)
    assert [model.record(r).version for r in range(3)] == ["1.9.0-rc.1", "1.9.0", "1.10.0"]
    model.sort(NAME, Qt.SortOrder.DescendingOrder)
    assert names(model) == ["gamma", "beta", "Alpha"]


def test_filter_matches_name_id_and_description_and_keeps_the_total(qapp: QApplication) -> None:
    model = ExtensionsModel()
    model.set_records(
        [summary(f"bench.ext-{n:05d}", f"Extension {n:05d}", "1.0.0") for n in range(10_000)]
    )
    model.set_filter("ext-0999")
    assert names(model) == [f"Extension {n:05d}" for n in range(9990, 10_000)]
    assert model.total_count() == 10_000
    model.set_filter("  EXTENSION 00042 ")
    assert names(model) == ["Extension 00042"]
    model.set_filter("")
    assert model.rowCount() == 10_000


def test_selection_follows_the_extension_through_sort_and_filter(qapp: QApplication) -> None:
    model = ExtensionsModel()
    model.set_records(
        [
            summary("a.one", "One", "1.0.0", "2026-01-03"),
            summary("a.two", "Two", "1.0.0", "2026-01-01"),
            summary("a.three", "Three", "1.0.0", "2026-01-02"),
        ]
    )
    selection = QItemSelectionModel(model)
    row = model.row_of("a.two")
    assert row is not None
    selection.select(
        model.index(row, NAME),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    model.sort(INSTALLED, Qt.SortOrder.AscendingOrder)
    [selected] = selection.selectedRows()
    assert model.record(selected.row()).id == "a.two" and selected.row() == 0
    model.set_filter("t")  # "Two" and "Three" stay
    [selected] = selection.selectedRows()
    assert model.record(selected.row()).id == "a.two"
