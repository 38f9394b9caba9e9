"""The cached GGUF conversion is used only when it is exactly as written; otherwise it is rebuilt."""

import pytest

from llmpress.cache import atomic_directory
from llmpress.models import gguf


@pytest.fixture
def fake_convert(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(src, out):
        calls.append(out)
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "config.json").write_text('{"model_type": "llama"}')
            (tmp / "model.safetensors").write_bytes(bytes(range(256)) * 64)
            gguf.stamp(tmp)
        return out

    monkeypatch.setattr(gguf, "convert", convert)
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF fake")
    return src, calls


def test_converted_once_then_reused(fake_convert):
    src, calls = fake_convert
    out = gguf.converted(src)
    assert gguf.converted(src) == out and len(calls) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "unstamped", "stamp edited"])
def test_a_damaged_conversion_is_rebuilt(fake_convert, damage):
    src, calls = fake_convert
    out = gguf.converted(src)
    f = out / "model.safetensors"
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "flip":
        f.write_bytes(b"\x01" + f.read_bytes()[1:])
    elif damage == "unstamped":
        (out / gguf.STAMP).unlink()  # a conversion killed before it finished, or from an older llmpress
    else:
        (out / gguf.STAMP).write_text((out / gguf.STAMP).read_text().replace('"bytes": 16384', '"bytes": 100'))
    with pytest.warns(UserWarning, match="converting again"):
        assert gguf.converted(src) == out
    assert len(calls) == 2 and gguf.intact(out)
