import pytest
import torch

from llmpress.data.examples import Generation
from llmpress.errors import ConfigError
from llmpress.train import TrainConfig, finetune
from llmpress.train.examples import IGNORE, batch_indices, collate, encode
from llmpress.train.schedule import lr_at

from tests.conftest import make_model

TRAIN = [Generation(f"Q: What is {a} plus {b}?\nA:", (str(a + b),)) for a in range(10, 22) for b in range(20, 24)]
HELD = TRAIN[:4]


def cfg(**kw):
    base = dict(steps=6, lr=3e-3, warmup_steps=2, batch_size=4, seq_len=32, eval_interval=3, eval_examples=4,
                max_new_tokens=3, save_interval=2, seed=0)
    return TrainConfig(**{**base, **kw})


def test_loss_covers_only_target_tokens(tiny_tokenizer):
    e = encode(tiny_tokenizer, TRAIN[0], 32)
    prompt = tiny_tokenizer(TRAIN[0].prompt, add_special_tokens=False)["input_ids"]
    assert e.ids[:len(prompt)] == prompt and all(x == IGNORE for x in e.labels[:len(prompt)])
    assert e.labels[len(prompt):] == e.ids[len(prompt):] and e.ids[-1] == tiny_tokenizer.eos_token_id
    b = collate([e, encode(tiny_tokenizer, Generation("Q: 1?\nA:", ("2",)), 32)], tiny_tokenizer.pad_token_id)
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
    assert int((b["labels"][1] != IGNORE).sum()) == int(b["attention_mask"][1].sum()) - len(
        tiny_tokenizer("Q: 1?\nA:", add_special_tokens=False)["input_ids"])


def test_schedule_warms_up_then_decays_to_the_floor():
    c = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(99, c) == pytest.approx(0.1)
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(10, 99))
    lin = TrainConfig(steps=100, lr=1.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert lr_at(0, lin) == 1.0 and lr_at(99, lin) == 0.0


def test_batches_follow_from_seed_and_step_and_cover_every_example():
    c = cfg(batch_size=5, grad_accum=2)
    seen = [i for step in range(0, 6) for m in range(2) for i in batch_indices(30, step, m, c)]
    assert sorted(seen[:30]) == list(range(30)) and sorted(seen[30:60]) == list(range(30))
    assert batch_indices(30, 4, 1, c) == batch_indices(30, 4, 1, cfg(batch_size=5, grad_accum=2))
    assert seen[:30] != seen[30:60]  # a new permutation each epoch


def test_finetune_lowers_held_out_loss_and_freezes_embeddings(tiny_tokenizer):
    model = make_model(len(tiny_tokenizer))
    emb = model.get_input_embeddings().weight.detach().clone()
    r = finetune(model, tiny_tokenizer, TRAIN, HELD, cfg(steps=12, eval_interval=0, train_embeddings=False),
                 progress=False, log=lambda *_: None)
    first = sum(r.losses[:3]) / 3
    last = sum(r.losses[-3:]) / 3
    assert last < 0.7 * first
    assert torch.equal(model.get_input_embeddings().weight, emb) and r.frozen
    assert r.history[-1]["step"] == 12 and 0 <= r.history[-1]["exact_match"] <= 1


def test_interrupted_run_resumes_to_the_same_weights(tiny_tokenizer, tmp_path):
    full = make_model(len(tiny_tokenizer))
    finetune(full, tiny_tokenizer, TRAIN, HELD, cfg(), progress=False, log=lambda *_: None)

    class Stop(Exception):
        pass

    # Kill the run right after its state is saved at step 4 of 6, then start it again.
    part = make_model(len(tiny_tokenizer))
    calls = []
    state = tmp_path / "st"
    import llmpress.train.loop as loop

    original = loop.train_state.save
    saves = []

    def save_then_maybe_die(path, step, *a, **k):
        original(path, step, *a, **k)
        saves.append(step)
        if step == 4:
            raise Stop

    loop.train_state.save = save_then_maybe_die
    try:
        with pytest.raises(Stop):
            finetune(part, tiny_tokenizer, TRAIN, HELD, cfg(), state_dir=state, progress=False, log=calls.append)
    finally:
        loop.train_state.save = original
    resumed = make_model(len(tiny_tokenizer))
    r = finetune(resumed, tiny_tokenizer, TRAIN, HELD, cfg(), state_dir=state, progress=False, log=calls.append)
    assert r.resumed_from == 4 and any("resuming from step 4" in c for c in calls)
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert len(r.losses) == 6
    with pytest.raises(ConfigError, match="different config"):
        finetune(make_model(len(tiny_tokenizer)), tiny_tokenizer, TRAIN, HELD, cfg(lr=1e-3), state_dir=state,
                 progress=False, log=calls.append)


def test_bad_settings_are_refused():
    for bad in (dict(steps=0), dict(lr=0), dict(schedule="step"), dict(dtype="fp8"), dict(batch_size=0),
                dict(loss_on="prompt"), dict(distill=1.5)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    assert TrainConfig.from_json(TrainConfig(lr=1e-3).to_json()) == TrainConfig(lr=1e-3)


def test_bf16_autocast_and_accumulation_run(tiny_tokenizer):
    model = make_model(len(tiny_tokenizer))
    r = finetune(model, tiny_tokenizer, TRAIN, HELD, cfg(steps=2, dtype="bf16", grad_accum=2, eval_interval=0),
                 progress=False, log=lambda *_: None)
    assert len(r.losses) == 2 and all(torch.isfinite(torch.tensor(r.losses)))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_long_targets_are_cut_and_examples_encode_on_demand(tiny_tokenizer):
    from llmpress.train.examples import LazyEncoded

    long = Generation("Q: go on\nA:", (" ".join(["seven"] * 40),))
    e = encode(tiny_tokenizer, long, 16)
    assert len(e.ids) == 16 and e.labels[0] == IGNORE and all(x != IGNORE for x in e.labels[1:])
    lazy = LazyEncoded(tiny_tokenizer, TRAIN, 32)
    assert len(lazy) == len(TRAIN) and not lazy._done
    assert lazy[3] == encode(tiny_tokenizer, TRAIN[3], 32) and list(lazy._done) == [3]


def test_loss_on_all_tokens_and_distillation_terms(tiny_tokenizer):
    import copy

    import torch.nn.functional as F

    from llmpress.train.loop import loss_labels, target_loss_sum

    model = make_model(len(tiny_tokenizer))
    b = collate([encode(tiny_tokenizer, ex, 32) for ex in TRAIN[:3]], tiny_tokenizer.pad_token_id)
    every = loss_labels(b, "all")
    assert torch.equal(every["labels"] != IGNORE, b["attention_mask"] == 1) and loss_labels(b, "answers") is b
    with torch.no_grad():
        ce, n = target_loss_sum(model, every)
        assert n == int(b["attention_mask"][:, 1:].sum())
        # a teacher equal to the model: the KL term is 0, so distillation only scales the NLL
        mixed, _ = target_loss_sum(model, every, copy.deepcopy(model), 0.25)
        assert torch.allclose(mixed, 0.75 * ce, rtol=1e-5)
        other = make_model(len(tiny_tokenizer))
        torch.manual_seed(3)
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        kl, _ = target_loss_sum(model, every, other, 1.0)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
        t = other(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1]
        keep = every["labels"][:, 1:] != IGNORE
        ref = F.kl_div(F.log_softmax(logits[keep], -1), F.log_softmax(t[keep], -1), log_target=True, reduction="sum")
        assert float(kl) > 0 and torch.allclose(kl, ref, rtol=1e-4)


def test_distillation_pulls_a_perturbed_model_back_to_its_teacher(tiny_tokenizer):
    """Training with distill=1 from a teacher moves the student's predictions towards it."""
    import copy

    from llmpress.train.hooks import TrainHooks

    teacher = make_model(len(tiny_tokenizer))

    class Perturb(TrainHooks):  # stands in for compression: the trained model starts off the teacher
        def prepare(self, model):
            torch.manual_seed(1)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
            return model

    from llmpress.train.loop import loss_labels, target_loss_sum

    student = copy.deepcopy(teacher)
    every = loss_labels(collate([encode(tiny_tokenizer, ex, 32) for ex in HELD], tiny_tokenizer.pad_token_id), "all")

    def gap(m):
        with torch.no_grad():
            return float(target_loss_sum(m, every, teacher, 1.0)[0])

    perturbed = Perturb().prepare(copy.deepcopy(teacher))
    finetune(student, tiny_tokenizer, TRAIN, HELD, cfg(steps=8, eval_interval=0, loss_on="all", distill=1.0),
             hooks=Perturb(), progress=False, log=lambda *_: None)
    assert gap(student) < 0.5 * gap(perturbed)
