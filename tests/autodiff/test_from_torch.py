"""`nir.from_torch(model, ..., params="inputs")`: a function of (params, *inputs) whose gradients match torch
autograd (zoo models included), compiled with the parameters as a tree argument, and fine-tuned."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import nir

torch = pytest.importorskip("torch")
ZOO = importlib.util.find_spec("torchvision") is not None and importlib.util.find_spec("transformers") is not None


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10))


NCHW = ("N", "C", "H", "W")


def assert_grads_match(model, grads) -> None:
    """Each parameter's gradient within 1e-4 of torch's, relative to that gradient's largest magnitude
    (at least 1e-3, so that gradients that are zero up to rounding compare absolutely)."""
    for path, p in model.named_parameters():
        want = p.grad.numpy()
        err = np.abs(grads[path].numpy() - want).max() / max(np.abs(want).max(), 1e-3)
        assert err < 1e-4, (path, err)


def test_params_are_named_inputs_and_the_gradients_match_torch() -> None:
    model, x = small_cnn(), torch.randn(2, 1, 8, 8)
    t = nir.from_torch(model, (x,), names=NCHW, params="inputs")
    assert sorted(t.params) == sorted(k for k, _ in model.named_parameters())
    assert t.params["0.weight"].names == ("layer0.out", "layer0.in", "layer0.kh", "layer0.kw")
    xs = nir.tensor(x.numpy(), names=NCHW)
    grads = nir.grad(lambda p: (t.function(p, xs) ** 2).sum())(dict(t.params))
    (model(x) ** 2).sum().backward()
    assert_grads_match(model, grads)
    assert all(grads[k].names == t.params[k].names for k in grads)


@pytest.mark.parametrize("backend", [b for b in ("xla", "tvm") if nir.backends.installed(b)])
def test_the_converted_program_compiles_with_the_params_tree(backend: str) -> None:
    model, x = small_cnn(), torch.randn(2, 1, 8, 8)
    t = nir.from_torch(model, (x,), names=NCHW, params="inputs")
    xs = nir.tensor(x.numpy(), names=NCHW)
    got = nir.compile(t, backend=backend)(dict(t.params), xs)
    with torch.no_grad():
        np.testing.assert_allclose(got.numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_fine_tuning_a_converted_model_lowers_its_loss() -> None:
    model, x = small_cnn(), torch.randn(8, 1, 8, 8)
    t = nir.from_torch(model, (x,), names=NCHW, params="inputs")
    xs = nir.tensor(x.numpy(), names=NCHW)
    target = nir.tensor(np.eye(10, dtype=np.float32)[np.arange(8) % 10], names=("N", "layer4.out"))
    opt = nir.optim.adam(1e-2)

    def loss(p):
        return -(t.function(p, xs).log_softmax("layer4.out") * target).sum() / 8

    @nir.compile(backend="reference")
    def step(p, s):
        value, g = nir.value_and_grad(loss)(p)
        p, s = opt.update(g, s, p)
        return p, s, value
    params, state = dict(t.params), opt.init(dict(t.params))
    losses = []
    for _ in range(30):
        params, state, value = step(params, state)
        losses.append(value.item())
    assert losses[-1] < 0.3 * losses[0]


def test_params_with_other_names_are_refused() -> None:
    model, x = small_cnn(), torch.randn(2, 1, 8, 8)
    t = nir.from_torch(model, (x,), names=NCHW, params="inputs")
    bad = {**t.params, "4.bias": nir.zeros(10, names=("classes",))}
    with pytest.raises(nir.NamedShapeError, match=r"parameter '4.bias' is \{classes: 10\}, but the model was "
                                                  r"converted with \{layer4.out: 10\}"):
        t.function(bad, nir.tensor(x.numpy(), names=NCHW))
    with pytest.raises(KeyError, match=r"missing \['4.bias'\]"):
        t.function({k: v for k, v in t.params.items() if k != "4.bias"}, nir.tensor(x.numpy(), names=NCHW))


def test_unknown_params_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="params='weights'; choose 'constants'"):
        nir.from_torch(small_cnn(), (torch.randn(1, 1, 8, 8),), names=NCHW, params="weights")


@pytest.mark.skipif(not ZOO, reason="the zoo needs torchvision and transformers")
@pytest.mark.parametrize("name", ["gpt2"] + (["resnet18", "llama", "mobilenet_v3_small"]
                                               if os.environ.get("NIR_ZOO") == "all" else []))
def test_zoo_model_gradients_match_torch_autograd(name: str) -> None:
    """GPT-2 (its lm_head is tied to the token embedding: one parameter, both uses' gradients); with
    NIR_ZOO=all also ResNet-18 and MobileNet (batch norm in eval mode: its statistics stay constants)
    and LLaMA."""
    from nir.bench.workloads.zoo import models as Z
    m, model = Z.MODELS[name], Z.model(name, "small")
    x = Z.example_input(m, "small", 1 if m.vision else 2, 0)
    t = nir.from_torch(model, (x,), names=m.names, params="inputs")
    xs = nir.tensor(x.numpy(), names=m.names)
    out = Z.output_of(m, t.function(t.params, xs))
    ct = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
    ctn = nir.tensor(ct, names=out.names)
    grads = nir.grad(lambda p: (Z.output_of(m, t.function(p, xs)) * ctn).sum())(dict(t.params))
    model.zero_grad()
    (Z.output_of(m, model(x)) * torch.tensor(ct)).sum().backward()
    try:
        assert_grads_match(model, grads)
    finally:
        model.zero_grad(set_to_none=True)
