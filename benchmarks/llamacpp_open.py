"""Open a GGUF with llama-cpp-python the way every llama.cpp script of the benchmarks does.

Run only by the benchmark-only venv's Python (llamacpp_eval.py, llamacpp_row.py).

llama.cpp's "extra buffer types" are turned off. On this machine (AVX-512 and AMX_INT8 present)
llama-cpp-python 0.3.36 places Q4_0/Q4_1/Q8_0 weights in its AMX buffer, and the first decode then
segfaults inside ggml_backend_amx_mul_mat (measured 2026-12-08 on the default model's F32, Q4_0 and
Q3_K_S files; files without those types ran). Without extra buffers llama.cpp runs its ordinary
CPU kernels (AVX-512 dot products on int8-quantized activations), the same arithmetic it uses on
any machine without AMX. llama-cpp-python's constructor builds its model parameters from
``llama_model_default_params`` and offers no argument for this flag, so that factory is wrapped.
"""

from __future__ import annotations


def open_gguf(path: str, **kwargs):
    import llama_cpp
    from llama_cpp import llama_cpp as low

    defaults = low.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = without_extra_buffers
    try:
        return llama_cpp.Llama(model_path=path, **kwargs)
    finally:
        low.llama_model_default_params = defaults
