"""Checks on bytes read from disk, done before anything is allocated from them.

Every file llmpress reads (checkpoints, deltas, training states, cached downloads) may come from
somewhere else, so a size it claims is only believed once bounded by the bytes actually present
and by the tensor table, names are plain names inside their directory, and every manifest
carries a hash of its own canonical content. Failures are :class:`~llmpress.errors.CheckpointError`
with one line naming the file and the fix.

- :mod:`.names`: file names listed in manifests, resolved inside their directory.
- :mod:`.jsonfile`: bounded JSON reading and typed field access.
- :mod:`.seal`: the self-hash of a manifest.
- :mod:`.safetensors_header`: a safetensors header parsed and bounded without reading tensors.
- :mod:`.tables`: comparing the tensors a model expects with those a file holds.
"""
