"""The reference interpreter is the definition of every op; here it is checked against PyTorch (an
independent implementation) through nir's eager API, on random inputs, in float64 at 1e-10."""

from __future__ import annotations

import numpy as np
import pytest

import nir

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(0)


def pair(*shape, names):
    a = RNG.standard_normal(shape)
    return nir.tensor(a, names=names, dtype="float64"), torch.tensor(a)


def close(x: nir.NamedTensor, t) -> None:
    np.testing.assert_allclose(x.numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-10)


NCHW = ("N", "C", "H", "W")


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 1), (1, 1, 1, 3)])
def test_conv2d(stride, padding, dilation, groups) -> None:
    x, tx = pair(2, 6, 9, 8, names=NCHW)
    w, tw = pair(9, 6 // groups, 3, 3, names=("O", "C", "H", "W"))
    b, tb = pair(9, names=("O",))
    close(nir.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups),
          F.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation, groups=groups))


def test_conv2d_nhwc_equals_nchw() -> None:
    x, tx = pair(2, 3, 7, 7, names=NCHW)
    w, tw = pair(4, 3, 3, 3, names=("O", "C", "H", "W"))
    y = nir.conv2d(x.align_to("N", "H", "W", "C"), w.align_to("H", "W", "C", "O"), padding=1)
    close(y.align_to(*("N", "O", "H", "W")), F.conv2d(tx, tw, padding=1))


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_pools(k, s, p) -> None:
    x, tx = pair(2, 3, 8, 7, names=NCHW)
    close(nir.max_pool2d(x, k, s, p), F.max_pool2d(tx, k, s, p))
    close(nir.avg_pool2d(x, k, s, p), F.avg_pool2d(tx, k, s, p))


def test_layer_norm() -> None:
    x, tx = pair(2, 3, 4, 5, names=NCHW)
    w, tw = pair(4, 5, names=("H", "W"))
    b, tb = pair(4, 5, names=("H", "W"))
    close(nir.layer_norm(x, ("H", "W"), w, b), F.layer_norm(tx, (4, 5), tw, tb))


def test_softmax_log_softmax_logsumexp() -> None:
    x, tx = pair(3, 4, 5, names=("A", "B", "C"))
    close(x.softmax("B"), tx.softmax(1))
    close(x.log_softmax("C"), tx.log_softmax(2))
    close(x.logsumexp(("A", "C")), tx.logsumexp((0, 2)))


def test_gelu_exact_and_tanh() -> None:
    x, tx = pair(50, names=("N",))
    close(x.gelu(), F.gelu(tx))
    close(nir.gelu(x, approximate="tanh"), F.gelu(tx, approximate="tanh"))


def test_matmul_broadcasting() -> None:
    a, ta = pair(2, 1, 3, 4, names=("A", "B", None, None))
    b, tb = pair(5, 4, 6, names=("B", None, None))
    close(a @ b, ta @ tb)


def test_contract_is_einsum() -> None:
    q, tq = pair(2, 3, 4, 5, names=("B", "Hd", "Q", "D"))
    k, tk = pair(2, 3, 6, 5, names=("B", "Hd", "K", "D"))
    close(nir.contract(q, k, over="D"), torch.einsum("bhqd,bhkd->bhqk", tq, tk))


def test_reductions_and_statistics() -> None:
    x, tx = pair(3, 4, 5, names=("A", "B", "C"))
    close(x.sum(("A", "C")), tx.sum((0, 2)))
    close(x.mean("B", keepdim=True), tx.mean(1, keepdim=True))
    close(x.std("C"), tx.std(2))
    close(x.var(("A", "B"), correction=0), tx.var((0, 1), correction=0))
    close(x.prod("A"), tx.prod(0))
    close(x.max("B").values, tx.max(1).values)
    assert x.max("B").indices.numpy().tolist() == tx.max(1).indices.numpy().tolist()
    assert x.argmin().item() == tx.argmin().item()


def test_flatten_unflatten_take_cat() -> None:
    x, tx = pair(2, 3, 4, 5, names=NCHW)
    close(x.flatten(["C", "H", "W"], "F"), tx.flatten(1))
    close(x.flatten(["H", "W"], "S").unflatten("S", (("a", 10), ("b", 2))), tx.reshape(2, 3, 10, 2))
    table, tt = pair(10, 4, names=("V", "D"))
    idx = np.array([[1, 9], [0, 3]])
    close(nir.take(table, nir.tensor(idx, names=("B", "S")), "V"), F.embedding(torch.tensor(idx), tt))
    close(nir.cat([x, x * 2], "W"), torch.cat([tx, tx * 2], 3))


def test_cumsum_and_cumprod_along_a_named_dim() -> None:
    x, tx = pair(3, 4, 5, names=("A", "B", "C"))
    close(x.cumsum("B"), tx.cumsum(1))
    close(nir.cumprod(x, "C"), tx.cumprod(2))
    flags = x > 0
    assert flags.cumsum("C").dtype == "int64"
    assert flags.cumsum("C").numpy().tolist() == (tx > 0).cumsum(2).numpy().tolist()


def test_cumsum_reverse_accumulates_from_the_end() -> None:
    x, tx = pair(3, 6, names=("A", "B"))
    y = nir.tensor(nir.ops.get("cumsum").impl(x.numpy(), types=[x.type], out=x.type, dim="B", reverse=True),
                   names=("A", "B"))
    close(y, tx.flip(1).cumsum(1).flip(1))


def test_gather_is_torch_gather_with_a_shorter_index_and_negative_indices() -> None:
    x, tx = pair(3, 6, 4, names=("A", "V", "C"))
    idx = RNG.integers(-6, 6, size=(2, 5, 4))
    got = nir.gather(x, "V", nir.tensor(idx, names=("A", None, "C")))
    close(got, torch.gather(tx[:2], 1, torch.tensor(idx % 6)))


def test_gather_names_the_result_after_the_input_and_the_index() -> None:
    x, _ = pair(3, 6, 4, names=("A", "V", "C"))
    idx = nir.tensor(RNG.integers(0, 6, size=(3, 2, 4)), names=(None, None, "C"))
    assert x.gather("V", idx).names == ("A", "V", "C")
    assert x.gather(1, idx.rename(None, "K", "C")).names == ("A", "K", "C")
