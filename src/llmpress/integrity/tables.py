"""Comparing the tensors a model (or format) expects with the tensors a file's header holds."""

from __future__ import annotations

from llmpress.errors import CheckpointError

Table = dict[str, tuple[str, tuple[int, ...]]]  # name -> (torch dtype name, shape)
FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})


def compare(expected: Table, found: Table, where: str, *, float_any: frozenset[str] = frozenset()) -> None:
    """Raise unless ``found`` holds exactly the names of ``expected`` with the same shapes and
    dtypes; names in ``float_any`` may be stored in any float dtype (floats are narrowed to
    float16 when lossless)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{where} does not hold the tensors its description needs: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}; it is corrupt or for another model, re-create it")
    for name, (dtype, shape) in expected.items():
        got_dtype, got_shape = found[name]
        dtype_ok = got_dtype == dtype or (name in float_any and dtype in FLOATS and got_dtype in FLOATS)
        if tuple(got_shape) != tuple(shape) or not dtype_ok:
            raise CheckpointError(f"{where}: tensor {name} is stored as {got_dtype} {list(got_shape)}, its "
                                  f"description needs {dtype} {list(shape)}; it is corrupt or crafted, re-create it")


def dtype_name(dtype) -> str:
    """``torch.float16`` -> ``"float16"``, the spelling manifests and headers use."""
    return str(dtype).removeprefix("torch.")


def of_state(state: dict) -> Table:
    """The table of a state dict (meta tensors included: nothing is read)."""
    return {n: (dtype_name(t.dtype), tuple(t.shape)) for n, t in state.items()}
