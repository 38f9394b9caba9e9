"""An llmpress model as a GGUF file llama.cpp runs, with uniform codes written as GGUF blocks exactly.

Only what GGUF can hold without re-quantizing is written (anything else is refused in one line):

- uniform codes (RTN, GPTQ) of group 32 on whole blocks: 8-bit symmetric -> ``Q8_0`` (int8 q and a
  float16 d, w = q d); 4-bit symmetric -> ``Q4_0`` (w = (q - 8) d); 4-bit asymmetric -> ``Q4_1``
  (w = q d + m) when every group's offset m = -zero x scale is itself a float16 (checked per group);
- ggml blocks (RTN/GPTQ with ``grid`` Q2_K, Q3_K, Q4_K or IQ4_NL, and the Q4_0/Q5_0 of their narrow
  layers) -> that type, their bytes copied:
  llmpress already stores and runs ggml's own block layout;
- float weights (an uncompressed linear, the embedding, the norms) -> ``F32``, bit for bit; a 2-D
  float weight whose every block of 32 already lies on a Q8_0 grid (the default model's embedding,
  converted from its Q8_0 GGUF) -> ``Q8_0``, checked to give back every weight exactly.

Block layouts are ggml's (``ggml-common.h``): ``Q8_0`` = d (f16) + 32 int8; ``Q4_0`` = d + 16 bytes,
byte j holding element j in its low nibble and element j + 16 in its high one; ``Q4_1`` = d, m (f16)
+ the same 16 bytes. Tensor names follow gguf-py's own LLaMA map, and the q/k rows are permuted back
into llama.cpp's rotary layout (the inverse of what transformers applies when it reads a GGUF).

Tokenizer and hyper-parameters are copied from a template GGUF of the same model (for the default
model, the file it was converted from): llmpress does not re-derive a tokenizer's GGUF encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmpress.errors import ConfigError
from llmpress.formats.ggml_blocks import GGMLBlocks
from llmpress.formats.uniform import UniformTensor
from llmpress.nn import CompressedEmbedding, CompressedLinear, FormatModule

BLOCK = 32  # weights per Q8_0 / Q4_0 / Q4_1 block
# Header fields GGUFWriter writes itself; file_type is set from what is written.
_OWN_FIELDS = ("GGUF.", "general.architecture", "general.file_type")


def _gguf():
    import gguf

    return gguf


@dataclass(frozen=True)
class Encoded:
    """One tensor as written: its GGML type name and the array gguf-py writes ([rows, bytes] for blocks)."""

    qtype: str
    data: np.ndarray


def block_type(fmt: UniformTensor) -> str:
    """The GGUF block type holding ``fmt`` exactly, or a ConfigError saying why there is none."""
    s = fmt.spec
    rows, cols = s.shape
    where = f"{s.bits}-bit uniform codes, group {s.group_size}, shape {rows}x{cols}"
    if s.group != BLOCK or cols % BLOCK:
        raise ConfigError(f"GGUF blocks hold 32 weights of one row: {where} cannot be written exactly "
                          "(compress with --group-size 32 on widths divisible by 32)")
    zeros = fmt.int_zeros()
    half = 1 << (s.bits - 1)
    if s.bits == 8 and bool((zeros == half).all()):
        return "Q8_0"
    if s.bits == 4 and bool((zeros == half).all()):
        return "Q4_0"
    if s.bits == 4:
        offset = -zeros.to(torch.float32) * fmt.scale.to(torch.float32)
        inexact = int((offset.to(torch.float16).to(torch.float32) != offset).sum())
        if inexact == 0:
            return "Q4_1"
        raise ConfigError(f"{where}: {inexact} of {zeros.numel()} groups have an offset -zero x scale that is not a "
                          "float16, so Q4_1 cannot hold them exactly; compress with --symmetric (-> Q4_0)")
    raise ConfigError(f"{where}: GGUF has an exact block only for 8-bit symmetric (Q8_0) and 4-bit (Q4_0, Q4_1) "
                      "codes of group 32 (compress with --bits 8/4 --group-size 32 --symmetric, or onto llama.cpp's "
                      "own blocks with --grid Q2_K/Q3_K/Q4_K/IQ4_NL)")


def encode_uniform(fmt: UniformTensor, rows: torch.Tensor | None = None) -> Encoded:
    """``fmt`` as GGUF blocks, its rows in the order ``rows`` (None: as stored)."""
    fmt = type(fmt)(fmt.spec, **{k: v.cpu() for k, v in fmt.tensors().items()})  # a file is written from the host
    qtype = block_type(fmt)
    n_rows, cols = fmt.spec.shape
    order = slice(None) if rows is None else rows
    codes = fmt.int_codes()[order].to(torch.int16).view(n_rows, cols // BLOCK, BLOCK)
    scale = fmt.scale[order].contiguous().view(torch.int16).view(n_rows, -1, 1)
    parts = [scale]
    if qtype == "Q8_0":
        parts.append((codes - 128).to(torch.int8))
    else:
        if qtype == "Q4_1":
            m = (-fmt.int_zeros()[order].to(torch.float32) * fmt.scale[order].to(torch.float32)).to(torch.float16)
            parts.append(m.contiguous().view(torch.int16).view(n_rows, -1, 1))
        nibbles = (codes[..., :16] | (codes[..., 16:] << 4)).to(torch.uint8)
        parts.append(nibbles)
    as_bytes = [p.contiguous().view(torch.uint8).reshape(n_rows, cols // BLOCK, -1) for p in parts]
    blocks = torch.cat(as_bytes, dim=2)  # [rows, blocks, block bytes], each block's fields in ggml's order
    return Encoded(qtype, blocks.reshape(n_rows, -1).numpy())


def float_on_q8_0_grid(weight: torch.Tensor) -> Encoded | None:
    """``weight`` [rows, cols] float32 as Q8_0 blocks if every block already is q x d (q int8, d a
    float16) - as a model converted from a Q8_0 GGUF is - else None. Lossless by construction: the
    candidate d of a block is max|w| / 127 (the code of the largest weight of a Q8_0 block is +-127)
    and the blocks are written only if q x d gives back every weight bit for bit."""
    rows, cols = weight.shape
    if cols % BLOCK:
        return None
    w = weight.view(rows, cols // BLOCK, BLOCK)
    d = (w.abs().amax(dim=2, keepdim=True) / 127).to(torch.float16)
    q = torch.where(d != 0, w / d.to(torch.float32), torch.zeros_like(w)).round()
    if q.abs().max() > 127 or not torch.equal(q * d.to(torch.float32), w):
        return None
    blocks = torch.cat([d.view(torch.uint8), q.to(torch.int8).view(torch.uint8)], dim=2)
    return Encoded("Q8_0", blocks.reshape(rows, -1).numpy())


def rope_rows(rows: int, heads: int) -> torch.Tensor:
    """Row order of a q/k projection in llama.cpp's rotary layout: gguf_weight = hf_weight[rope_rows(...)].

    transformers' GGUF reader maps llama.cpp's interleaved rotary pairs to its split halves; this is
    the inverse, the permutation llama.cpp's own converter applies to Hugging Face weights."""
    half = rows // heads // 2
    return torch.arange(rows).view(heads, 2, half).transpose(1, 2).reshape(-1)


def encode(module: nn.Module, rows: torch.Tensor | None, name: str) -> Encoded:
    """A linear or embedding module's weight as written to GGUF."""
    if isinstance(module, FormatModule):
        fmt = module.packed()
        if not isinstance(fmt, (UniformTensor, GGMLBlocks)):
            raise ConfigError(f"{name}: GGUF has no block type for {fmt.FORMAT} weights (palettes export to Core "
                              "ML; only uniform RTN/GPTQ codes and float weights go to GGUF exactly)")
        if isinstance(module, CompressedLinear) and module.bias is not None:
            raise ConfigError(f"{name}: a bias on a LLaMA projection has no GGUF tensor")
        if isinstance(fmt, GGMLBlocks):
            blocks = fmt.blocks.cpu()
            return Encoded(fmt.spec.qtype, (blocks if rows is None else blocks[rows]).contiguous().numpy())
        return encode_uniform(fmt, rows)
    weight = module.weight.detach().to(torch.float32).cpu()
    if getattr(module, "bias", None) is not None:
        raise ConfigError(f"{name}: a bias on a LLaMA projection has no GGUF tensor")
    weight = (weight if rows is None else weight[rows]).contiguous()
    return float_on_q8_0_grid(weight) or Encoded("F32", weight.numpy())


def _copy_fields(reader, writer, gguf) -> None:
    for name, field in reader.fields.items():
        if name.startswith(_OWN_FIELDS):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)


def _check_template(reader, config) -> None:
    expect = {"llama.block_count": config.num_hidden_layers, "llama.embedding_length": config.hidden_size,
              "llama.feed_forward_length": config.intermediate_size,
              "llama.attention.head_count": config.num_attention_heads,
              "llama.attention.head_count_kv": config.num_key_value_heads}
    arch = reader.fields.get("general.architecture")
    if arch is None or arch.contents() != "llama":
        raise ConfigError("the template GGUF is not a LLaMA-architecture file; GGUF export writes LLaMA models")
    for key, value in expect.items():
        got = reader.fields[key].contents() if key in reader.fields else None
        if got != value:
            raise ConfigError(f"the template GGUF has {key} = {got}, the model {value}: it is not this model's GGUF")


def tensors(model: nn.Module) -> dict[str, Encoded]:
    """GGUF name -> encoded tensor for a LLaMA-architecture transformers model (tied head: no output.weight)."""
    gguf = _gguf()
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        raise ConfigError(f"GGUF export writes LLaMA-architecture models; this one is {config.model_type!r}")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    out: dict[str, Encoded] = {}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, (nn.Linear, CompressedLinear, nn.Embedding, CompressedEmbedding)):
            if tied and name == "lm_head":
                continue
            target = names.get_name(name)
            if target is None:
                raise ConfigError(f"{name}: no GGUF tensor name for this layer")
            rows = rope_rows(module_rows(module), heads[leaf]) if leaf in heads else None
            out[f"{target}.weight"] = encode(module, rows, name)
        elif type(module).__name__.endswith("RMSNorm"):
            target = names.get_name(name)
            if target is None:
                raise ConfigError(f"{name}: no GGUF tensor name for this norm")
            out[f"{target}.weight"] = Encoded("F32", module.weight.detach().to(torch.float32).cpu().numpy())
    return out


def module_rows(module: nn.Module) -> int:
    if isinstance(module, FormatModule):
        return module.spec.shape[0]
    return module.weight.shape[0]


# llama.cpp's llama_ftype numbers; a k-quant file is named by its k-quant type (the "_S" mix: all
# tensors of that type but those too narrow for its blocks), whatever else it holds.
_FILE_TYPES = {"": 0, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q8_0": 7, "Q2_K": 10, "Q3_K": 11, "Q4_K": 14, "IQ4_NL": 25}


def _file_type(types: list[str]) -> int:
    kquants = [t for t in ("Q2_K", "Q3_K", "Q4_K") if t in types]
    if kquants:
        return _FILE_TYPES[kquants[0]]
    quantized = [t for t in types if t != "F32"]
    return _FILE_TYPES[max(set(quantized), key=quantized.count) if quantized else ""]


def write(model: nn.Module, out: str | Path, template: str | Path) -> dict:
    """Write ``model`` to the GGUF file ``out`` with ``template``'s metadata; returns {tensor: type} and bytes."""
    gguf = _gguf()
    reader = gguf.GGUFReader(str(template))
    _check_template(reader, model.config)
    encoded = tensors(model)
    types = {name: e.qtype for name, e in encoded.items()}
    file_type = _file_type(list(types.values()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    _copy_fields(reader, writer, gguf)
    writer.add_file_type(file_type)
    for name, e in encoded.items():
        qtype = getattr(gguf.GGMLQuantizationType, e.qtype)
        writer.add_tensor(name, e.data, raw_dtype=qtype if e.qtype != "F32" else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return {"path": str(out), "bytes": out.stat().st_size, "tensors": types, "file_type": file_type}
