import torch

from llmpress.data.examples import Generation
from llmpress.eval import evaluate_generation
from llmpress.eval.generation import first_line, greedy_answers


def one(model, tok, prompt, n):
    x = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    return first_line(tok.decode(out[0, x.shape[1]:], skip_special_tokens=True))


def test_batched_left_padded_generation_equals_single(tiny_model, tiny_tokenizer):
    prompts = ["Q: What is 10 plus 20?\nA:", "the cat", "seven dogs ran past the old red barn and"]
    got = greedy_answers(tiny_model, tiny_tokenizer, prompts, max_new_tokens=6, batch_size=3, progress=False)
    assert got == [one(tiny_model, tiny_tokenizer, p, 6) for p in prompts]


def test_exact_match_counts_first_line(tiny_model, tiny_tokenizer):
    p = "the cat"
    answer = one(tiny_model, tiny_tokenizer, p, 6)
    ex = [Generation(p, (answer,)), Generation(p, ("definitely not " + answer,))]
    r = evaluate_generation(tiny_model, tiny_tokenizer, ex, max_new_tokens=6, progress=False)
    assert r["exact_match"] == 0.5 and r["examples"] == 2
    assert first_line("  42 \nmore") == "42"
