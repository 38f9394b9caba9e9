"""DKM over distinct values: the math shared by eDKM uniquification and the 16-bit table path.

When many weights share a value, every per-weight quantity of DKM (distances, attention, the
clustered weight, even the gradient) is a function of the value alone. So the soft k-means can
run over a table of V distinct values x with counts n, and each weight reads its entry through
an index idx:  W~_i = f[idx_i]  with  f = A_T(x) C_{T+1}.

Backward. With G_i = dL/dW~_i, the gradient of a weight has two parts:
- direct: G_i . df/dx at its value, the centroids held fixed;
- through the centroids: every iteration t sums a_t(w) w and a_t(w) over the weights, so the
  weight's own term contributes g_t . d/dw [a_t(w) w, a_t(w)], where g_t is the gradient of the
  loss w.r.t. those sums (it includes every later iteration and the output).
The loss needs the weights only through S[v] = sum of G_i over the weights of value v, so g_t
comes from autograd on the V-row chain with zero "probe" tensors added to the sums. Both parts
are V-row tables; a weight's gradient is  G_i . J[idx_i] + h[idx_i].  Nothing of size N is
saved: the chain is recomputed in backward from the starting centroids (it costs O(V K T)).

Importance weights s_i (the sums become s_i a_t(w) w and s_i a_t(w)) keep this shape: the
counts become sums of s_i per value, and a weight's second part is s_i h[idx_i].
"""

from __future__ import annotations

import torch

from llmpress.methods.dkm import steps


def chain(x: torch.Tensor, counts: torch.Tensor, c0: torch.Tensor, tau: float, iterations: int,
          epsilon: float = 0.0, probes=None) -> tuple[list[torch.Tensor], int]:
    """Centroids [c_0, c_1, ..., c_T] of the soft k-means over values x [G, V, d] with counts [G, V].

    Runs at most ``iterations`` steps, stopping early as :mod:`reference` does when ``epsilon`` > 0.
    Returns (centroids, T).
    """
    cs = [c0]
    for t in range(iterations):
        a = steps.attention(x, cs[-1], tau)
        c_new = steps.update(a, x, cs[-1], counts, probes[t] if probes is not None else None)
        done = steps.converged(c_new, cs[-1], epsilon)
        cs.append(c_new)
        if done:
            break
    return cs, len(cs) - 1


def output_table(x: torch.Tensor, cs: list[torch.Tensor], tau: float) -> torch.Tensor:
    """f = A_T(x) C_{T+1}: the clustered value of each table row, [G, V, d]."""
    return steps.attention(x, cs[-2], tau) @ cs[-1]


# The tables are small (V <= 65536 rows), so they are computed in float64: the result is then
# as close to exact as the inputs allow, and every path built on them agrees with the naive
# reference to within the reference's own fp32 rounding.
TABLE_DTYPE = torch.float64


@torch.no_grad()
def forward(x: torch.Tensor, counts: torch.Tensor, c0: torch.Tensor, tau: float, max_iter: int,
            epsilon: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(output table f [G, V, d] float32, final centroids [G, K, d] float32, iterations run)."""
    x, counts, c0 = x.to(TABLE_DTYPE), counts.to(TABLE_DTYPE), c0.to(TABLE_DTYPE)
    cs, iterations = chain(x, counts, c0, tau, max_iter, epsilon)
    return output_table(x, cs, tau).float(), cs[-1].float(), iterations


def backward_tables(x: torch.Tensor, counts: torch.Tensor, grad_sum: torch.Tensor, c0: torch.Tensor,
                    tau: float, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-value gradient tables (J [G, V, d, d], h [G, V, d]).

    grad_sum: [G, V, d], the incoming gradient summed over the weights of each value (S above).
    A weight of value v then gets  G_i @ J[v] + h[v]  (J[v][k, j] = d f_k / d x_j at v).
    """
    G, K, d = c0.shape
    x, counts, grad_sum, c0 = (t.to(TABLE_DTYPE) for t in (x, counts, grad_sum, c0))
    with torch.enable_grad():
        probes = [(x.new_zeros(G, K, d, requires_grad=True),
                   x.new_zeros(G, K, requires_grad=True)) for _ in range(iterations)]
        cs, _ = chain(x, counts, c0, tau, iterations, probes=probes)
        loss = (grad_sum * output_table(x, cs, tau)).sum()
        flat = [p for pair in probes for p in pair]
        g = torch.autograd.grad(loss, flat)
        cs = [c.detach() for c in cs]

        # Each row below depends only on its own value, so one gradient of a sum gives every row.
        y = x.detach().requires_grad_(True)
        own = x.new_zeros(())
        for t in range(iterations):
            a = steps.attention(y, cs[t], tau)                        # [G, V, K]
            g_num, g_den = g[2 * t], g[2 * t + 1]                       # [G, K, d], [G, K]
            own = own + (a.unsqueeze(-1) * y.unsqueeze(2) * g_num.unsqueeze(1)).sum() \
                + (a * g_den.unsqueeze(1)).sum()
        h = torch.autograd.grad(own, y, retain_graph=False)[0]
        f = output_table(y, cs, tau)
        rows = [torch.autograd.grad(f[..., k].sum(), y, retain_graph=k < d - 1)[0] for k in range(d)]
    return torch.stack(rows, dim=-2).float(), h.float()


def scatter_rows(grad: torch.Tensor, idx: torch.Tensor, rows: int) -> torch.Tensor:
    """S [G, rows, d]: grad [G, P, d] summed by the table row idx [G, P] of each point."""
    G, _, d = grad.shape
    out = grad.new_zeros(G, rows, d)
    return out.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, d), grad)


def gather_grad(grad: torch.Tensor, idx: torch.Tensor, jac: torch.Tensor, h: torch.Tensor,
                mass: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dW for points [G, P, d]: grad @ J[idx] + h[idx], the second term times each point's
    ``mass`` [G, P] when the sums were weighted (a point enters them with its mass)."""
    d = grad.shape[-1]
    take = lambda t: torch.gather(t, 1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))  # noqa: E731
    through = take(h) if mass is None else take(h) * mass.unsqueeze(-1)
    if d == 1:
        return grad * take(jac.view(*jac.shape[:2], 1)) + through
    return torch.einsum("gpk,gpkj->gpj", grad, take(jac)) + through
