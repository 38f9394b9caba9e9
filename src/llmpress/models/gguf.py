"""Convert a GGUF file once into an fp32 safetensors folder that loads in about a second.

transformers dequantizes GGUF tensors to float on load (tens of seconds) and marks the model as
GGUF-quantized, which ``save_pretrained`` refuses; so a plain model is rebuilt from the config
and given the dequantized state dict.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from llmpress.cache import atomic_directory, cache_dir, sha256_file


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
        steps.update()
    return out


def converted(gguf: Path, name: str | None = None) -> Path:
    """The cached fp32 folder for ``gguf`` (keyed by content hash unless ``name`` is given)."""
    if name is None:
        name = f"{gguf.stem}-{sha256_file(gguf)[:16]}-fp32"
    out = cache_dir("models") / name
    if not (out / "config.json").is_file():
        convert(gguf, out)
    return out
