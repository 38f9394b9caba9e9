"""transformers round trip: from_pretrained / save_pretrained of every llmpress checkpoint kind."""

import json

import pytest
import torch

import llmpress  # noqa: F401  (registers quant_method "llmpress" with transformers)
from llmpress import api, checkpoint
from llmpress.errors import CheckpointError
from llmpress.nn import CompressedEmbedding, CompressedLinear, ShiftAddLinear


def _rtn(model):
    from llmpress.methods.rtn import RTNConfig
    from llmpress.models.compress import compress_model

    compress_model(model, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    return "rtn", CompressedLinear


def _rtn_q3_k(model):
    """llama.cpp's own blocks (Q4_0 on the tiny model's widths, which are not multiples of 256)."""
    from llmpress.methods.rtn import RTNConfig
    from llmpress.models.compress import compress_model

    compress_model(model, "rtn", RTNConfig(bits=3, grid="Q3_K"), progress=False)
    return "rtn", CompressedLinear


def _kmeans(model):
    from llmpress.methods.kmeans import KMeansConfig
    from llmpress.models.compress import compress_model

    compress_model(model, "kmeans", KMeansConfig(bits=3, group_size=16, lloyd_steps=5), progress=False)
    return "kmeans", CompressedLinear


def _shiftadd(model):
    from llmpress.methods.shiftadd import ShiftAddConfig
    from llmpress.models.calibrated import compress_calibrated

    ids = torch.randint(2, model.config.vocab_size, (4, 48), generator=torch.Generator().manual_seed(0))
    compress_calibrated(model, "shiftadd", ShiftAddConfig(bits=2, row_group=16, rounds=1), ids, progress=False)
    return "shiftadd", ShiftAddLinear


def _dkm_embedding(model):
    """DKM-trained, finalized: palettized linears and embedding, the tied head shares its buffers."""
    from llmpress.methods.dkm import DKMConfig, DKMModelConfig
    from llmpress.models.dkm import finalize, prepare

    prepare(model, DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=1, memory="naive"),
                                  embedding=DKMConfig(n_bits=2, max_iter=1, memory="naive")))
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    finalize(model)
    model.eval()
    return "dkm", CompressedEmbedding


KINDS = {"rtn": _rtn, "rtn-q3_k": _rtn_q3_k, "kmeans": _kmeans, "shiftadd": _shiftadd, "dkm-embedding": _dkm_embedding}


def logits(model, seed=0):
    x = torch.randint(0, model.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x).logits


def from_pretrained(path, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **kw)


@pytest.fixture(scope="session")
def built(tiny_tokenizer, tmp_path_factory):
    """kind -> (checkpoint dir, logits of the in-memory compressed model, module class); each
    kind is compressed once per session, on first use."""
    from tests.conftest import make_model

    cache = {}

    def get(kind):
        if kind not in cache:
            model = make_model(len(tiny_tokenizer))
            method, module_cls = KINDS[kind](model)
            path = checkpoint.save(model, tmp_path_factory.mktemp(kind) / "ck", tokenizer=tiny_tokenizer,
                                   method=method)
            cache[kind] = (path, logits(model), module_cls)
        return cache[kind]

    return get


@pytest.fixture(params=list(KINDS))
def saved(request, built):
    return built(request.param)


@pytest.fixture
def editable(built, tmp_path):
    """A private copy of the RTN checkpoint, for tests that damage it."""
    import shutil

    return shutil.copytree(built("rtn")[0], tmp_path / "ck")


def test_from_pretrained_equals_llmpress_load(saved, tiny_tokenizer, tmp_path):
    path, expected, module_cls = saved
    ours = checkpoint.load(path).model
    theirs = from_pretrained(path)
    assert torch.equal(logits(ours), expected)
    assert torch.equal(logits(theirs), expected)
    assert any(isinstance(m, module_cls) for m in theirs.modules())
    assert theirs.is_quantized and theirs.hf_quantizer.quantization_config.quant_method == "llmpress"
    # Formats keep their stored dtypes: nothing was widened on the way in.
    for name, t in ours.state_dict().items():
        assert theirs.state_dict()[name].dtype == t.dtype, name

    # save_pretrained writes a directory both loaders read back to the same logits.
    out = tmp_path / "hf"
    theirs.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["modules"] == \
        checkpoint.read_manifest(path)["modules"]
    assert torch.equal(logits(from_pretrained(out)), expected)
    again = checkpoint.load(out)
    assert torch.equal(logits(again.model), expected) and again.manifest["verified"] == "tensor sha256 in quantization_config"
    assert torch.equal(logits(api.load(out).model), expected)


def test_tied_palettized_head_shares_buffers(built, tmp_path):
    model = from_pretrained(built("dkm-embedding")[0])
    head, emb = model.lm_head, model.model.embed_tokens
    assert isinstance(emb, CompressedEmbedding) and head.lut is emb.lut and head.indices is emb.indices
    model.save_pretrained(tmp_path / "hf")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "hf" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("lm_head.") for k in f.keys())


def test_llmpress_checkpoint_config_is_a_transformers_config(saved):
    path = saved[0]
    config = json.loads((path / "config.json").read_text())
    q = config["quantization_config"]
    assert q["quant_method"] == "llmpress" and config["dtype"] == "float32"
    assert q["modules"] == checkpoint.read_manifest(path)["modules"]
    checkpoint.verify(path)  # config.json is written before the manifest hashes it


def test_plain_model_gets_no_quantization_config(tiny_model, tmp_path):
    path = checkpoint.save(tiny_model, tmp_path / "plain")
    assert "quantization_config" not in json.loads((path / "config.json").read_text())


def test_dequantize_gives_plain_modules_with_the_same_logits(built):
    model = from_pretrained(built("dkm-embedding")[0])
    expected = logits(model)
    model.dequantize()
    assert not any(type(m).__name__ in llmpress.nn.MODULES for m in model.modules())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=1e-5)


def test_trainer_step_updates_float_parameters(built, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = from_pretrained(built("rtn")[0])
    codes = model.model.layers[0].self_attn.q_proj.codes.clone()
    norm = model.model.norm.weight.detach().clone()
    ids = torch.randint(2, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data).train()
    assert not torch.equal(model.model.norm.weight.detach(), norm)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.codes, codes)  # compressed weights stay fixed


def test_continue_dkm_after_from_pretrained(built):
    """Palettized checkpoint -> dequantize -> DKM again (starts at the stored palette) -> train -> finalize."""
    from llmpress.methods.dkm import DKMModelConfig
    from llmpress.models.dkm import finalize, prepare

    model = from_pretrained(built("kmeans")[0])
    stored = model.model.layers[0].self_attn.q_proj.dequantize()
    built_lut = model.model.layers[0].self_attn.q_proj.lut.clone()
    model.dequantize()
    q_proj = "model.layers.0.self_attn.q_proj"
    settings = {"n_bits": 3, "group_size": 16, "max_iter": 1, "memory": "naive"}
    prepare(model, DKMModelConfig(linear=None, embedding=None, overrides={q_proj: settings}))
    # k-means over weights that hold 8 distinct values per table finds exactly the stored tables.
    lut = model.get_submodule(q_proj).centroids.flatten(1).sort(1).values
    assert torch.equal(lut.half(), built_lut.flatten(1).sort(1).values)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    finalize(model)
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, CompressedLinear) and q.spec.bits == 3
    assert (q.dequantize() - stored).abs().max() < 0.02


def test_attach_makes_an_in_memory_model_savable(built, tmp_path):
    path, expected, _ = built("dkm-embedding")
    model = checkpoint.load(path).model  # built by llmpress, not through from_pretrained
    llmpress.hf.attach(model, method="dkm")
    model.save_pretrained(tmp_path / "hf")
    assert torch.equal(logits(from_pretrained(tmp_path / "hf")), expected)


@pytest.mark.parametrize("reseal,match", [(False, "was modified after it was written"), (True, "names no module")])
def test_config_names_a_module_the_model_lacks(editable, reseal, match):
    from llmpress.integrity import seal

    path = editable
    f = path / "config.json"
    config = json.loads(f.read_text())
    modules = config["quantization_config"]["modules"]
    modules["model.layers.9.mlp.up_proj"] = modules.pop(next(iter(modules)))
    if reseal:  # a forged config with its hash recomputed still meets the structural checks
        config["quantization_config"] = seal.sealed(config["quantization_config"])
    f.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=match):
        from_pretrained(path)


def test_edited_weights_are_refused_by_from_pretrained(editable):
    """No llmpress manifest is consulted here: the hashes in quantization_config alone catch it."""
    from llmpress.integrity.safetensors_header import read_header

    path = editable
    f = path / "model.safetensors"
    entry = read_header(f).entries["model.layers.0.self_attn.q_proj.codes"]
    data = bytearray(f.read_bytes())
    data[entry.begin] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="q_proj.codes .* differs from the sha256 in quantization_config"):
        from_pretrained(path)


def test_save_pretrained_directory_is_verified_by_llmpress(built, tmp_path):
    path, expected, _ = built("rtn")
    model = from_pretrained(path)
    model.save_pretrained(tmp_path / "hf")
    assert torch.equal(logits(checkpoint.load(tmp_path / "hf").model), expected)
    f = tmp_path / "hf" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="differs from the sha256"):
        checkpoint.load(tmp_path / "hf")


def test_unknown_module_class_is_named(editable):
    from llmpress.integrity import seal

    path = editable
    f = path / "config.json"
    config = json.loads(f.read_text())
    next(iter(config["quantization_config"]["modules"].values()))["module"] = "FancyLinear"
    config["quantization_config"] = seal.sealed(config["quantization_config"])  # as a newer llmpress writes it
    f.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="FancyLinear.*upgrade llmpress"):
        from_pretrained(path)


def test_import_registers_lazily():
    import subprocess
    import sys

    code = ("import sys, llmpress; assert 'transformers' not in sys.modules; "
            "from transformers.quantizers import auto; assert 'llmpress' in auto.AUTO_QUANTIZER_MAPPING; "
            "assert 'llmpress' in auto.AUTO_QUANTIZATION_CONFIG_MAPPING")
    subprocess.run([sys.executable, "-c", code], check=True)
