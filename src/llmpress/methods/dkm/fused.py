"""DKM for small groups (a table per output row): the naive soft k-means, fused by torch.compile.

Tables of distinct values (``unique``, ``table``) pay off when many weights share a table. With
one table per row (``group_size=1``, which this model needs at 3 bits: one palette per tensor
loses too much) a group holds a few hundred mostly distinct weights, so a table is as long as
the group and the work is the naive [N, K] attention however it is organised. What costs is
eager PyTorch making a dozen passes over [N, K] temporaries per iteration; torch.compile fuses
them into a few loops (about 10x faster on CPU for a 1536x576 layer, forward plus backward).

The arithmetic is the reference's (:mod:`.reference`), with one difference: it always runs
``max_iter`` iterations (no early stop, which would be a data-dependent branch inside the
compiled graph). Warm-started from the previous step's centroids, one iteration per training
step is eDKM's practice for fine-tuning. Without a working compiler it runs eagerly, same numbers.
"""

from __future__ import annotations

import functools
import warnings

import torch

from llmpress.methods.dkm import steps


def soft_kmeans_fixed(points: torch.Tensor, c0: torch.Tensor, tau: torch.Tensor, iterations: int,
                      mass: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """points [G, P, d] (differentiable), c0 [G, K, d] (constant), tau: 0-d tensor (absolute),
    mass [G, P] (constant point importance, None = 1 each).

    Exactly ``iterations`` soft k-means steps; returns (A_T C_T [G, P, d], C_T [G, K, d]) with
    A_T computed from C_{T-1}, as :func:`llmpress.methods.dkm.reference.soft_kmeans` does.
    """
    x, c = points.float(), c0.float()
    for _ in range(iterations):
        a = steps.attention(x, c, tau)
        c = steps.update(a, x, c, mass)
    return a @ c, c


@functools.cache
def _compiled():
    # dynamic=None: the first shape compiles static, later shapes share one dynamic graph, so a
    # model's handful of layer shapes costs two compilations rather than one each.
    return torch.compile(soft_kmeans_fixed, dynamic=False)


_EAGER = False


def soft_kmeans(points: torch.Tensor, c0: torch.Tensor, tau: float, iterations: int,
                mass: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`soft_kmeans_fixed` compiled, or eager when compilation is unavailable (warns once)."""
    global _EAGER
    # tau as a tensor: a Python float would be baked into the graph, one recompilation per layer.
    tau_t = torch.tensor(float(tau), dtype=torch.float32, device=points.device)
    if not _EAGER:
        try:
            return _compiled()(points, c0, tau_t, iterations, mass)
        except Exception as err:  # no C++ compiler, unsupported platform: same math, eagerly
            warnings.warn(f"DKM memory='fused': torch.compile failed ({type(err).__name__}: {err}); "
                          "running the same soft k-means eagerly (slower)", RuntimeWarning, stacklevel=2)
            _EAGER = True
    return soft_kmeans_fixed(points, c0, tau_t, iterations, mass)
