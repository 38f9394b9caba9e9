"""llama.cpp's own quantizer (``llama_model_quantize``, what its llama-quantize tool runs), in the
benchmark-only venv's Python (see export.py):

    VENV/bin/python benchmarks/llamacpp_quantize.py IN.gguf OUT.gguf FTYPE THREADS

FTYPE is llama.cpp's llama_ftype number (11 = Q3_K_S). No importance matrix: llama.cpp's quantizer
then weights each weight's error by its own square (its default without one). Prints one JSON line.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time


def main() -> None:
    import llama_cpp

    src, dst, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    start = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize returned {rc}")
    print(json.dumps({"seconds": time.perf_counter() - start, "ftype": ftype,
                      "llama_cpp_python": llama_cpp.__version__}))


if __name__ == "__main__":
    main()
