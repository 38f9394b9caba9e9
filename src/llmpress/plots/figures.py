"""The benchmark figures, drawn with matplotlib's Agg canvas from :mod:`llmpress.plots.sources`.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global state and no
display backend to pick, so rendering in a test or a headless CI box behaves the same.
Fixed size, dpi and no "Software" PNG chunk keep a rerun on the same matplotlib byte-identical.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from llmpress.errors import LlmpressError
from llmpress.plots import sources

SIZE = (8.0, 5.0)
DPI = 110
MARKERS = "osD^vP*X"
OFFSETS = ((4, 3), (-4, 3), (4, -3), (-4, -3))


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise LlmpressError("plotting needs matplotlib: pip install 'llmpress[plot]'") from exc


@contextmanager
def _figure(path: Path):
    """A fresh figure and axes; saved to path when the block ends."""
    require_matplotlib()
    import matplotlib.style
    from matplotlib.figure import Figure

    # Default style, whatever the user's matplotlibrc says, so the committed PNGs are reproducible.
    with matplotlib.style.context("default"):
        fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
        yield fig.add_subplot()
        fig.savefig(path, dpi=DPI, metadata={"Software": None})


def ppl_vs_bits(points: list[sources.PplPoint], path: Path) -> Path:
    with _figure(path) as ax:
        refs = [p for p in points if sources.is_reference(p)]
        series: dict[str, list[sources.PplPoint]] = {}
        for p in points:
            if p not in refs:
                series.setdefault(sources.family(p.method), []).append(p)
        for i, (name, pts) in enumerate(series.items()):
            pts.sort(key=lambda p: p.bits)
            (line,) = ax.plot([p.bits for p in pts], [p.ppl for p in pts], marker=MARKERS[i % len(MARKERS)],
                              label=name)
            # Series meet near 3 bits; turning each series' labels a different way keeps them apart.
            dx, dy = OFFSETS[i % len(OFFSETS)]
            for p in pts:
                ax.annotate(sources.setting(p.method), (p.bits, p.ppl), textcoords="offset points", xytext=(dx, dy),
                            ha="left" if dx > 0 else "right", va="bottom" if dy > 0 else "top", fontsize=7,
                            color=line.get_color())
        for i, p in enumerate(refs):
            ax.axhline(p.ppl, color=("gray", "black")[i % 2], linestyle=("--", ":")[i % 2],
                       label=f"{p.method} ({p.ppl:.2f})")
        ax.set_yscale("log")
        # log2 spreads the 2-4 bit region that matters; 8-bit rows would otherwise take half the width.
        ax.set_xscale("log", base=2)
        bits = [p.bits for pts in series.values() for p in pts]
        ticks = range(math.floor(min(bits)), math.ceil(max(bits)) + 1)
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.xaxis.minorticks_off()
        ax.set_xlabel("bits per weight (compressed linear layers, every stored byte; log2)")
        ax.set_ylabel("perplexity, wiki test, quick profile (log)")
        ax.set_title("Perplexity vs bits per weight, default model")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    return path


def delta_accuracy(refs: dict[str, float], series: dict[str, list[tuple[float, float]]], path: Path) -> Path:
    with _figure(path) as ax:
        for method, pts in series.items():
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=method)
        for i, (name, em) in enumerate(refs.items()):
            ax.axhline(em, color=("gray", "black")[i % 2], linestyle=("--", ":")[i % 2], label=f"{name} ({em:.3f})")
        ax.set_xscale("log", base=2)
        ratios = [x for pts in series.values() for x, _ in pts]
        if ratios:  # a results file still being written may hold only the base and fine-tune rows
            # Rounded: exact ratios fall just under their nominal power of two (7.98x for 8x).
            ticks = [2 ** k for k in range(round(math.log2(min(ratios))), round(math.log2(max(ratios))) + 1)]
            ax.set_xticks(ticks, labels=[f"{t}x" for t in ticks])
        ax.set_xlabel("compression ratio of the delta vs fp16 (exact, tensor bytes; log2)")
        ax.set_ylabel("exact match, held-out arithmetic")
        ax.set_title("Delta compression: accuracy vs compression ratio")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return path


def _bytes(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n / 1e6:,.1f} MB"


def dkm_memory(bars: list[tuple[str, float, int]], n_bits: int, path: Path) -> Path:
    with _figure(path) as ax:
        names = [m for m, _, _ in bars][::-1]  # barh draws bottom-up; keep the JSON's order top-down
        values = [r for _, r, _ in bars][::-1]
        ax.barh(names, values, color="tab:blue")
        for y, (_, r, kept) in enumerate(bars[::-1]):
            ax.annotate(f"{r:,.1f}x ({_bytes(kept)})" if r < 1e5 else f"{r:.1e}x ({_bytes(kept)})", (r, y),
                        textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(0.5, max(values) * 300)  # room for the label of the longest bar
        ax.set_xlabel("saved-for-backward reduction vs naive (log; bytes held per rank in brackets)")
        ax.set_title(f"eDKM memory: one {n_bits}-bit clustering step on a {sources.MEMORY_SHAPE} weight")
        ax.grid(True, axis="x", alpha=0.3)
    return path
