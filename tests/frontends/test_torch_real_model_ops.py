"""The torch frontend on what real models do (issue 12): in-place ops, cumulative sums that build masks,
gather and advanced indexing, bool bitwise ops, grouped-query attention, and the names that come out."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir import backends as nir_backends

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

BACKENDS = [b for b in ("reference", "tvm", "xla") if nir_backends.installed(b)]


def assert_matches(fn, *xs, names=None, backend="reference", tol=2e-5):
    traced = nir.from_torch(fn, xs, names=names)
    got = nir.compile(traced, backend=backend)(*[nir.tensor(x.numpy(), names=s.type.user_names)
                                                 for x, s in zip(xs, traced.program.inputs)])
    want = fn(*xs) if not isinstance(fn, nn.Module) else fn.eval()(*xs)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=tol, atol=tol)
    return traced, got


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(6, 6), nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.act(self.fc(x))
        y.add_(1.0).mul_(0.5)
        return y + torch.sigmoid_(x.clone())


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_place_ops_are_functionalized(backend) -> None:
    traced, _ = assert_matches(InPlace(), torch.randn(3, 6), names=("N", "C"), backend=backend)
    assert "relu" in traced.program.prims() and "sigmoid" in traced.program.prims()


def causal_positions(mask):
    # what transformers' mask builders do: positions from a padding mask
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0) + torch.cumprod(torch.ones_like(mask), -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cumsum_and_cumprod_of_a_mask(backend) -> None:
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    traced, got = assert_matches(causal_positions, mask, names=("B", "T"), backend=backend)
    assert got.names == ("B", "T") and got.dtype == "int64"


def test_gather_with_a_shorter_index_is_torch_gather() -> None:
    x, idx = torch.randn(4, 9, 3), torch.randint(0, 9, (2, 5, 3))
    _, got = assert_matches(lambda x, i: torch.gather(x, 1, i), x, idx, names={"x": ("B", "V", "D")})
    assert got.names == ("B", "V", "D")


@pytest.mark.parametrize("backend", BACKENDS)
def test_advanced_indexing_with_index_tensors_that_broadcast(backend) -> None:
    def pick(x):
        rows = torch.arange(2).view(2, 1)
        cols = torch.arange(4).view(1, 4) - 1  # -1 counts from the end
        return x[rows, cols].sum((-1, -2)) + x[:, 0, rows, cols].sum(0)
    assert_matches(pick, torch.randn(3, 5, 4, 6), backend=backend)


def test_non_adjacent_index_tensors_put_the_index_dims_first() -> None:
    def f(x):
        i = torch.arange(3)
        return x[:, i, :, 4 - i]
    _, got = assert_matches(f, torch.randn(2, 3, 4, 5), names=("N", "C", "H", "W"))
    assert got.names == (None, "N", "H")


def test_index_select_and_bool_bitwise_ops_build_masks() -> None:
    def f(x, keep):
        window = (torch.arange(5) >= 1) & (torch.arange(5) < 4) | ~keep
        return torch.index_select(x, 1, torch.tensor([4, 0])) * window[:2] + x[:, :1].new_ones(1, 2)
    assert_matches(f, torch.randn(3, 5), torch.tensor([True, False, True, True, False]))


def test_a_bitwise_op_on_integers_is_refused() -> None:
    with pytest.raises(nir.frontends.torch.UnsupportedOpError, match="bitwise and of .*int64"):
        nir.from_torch(lambda x, y: x & y, (torch.tensor([1, 2, 7]), torch.tensor([3, 3, 3])))


def test_cat_skips_torchs_legacy_empty_tensors() -> None:
    def f(k):
        cache = torch.tensor([])  # a KV cache before its first update
        return torch.cat([cache, k], dim=-2)
    assert_matches(f, torch.randn(2, 3, 4))


@pytest.mark.parametrize("backend", BACKENDS)
def test_grouped_query_attention_matches_torch(backend) -> None:
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 4)
    mask = torch.randn(2, 1, 5, 7)
    traced, got = assert_matches(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m, enable_gqa=True),
                                 q, k, v, mask, names={"q": ("B", "heads", "T", None)}, backend=backend)
    assert got.names == ("B", "heads", "T", None)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.mix, self.out = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, ids):
        h = self.emb(ids)
        h = self.mix(h) + h  # the layer's output comes first: the stream's (older) name must still win
        return self.out(h) + h


def test_a_residual_stream_keeps_the_oldest_name() -> None:
    traced = nir.from_torch(Residual(), (torch.randint(0, 10, (2, 3)),), names=("B", "T"))
    assert traced.program.outputs[0].type.user_names == ("B", "T", "emb.dim")


def test_a_residual_stream_keeps_the_users_name() -> None:
    traced = nir.from_torch(Residual(), (torch.randint(0, 10, (2, 3)),), names=("B", "T"),
                            param_names={"emb.weight": ("vocab", "D")})
    assert traced.program.outputs[0].type.user_names == ("B", "T", "D")


def test_a_dim_merged_into_another_and_split_back_gets_its_name_again() -> None:
    def heads_first(x):  # torchvision's MultiheadAttention path: batch merged with heads, then split again
        n, s, e = x.shape
        y = x.transpose(0, 1).reshape(s, n * 2, e // 2).transpose(0, 1)
        return y.reshape(n, 2, s, e // 2).sum(1)
    _, got = assert_matches(heads_first, torch.randn(3, 5, 8), names=("N", "S", "E"))
    assert got.names == ("N", "S", None)


class SelfAttention(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(x).chunk(3, -1))
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + 1e-6)  # something between the split and sdpa
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(a.transpose(1, 2).reshape(b, t, d)) + x


def test_a_reshape_into_attention_heads_names_heads_and_head_dim() -> None:
    traced, _ = assert_matches(SelfAttention(), torch.randn(2, 5, 16), names=("B", "T", "D"))
    typed = [v.type.user_names for e in traced.program.eqns for v in e.outputs]
    assert ("B", "T", "heads", "head_dim") in typed and ("B", "heads", "T", "head_dim") in typed
    assert traced.program.outputs[0].type.user_names == ("B", "T", "D")


def test_from_torch_converts_on_its_own_inside_an_active_trace() -> None:
    model = nn.Linear(4, 3)

    def f(x):
        inner = nir.from_torch(model, (torch.zeros(2, 4),), names=("N", "C"))
        return inner.function(x).relu()
    program = nir.trace(f, nir.spec(N=2, C=4)).program
    assert program.eqns[-1].prim == "relu" and program.outputs[0].type.user_names == ("N", "weight.out")


@pytest.mark.parametrize("op, names", [
    (lambda x: x.repeat(2, 1, 3), (None, "C", None)),
    (lambda x: x.repeat(2, 1, 1, 1), (None, "N", "C", "W")),
    (lambda x: x.flip(1, -1), ("N", "C", "W")),
    (lambda x: F.pad(x, (1, 2, 0, 1), value=-1.5), ("N", "C", "W")),
    (lambda x: F.pad(x, (-1, 1)), ("N", "C", "W")),
], ids=["repeat", "repeat-new-dim", "flip", "pad", "pad-negative"])
def test_tiling_flipping_and_padding_compose_from_primitives(op, names) -> None:
    _, got = assert_matches(op, torch.randn(2, 3, 4), names=("N", "C", "W"))
    assert got.names == names


def test_a_single_input_model_takes_a_plain_names_tuple() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(1, 3, 6, 6))
    traced = nir.from_torch(model, (torch.randn(2, 3, 6, 6),), names=("N", "C", "H", "W"))
    assert traced.program.outputs[0].type.user_names == ("N", "layer3.out")


def test_a_names_dict_with_the_wrong_key_suggests_the_plain_tuple() -> None:
    with pytest.raises(KeyError, match=r"its inputs are: input \(a model with one input also takes a plain tuple: "
                                       r"names=\('N', 'C'\)\)"):
        nir.from_torch(nn.Sequential(nn.Linear(3, 2)), (torch.randn(2, 3),), names={"x": ("N", "C")})
