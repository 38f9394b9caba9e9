"""Batch regimes of a compressed matmul, shared by the registry and the kernels that switch
strategy with the number of tokens per call."""

# From this many tokens per call (prefill, scoring) decoding the weight once for the call and
# multiplying densely beats per-token decoding in registers or per-token lookup tables: the
# per-token work grows with the tokens, the decoding does not.
GEMM_FROM_TOKENS = 16
REGIMES = ("gemv", "gemm", "rows")


def regime(tokens: int) -> str:
    """``"gemv"`` below :data:`GEMM_FROM_TOKENS` tokens per call, ``"gemm"`` from there."""
    return "gemv" if tokens < GEMM_FROM_TOKENS else "gemm"
