"""Every method, the fine-tuning loop and evaluation make their tensors on the model's device.

There is no GPU here, so a stand-in: while a step runs, torch's default device is ``meta``. A
tensor made without an explicit device (the bug that breaks a CUDA run: a CPU tensor meeting
CUDA ones) then lands on ``meta``, and the first operation mixing it with the real (CPU) inputs
raises. Each step's result is also compared with the same step run normally, because a few
indexing operations accept a meta index without complaint.
"""

from __future__ import annotations

import copy
import contextlib

import pytest
import torch

from llmpress.eval.perplexity import perplexity
from llmpress.methods import get_method
from llmpress.methods.deltadq import BitDeltaConfig, DeltaDQConfig
from llmpress.methods.dkm import DKMConfig, DKMModelConfig
from llmpress.models import delta as dm
from llmpress.models.calibrated import compress_calibrated
from llmpress.models.compress import compress_model
from llmpress.train import DKMHooks, finetune

from tests.conftest import make_model
from tests.models.test_delta import finetune_of
from tests.train.test_dkm_hooks import cfg
from tests.train.test_loop import HELD, TRAIN


@contextlib.contextmanager
def implicit_tensors_on_meta():
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(previous)


def _ids(n=4, seq=48):
    return torch.randint(2, 300, (n, seq), generator=torch.Generator().manual_seed(0))


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].device.type == "cpu" and torch.equal(sa[k], sb[k]), k


METHODS = [("rtn", {"bits": 3, "group_size": 32}), ("kmeans", {"bits": 3}), ("kmeans", {"bits": 2, "init": "kmeans1d"}),
           ("kmeans", {"bits": 3, "sensitivity": "hessian", "refit": True, "refine": 1}),
           ("kmeans", {"bits": 3, "sensitivity": "hessian", "error_feedback": True}),
           ("gptq", {"bits": 3, "group_size": 32}), ("gptq", {"bits": 4, "act_order": True}),
           ("shiftadd", {"row_group": 16})]


@pytest.mark.parametrize("method,settings", METHODS, ids=[f"{m}-{s}" for m, s in METHODS])
def test_compression_makes_no_tensor_off_the_weights_device(tiny_tokenizer, method, settings):
    base = make_model(len(tiny_tokenizer))
    config = get_method(method).config_cls(**settings)
    ids = _ids()
    results = []
    for guarded in (False, True):
        model = copy.deepcopy(base)
        with implicit_tensors_on_meta() if guarded else contextlib.nullcontext():
            if method in ("gptq", "shiftadd") or getattr(config, "calibrated", False):
                compress_calibrated(model, method, config, ids, progress=False)
            else:
                compress_model(model, method, config, progress=False)
            ppl = perplexity(model, ids.reshape(-1), seqlen=32, max_windows=2, progress=False)["ppl"]
        results.append((model, ppl))
    _states_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("memory", ["naive", "unique", "table", "fused"])
@pytest.mark.parametrize("marshal", [False, True])
def test_dkm_clustering_makes_no_tensor_off_the_weights_device(memory, marshal):
    from llmpress.methods.dkm import cluster

    config = DKMConfig(n_bits=3, max_iter=3, memory=memory, marshal=marshal)
    g = torch.Generator().manual_seed(0)
    w0 = (torch.randn(48, 64, generator=g) * 0.05).half().float()
    grad = torch.randn(48, 64, generator=g)
    c0 = torch.linspace(float(w0.min()), float(w0.max()), 8).view(1, -1, 1)
    results = []
    for guarded in (False, True):
        w = torch.nn.Parameter(w0.clone())
        with implicit_tensors_on_meta() if guarded else contextlib.nullcontext():
            out, c = cluster(w, config, centroids=c0)
            out.backward(grad)
        results.append((out.detach(), c, w.grad))
    for a, b in zip(*results):
        assert a.device.type == "cpu" and torch.equal(a, b)


def test_dkm_finetuning_makes_no_tensor_off_the_models_device(tiny_tokenizer):
    hooks = DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=2), embedding=None)
    runs = []
    for guarded in (False, True):
        model = make_model(len(tiny_tokenizer))
        with implicit_tensors_on_meta() if guarded else contextlib.nullcontext():
            r = finetune(model, tiny_tokenizer, TRAIN, HELD, cfg(steps=2, save_interval=0), hooks=DKMHooks(hooks),
                         progress=False, log=lambda *_: None)
        runs.append((model, r.losses))
    assert runs[0][1] == runs[1][1]
    _states_equal(runs[0][0], runs[1][0])


@pytest.mark.parametrize("method,config", [("deltadq", DeltaDQConfig(ratio=8, group_sizes=(16, 32))),
                                           ("bitdelta", BitDeltaConfig(distill_steps=2))])
def test_delta_compression_makes_no_tensor_off_the_models_device(tiny_tokenizer, method, config):
    base = make_model(len(tiny_tokenizer))
    ft = finetune_of(base)
    calib, prompt = _ids(2), _ids(1, 16)
    deltas = []
    for guarded in (False, True):
        with implicit_tensors_on_meta() if guarded else contextlib.nullcontext():
            d = dm.compress(base, ft, method, config, calib, progress=False)
            served = dm.attach(copy.deepcopy(base), d)
            out = served(input_ids=prompt).logits
        deltas.append((d, out))
    assert torch.equal(deltas[0][1], deltas[1][1])
