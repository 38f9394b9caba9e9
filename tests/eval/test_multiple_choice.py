import pytest
import torch
import torch.nn.functional as F

from llmpress.data.examples import MultipleChoice
from llmpress.eval import evaluate_multiple_choice
from llmpress.eval.multiple_choice import _encode_pair, loglikelihoods


def single(model, tok, ctx, cont):
    c, k = _encode_pair(tok, ctx, cont)
    x = torch.tensor([c + k])
    with torch.no_grad():
        logp = F.log_softmax(model(x).logits[0].double(), -1)
    return sum(logp[len(c) + i - 1, t].item() for i, t in enumerate(k))


def test_batched_padded_scores_equal_one_at_a_time(tiny_model, tiny_tokenizer):
    reqs = [("Q: the cat sat on\nA:", " the mat"), ("Q: seven dogs\nA:", " ran past the old red barn"),
            ("the river ", "gate"), ("a", " b c d e f g h")]
    got = loglikelihoods(tiny_model, tiny_tokenizer, reqs, batch_size=3, progress=False)
    for (ctx, cont), g in zip(reqs, got):
        assert g == pytest.approx(single(tiny_model, tiny_tokenizer, ctx, cont), abs=1e-4)


def test_trailing_context_space_moves_to_continuation(tiny_tokenizer):
    c, k = _encode_pair(tiny_tokenizer, "the cat ", "sat")
    assert c == tiny_tokenizer("the cat", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(k) == " sat"


def test_acc_and_acc_norm(tiny_model, tiny_tokenizer):
    ctx = "Q: the cat sat on\nA:"
    choices = (" the mat", " the old red barn near the river and the gate")
    s = [single(tiny_model, tiny_tokenizer, ctx, c) for c in choices]
    norm = [v / len(c.lstrip(" ")) for v, c in zip(s, choices)]  # characters of the choice, not its delimiter
    bare = tuple(c.lstrip(" ") for c in choices)
    ex = [MultipleChoice.completions(ctx, bare, 0), MultipleChoice.completions(ctx, bare, 1)]
    r = evaluate_multiple_choice(tiny_model, tiny_tokenizer, ex, progress=False)
    best, best_norm = max(range(2), key=s.__getitem__), max(range(2), key=norm.__getitem__)
    assert r["acc"] == 0.5 and r["acc_norm"] == 0.5 and r["examples"] == 2  # one gold each way
    assert r["acc_stderr"] == pytest.approx(0.5 / 1 ** 0.5 * (2 / 1) ** 0.5 / 2 ** 0.5)  # sample sd / sqrt(n)
    r0 = evaluate_multiple_choice(tiny_model, tiny_tokenizer, ex[:1], progress=False)
    assert r0["acc"] == float(best == 0) and r0["acc_norm"] == float(best_norm == 0)


def test_trailing_newline_moves_too_as_in_the_harness(tiny_tokenizer):
    c, k = _encode_pair(tiny_tokenizer, "the cat\n", " sat")
    assert c == tiny_tokenizer("the cat", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(k) == "\n sat"


def test_per_example_scores(tiny_model, tiny_tokenizer):
    ex = [MultipleChoice.completions("Q: the cat\nA:", ("sat", "ran past"), 0),
          MultipleChoice.completions("Q: a\nA:", ("b",), 0)]
    r = evaluate_multiple_choice(tiny_model, tiny_tokenizer, ex, per_example=True, progress=False)
    assert [len(s) for s in r["loglikelihoods"]] == [2, 1]
    assert r["loglikelihoods"][1][0] == pytest.approx(single(tiny_model, tiny_tokenizer, "Q: a\nA:", " b"), abs=1e-4)
