import json
import os

import pytest

from llmpress.errors import CheckpointError
from llmpress.integrity import jsonfile, names, seal


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "", "a\\b", "x\0y", 3, None])
def test_only_plain_names(tmp_path, name):
    with pytest.raises(CheckpointError, match="only plain file names"):
        names.member(tmp_path, name, "test manifest")


def test_symlinks_must_stay_inside(tmp_path):
    inside, outside = tmp_path / "d", tmp_path / "secret"
    inside.mkdir()
    outside.write_text("s")
    (inside / "local").write_text("l")
    os.symlink(outside, inside / "leak")
    os.symlink(inside / "local", inside / "alias")
    with pytest.raises(CheckpointError, match="outside"):
        names.member(inside, "leak", "test manifest")
    assert names.member(inside, "alias", "test manifest").read_text() == "l"


def test_fifo_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CheckpointError, match="not a regular file"):
        names.regular_file(tmp_path / "pipe", "x", "fix")


def test_seal_detects_any_edit_and_ignores_key_order():
    table = seal.sealed({"a": 1, "b": [1, 2, {"c": "d"}]})
    seal.check(json.loads(json.dumps(table, sort_keys=False)), "t", "fix")
    for edited in ({**table, "a": 2}, {**table, "z": 0}, {k: v for k, v in table.items() if k != "a"}):
        with pytest.raises(CheckpointError, match="was modified"):
            seal.check(edited, "t", "fix")
    with pytest.raises(CheckpointError, match="carries no"):
        seal.check({"a": 1}, "t", "fix")
    with pytest.raises(CheckpointError, match="was modified"):
        seal.check({**table, "a": float("nan")}, "t", "fix")
    seal.check(seal.sealed({"ratio": float("inf")}), "t", "fix")  # a delta with no linear layers has one


@pytest.mark.parametrize("text,match", [
    ("{nope", "not valid JSON"), ("[" * 100000, "not valid JSON"), ("1" * 5000, "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_bad_json(tmp_path, text, match):
    f = tmp_path / "m.json"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CheckpointError, match=match):
        jsonfile.read(f, "test", "fix")


def test_json_size_is_bounded(tmp_path):
    f = tmp_path / "m.json"
    f.write_text("[" + "0," * 100 + "0]")
    with pytest.raises(CheckpointError, match="more than"):
        jsonfile.read(f, "test", "fix", limit=50)


def test_typed_fields():
    assert jsonfile.field({"a": 3}, "a", int, "w") == 3
    for table in ({"a": True}, {"a": "3"}, {}, [1]):
        with pytest.raises(CheckpointError):
            jsonfile.field(table, "a", int, "w")
    with pytest.raises(CheckpointError, match="expected an integer"):
        jsonfile.integer(2**70, "w")


def test_checkpoint_errors_are_one_line_whatever_names_they_quote():
    err = CheckpointError("tensor a\nllmpress: ok\r\x1b[2J listed")
    assert str(err) == "tensor a\\nllmpress: ok\\r\\x1b[2J listed"
