"""A float32 numpy evaluator of the few MIL ops the Core ML export uses, written from the op
specifications in coremltools' documentation: a check that the saved program computes the LLaMA
forward, where Core ML itself (macOS only) cannot run. Not Core ML's runtime, and not claimed as one."""

from __future__ import annotations

import numpy as np


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _l2_norm(x, epsilon=1e-6):  # over the last three axes (MIL: rank(*D) == 3)
    s = (x * x).sum(axis=(-1, -2, -3), keepdims=True)
    return x / np.sqrt(s + epsilon)


def _lut(indices, lut):
    rows_per_group = indices.shape[0] // lut.shape[0]
    group = np.arange(indices.shape[0]) // rows_per_group
    return lut[group[:, None], 0, indices.astype(np.int64), 0]


OPS = {
    "constexpr_lut_to_dense": lambda a: _lut(a["indices"], a["lut"]),
    "gather": lambda a: np.take(a["x"], a["indices"].astype(np.int64), axis=int(a.get("axis", 0))),
    "reshape": lambda a: a["x"].reshape([int(d) for d in a["shape"]]),
    "l2_norm": lambda a: _l2_norm(a["x"], float(a.get("epsilon", 1e-6))),
    "mul": lambda a: a["x"] * a["y"],
    "add": lambda a: a["x"] + a["y"],
    "sub": lambda a: a["x"] - a["y"],
    "real_div": lambda a: a["x"] / a["y"],
    "linear": lambda a: a["x"] @ a["weight"].T + (a["bias"] if "bias" in a else 0),
    "transpose": lambda a: np.transpose(a["x"], [int(p) for p in a["perm"]]),
    "concat": lambda a: np.concatenate(a["values"], axis=int(a["axis"])),
    "expand_dims": lambda a: np.expand_dims(a["x"], tuple(int(x) for x in a["axes"])),
    "tile": lambda a: np.tile(a["x"], [int(r) for r in a["reps"]]),
    "softmax": lambda a: _softmax(a["x"], int(a["axis"])),
    "silu": lambda a: a["x"] / (1 + np.exp(-a["x"])),
    "sigmoid": lambda a: 1 / (1 + np.exp(-a["x"])),
    "cast": lambda a: a["x"],
    "greater_equal": lambda a: a["x"] >= a["y"],
    "select": lambda a: np.where(a["cond"], a["a"], a["b"]),
}


def _matmul(a):
    x, y = a["x"], a["y"]
    if a.get("transpose_x", False):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y", False):
        y = np.swapaxes(y, -1, -2)
    return x @ y


def _split(a, n_out):
    return np.split(a["x"], int(a["num_splits"]) if "num_splits" in a else n_out, axis=int(a["axis"]))


def run(program, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate the ``main`` function of a MIL program in float32; returns its outputs by name."""
    fn = program.functions["main"]
    env = {name: np.asarray(v, dtype=np.float32 if v.dtype.kind == "f" else v.dtype) for name, v in inputs.items()}

    def value(var):
        if isinstance(var, (list, tuple)):
            return [value(v) for v in var]
        if var.name in env:
            return env[var.name]
        if var.val is not None:
            v = np.asarray(var.val)
            return v.astype(np.float32) if v.dtype.kind == "f" else v
        raise KeyError(f"no value for {var.name}")

    for op in fn.operations:
        if op.op_type == "const":
            continue
        args = {k: value(v) for k, v in op.inputs.items()}
        if op.op_type == "matmul":
            out = [_matmul(args)]
        elif op.op_type == "split":
            out = _split(args, len(op.outputs))
        elif op.op_type in OPS:
            out = [OPS[op.op_type](args)]
        else:
            raise NotImplementedError(f"mil_numpy has no {op.op_type} (op {op.name})")
        for var, v in zip(op.outputs, out):
            env[var.name] = np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f" else v
    return {var.name: env[var.name] for var in fn.outputs}
