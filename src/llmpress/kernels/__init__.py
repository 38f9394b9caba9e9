"""Matrix products on compressed formats without rebuilding the dense weight (pure torch references)."""

from llmpress.kernels.lut_matmul import bcq_lut_matmul, partial_sum_tables

__all__ = ["bcq_lut_matmul", "partial_sum_tables"]
