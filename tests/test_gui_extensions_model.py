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


def shown_ids(model: ExtensionsModel) -> list[str]:
    return [model.record(row).id for row in range(model.rowCount())]


def test_a_changed_extension_moves_to_its_place_and_stays_selected(qapp: QApplication) -> None:
    records = [summary(f"a.{n:03d}", f"Name {n:03d}", "1.0.0") for n in range(50)]
    model = ExtensionsModel()
    model.set_records(records)
    selection = QItemSelectionModel(model)
    selection.select(
        model.index(model.row_of("a.010") or 0, NAME),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    moves: list[int] = []
    model.rowsMoved.connect(lambda *_args: moves.append(1))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    model.layoutChanged.connect(lambda: resets.append(1))

    # Renamed to sort last, then first: the row moves and the selection goes with it.
    for name, expected_row in (("Zed", 49), ("Aardvark", 0), ("Name 010", 10)):
        model.update_records([summary("a.010", name, "1.1.0")])
        [selected] = selection.selectedRows()
        assert model.record(selected.row()).id == "a.010"
        assert selected.row() == expected_row
        assert model.record(expected_row).version == "1.1.0"
    assert len(moves) == 3 and resets == []

    # Same place, new version: the row is changed where it is.
    model.update_records([summary("a.020", "Name 020", "2.0.0")])
    assert model.record(20).version == "2.0.0" and len(moves) == 3
    # A new one goes to its place; a removed one leaves; the total follows.
    model.update_records([summary("a.999", "Name 005x", "1.0.0")], removed=["a.030", "gone"])
    assert shown_ids(model)[5:7] == ["a.005", "a.999"]
    assert "a.030" not in shown_ids(model) and model.total_count() == 50
    assert shown_ids(model) == [r.id for r in sorted(model._all.values(), key=lambda r: r.name)]
    assert model.name_of("a.999") == "Name 005x" and model.name_of("a.030") is None


def test_changes_respect_the_filter_and_the_sort_order(qapp: QApplication) -> None:
    model = ExtensionsModel()
    model.set_records([summary(f"a.{n}", f"Tool {n}", f"1.{n}.0") for n in range(1, 10)])
    model.sort(VERSION, Qt.SortOrder.DescendingOrder)
    model.set_filter("tool")
    model.set_filter("tool 1")  # narrows what is shown now
    assert shown_ids(model) == ["a.1"]
    # Renamed out of the filter: it leaves; another renamed into it: it comes in.
    model.update_records([summary("a.1", "Other", "1.1.0"), summary("a.5", "Tool 15", "1.5.0")])
    assert shown_ids(model) == ["a.5"]
    model.set_filter("")
    assert shown_ids(model) == [f"a.{n}" for n in range(9, 0, -1)]
    model.update_records([summary("a.2", "Tool 2", "1.20.0")])  # now the newest version
    assert shown_ids(model)[0] == "a.2"
    assert [model.record(r).version for r in range(model.rowCount())] == sorted(
        (model.record(r).version for r in range(model.rowCount())),
        key=lambda v: [int(part) for part in v.split(".")],
        reverse=True,
    )


def test_deleting_what_was_typed_shows_the_earlier_rows_and_changes_are_not_missed(
    qapp: QApplication,
) -> None:
    model = ExtensionsModel()
    model.set_records([summary(f"a.{n:03d}", f"Tool {n:03d}", "1.0.0") for n in range(300)])
    typed = "tool 12"
    seen = {}
    for end in range(1, len(typed) + 1):
        model.set_filter(typed[:end])
        seen[typed[:end]] = shown_ids(model)
    assert seen["tool 12"] == [f"a.{n:03d}" for n in range(120, 130)]
    for end in range(len(typed) - 1, 0, -1):
        model.set_filter(typed[:end])
        assert shown_ids(model) == seen[typed[:end]]

    # An extension renamed meanwhile is where it belongs when the text is typed again.
    model.update_records([summary("a.007", "Tool 125b", "1.0.0")])
    model.set_filter("tool 12")
    assert shown_ids(model)[:7] == ["a.120", "a.121", "a.122", "a.123", "a.124", "a.125", "a.007"]
    model.set_filter("tool 00")
    assert "a.007" not in shown_ids(model) and len(shown_ids(model)) == 9
