import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.models.calibration import decoder_layers, layerwise


def ids(model, n=5, seqlen=24):
    return torch.randint(0, model.config.vocab_size, (n, seqlen), generator=torch.Generator().manual_seed(0))


def test_finds_the_decoder_layers(tiny_model):
    name, layers = decoder_layers(tiny_model)
    assert name == "model.layers" and layers is tiny_model.model.layers


def test_layer_inputs_equal_full_model_hidden_states(tiny_model):
    x = ids(tiny_model)
    with torch.no_grad():
        ref = tiny_model(x, output_hidden_states=True).hidden_states
    seen = 0
    for step in layerwise(tiny_model, x, batch_size=2, progress=False):
        assert len(step.hidden) == 3  # batches of 2, 2, 1
        assert torch.allclose(torch.cat(step.hidden), ref[step.index], atol=1e-5)
        seen += 1
    assert seen == tiny_model.config.num_hidden_layers


def test_gram_matrices_equal_x_transpose_x(tiny_model):
    x = ids(tiny_model)
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: inputs.setdefault(n, []).append(a[0]))
             for n, m in tiny_model.model.layers[1].named_modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        tiny_model(x)
    for h in hooks:
        h.remove()
    for step in layerwise(tiny_model, x, batch_size=3, progress=False):
        if step.index == 1:
            grams = step.gram()
    assert set(grams) == set(inputs) and len(grams) == 7
    for n, h in grams.items():
        X = torch.cat(inputs[n]).reshape(-1, h.shape[0]).double()
        assert torch.allclose(h, X.T @ X, rtol=1e-6, atol=1e-6)


def test_changes_propagate_to_later_layers(tiny_model):
    x = ids(tiny_model)
    for step in layerwise(tiny_model, x, progress=False):
        if step.index == 0:
            with torch.no_grad():
                step.layer.mlp.down_proj.weight.mul_(0.5)  # what a compression method would do
        else:
            last = torch.cat(step.hidden)
    with torch.no_grad():  # the model now holds the changed layer 0: a fresh forward must agree
        ref = tiny_model(x, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(last, ref, atol=1e-5)


def test_bad_calibration_ids(tiny_model):
    with pytest.raises(ConfigError, match="n_samples"):
        next(layerwise(tiny_model, torch.zeros(0, 8, dtype=torch.long), progress=False))
