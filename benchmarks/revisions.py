"""Rows measured by an older revision of a quantizer: moved aside, kept for comparison, measured again.

A benchmark stamps each row its quantizer made with that quantizer's revision number. When the
quantizer changes, the number goes up; on the next run the rows it rejects leave ``data["rows"]``
for ``data["superseded"]`` (so the before/after comparison stays in the committed JSON) and the
benchmark measures them afresh.
"""

from __future__ import annotations

from typing import Callable


def retire(data: dict, is_current: Callable[[dict], bool]) -> int:
    """Move every row of ``data["rows"]`` that ``is_current`` rejects to ``data["superseded"]``.

    ``data["rows"]`` is a list of rows or a dict of rows by label (a moved row then keeps its
    label under "label"). Each moved row carries the revision that made it; rows written before
    benchmarks stamped revisions count as revision 1. Returns how many rows moved.
    """
    rows = data["rows"]
    labelled = list(rows.items()) if isinstance(rows, dict) else [(None, r) for r in rows]
    stale = [(label, r) for label, r in labelled if not is_current(r)]
    for label, row in stale:
        entry = {"label": label} if label is not None else {}
        data.setdefault("superseded", []).append({**entry, **row, "revision": row.get("revision", 1)})
    if isinstance(rows, dict):
        for label, _ in stale:
            del rows[label]
    else:
        data["rows"] = [r for r in rows if is_current(r)]
    return len(stale)
