"""Compile a kernel's C source once per machine and load it with ctypes.

Sources are built with the system C compiler (``$CC``, default ``cc``; ``-O3 -march=native
-fopenmp``) into ``$LLMPRESS_CACHE/kernels/``, keyed by the source, the compiler and the CPU's
feature flags, so no build step or extra package is needed at install time and a cache copied
to another CPU is rebuilt rather than run. ``-march=native`` is the run-time feature detection:
the sources choose their AVX-512 or portable paths with ``#ifdef`` on what the compiler enabled.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from llmpress.cache import cache_dir
from llmpress.errors import LlmpressError

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")


class KernelUnavailable(LlmpressError):
    """A native kernel could not be built here (no C compiler, or it failed)."""


def compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise KernelUnavailable(f"building the native kernels needs a C compiler and {cc!r} was not found; install gcc "
                                "(e.g. apt-get install gcc) or set CC; the portable torch kernels run meanwhile")
    return cc


def cpu_key() -> str:
    """What -march=native depends on: a library built on one CPU may not run on another."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def load(source: Path) -> ctypes.CDLL:
    """Build ``source`` (once per source, compiler and CPU) into the cache and load it."""
    cc = compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), cc, version, *FLAGS, cpu_key()]).encode()).hexdigest()[:16]
    target = cache_dir("kernels") / f"{source.stem}-{key}.so"
    if not target.is_file():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            done = subprocess.run([cc, *FLAGS, str(source), "-o", str(out)], capture_output=True, text=True)
            if done.returncode:
                raise KernelUnavailable(f"building {source.name} failed ({cc}):\n{done.stderr.strip()}")
            os.replace(out, target)  # atomic: a concurrent build of the same key writes the same bytes
    return ctypes.CDLL(str(target))


def builds(library: Callable[[], ctypes.CDLL]) -> bool:
    """Whether ``library()`` loads; if not, one warning says why (the portable kernels then run)."""
    try:
        library()
        return True
    except KernelUnavailable as e:
        warn_once(str(e))
        return False


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    """One warning per process for a kernel that is missing: the fallback keeps working."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
