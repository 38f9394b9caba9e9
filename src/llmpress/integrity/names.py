"""File names taken from manifests: plain names inside their directory, nothing else."""

from __future__ import annotations

from pathlib import Path

from llmpress.errors import CheckpointError


def member(directory: Path, name: object, what: str) -> Path:
    """``directory / name`` for a ``name`` read from ``what`` (a manifest), refusing anything that
    could reach outside ``directory``: separators, ``.``/``..``, absolute paths, NUL bytes, and
    symlinks whose target is not inside ``directory``."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\0" in name or Path(name).is_absolute():
        raise CheckpointError(f"{what} names the file {name!r}: only plain file names inside {directory} are "
                              "allowed; the manifest is corrupt or crafted, re-create it")
    path = directory / name
    if path.is_symlink():
        target = path.resolve()
        if target.parent != directory.resolve():
            raise CheckpointError(f"{path} is a symlink to {target}, outside {directory}; llmpress reads only files "
                                  "inside the directory. Copy the file in instead of linking it")
    return path


def regular_file(path: Path, what: str, fix: str) -> Path:
    """``path`` if it is a regular file (not a directory, FIFO or device, which could hang a read)."""
    if not path.is_file():
        state = "missing" if not path.exists() else "not a regular file"
        raise CheckpointError(f"{path} ({what}) is {state}; {fix}")
    return path
