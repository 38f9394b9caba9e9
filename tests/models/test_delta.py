import copy
import json

import pytest
import torch

from llmpress import api, deltastore
from llmpress.cli import main
from llmpress.errors import CheckpointError, ConfigError
from llmpress.methods.deltadq import BitDeltaConfig, DAREConfig, DeltaDQConfig
from llmpress.models import delta as dm
from llmpress.nn import DeltaLinear

from tests.conftest import make_model


def finetune_of(base, seed=1, scale=0.01, embeddings=False):
    ft = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in ft.named_parameters():
            if "embed" not in n or embeddings:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return ft


@pytest.fixture
def pair(tiny_tokenizer):
    base = make_model(len(tiny_tokenizer))
    return base, finetune_of(base)


def ids(n=2, seq=48):
    return torch.randint(0, 300, (n, seq), generator=torch.Generator().manual_seed(0))


def test_extraction_shares_the_frozen_embedding_and_stores_norms(pair):
    base, ft = pair
    d = dm.compress(base, ft, "deltadq", DeltaDQConfig(ratio=8, group_sizes=(16, 32)), ids(), progress=False)
    assert set(d.shared) == {"model.embed_tokens.weight"}  # lm_head is tied to it
    assert len(d.linear) == 14 and all("norm" in n for n in d.dense) and len(d.dense) == 5
    assert d.extra["counts"]["linear_layers"] == 14


def test_apply_and_attach_give_the_same_model_and_attach_shares_the_base(pair):
    base, ft = pair
    d = dm.compress(base, ft, "deltadq", DeltaDQConfig(ratio=8, bits=(2, 4), group_sizes=(16, 32)), ids(),
                    progress=False)
    d2 = dm.compress(base, finetune_of(base, seed=7), "bitdelta", BitDeltaConfig(), None, progress=False)
    a, b = dm.attach(base, d), dm.attach(base, d2)
    merged = dm.apply(copy.deepcopy(base), d)
    x = ids(1, 20)
    with torch.no_grad():
        assert torch.allclose(a(x).logits, merged(x).logits, atol=1e-4)
        before = base(x).logits
        assert not torch.allclose(a(x).logits, b(x).logits)
        assert torch.equal(base(x).logits, before)  # serving did not change the base
    qa, qb = a.model.layers[0].self_attn.q_proj, b.model.layers[0].self_attn.q_proj
    assert isinstance(qa, DeltaLinear) and qa.base.weight is qb.base.weight is base.model.layers[0].self_attn.q_proj.weight
    assert a.model.embed_tokens.weight is base.model.embed_tokens.weight
    dense_params = {p.data_ptr() for p in a.parameters()} - {p.data_ptr() for p in base.parameters()}
    assert sum(p.numel() for p in a.parameters() if p.data_ptr() in dense_params) == d.accounting()["dense_params"]


def test_save_load_round_trip_and_accounting_matches_the_files(pair, tmp_path):
    base, ft = pair
    d = dm.compress(base, ft, "deltadq", DeltaDQConfig(ratio=16, group_sizes=(16, 32)), ids(), progress=False)
    path = deltastore.save(d, tmp_path / "d")
    back = deltastore.load(path)
    assert back.base_hash == d.base_hash
    assert DeltaDQConfig.from_dict(back.config) == DeltaDQConfig.from_dict(d.config)
    for n in d.linear:
        assert torch.equal(back.linear[n].dequantize(), d.linear[n].dequantize())
    files = deltastore.directory_bytes(path)
    from safetensors import safe_open

    with safe_open(str(path / deltastore.TENSORS), "pt") as f:
        stored = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    acc = back.accounting(files)
    assert acc["tensor_bytes"] == stored
    assert acc["directory_bytes"] == sum(p.stat().st_size for p in path.iterdir())
    assert acc["directory_ratio"] < acc["tensor_ratio"] < acc["linear_ratio"]
    (path / deltastore.TENSORS).write_bytes((path / deltastore.TENSORS).read_bytes()[:-3])
    with pytest.raises(CheckpointError, match="delta.safetensors is truncated"):
        deltastore.load(path)


def test_wrong_base_and_mismatched_models_are_refused(pair, tiny_tokenizer):
    base, ft = pair
    d = dm.compress(base, ft, "bitdelta", BitDeltaConfig(), None, progress=False)
    with pytest.raises(CheckpointError, match="hash"):
        dm.apply(make_model(len(tiny_tokenizer), seed=3), d)
    with pytest.raises(CheckpointError, match="hash"):
        dm.attach(finetune_of(base, seed=9), d)
    other = make_model(len(tiny_tokenizer), intermediate=128)
    with pytest.raises(ConfigError, match="shape"):
        dm.compress(base, other, "bitdelta", BitDeltaConfig(), None, progress=False)
    with pytest.raises(ConfigError, match="unreachable"):
        dm.compress(base, ft, "deltadq", DeltaDQConfig(ratio=1024, bits=8, group_sizes=(8, 16)), None, progress=False)


def test_cli_compress_info_apply(tiny_dir, tiny_tokenizer, fake_cache, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    finetune_of(base).save_pretrained(tmp_path / "ft")
    tiny_tokenizer.save_pretrained(tmp_path / "ft")
    out = tmp_path / "delta"
    assert main(["delta", "compress", "--base", str(tiny_dir), "--finetuned", str(tmp_path / "ft"), "--ratio", "16",
                 "--bits", "2,4", "--group-sizes", "16,32", "--out", str(out), "--json", str(tmp_path / "d.json")]) == 0
    acc = json.loads((tmp_path / "d.json").read_text())["accounting"]
    assert 15 < acc["linear_ratio"] <= 16.1 and acc["directory_bytes"] == sum(f.stat().st_size for f in out.iterdir())
    assert main(["delta", "info", str(out)]) == 0
    assert "directory (every file)" in capsys.readouterr().out
    assert main(["delta", "apply", "--base", str(tiny_dir), "--delta", str(out), "--out", str(tmp_path / "m")]) == 0
    merged = api.load(tmp_path / "m").model
    ref = dm.apply(AutoModelForCausalLM.from_pretrained(tiny_dir), deltastore.load(out))
    x = ids(1, 16)
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, ref(x).logits, atol=1e-4)
    assert main(["delta", "apply", "--base", str(tmp_path / "ft"), "--delta", str(out),
                 "--out", str(tmp_path / "m2")]) == 2
    assert "hash" in capsys.readouterr().err
    assert main(["delta", "compress", "--finetuned", str(tmp_path / "ft"), "--base", str(tiny_dir), "--ratio", "2"]) == 2
    assert "cannot be reached" in capsys.readouterr().err
    assert main(["delta", "compress", "--base", str(tiny_dir), "--finetuned", str(tmp_path / "ft"), "--ratio", "16",
                 "--bits", "2", "--no-unbiased", "--out", str(tmp_path / "du")]) == 0
    assert deltastore.read_manifest(tmp_path / "du")["config"]["unbiased"] is False
    assert deltastore.read_manifest(out)["config"]["unbiased"] is True  # the default


def test_served_bytes_count_only_what_the_delta_adds(pair):
    base, ft = pair
    d = dm.compress(base, ft, "dare", DAREConfig(ratio=8, bits=16), None, progress=False)
    served = dm.attach(base, d)
    acc = d.accounting()
    before = dm.served_bytes(served, base)
    # the compressed tensors and the changed norms (float32 in memory), nothing of the base
    assert before == sum(f.nbytes for f in d.linear.values()) + 4 * acc["dense_params"]
    with torch.no_grad():
        served(ids(1, 8))
    kept = sum(int(f.kept_values().numel()) for f in d.linear.values())
    rows = sum(m.out_features + 1 for m in served.modules() if isinstance(m, DeltaLinear))
    # after a forward each DeltaLinear holds its CSR matrix: float32 values, int32 columns and row offsets
    assert dm.served_bytes(served, base) == before + 8 * kept + 4 * rows


def test_cli_evaluates_several_deltas_over_one_base(tiny_dir, tiny_tokenizer, fake_cache, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    outs = []
    for seed in (0, 1):
        finetune_of(base, seed=seed).save_pretrained(tmp_path / f"ft{seed}")
        tiny_tokenizer.save_pretrained(tmp_path / f"ft{seed}")
        outs.append(tmp_path / f"d{seed}")
        assert main(["delta", "compress", "--base", str(tiny_dir), "--finetuned", str(tmp_path / f"ft{seed}"),
                     "--method", "dare", "--ratio", "8", "--out", str(outs[-1])]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(tiny_dir), "--delta", ",".join(map(str, outs)), "--windows", "1",
                 "--seqlen", "32", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert all(f"+ delta {o}" in printed for o in outs)
    r = json.loads((tmp_path / "r.json").read_text())["deltas"]
    ppl = [r[str(o)]["perplexity"]["ppl"] for o in outs]
    merged = [api.evaluate(api.LoadedModel(dm.apply(AutoModelForCausalLM.from_pretrained(tiny_dir), deltastore.load(o)),
                                           tiny_tokenizer, "merged"), windows=1, seqlen=32, progress=False)
              ["perplexity"]["ppl"] for o in outs]
    assert ppl[0] != ppl[1] and ppl == pytest.approx(merged, rel=1e-4)
    assert all(0 < r[str(o)]["served_bytes"] < 1e6 for o in outs)


def test_bitdelta_scale_distillation_lowers_the_logit_error_and_leaves_the_base_alone(pair):
    base, ft = pair
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    flags = {n: p.requires_grad for n, p in base.named_parameters()}
    x = ids(6, 32)

    def logit_error(delta):
        with torch.no_grad():
            return float((dm.attach(base, delta)(x).logits - ft(x).logits).pow(2).mean())

    plain = dm.compress(base, ft, "bitdelta", BitDeltaConfig(), None, progress=False)
    distilled = dm.compress(base, ft, "bitdelta", BitDeltaConfig(distill_steps=10), x,
                            progress=False)
    assert logit_error(distilled) <= logit_error(plain)
    # from badly wrong scales (3x) the distillation finds its way back to the fine-tune's logits
    off = copy.deepcopy(plain)
    for fmt in off.linear.values():
        fmt.scale = fmt.scale * 3
    wrong = logit_error(off)
    config = BitDeltaConfig(distill_steps=40, distill_lr=0.05)
    losses = dm.distill_scales(base, ft, off.linear, off.dense, x, config, progress=False)
    assert logit_error(off) < 0.3 * wrong and losses[-1] < 0.3 * losses[0]
    moved = [n for n in plain.linear if not torch.equal(plain.linear[n].scale, distilled.linear[n].scale)]
    assert moved and all(torch.equal(plain.linear[n].signs, distilled.linear[n].signs) for n in plain.linear)
    assert all(torch.equal(p, before[n]) and p.requires_grad == flags[n] and p.grad is None
               for n, p in base.named_parameters())
    assert plain.accounting()["linear_bytes"] == distilled.accounting()["linear_bytes"]  # same format, same bytes
    with pytest.raises(ConfigError, match="needs calibration tokens"):
        dm.compress(base, ft, "bitdelta", BitDeltaConfig(distill_steps=1), None, progress=False)
