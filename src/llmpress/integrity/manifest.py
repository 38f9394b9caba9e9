"""Reading the JSON manifest of an llmpress directory: bounded, typed, versioned and sealed."""

from __future__ import annotations

import warnings
from pathlib import Path

from llmpress.errors import CheckpointError
from llmpress.integrity import jsonfile, names, seal


def load(path: Path, name: str, format_name: str, format_version: int, kind: str, make: str,
         unsealed: tuple[int, ...] = ()) -> dict:
    """The manifest ``path/name`` of an llmpress directory of ``kind`` ("checkpoint", "delta", ...),
    checked for its format name, version and self-hash, in that order. ``make``: the command that
    creates such a directory, for the errors that call for re-creating it. ``unsealed``: older
    versions, written before manifests carried their hash, still read (with one warning each):
    every other check applies to them alike."""
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; an llmpress {kind} is a directory with {name}")
    mf = names.member(path, name, f"the {kind} layout")
    if not mf.exists():
        raise CheckpointError(f"{path} has no {name}: not an llmpress {kind} ({make})")
    names.regular_file(mf, f"{kind} manifest", f"the {kind} is corrupt, re-create it ({make})")
    manifest = jsonfile.read(mf, f"{kind} manifest", f"the {kind} is corrupt, re-create it ({make})")
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{mf} is not an llmpress {kind} manifest (format={str(found)[:40]!r})")
    version = manifest.get("format_version")
    if version in unsealed and not isinstance(version, bool):
        warnings.warn(f"{mf} is {kind} format version {version}, written before manifests carried their own "
                      f"sha256: its files are verified, the manifest itself is not. Re-save it to add the hash.",
                      stacklevel=3)
        return manifest
    if version != format_version:
        from llmpress import __version__

        raise CheckpointError(f"{mf} has {kind} format version {str(version)[:20]}, this llmpress ({__version__}) "
                              f"reads version {format_version}; re-create it ({make}) or use the llmpress that wrote it")
    seal.check(manifest, str(mf), f"re-create the {kind} ({make})")
    return manifest


def tables(manifest: dict, where: str, spec: dict[str, type]) -> None:
    """Check that every key of ``spec`` is present in ``manifest`` with that type."""
    for key, kind in spec.items():
        jsonfile.field(manifest, key, kind, where)
