"""Convert a GGUF file once into an fp32 safetensors folder that loads in about a second.

transformers dequantizes GGUF tensors to float on load (tens of seconds) and marks the model as
GGUF-quantized, which ``save_pretrained`` refuses; so a plain model is rebuilt from the config
and given the dequantized state dict.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from llmpress.cache import atomic_directory, cache_dir, sha256_file
from llmpress.errors import CheckpointError
from llmpress.integrity import files as integrity_files
from llmpress.integrity import manifest as integrity_manifest
from llmpress.integrity import seal

STAMP = "llmpress-cache.json"
STAMP_FORMAT = "llmpress-cache-entry"


def convert(gguf: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with tqdm(total=3, desc=f"converting {gguf.name} (once)", unit="step") as steps:
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        steps.update()
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(src.state_dict())
        model.tie_weights()
        steps.update()
        with atomic_directory(out, overwrite=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            stamp(tmp)
        steps.update()
    return out


def stamp(directory: Path) -> None:
    """Record every file of a finished cache entry (sizes and sha256, sealed) in :data:`STAMP`."""
    listed = sorted(f.name for f in directory.iterdir() if f.is_file() and f.name != STAMP)
    table = {"format": STAMP_FORMAT, "format_version": 1, "files": integrity_files.describe(directory, listed)}
    (directory / STAMP).write_text(json.dumps(seal.sealed(table), indent=1, sort_keys=True))


def intact(directory: Path) -> bool:
    """Whether a cache entry is exactly as :func:`stamp` recorded it (a killed or damaged write is not)."""
    try:
        table = integrity_manifest.load(directory, STAMP, STAMP_FORMAT, 1, "cache entry", "it is rebuilt")
        integrity_files.verify(directory, table["files"], str(directory / STAMP), "it is rebuilt")
    except CheckpointError:
        return False
    return True


def converted(gguf: Path, name: str | None = None) -> Path:
    """The cached fp32 folder for ``gguf`` (keyed by content hash unless ``name`` is given),
    converted again when missing, damaged or truncated."""
    if name is None:
        name = f"{gguf.stem}-{sha256_file(gguf)[:16]}-fp32"
    out = cache_dir("models") / name
    if not intact(out):
        if out.exists():
            warnings.warn(f"the cached conversion {out} is damaged, incomplete or from an older llmpress; "
                          "converting again", stacklevel=2)
        convert(gguf, out)
    return out
