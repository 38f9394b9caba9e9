"""benchmarks/revisions.py: rows of an older quantizer revision leave the results, kept aside."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("revisions", Path(__file__).parents[1] / "benchmarks" / "revisions.py")
revisions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(revisions)


def is_current(row):
    return row.get("revision") == 2


def test_list_rows_stale_ones_move_with_their_revision():
    data = {"rows": [{"method": "a", "revision": 2}, {"method": "b"}, {"method": "c", "revision": 1}]}
    assert revisions.retire(data, is_current) == 2
    assert data["rows"] == [{"method": "a", "revision": 2}]
    assert data["superseded"] == [{"method": "b", "revision": 1}, {"method": "c", "revision": 1}]


def test_dict_rows_keep_their_label_and_earlier_superseded_rows_stay():
    data = {"rows": {"x 8x": {"method": "x", "revision": 1}, "y 8x": {"method": "y", "revision": 2}},
            "superseded": [{"label": "old", "method": "x", "revision": 0}]}
    assert revisions.retire(data, is_current) == 1
    assert data["rows"] == {"y 8x": {"method": "y", "revision": 2}}
    assert data["superseded"][1] == {"label": "x 8x", "method": "x", "revision": 1}
    assert len(data["superseded"]) == 2


def test_nothing_stale_changes_nothing():
    data = {"rows": [{"method": "a", "revision": 2}]}
    assert revisions.retire(data, is_current) == 0
    assert data == {"rows": [{"method": "a", "revision": 2}]}
