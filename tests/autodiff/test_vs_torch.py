"""Gradients through nir's named API against torch autograd (an independent implementation), on random
float64 inputs, eagerly: the loss is sum(f(inputs) * a random cotangent)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pytest

import nir

torch = pytest.importorskip("torch")
F = torch.nn.functional
NCHW = ("N", "C", "H", "W")


def check(nir_fn: Callable, torch_fn: Callable, shapes: Sequence[tuple], names: Sequence[tuple], seed: int = 0,
          positive: bool = False) -> None:
    """Gradient of sum(f(*xs) * ct) with respect to every input, in nir and in torch."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    if positive:
        arrays = [np.abs(a) + 0.5 for a in arrays]
    xs = [nir.tensor(a, names=n, dtype="float64") for a, n in zip(arrays, names)]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = torch_fn(*ts)
    ct = rng.standard_normal(tuple(out.shape))
    (out * torch.tensor(ct)).sum().backward()
    y = nir_fn(*xs)
    assert y.shape == tuple(out.shape)
    ct_named = nir.tensor(ct, names=y.names, dtype="float64")
    grads = nir.grad(lambda *xs: (nir_fn(*xs) * ct_named).sum(), argnums=tuple(range(len(xs))))(*xs)
    for i, (g, t) in enumerate(zip(grads, ts)):
        assert g.names == xs[i].names
        np.testing.assert_allclose(g.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=f"input {i}")


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 1), (2, 1, 1, 3),
                                                            (3, 2, 2, 3)])
def test_conv2d(stride, padding, dilation, groups) -> None:
    check(lambda x, w, b: nir.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups),
          lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups),
          [(2, 6, 9, 8), (9, 6 // groups, 3, 3), (9,)], [NCHW, ("O", "C", "H", "W"), ("O",)])


def test_conv2d_nhwc() -> None:
    check(lambda x, w: nir.conv2d(x.align_to("N", "H", "W", "C"), w.align_to("H", "W", "C", "O"), padding=1,
                                  stride=2).align_to(*("N", "O", "H", "W")),
          lambda x, w: F.conv2d(x, w, padding=1, stride=2), [(2, 3, 7, 7), (4, 3, 3, 3)], [NCHW, ("O", "C", "H", "W")])


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_max_pool(k, s, p) -> None:
    check(lambda x: nir.max_pool2d(x, k, s, p), lambda x: F.max_pool2d(x, k, s, p), [(2, 3, 8, 7)], [NCHW])


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_avg_pool(k, s, p) -> None:
    check(lambda x: nir.avg_pool2d(x, k, s, p), lambda x: F.avg_pool2d(x, k, s, p), [(2, 3, 8, 7)], [NCHW])


def test_layer_norm() -> None:
    check(lambda x, w, b: nir.layer_norm(x, ("H", "W"), w, b), lambda x, w, b: F.layer_norm(x, (4, 5), w, b),
          [(2, 3, 4, 5), (4, 5), (4, 5)], [NCHW, ("H", "W"), ("H", "W")])


def test_softmax_log_softmax_logsumexp() -> None:
    check(lambda x: x.softmax("B") + x.log_softmax("C") * 0.5 + x.logsumexp("A", keepdim=True),
          lambda x: x.softmax(1) + x.log_softmax(2) * 0.5 + x.logsumexp(0, keepdim=True), [(3, 4, 5)],
          [("A", "B", "C")])


def test_batched_matmul_with_broadcast() -> None:
    check(lambda a, b: a @ b, lambda a, b: a @ b, [(2, 3, 4, 5), (3, 5, 6)], [("X", "B", "M", "K"), ("B", "K", "N")])


def test_embedding_lookup_with_repeated_tokens() -> None:
    tokens = np.array([[1, 4, 1], [0, 4, 4]])
    check(lambda t: nir.take(t, nir.tensor(tokens, names=("B", "S")), "V"),
          lambda t: F.embedding(torch.tensor(tokens), t), [(5, 3)], [("V", "D")])


def test_masked_fill_and_where() -> None:
    mask = np.random.default_rng(5).random((3, 4)) < 0.5
    m = nir.tensor(mask, names=("N", "C"))
    check(lambda x, y: nir.where(m, x, y).masked_fill(~m, 2.0) * x,
          lambda x, y: torch.where(torch.tensor(mask), x, y).masked_fill(~torch.tensor(mask), 2.0) * x,
          [(3, 4), (4,)], [("N", "C"), ("C",)])


def test_elementwise_mix() -> None:
    check(lambda x, y: (x.gelu() + y.sigmoid() * x.tanh() - (x * y).sin().abs() + x.erf() / (y.exp() + 1)
                        + nir.maximum(x, y) - nir.minimum(x, y).cos() + x.clamp(-0.5, 0.7) + x.relu().sqrt()),
          lambda x, y: (F.gelu(x) + y.sigmoid() * x.tanh() - (x * y).sin().abs() + torch.erf(x) / (y.exp() + 1)
                        + torch.maximum(x, y) - torch.minimum(x, y).cos() + x.clamp(-0.5, 0.7) + x.relu().sqrt()),
          [(3, 4), (3, 4)], [("N", "C"), ("N", "C")])


def test_pow_log_rsqrt_on_positive_inputs() -> None:
    check(lambda a, b: a ** b + a.log() * b.rsqrt(), lambda a, b: a ** b + a.log() * b.rsqrt(),
          [(3, 4), (4,)], [("N", "C"), ("C",)], positive=True)


def test_reductions() -> None:
    check(lambda x: x.amax("C") + x.prod("N").sum() + x.var("C") + x.std(("N", "C")) + x.mean("N").amin(),
          lambda x: x.amax(1) + x.prod(0).sum() + x.var(1) + x.std() + x.mean(0).amin(), [(3, 4)], [("N", "C")])


def test_layout_and_indexing() -> None:
    def f(x):
        a = x.flatten(["H", "W"], "HW").unflatten("HW", (("H", 4), ("W", 5)))
        b = nir.cat([a.select("C", 1), a.narrow("C", 0, 1).squeeze("C")], "N")
        return b.align_to("W", "N", "H") * 2.0

    def g(x):
        b = torch.cat([x[:, 1], x[:, 0:1].squeeze(1)], 0)
        return b.permute(2, 0, 1) * 2.0
    check(f, g, [(2, 3, 4, 5)], [NCHW])


def test_cumsum_and_cumprod_with_zeros() -> None:
    def zeroed(x):
        return x * (x.abs() > 0.3).to("float64")  # exact zeros where |x| <= 0.3
    check(lambda x: zeroed(x).cumprod("T") + x.cumsum("N") * 0.5,
          lambda x: (x * (x.abs() > 0.3)).cumprod(1) + x.cumsum(0) * 0.5, [(4, 7)], [("N", "T")], seed=3)


def test_gather_picks_along_a_named_dim() -> None:
    idx = np.random.default_rng(2).integers(0, 6, (3, 4))
    check(lambda x: nir.gather(x, "V", nir.tensor(idx, names=("N", "V"))),
          lambda x: torch.gather(x, 1, torch.tensor(idx)), [(3, 6)], [("N", "V")])
