"""nir.from_torch: torch models converted to named nir programs, compiled on every installed backend and
compared with torch eager on random inputs; how names flow; the errors people see."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import nir
from nir import backends as nir_backends

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

from nir.frontends.torch import (TorchNameError, UnsupportedOpError, default_param_names,  # noqa: E402
                                 supported_ops_markdown)

REPO = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = {"reference": 1e-4}  # float32; every other backend: 2e-4
BACKENDS = [b for b in ("reference", "tvm", "xla") if nir_backends.installed(b)]


# ------------------------------------------------------------------------------------------------
# the models: ordinary torch modules
# ------------------------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 10)

    def forward(self, x):
        return F.softmax(self.fc2(torch.tanh(self.fc1(x))), dim=-1)


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.sigmoid(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, s, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class ConvBnPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.bn(self.conv(x))), 3, stride=2, padding=1)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.head(x.view(x.shape[0], -1))


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 12)
        self.pos = nn.Parameter(torch.randn(6, 12))
        self.out = nn.Linear(24, 3)

    def forward(self, tokens):
        h = self.emb(tokens) + self.pos
        pooled = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1)
        return self.out(pooled)


class OpMix(nn.Module):
    """The rest of the common ops: permute/transpose, sub/div/mul/pow, mean/std/var/sum, masks, causal
    attention, select/slice/split/stack/cat, expand, clamp, where."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(6, 6)

    def forward(self, x):                                               # x: (N, C, L) = (2, 6, 8)
        a = x.permute(0, 2, 1)                                          # (N, L, C)
        a = (a - a.mean(-1, keepdim=True)) / (a.std(-1, keepdim=True) + 1e-3)
        a = a * torch.sigmoid(self.gate(a)) + F.silu(a) - F.leaky_relu(a, 0.1)
        scores = torch.matmul(a, a.transpose(1, 2)) / 8                  # (N, L, L)
        mask = torch.triu(torch.ones(8, 8, dtype=torch.bool), diagonal=1)
        p = F.log_softmax(scores.masked_fill(mask, -1e4), dim=-1).exp()
        att = F.scaled_dot_product_attention(a.unsqueeze(1), a.unsqueeze(1), a.unsqueeze(1), is_causal=True)
        h = p @ a + att.squeeze(1)                                       # (N, L, C)
        lo, hi = h.split([2, 4], dim=-1)
        picked = torch.stack([hi[:, ::2, 0], hi[:, 1::2, 1]], dim=1)     # (N, 2, L/2)
        out = torch.cat([lo.sum(1), picked.flatten(1), h.var(1).clamp(max=2.0)], dim=-1)
        return torch.where(out > 0, out, out ** 2) + x[:, :1, 0].expand(2, 16)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so eval-mode batchnorm is tested for real."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    return model


# name -> (model factory, example inputs factory, names=, the names of the output)
CASES = {
    "mlp": (MLP, lambda: (torch.randn(4, 16),), {"x": ("N", "C")}, ("N", "fc2.out")),
    "lenet5": (LeNet5, lambda: (torch.randn(2, 1, 28, 28),), {"x": ("N", "C", "H", "W")}, ("N", "fc3.out")),
    "transformer_block": (TransformerBlock, lambda: (torch.randn(2, 8, 16),), {"x": ("B", "S", "D")},
                          ("B", "S", "D")),
    "conv_bn_pool": (ConvBnPool, lambda: (torch.randn(2, 3, 10, 10),), {"x": ("N", "C", "H", "W")},
                     ("N", "head.out")),
    "embedding": (Embed, lambda: (torch.randint(0, 50, (2, 6)),), {"tokens": ("B", "S")}, ("B", "out.out")),
    "op_mix": (OpMix, lambda: (torch.randn(2, 6, 8),), {"x": ("N", "C", "L")}, ("N", "C")),
}


@pytest.fixture(scope="module")
def converted():
    """Each case converted once: (model, example inputs, traced)."""
    cache = {}

    def get(case: str):
        if case not in cache:
            make, inputs, names, _ = CASES[case]
            torch.manual_seed(0)
            model = _randomize_bn(make()).eval()
            args = inputs()
            cache[case] = (model, args, nir.from_torch(model, args, names=names))
        return cache[case]
    return get


def _unsupported_listed(backend: str) -> set[str]:
    path = REPO / "backends" / backend / "unsupported.txt"
    if not path.exists():
        return set()
    return {line.split(":")[0].strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def _compile(traced, backend: str):
    """nir.compile on ``backend``; skipped only when building fails on a primitive the backend lists as
    unsupported in backends/<name>/unsupported.txt."""
    try:
        return nir.compile(traced, target="llvm", backend=backend)
    except Exception as e:
        listed = sorted(_unsupported_listed(backend) & traced.program.prims())
        if listed and any(p in str(e) for p in listed):
            pytest.skip(f"{backend} lists {listed} as unsupported: {e}")
        raise


def _named_inputs(args, names):
    return [nir.tensor(a.numpy(), names=n) for a, n in zip(args, names)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_converted_model_matches_torch_eager(case: str, backend: str, converted) -> None:
    model, args, traced = converted(case)
    _, _, names, out_names = CASES[case]
    f = _compile(traced, backend)
    gen = torch.Generator().manual_seed(7)  # fresh random inputs, not the example ones
    fresh = tuple(torch.randint(0, 50, a.shape, generator=gen) if a.dtype == torch.int64 else
                  torch.randn(a.shape, generator=gen) for a in args)
    y = f(*_named_inputs(fresh, names.values()))
    with torch.no_grad():
        want = model(*fresh).numpy()
    tol = TOLERANCE.get(backend, 2e-4)
    np.testing.assert_allclose(y.numpy(), want, rtol=tol, atol=tol)
    assert y.names == out_names


# ------------------------------------------------------------------------------------------------
# names
# ------------------------------------------------------------------------------------------------

def test_parameters_become_constants_named_after_layer_and_role(converted) -> None:
    _, _, traced = converted("lenet5")
    assert traced.param_names["conv1.weight"] == ("conv1.out", "conv1.in", "conv1.kh", "conv1.kw")
    assert traced.param_names["conv1.bias"] == ("conv1.out",)
    assert traced.param_names["fc1.weight"] == ("fc1.out", "fc1.in")
    assert traced.param_names["fc1.bias"] == ("fc1.out",)
    constants = {e.out.type.names for e in traced.program.eqns if e.prim == "constant"}
    assert ("fc2.out", "fc2.in") in constants


def test_input_names_flow_through_conv_pool_and_linear(converted) -> None:
    _, _, traced = converted("lenet5")
    convs = [e.out.type.names for e in traced.program.eqns if e.prim == "conv2d"]
    assert convs == [("N", "conv1.out", "H", "W"), ("N", "conv2.out", "H", "W")]
    assert "contract" in traced.program.prims()


def test_embedding_and_batchnorm_vectors_are_named(converted) -> None:
    _, _, traced = converted("embedding")
    assert traced.param_names["emb.weight"] == ("emb.vocab", "emb.dim")
    assert traced.param_names["pos"] == ("pos.d0", "pos.d1")
    _, _, traced = converted("conv_bn_pool")
    assert traced.param_names["bn.running_mean"] == ("bn.channels",)


def test_eval_batchnorm_is_one_multiply_add_per_element(converted) -> None:
    # eval-mode batch norm folds its statistics per channel: after the conv, the full-size prims are the
    # multiply and add of x * scale + shift (no subtract or divide per element)
    _, _, traced = converted("conv_bn_pool")
    eqns = traced.program.eqns
    start = next(i for i, e in enumerate(eqns) if e.prim == "conv2d")
    full = eqns[start].out.type.sizes
    after = [e.prim for e in eqns[start + 1:] if e.out.type.sizes == full]
    assert after[:2] == ["mul", "add"]
    assert "sub" not in after and "div" not in after


def test_layer_derived_names_yield_to_the_users_in_a_residual(converted) -> None:
    # x{B, S, D} + proj(...){B, S, attn.proj.out}: the layer's name yields; the block's output is {B, S, D}
    _, _, traced = converted("transformer_block")
    assert traced.program.outputs[0].type.names == ("B", "S", "D")
    ln = [e for e in traced.program.eqns if e.prim == "layer_norm"]
    assert [e.kwargs["dims"] for e in ln] == [("D",), ("D",)]


def test_param_names_override_the_defaults() -> None:
    torch.manual_seed(0)
    model = MLP().eval()
    t = nir.from_torch(model, (torch.randn(4, 16),), names={"x": ("N", "C")},
                       param_names={"fc1.weight": ("hidden", "C"), "fc1.bias": ("hidden",)})
    assert t.program.outputs[0].type.names == ("N", "fc2.out")
    assert t.param_names["fc1.weight"] == ("hidden", "C")
    assert any(e.out.type.names == ("N", "hidden") for e in t.program.eqns)


def test_unnamed_inputs_convert_and_stay_unnamed_where_no_layer_names_them() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(ConvBnPool()).eval()
    x = torch.randn(2, 3, 10, 10)
    t = nir.from_torch(model, (x,))  # no names at all: conv, batchnorm and pooling name dims internally
    y = nir.compile(t, backend="reference")(nir.tensor(x.numpy()))
    assert y.names == (None, "head.out")
    np.testing.assert_allclose(y.numpy(), model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_names_may_come_from_named_tensor_examples() -> None:
    torch.manual_seed(0)
    model = MLP().eval()
    t = nir.from_torch(model, nir.randn(3, 16, names=("N", "C")))
    assert t.program.inputs[0].type.names == ("N", "C")


@pytest.mark.parametrize("shape,names", [
    ((2, 12), ("N", None)),          # split the last dim: N keeps its name
    ((2, 3, 2, 2), ("N", "C", None, None)),
    ((6, 4), (None, None)),           # merges N with C: both names go
    ((2, 1, 3, 4), ("N", None, "C", None)),  # a size-1 dim added beside a dim that keeps its name
])
def test_views_keep_the_names_of_dims_they_do_not_merge_or_split(shape, names) -> None:
    x = torch.randn(2, 3, 4)
    t = nir.from_torch(lambda x: x.reshape(shape) * 2, (x,), names={"x": ("N", "C", None)})
    y = nir.compile(t, backend="reference")(nir.tensor(x.numpy(), names=("N", "C", None)))
    assert y.names == names
    np.testing.assert_allclose(y.numpy(), x.reshape(shape).numpy() * 2)


def test_dynamic_batch_function_serves_other_batch_sizes() -> None:
    torch.manual_seed(0)
    model = MLP().eval()
    t = nir.from_torch(model, (torch.randn(4, 16),), names={"x": ("N", "C")}, dynamic_batch=True)
    f = nir.compile(t.function, backend="reference")
    for n in (3, 7):
        x = torch.randn(n, 16)
        np.testing.assert_allclose(f(nir.tensor(x.numpy(), names=("N", "C"))).numpy(), model(x).detach().numpy(),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch's run_decompositions
@pytest.mark.parametrize("case", ["transformer_block", "lenet5", "conv_bn_pool"])
def test_core_aten_graphs_convert_too(case: str) -> None:
    # torch's decompositions write Linear as addmm(b, view(x), w.t()) and attention as bmm over merged dims;
    # an ExportedProgram given as it is converts all the same, and the names the user gave survive.
    make, inputs, names, out_names = CASES[case]
    torch.manual_seed(0)
    model = _randomize_bn(make()).eval()
    args = inputs()
    with torch.no_grad():
        ep = torch.export.export(model, args).run_decompositions()
    t = nir.from_torch(ep, args, names=names)
    assert t.param_names["fc1.weight" if case != "conv_bn_pool" else "head.weight"][0].endswith(".out")
    y = nir.compile(t, backend="reference")(*_named_inputs(args, names.values()))
    np.testing.assert_allclose(y.numpy(), model(*args).detach().numpy(), rtol=1e-4, atol=1e-4)
    assert y.names[0] == out_names[0]


def test_model_training_flag_is_restored() -> None:
    model = MLP().train()
    nir.from_torch(model, (torch.randn(2, 16),))
    assert model.training


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------

class Inner(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values


class WithSort(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.order = nn.Linear(4, 4), Inner()

    def forward(self, x):
        return self.order(self.fc(x))


def test_an_unsupported_op_names_the_op_and_the_module() -> None:
    with pytest.raises(UnsupportedOpError, match=r"aten\.sort\.default.*in order \(Inner\).*test_torch\.py:\d+"):
        nir.from_torch(WithSort(), (torch.randn(2, 4),))


class Adder(nn.Module):
    def forward(self, x, y):
        return x + y


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Adder()

    def forward(self, x, y):
        return self.block(x, y)


def test_a_name_conflict_names_the_module() -> None:
    with pytest.raises(TorchNameError, match=r"in block \(Adder\).*'C' and dim 'D'.*align_as") as err:
        nir.from_torch(TwoInputs(), (torch.randn(2, 3), torch.randn(2, 3)), names={"x": ("N", "C"), "y": ("N", "D")})
    assert isinstance(err.value, nir.NamedShapeError)


class Seq3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 5)

    def forward(self, x):
        return self.fc2(self.fc1(x))


def test_a_name_conflict_inside_a_linear_names_the_layer() -> None:
    # the user names fc2's out dim S, which the input already uses for its sequence dim
    with pytest.raises(TorchNameError, match=r"in fc2 \(Linear\).*repeat a dim name"):
        nir.from_torch(Seq3d(), (torch.randn(2, 5, 4),), names={"x": ("B", "S", "C")},
                       param_names={"fc2.weight": ("S", None)})


def test_names_of_the_wrong_length_or_for_unknown_inputs_are_refused() -> None:
    with pytest.raises(nir.NamedShapeError, match=r"names\['x'\] gives 3 names"):
        nir.from_torch(MLP(), (torch.randn(2, 16),), names={"x": ("N", "C", "H")})
    with pytest.raises(KeyError, match="its inputs are: x"):
        nir.from_torch(MLP(), (torch.randn(2, 16),), names={"images": ("N", "C")})
    with pytest.raises(KeyError, match="fc1.weight"):
        nir.from_torch(MLP(), (torch.randn(2, 16),), param_names={"fc9.weight": ("a", "b")})


def test_random_dropout_is_refused() -> None:
    with pytest.raises(UnsupportedOpError, match="dropout with train=True"):
        nir.from_torch(lambda x: F.dropout(x, 0.5, training=True), (torch.randn(2, 3),))


# ------------------------------------------------------------------------------------------------
# documentation
# ------------------------------------------------------------------------------------------------

def test_checked_in_op_list_is_generated_from_the_converter_table() -> None:
    assert (REPO / "docs" / "torch_ops.md").read_text() == supported_ops_markdown()


def test_default_param_names_fall_back_to_the_parameter_path() -> None:
    assert default_param_names("0.weight", (3, 4), [("aten.linear.default", 1)]) == ("layer0.out", "layer0.in")
    assert default_param_names("blocks.0.gamma", (4,), []) == ("blocks.0.gamma.d0",)
