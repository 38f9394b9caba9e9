"""Resolve a model spec to a model and its tokenizer.

Specs: ``default`` (SmolLM2-135M-Instruct, see :mod:`llmpress.models.default`), a local Hugging
Face folder (``config.json`` inside), a ``.gguf`` file, or a Hugging Face model id
(``org/name``; from the local HF cache first, the hub only when the network allows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from llmpress.errors import DataUnavailableError, ModelSpecError

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    spec: str
    path: Path | None = None


def _from_folder(path: Path, dtype: torch.dtype, spec: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return LoadedModel(model, tokenizer, spec, path)


def load_model(spec: str = "default", dtype: torch.dtype = torch.float32) -> LoadedModel:
    if spec == "default":
        from llmpress.models.default import converted_dir

        return _from_folder(converted_dir(), dtype, spec)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from llmpress.models.gguf import converted

        return _from_folder(converted(path), dtype, spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSpecError(
                f"{path} is a folder without config.json, so it is not a Hugging Face model folder "
                "(nor an llmpress checkpoint: no llmpress.json). Point at the folder that holds config.json."
            )
        return _from_folder(path, dtype, spec)
    if path.exists():
        raise ModelSpecError(f"{path} is neither a model folder nor a .gguf file")
    if not _HF_ID.match(spec):
        raise ModelSpecError(
            f"unknown model spec {spec!r}: use 'default', a local model folder, a .gguf file, "
            "or a Hugging Face id such as 'HuggingFaceTB/SmolLM2-135M-Instruct'"
        )
    try:
        return _from_folder(spec, dtype, spec)  # type: ignore[arg-type]
    except OSError as exc:
        raise DataUnavailableError(
            f"could not load {spec!r} from the Hugging Face cache or hub (no network, or no such model): {exc}. "
            "Fix: download it once with network access, or pass a local folder."
        ) from exc
