"""An Embedding whose table lives in a compressed format."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmpress.nn.format_module import FormatModule


class CompressedEmbedding(FormatModule):
    """Rows of W = ``format.dequantize()`` [num_embeddings, embedding_dim]. ids: [...] -> [..., dim].

    Only the looked-up rows are decoded (by the registry's ``rows`` kernel). A tied output head is
    a :class:`~llmpress.nn.CompressedLinear` over the same buffers.
    """

    def __init__(self, fmt, padding_idx: int | None = None):
        super().__init__()
        self._hold(fmt)
        self.num_embeddings, self.embedding_dim = fmt.spec.shape
        self.padding_idx = padding_idx

    @classmethod
    def from_meta(cls, meta: dict) -> "CompressedEmbedding":
        return cls(cls.format_from_meta(meta), meta.get("padding_idx"))

    def meta(self) -> dict:
        return {**super().meta(), "padding_idx": self.padding_idx}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.kernel == "dense":
            return F.embedding(ids, self._weight(torch.float32, ids.device), self.padding_idx)
        return self.run_kernel(ids.reshape(-1), "rows").reshape(*ids.shape, self.embedding_dim)

    def kernel_names(self, device: torch.device | str = "cpu") -> dict[str, str]:
        if self.kernel != "auto":
            return {"rows": self.kernel}
        return {"rows": self.select_kernel(device, "rows").name}

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, format={self.spec}"
