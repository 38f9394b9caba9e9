"""A palettized llmpress model as a Core ML ``.mlpackage`` whose weights stay look-up tables.

The model is written as a Core ML program (MIL, iOS 18 opset) built op by op - no tracing, so
conversion runs on Linux - computing the LLaMA forward of one window of ``seqlen`` tokens
(input_ids int32 [1, seqlen] -> logits float16 [1, seqlen, vocab], causal, no KV cache):
embedding gather, RMSNorm, rotary q/k, grouped-query attention, SwiGLU MLP, tied head.

Every palettized linear (k-means, DKM; scalar entries; a table per group of rows or per tensor) and
a palettized embedding become ``constexpr_lut_to_dense``: the indices at their own bit width
(uint1-4, 6, 8) and the float16 tables as stored, shape [groups, 1, 2**bits, 1] (Core ML's
per-grouped-channel palettes along the output axis) - so the decoded weight is llmpress's bit for
bit. Float weights (norms, an uncompressed embedding or linear) are float16 constants.
Refused: other weight formats (uniform codes, binary codes), vector palettes, 5- and 7-bit indices.

RMSNorm is l2_norm over each token (epsilon hidden x eps) x sqrt(hidden) x weight - the same function,
without squaring float16 activations in the graph, which overflow; 1/sqrt(head_dim) is folded into q.
Prediction needs macOS: on Linux the package is checked by reading its program back
(:func:`read_back`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmpress.cache import atomic_directory
from llmpress.errors import ConfigError
from llmpress.formats.palette import PaletteTensor
from llmpress.nn import CompressedEmbedding, CompressedLinear, FormatModule

INDEX_BITS = (1, 2, 3, 4, 6, 8)


def _coremltools():
    try:
        import coremltools as ct
    except ImportError:
        raise ConfigError("export --to coreml needs coremltools: pip install 'llmpress[coreml]'") from None
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    return ct, mb, types


def op_name(module_name: str) -> str:
    """The MIL op name of a module's weight (MIL names: letters, digits, underscores)."""
    return re.sub(r"\W", "_", module_name)


def palette_arrays(fmt: PaletteTensor, name: str, types) -> tuple[np.ndarray, np.ndarray]:
    """(indices [rows, cols] at their bit width, lut float16 [groups, 1, 2**bits, 1]) of a palette."""
    s = fmt.spec
    if s.cluster_dim != 1:
        raise ConfigError(f"{name}: vector palettes (cluster_dim {s.cluster_dim}) are not exported to Core ML yet")
    if s.bits not in INDEX_BITS:
        raise ConfigError(f"{name}: Core ML stores palette indices at {INDEX_BITS} bits, not {s.bits}")
    dtype = np.uint8 if s.bits == 8 else getattr(types, f"np_uint{s.bits}_dtype")
    indices = fmt.int_indices().view(s.shape).cpu().numpy().astype(np.uint8).astype(dtype)
    lut = fmt.lut.cpu().numpy().astype(np.float16).reshape(s.n_groups, 1, s.n_entries, 1)
    return indices, lut


def _weight(mb, types, module: nn.Module, name: str):
    """The MIL value of a linear/embedding weight [rows, cols]: a LUT op for palettes, else a constant."""
    if isinstance(module, FormatModule):
        fmt = module.packed()
        if not isinstance(fmt, PaletteTensor):
            raise ConfigError(f"{name}: Core ML export writes palettized weights (k-means, DKM) as look-up tables; "
                              f"this layer holds {fmt.FORMAT} weights")
        indices, lut = palette_arrays(fmt, name, types)
        return mb.constexpr_lut_to_dense(indices=indices, lut=lut, name=op_name(name))
    return module.weight.detach().to(torch.float16).cpu().numpy()


def _rope(config, seqlen: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    rope = getattr(config, "rope_parameters", None) or {}
    theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    if rope.get("rope_type", "default") != "default":
        raise ConfigError(f"rope type {rope.get('rope_type')!r} is not exported to Core ML (only the default)")
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    freqs = np.outer(np.arange(seqlen, dtype=np.float64), inv)
    angles = np.concatenate([freqs, freqs], axis=-1)  # transformers' layout: halves, not interleaved pairs
    return np.cos(angles).astype(np.float16), np.sin(angles).astype(np.float16)


def build_program(model: nn.Module, seqlen: int):
    """The MIL program of ``model``'s forward over one window of ``seqlen`` tokens."""
    ct, mb, types = _coremltools()
    c = model.config
    if getattr(c, "model_type", None) != "llama":
        raise ConfigError(f"Core ML export writes LLaMA-architecture models; this one is {c.model_type!r}")
    hidden, heads, kv = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
    head_dim = getattr(c, "head_dim", None) or hidden // heads
    cos, sin = _rope(c, seqlen, head_dim)
    mask = np.triu(np.full((seqlen, seqlen), -3e4, dtype=np.float16), k=1)
    root = model.model
    tied = bool(getattr(c, "tie_word_embeddings", False))

    def norm(x, module, name):
        # l2_norm divides by sqrt(sum of squares + epsilon) over the last three axes: one token's
        # [hidden, 1, 1]; x / sqrt(sum x^2 + hidden eps) x sqrt(hidden) is RMSNorm exactly.
        w = (module.weight.detach().double() * math.sqrt(hidden)).to(torch.float16).cpu().numpy()
        x = mb.reshape(x=x, shape=[1, seqlen, hidden, 1, 1])
        x = mb.l2_norm(x=x, epsilon=np.float16(hidden * c.rms_norm_eps))
        return mb.mul(x=mb.reshape(x=x, shape=[1, seqlen, hidden]), y=w, name=name)

    def linear(x, module, name):
        if getattr(module, "bias", None) is not None:
            raise ConfigError(f"{name}: a bias on a LLaMA projection is not exported")
        return mb.linear(x=x, weight=_weight(mb, types, module, name))

    def heads_first(x, n):  # [1, S, n * d] -> [1, n, S, d]
        return mb.transpose(x=mb.reshape(x=x, shape=[1, seqlen, n, head_dim]), perm=[0, 2, 1, 3])

    def rotary(x):
        x1, x2 = mb.split(x=x, num_splits=2, axis=-1)
        rotated = mb.concat(values=[mb.mul(x=x2, y=np.float16(-1)), x1], axis=-1)
        return mb.add(x=mb.mul(x=x, y=cos), y=mb.mul(x=rotated, y=sin))

    def repeat_kv(x):  # [1, kv, S, d] -> [1, heads, S, d]
        if kv == heads:
            return x
        x = mb.tile(x=mb.expand_dims(x=x, axes=[2]), reps=[1, 1, heads // kv, 1, 1])
        return mb.reshape(x=x, shape=[1, heads, seqlen, head_dim])

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, seqlen), dtype=types.int32)], opset_version=ct.target.iOS18)
    def program(input_ids):
        table = _weight(mb, types, root.embed_tokens, "model.embed_tokens")
        h = mb.gather(x=table, indices=input_ids, axis=0)
        for i, layer in enumerate(root.layers):
            p, a, m = f"model.layers.{i}", layer.self_attn, layer.mlp
            x = norm(h, layer.input_layernorm, op_name(f"{p}.input_layernorm"))
            q = rotary(heads_first(linear(x, a.q_proj, f"{p}.self_attn.q_proj"), heads))
            k = repeat_kv(rotary(heads_first(linear(x, a.k_proj, f"{p}.self_attn.k_proj"), kv)))
            v = repeat_kv(heads_first(linear(x, a.v_proj, f"{p}.self_attn.v_proj"), kv))
            q = mb.mul(x=q, y=np.float16(1 / math.sqrt(head_dim)))
            scores = mb.add(x=mb.matmul(x=q, y=k, transpose_y=True), y=mask)
            out = mb.matmul(x=mb.softmax(x=scores, axis=-1), y=v)
            out = mb.reshape(x=mb.transpose(x=out, perm=[0, 2, 1, 3]), shape=[1, seqlen, heads * head_dim])
            h = mb.add(x=h, y=linear(out, a.o_proj, f"{p}.self_attn.o_proj"))
            x = norm(h, layer.post_attention_layernorm, op_name(f"{p}.post_attention_layernorm"))
            gate = mb.silu(x=linear(x, m.gate_proj, f"{p}.mlp.gate_proj"))
            up = linear(x, m.up_proj, f"{p}.mlp.up_proj")
            h = mb.add(x=h, y=linear(mb.mul(x=gate, y=up), m.down_proj, f"{p}.mlp.down_proj"))
        h = norm(h, root.norm, "model_norm")
        head = table if tied else _weight(mb, types, model.lm_head, "lm_head")
        return mb.linear(x=h, weight=head, name="logits")

    return ct, program


def write(model: nn.Module, out: str | Path, seqlen: int = 128, overwrite: bool = False) -> dict:
    """Build, convert and save ``model`` as ``out`` (.mlpackage); returns {path, bytes, lut_layers}."""
    if not isinstance(seqlen, int) or seqlen < 1:
        raise ConfigError(f"seqlen must be a positive number of tokens, got {seqlen!r}")
    if not str(out).endswith(".mlpackage"):
        raise ConfigError(f"a Core ML package is a folder named *.mlpackage, not {out}")
    ct, program = build_program(model, seqlen)
    mlmodel = ct.convert(program, minimum_deployment_target=ct.target.iOS18,
                         compute_precision=ct.precision.FLOAT16, skip_model_load=True)
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        staged = tmp / "staged.mlpackage"  # coremltools names the folder it saves; its contents become ``out``
        mlmodel.save(str(staged))
        for child in staged.iterdir():
            child.rename(tmp / child.name)
        staged.rmdir()
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    luts = [n for n, m in model.named_modules() if isinstance(m, (CompressedLinear, CompressedEmbedding))]
    return {"path": str(out), "bytes": size, "lut_layers": len(luts), "seqlen": seqlen}


def read_back(path: str | Path) -> dict[str, dict]:
    """The saved package's program, loaded back by coremltools: per LUT op, its decoded weight
    (float16 -> float32, from the stored indices and tables) and the op types that consume it."""
    ct, _, _ = _coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    program = load(spec, specification_version=spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)
    out = {}
    for op in program.functions["main"].operations:
        if op.op_type != "constexpr_lut_to_dense":
            continue
        indices = op.indices.val.astype(np.int64)
        lut = op.lut.val  # [groups, 1, K, 1]
        rows_per_group = indices.shape[0] // lut.shape[0]
        group = np.arange(indices.shape[0]) // rows_per_group
        decoded = lut[group[:, None], 0, indices, 0].astype(np.float32)
        consumers = sorted({child.op_type for child in op.outputs[0].child_ops})
        out[op.name] = {"weight": decoded, "consumers": consumers, "bits": int(np.ceil(np.log2(lut.shape[2])))}
    return out
