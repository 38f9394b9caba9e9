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


def test_starting_weights_go_in_after_the_teacher_is_copied(tiny_tokenizer):
    linears = [n for n, m in make_model(len(tiny_tokenizer)).named_modules()
               if isinstance(m, torch.nn.Linear) and "layers" in n]

    def first_loss(start) -> float:
        model = make_model(len(tiny_tokenizer))
        weights = {n: start(model.get_submodule(n).weight.detach()) for n in linears}
        hooks = DKMHooks(DKM, weights=weights, init_from="palette")
        assert hooks.settings()["init_weights"] is True
        r = finetune(model, tiny_tokenizer, TRAIN, HELD, cfg(steps=1, distill=1.0, loss_on="all"),
                     hooks=hooks, progress=False, log=lambda *_: None)
        return r.losses[0]

    # Zeroed students against their original teacher: a large divergence. Had the teacher been
    # copied after the weights went in, it would be zeroed too and the divergence near nothing.
    assert first_loss(torch.zeros_like) > 5 * first_loss(torch.clone)


def test_starting_weights_of_another_model_are_refused(tiny_tokenizer):
    model = make_model(len(tiny_tokenizer))
    name = "model.layers.0.self_attn.q_proj"
    with pytest.raises(ConfigError, match="does not match the model"):
        DKMHooks(DKM, weights={name: torch.zeros(3, 3)}, init_from="other").prepare(model)
    with pytest.raises(ConfigError, match="no such linear"):
        DKMHooks(DKM, weights={"model.nope": torch.zeros(3, 3)}, init_from="other").prepare(model)


def test_temperature_anneals_over_the_run(tiny_tokenizer):
    annealed = DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=2, tau=1e-2, tau_final=1e-4), embedding=None)
    seen: list[float] = []
    model = make_model(len(tiny_tokenizer))
    var = float(model.model.layers[0].self_attn.q_proj.weight.detach().var())  # the ends are relative to it

    class Watch(DKMHooks):
        def before_step(self, model, step, steps):
            super().before_step(model, step, steps)
            seen.append(float(model.model.layers[0].self_attn.q_proj.tau) / var)

    finetune(model, tiny_tokenizer, TRAIN, HELD, cfg(), hooks=Watch(annealed), progress=False, log=lambda *_: None)
    assert len(seen) == 4 and seen[0] == pytest.approx(1e-2) and seen[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    assert seen[1] / seen[0] == pytest.approx(seen[2] / seen[1], rel=0.05)  # geometric steps
