"""``llmpress bench plot``: PNG figures from the committed benchmark JSON.

    from llmpress.plots import render
    written, notes = render("benchmarks/results", "benchmarks/plots")

:mod:`~llmpress.plots.sources` reads the JSON (no matplotlib needed); :mod:`~llmpress.plots.figures`
draws. matplotlib is an optional extra (``pip install 'llmpress[plot]'``), imported only to draw.
"""

from __future__ import annotations

from pathlib import Path

from llmpress.errors import LlmpressError
from llmpress.plots import figures, sources

PPL_PNG, DELTA_PNG, MEMORY_PNG = "ppl_vs_bits.png", "delta_accuracy.png", "dkm_memory.png"


def render(results_dir: str | Path, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Write every figure whose results exist; returns the PNGs written and notes on what was left out."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise LlmpressError(f"no results directory {results_dir}: pass --results DIR "
                            "(benchmarks/results in a checkout)")
    notes = [f"{name}: no figure reads it; add an adapter in llmpress/plots/sources.py or list it in SKIPPED"
             for name in sources.unplaced(results_dir)]
    notes += [f"{stem}.json: not found, skipped" for stem in sources.figure_sources()
              if not (results_dir / f"{stem}.json").is_file()]
    figures.require_matplotlib()  # before anything is created
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    points = sources.ppl_points(results_dir)
    if points:
        written.append(figures.ppl_vs_bits(points, out_dir / PPL_PNG))
    delta = sources.load(results_dir, sources.DELTA_SOURCE)
    if delta is not None:
        written.append(figures.delta_accuracy(*sources.delta_series(delta), out_dir / DELTA_PNG))
    memory = sources.load(results_dir, sources.MEMORY_SOURCE)
    if memory is not None:
        bars = sources.memory_bars(memory)
        written.append(figures.dkm_memory(bars, memory["step"]["n_bits"], out_dir / MEMORY_PNG))
    return written, notes
