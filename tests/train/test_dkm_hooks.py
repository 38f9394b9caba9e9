"""DKM in the fine-tuning loop: trains, finalizes to palettes, resumes exactly."""

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.dkm import DKMConfig, DKMModelConfig
from llmpress.nn import CompressedLinear
from llmpress.train import DKMHooks, TrainConfig, finetune

from tests.conftest import make_model
from tests.train.test_loop import HELD, TRAIN

DKM = DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=2), embedding=None)


def cfg(**kw):
    base = dict(steps=4, lr=3e-3, warmup_steps=1, batch_size=4, seq_len=32, eval_interval=0, eval_examples=2,
                max_new_tokens=2, save_interval=2, seed=0)
    return TrainConfig(**{**base, **kw})


def test_dkm_finetune_resumes_exactly_and_ships_palettes(tiny_tokenizer, tmp_path):
    full = make_model(len(tiny_tokenizer))
    r = finetune(full, tiny_tokenizer, TRAIN, HELD, cfg(), hooks=DKMHooks(DKM), progress=False, log=lambda *_: None)
    q = full.model.layers[0].self_attn.q_proj
    assert isinstance(q, CompressedLinear) and q.meta()["format"] == "palette" and q.meta()["bits"] == 2
    assert len(r.losses) == 4 and all(torch.isfinite(torch.tensor(r.losses)))

    class Stop(Exception):
        pass

    import llmpress.train.loop as loop

    original = loop.train_state.save

    def save_then_die(path, step, *a, **k):
        original(path, step, *a, **k)
        raise Stop

    state = tmp_path / "st"
    loop.train_state.save = save_then_die
    try:
        with pytest.raises(Stop):
            finetune(make_model(len(tiny_tokenizer)), tiny_tokenizer, TRAIN, HELD, cfg(), hooks=DKMHooks(DKM),
                     state_dir=state, progress=False, log=lambda *_: None)
    finally:
        loop.train_state.save = original
    resumed = make_model(len(tiny_tokenizer))
    r2 = finetune(resumed, tiny_tokenizer, TRAIN, HELD, cfg(), hooks=DKMHooks(DKM), state_dir=state,
                  progress=False, log=lambda *_: None)
    assert r2.resumed_from == 2
    for (name, a), b in zip(full.named_modules(), resumed.modules()):
        if isinstance(a, CompressedLinear):
            torch.testing.assert_close(b.dequantize(), a.dequantize(), atol=1e-6, rtol=0, msg=name)
    other = DKMModelConfig(linear=DKMConfig(n_bits=3, max_iter=2), embedding=None)
    with pytest.raises(ConfigError, match="different method settings"):
        finetune(make_model(len(tiny_tokenizer)), tiny_tokenizer, TRAIN, HELD, cfg(), hooks=DKMHooks(other),
                 state_dir=state, progress=False, log=lambda *_: None)
