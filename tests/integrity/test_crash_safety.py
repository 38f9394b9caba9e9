"""Writers killed with SIGKILL at random points, racing each other, or running out of disk.

At every instant an output directory is absent, the old complete result or the new complete one;
what a killed writer leaves aside is removed by the next writer; a fine-tune resumed after kills
ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmpress import checkpoint, deltastore
from llmpress.cache import NoSpaceError, atomic_directory, sha256_file
from llmpress.integrity.safetensors_header import read_header, tensor_digests
from tests.conftest import make_model

ROOT = Path(__file__).resolve().parents[2]
TRIES = 4

# One writer process: builds two different results once, then rewrites OUT with them in turn
# until it is killed (so a kill lands anywhere inside a save).
WRITER = r"""
import sys
sys.path.insert(0, ROOT)
from tests.integrity.test_crash_safety import results
from pathlib import Path
kind, out, loop = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "loop"
first, second, save = results(kind)
for i, r in enumerate((first, second)):  # what a complete result of this process looks like
    if not (out.parent / f"ref{i}").exists():
        save(r, out.parent / f"ref{i}")
if not out.exists() and loop:
    save(first, out)
print("ready", flush=True)
if not loop:  # race: start together once the parent says go
    import time
    while not (out.parent / "go").exists():
        time.sleep(0.001)
    save(first if sys.argv[4] == "0" else second, out, overwrite=False)
    sys.exit(0)
i = 0
while True:
    save((first, second)[i % 2], out, overwrite=True)
    i += 1
"""


def results(kind: str):
    """Two distinct results of ``kind`` ("checkpoint" or "delta") and the function that saves one."""
    if kind == "checkpoint":
        return make_model(64, seed=0, hidden=32, intermediate=64), make_model(64, seed=1, hidden=32, intermediate=64), \
            checkpoint.save
    from llmpress.methods.deltadq import DeltaDQConfig
    from llmpress.models import delta as dm
    from tests.models.test_delta import finetune_of

    base = make_model(64, hidden=32, intermediate=64)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    config = DeltaDQConfig(ratio=4, group_sizes=(16,))
    made = [dm.compress(base, finetune_of(base, seed=s), "deltadq", config, ids, progress=False) for s in (1, 2)]
    return made[0], made[1], deltastore.save


TENSORS = {"checkpoint": checkpoint.TENSORS, "delta": deltastore.TENSORS}
CHECK = {"checkpoint": checkpoint.verify, "delta": deltastore.load}


def start(args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER.replace("ROOT", repr(str(ROOT)), 1), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_ready(proc)
    return proc


def wait_ready(proc: subprocess.Popen) -> None:
    """Read the child's output up to its "ready" line (a tokenizer trainer prints blank lines first)."""
    while line := proc.stdout.readline():
        if line.strip() == "ready":
            return
    raise AssertionError(f"the child exited before it was ready: {proc.stderr.read()[-2000:]}")


def content(f: Path) -> dict[str, str]:
    """Tensor name -> sha256 of its bytes (safetensors writes its metadata in a varying order, so
    equal results need not be equal files)."""
    return tensor_digests(read_header(f))


def temporaries(out: Path) -> list[Path]:
    return sorted(out.parent.glob(out.name + ".tmp-*"))


@pytest.mark.parametrize("kind", ["checkpoint", "delta"])
def test_killed_writers_leave_the_old_or_the_new_result(tmp_path, kind):
    out, refs = tmp_path / "out", set()
    rng, interrupted = random.Random(0), 0
    for _ in range(TRIES):
        proc = start([kind, str(out), "loop"])
        refs = refs or [content(tmp_path / f"ref{i}" / TENSORS[kind]) for i in (0, 1)]
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        CHECK[kind](out)  # complete: every file present with its hash
        assert content(out / TENSORS[kind]) in refs
        interrupted += bool(temporaries(out))
    assert interrupted, "no kill landed inside a save: the test did not exercise the window"
    _, second, save = results(kind)
    save(second, out, overwrite=True)  # the next writer cleans what the killed ones left
    assert temporaries(out) == []


def test_two_processes_racing_for_one_output(tmp_path):
    out = tmp_path / "out"
    procs = [start(["checkpoint", str(out), "once", str(i)]) for i in (0, 1)]
    (tmp_path / "go").touch()
    codes = [p.wait() for p in procs]
    assert sorted(codes) == [0, 1], [p.stderr.read()[-500:] for p in procs]
    loser = procs[codes.index(1)].stderr.read()
    assert "FileExistsError" in loser or "already exists" in loser
    checkpoint.verify(out)
    assert temporaries(out) == []


def test_a_full_disk_fails_clearly_and_leaves_the_old_result(tmp_path, monkeypatch):
    import safetensors.torch

    model = make_model(64, hidden=32, intermediate=64)
    out = checkpoint.save(model, tmp_path / "out")
    before = sha256_file(out / checkpoint.TENSORS)

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    for target in (out, tmp_path / "new"):
        with pytest.raises(NoSpaceError, match="no space left on the device while writing .*nothing was written"):
            checkpoint.save(model, target, overwrite=True)
    assert sha256_file(out / checkpoint.TENSORS) == before and not (tmp_path / "new").exists()
    assert temporaries(out) == [] and temporaries(tmp_path / "new") == []


def test_a_writer_killed_mid_swap_is_undone_where_there_is_no_atomic_exchange(tmp_path, monkeypatch):
    """Without renameat2 the old result is moved aside first; if the writer dies right then, the
    next writer puts it back instead of deleting it."""
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "f").write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.replace(out, out.with_name(f"out.tmp-old-{dead.stdout.strip()}-abcd"))  # the state such a death leaves
    with pytest.raises(FileExistsError):
        with atomic_directory(out):
            pass
    assert (out / "f").read_text() == "old" and temporaries(out) == []


FINETUNE = r"""
import sys
sys.path.insert(0, ROOT)
from pathlib import Path
from safetensors.torch import save_file
from tests.conftest import make_model, make_tokenizer
from tests.train.test_loop import HELD, TRAIN, cfg
from llmpress.train import finetune
state, result = Path(sys.argv[1]), Path(sys.argv[2])
tok = make_tokenizer()
model = make_model(len(tok))
print("ready", flush=True)
finetune(model, tok, TRAIN, HELD, cfg(steps=16, save_interval=1, eval_interval=100), state_dir=state,
         progress=False)
save_file({n: p.detach().contiguous() for n, p in model.named_parameters()}, str(result))
"""


def finetune_process(state: Path, result: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", FINETUNE.replace("ROOT", repr(str(ROOT)), 1), str(state),
                             str(result)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_ready(proc)
    return proc


def test_a_killed_finetune_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    whole = finetune_process(tmp_path / "state-whole", tmp_path / "whole.safetensors")
    assert whole.wait() == 0, whole.stderr.read()[-2000:]
    rng, killed = random.Random(1), 0
    for _ in range(3):
        proc = finetune_process(tmp_path / "state", tmp_path / "resumed.safetensors")
        time.sleep(rng.uniform(0.2, 1.2))
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed, "every run finished before its kill: the test did not interrupt training"
    last = finetune_process(tmp_path / "state", tmp_path / "resumed.safetensors")
    assert last.wait() == 0, last.stderr.read()[-2000:]
    a, b = load_file(str(tmp_path / "whole.safetensors")), load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
