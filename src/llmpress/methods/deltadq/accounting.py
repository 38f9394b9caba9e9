"""Exact storage accounting of a compressed delta against the same delta in float16."""

from __future__ import annotations


def account(linear: dict, dense: dict, files: dict[str, int] | None = None) -> dict:
    """Byte counts and ratios.

    linear: name -> format (``nbytes``, ``spec.numel``); dense: name -> float16 tensor; files:
    name -> bytes on disk of the saved delta directory (manifest and safetensors header
    included), when saved. Ratios compare with every delta tensor stored in float16:
    ``linear_ratio`` (linear layers' tensors only), ``tensor_ratio`` (all stored tensors) and
    ``directory_ratio`` (every byte of every file).
    """
    lin_params = sum(f.spec.numel for f in linear.values())
    lin_bytes = sum(f.nbytes for f in linear.values())
    dense_params = sum(t.numel() for t in dense.values())
    dense_bytes = sum(t.numel() * t.element_size() for t in dense.values())
    fp16 = 2 * (lin_params + dense_params)
    out = {"linear_params": lin_params, "linear_bytes": lin_bytes, "linear_fp16_bytes": 2 * lin_params,
           "linear_ratio": 2 * lin_params / lin_bytes if lin_bytes else float("inf"),
           "linear_bits_per_weight": 8 * lin_bytes / lin_params if lin_params else 0.0,
           "dense_params": dense_params, "dense_bytes": dense_bytes,
           "tensor_bytes": lin_bytes + dense_bytes, "fp16_bytes": fp16,
           "tensor_ratio": fp16 / (lin_bytes + dense_bytes) if lin_bytes + dense_bytes else float("inf")}
    if files is not None:
        total = sum(files.values())
        out.update(directory_bytes=total, directory_ratio=fp16 / total)
    return out
