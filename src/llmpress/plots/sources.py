"""What each committed results JSON contributes to the figures; plain data, no matplotlib.

The perplexity-vs-bits figure gathers rows from every file named in ``PPL_SOURCES``: adding a
benchmark is one entry (``rows_with_ppl`` fits any JSON whose ``rows`` carry ``method``,
``bits_per_weight`` and ``ppl_quick``). deltadq.json and dkm_memory.json feed figures of their
own. A file that feeds no figure goes in ``SKIPPED`` with its reason, so a new results file that
nobody placed is reported instead of silently left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmpress.errors import LlmpressError


@dataclass(frozen=True)
class PplPoint:
    source: str   # the results file's stem
    method: str   # the row's own label, e.g. "shiftadd lat mixed 2.2"
    bits: float   # stored bits per weight of the compressed layers
    ppl: float    # wiki test, quick profile


def _ppl(value) -> float | None:
    # Benchmarks store the whole evaluation record; a plain number is accepted for lighter writers.
    if isinstance(value, dict):
        value = value.get("ppl")
    return float(value) if isinstance(value, (int, float)) else None


def rows_with_ppl(source: str, data: dict) -> list[PplPoint]:
    """Rows with a method, bits per weight and a quick-profile perplexity; others are passed over."""
    points = []
    for row in data.get("rows", []):
        ppl, bits = _ppl(row.get("ppl_quick")), row.get("bits_per_weight")
        if ppl is not None and isinstance(bits, (int, float)) and row.get("method"):
            points.append(PplPoint(source, row["method"], float(bits), ppl))
    return points


# Registry order decides which file wins when two measured the same method (see ppl_points).
PPL_SOURCES: dict[str, Callable[[str, dict], list[PplPoint]]] = {
    "baseline": rows_with_ppl,  # fp32, RTN, GPTQ, k-means and ShiftAdd rows
    "dkm_train": rows_with_ppl,  # DKM fine-tuning results, once committed
}
DELTA_SOURCE = "deltadq"
MEMORY_SOURCE = "dkm_memory"
SKIPPED: dict[str, str] = {  # stem -> why no figure shows it
    "harness_agreement": "an agreement check between two evaluators (a table in BENCHMARKS.md), not a result to plot",
    "shiftadd_kernel": "speed and memory of three kernels on one checkpoint (a table in BENCHMARKS.md)",
    "runtime": "decode/prefill speed and resident memory per weight kind (a table in BENCHMARKS.md)",
    "reference_ppl": "the plain-transformers perplexity reference (one number per profile, in BENCHMARKS.md)",
    "export": "agreement of llmpress and llama.cpp on exported GGUF files (a table in BENCHMARKS.md)",
}
MEMORY_SHAPE = "4096x4096"  # the one shape every eDKM method was measured on, not scaled to

UNCOMPRESSED_BITS = 16  # rows at or above it (fp32, an fp32 fine-tune) are references, drawn as lines


def is_reference(p: PplPoint) -> bool:
    """An uncompressed row: at 32 bits as a point it would squeeze every compressed one."""
    return p.bits >= UNCOMPRESSED_BITS


def figure_sources() -> list[str]:
    """Read at call time, so an entry registered after import counts too."""
    return [*PPL_SOURCES, DELTA_SOURCE, MEMORY_SOURCE]


def known_sources() -> set[str]:
    return {*figure_sources(), *SKIPPED}


def unplaced(results_dir: Path) -> list[str]:
    """Results files that no figure reads and SKIPPED does not explain."""
    return sorted(p.name for p in Path(results_dir).glob("*.json") if p.stem not in known_sources())


def load(results_dir: Path, stem: str) -> dict | None:
    """The parsed file, or None when that benchmark has not been committed yet."""
    path = Path(results_dir) / f"{stem}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LlmpressError(f"{path} is not valid JSON ({exc}); rerun its benchmark script") from exc


def ppl_points(results_dir: Path) -> list[PplPoint]:
    """Every source's points; a method measured twice (a later benchmark rerunning a baseline row
    as its own reference) keeps its first registered measurement only."""
    seen, points = set(), []
    for stem, adapter in PPL_SOURCES.items():
        data = load(results_dir, stem)
        for p in adapter(stem, data) if data is not None else []:
            if p.method not in seen:
                seen.add(p.method)
                points.append(p)
    return points


_SETTING = re.compile(r"^(\d+-bit|mixed|\d+(\.\d+)?)$")


def family(method: str) -> str:
    """The series a row belongs to: its label without bit width, e.g. "rtn 3-bit g64" -> "rtn g64",
    "shiftadd lat mixed 2.2" -> "shiftadd lat"."""
    return " ".join(t for t in method.split() if not _SETTING.match(t)) or method


def setting(method: str) -> str:
    """What tells a point from the rest of its series: "rtn 3-bit g64" -> "3-bit"."""
    return " ".join(t for t in method.split() if _SETTING.match(t))


def delta_series(data: dict) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]]]:
    """Reference exact matches (base, fine-tune) and, per delta method, (exact tensor ratio,
    exact match) pairs sorted by ratio."""
    refs, series = {}, {}
    for name, row in data["rows"].items():
        if "exact_match" not in row or "(seed" in name:  # not reached yet, or a repeat of a plotted row
            continue
        em = row["exact_match"]["exact_match"]
        if row.get("method") == "none":
            refs[name] = em
        elif "accounting" in row:
            # one series per label without its ratio: "dare 32x" -> "dare", "bitdelta distilled" stays
            series.setdefault(re.sub(r" \d+x$", "", name), []).append((row["accounting"]["tensor_ratio"], em))
    return refs, {m: sorted(v) for m, v in series.items()}


def memory_bars(data: dict, shape: str = MEMORY_SHAPE) -> list[tuple[str, float, int]]:
    """(method, saved-for-backward reduction vs naive, bytes saved per rank) on one shape."""
    rows = [r for r in data["rows"] if r["shape"] == shape and r.get("measured", True)]
    naive = [r["saved"]["kept_bytes"] for r in rows if r["method"] == "naive"]
    if not naive:
        raise LlmpressError(f"dkm_memory.json has no measured naive row for {shape}: nothing to compare "
                            "against; rerun benchmarks/dkm_memory.py")
    return [(r["method"], naive[0] / r["saved"]["kept_bytes"], r["saved"]["kept_bytes"]) for r in rows]
