import pytest

from llmpress.cache import atomic_directory, atomic_write_bytes, cache_dir


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path / "c"))
    assert cache_dir("a", "b") == tmp_path / "c" / "a" / "b" and (tmp_path / "c" / "a" / "b").is_dir()


def test_atomic_write_replaces_whole_file(tmp_path):
    f = tmp_path / "x.bin"
    atomic_write_bytes(f, b"one")
    atomic_write_bytes(f, b"two")
    assert f.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_directory_commits_only_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(KeyError):
        with atomic_directory(target) as tmp:
            (tmp / "half").write_text("written")
            raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "whole").write_text("done")
    assert [p.name for p in target.iterdir()] == ["whole"]
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("v2")
    assert [p.name for p in target.iterdir()] == ["new"] and len(list(tmp_path.iterdir())) == 1


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
        with atomic_directory(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
