import struct

import pytest
import torch
from safetensors.torch import save_file

from llmpress.errors import CheckpointError
from llmpress.integrity.safetensors_header import read_header, tensor_digests
from tests.integrity.forge import read_safetensors, write_safetensors


@pytest.fixture
def file(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.arange(12, dtype=torch.float16).reshape(3, 4), "b": torch.arange(5, dtype=torch.uint8),
               "c": torch.tensor(2.5), "e": torch.zeros(0, 7)}, str(path), metadata={"k": "v"})
    return path


def test_valid_file_agrees_with_safetensors(file):
    from safetensors import safe_open

    h = read_header(file)
    assert h.metadata == {"k": "v"}
    with safe_open(str(file), "pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            assert h.table()[name] == (str(t.dtype).removeprefix("torch."), tuple(t.shape))
    import hashlib

    b = torch.arange(5, dtype=torch.uint8).numpy().tobytes()
    assert tensor_digests(h)["b"] == hashlib.sha256(b).hexdigest()


def edit_entry(key, value):
    def edit(header, data):
        header["a"][key] = value
        return header, data
    return edit


@pytest.mark.parametrize("damage,match", [
    (lambda h, d: (h, d[:-1]), "cover|outside"),
    (lambda h, d: (h, d + b"x"), "cover"),
    (edit_entry("dtype", "F99"), "dtype 'F99'"),
    (edit_entry("shape", [3, 5]), "needs"),
    (edit_entry("shape", [-3, 4]), "not a list"),
    (edit_entry("shape", [True, 4]), "not a list"),
    (edit_entry("shape", [10**7, 10**7]), "needs"),
    (edit_entry("data_offsets", [0, 10**18]), "outside"),
    (edit_entry("data_offsets", [0]), "not two byte offsets"),
    (edit_entry("extra", 1), "not described by"),
    (lambda h, d: ({**h, "__metadata__": {"k": 1}}, d), "__metadata__"),
    (lambda h, d: ([1, 2], d), "not a table"),
])
def test_damaged_headers_are_refused(file, damage, match):
    header, data = read_safetensors(file)
    header, data = damage(header, data)
    write_safetensors(file, header, data)
    with pytest.raises(CheckpointError, match=match):
        read_header(file)


def test_overlapping_tensors_are_refused(file):
    header, data = read_safetensors(file)
    header["b"]["data_offsets"] = list(header["a"]["data_offsets"][:1]) + [header["a"]["data_offsets"][0] + 5]
    write_safetensors(file, header, data)
    with pytest.raises(CheckpointError, match="overlaps|gap"):
        read_header(file)


@pytest.mark.parametrize("length", [10**15, 2**64 - 1, 0])
def test_header_length_is_bounded_by_the_file(file, length):
    header, data = read_safetensors(file)
    write_safetensors(file, header, data, length=length)
    with pytest.raises(CheckpointError):
        read_header(file)


def test_short_and_non_json_files(tmp_path):
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="too few"):
        read_header(f)
    f.write_bytes(struct.pack("<Q", 4) + b"{nop")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_header(f)
