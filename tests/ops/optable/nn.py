"""Neural-network functions: layer_norm, conv2d, max_pool2d, avg_pool2d, whose dims are picked by name."""

from __future__ import annotations

import torch

from nir.types import NamedShapeError

from .core import FLOATS, E, OpInfo, S, T

F = torch.nn.functional
NCHW = "N2 C3 H6 W5"


def _layer_norm_samples(d):
    x = T("N2 C3 H4 W5", d)
    return [
        S(x, ("H", "W"), T("H4 W5", d), T("H4 W5", d), names=("N", "C", "H", "W"),
          torch=lambda t, w, b: F.layer_norm(t, (4, 5), w, b)),
        S(x, ("W", "H"), T("W5 H4", d), names=("N", "C", "H", "W"),
          torch=lambda t, w: F.layer_norm(t, (4, 5), w.t())),
        S(x, "C", None, T("C3", d), eps=0.1, names=("N", "C", "H", "W"),
          torch=lambda t, b: F.layer_norm(t.movedim(1, -1), (3,), None, b, eps=0.1).movedim(-1, 1)),
        S(x, ("C", "H", "W"), names=("N", "C", "H", "W"), torch=lambda t: F.layer_norm(t, (3, 4, 5))),
    ]


def _layer_norm_errors():
    return [
        E(T("N2 C3"), "C", T("N2 C3"), exc=NamedShapeError, match="weight {N: 2, C: 3} has dims ['N'] that are not"),
        E(T("N2 C3"), "H", exc=NamedShapeError, match="layer_norm: dim 'H' is not in {N: 2, C: 3}"),
        E(T("N2 C3", "int64"), "C", exc=TypeError, match="layer_norm: needs a floating-point tensor"),
    ]


def _nhwc(fn):
    """``fn`` on NCHW tensors, applied to an NHWC input (and an HWCO... weight given in NCHW order)."""
    return lambda x, *rest: fn(x.permute(0, 3, 1, 2), *rest).permute(0, 2, 3, 1)


def _conv_samples(d):
    x, w, b = T(NCHW, d), T("O4 C3 H3 W3", d), T("O4", d)
    return [
        S(x, w, b, padding=1, names=("N", "O", "H", "W"), torch=lambda t, k, c: F.conv2d(t, k, c, padding=1)),
        S(x, w, stride=(2, 1), padding=(0, 1), dilation=(1, 2), names=("N", "O", "H", "W"),
          torch=lambda t, k: F.conv2d(t, k, stride=(2, 1), padding=(0, 1), dilation=(1, 2))),
        S(T("N2 H6 W5 C3", d), T("H3 W1 C3 O5", d), padding="same", names=("N", "H", "W", "O"),
          label=f"nhwc-same-{d}", torch=lambda t, k: _nhwc(lambda a: F.conv2d(a, k.permute(3, 2, 0, 1),
                                                                              padding="same"))(t)),
        S(T("N1 C4 H5 W5", d), T("O6 C2 H3 W3", d), groups=2, padding="valid", names=("N", "O", "H", "W"),
          torch=lambda t, k: F.conv2d(t, k, groups=2)),
        S(T("B2 I3 Y5 X4", d), T("J2 I3 Y2 X2", d), channels="I", out_channels="J", spatial=("Y", "X"),
          names=("B", "J", "Y", "X"), torch=lambda t, k: F.conv2d(t, k)),
    ]


def _conv_errors():
    return [
        E(T("N2 C3 H6"), T("O4 C3 H3 W3"), exc=NamedShapeError, match="the input {N: 2, C: 3, H: 6} has no dim 'W'"),
        E(T(NCHW), T("O4 C3 H3 K3"), exc=NamedShapeError, match="must have dims named ['C', 'H', 'O', 'W']"),
        E(T(NCHW), T("O4 C3 H3 W3"), stride=2, padding="same", exc=ValueError, match="padding='same' needs stride 1"),
        E(T(NCHW), T("O4 C3 H3 W3"), T("C4"), exc=NamedShapeError, match="bias {C: 4} must have the single dim 'O'"),
    ]


def _pool_samples(torch_fn):
    def samples(d):
        x = T("N2 C3 H8 W7", d)
        return [
            S(x, 2, names=("N", "C", "H", "W"), torch=lambda t: torch_fn(t, 2)),
            S(x, 3, 1, 1, names=("N", "C", "H", "W"), torch=lambda t: torch_fn(t, 3, 1, 1)),
            S(x, (3, 2), (2, 1), (1, 0), names=("N", "C", "H", "W"),
              torch=lambda t: torch_fn(t, (3, 2), (2, 1), (1, 0))),
            S(T("N2 H8 W7 C3", d), 3, 2, 1, names=("N", "H", "W", "C"), label=f"nhwc-{d}",
              torch=_nhwc(lambda t: torch_fn(t, 3, 2, 1))),
            S(T("A2 Y8 X7", d), 2, spatial=("Y", "X"), names=("A", "Y", "X"), torch=lambda t: torch_fn(t, 2)),
        ]
    return samples


def _pool_errors(name):
    return lambda: [E(T("N2 C3 H8"), 2, exc=NamedShapeError, match=f"{name}: dim 'W' is not in {{N: 2, C: 3, H: 8}}"),
                    E(T(NCHW), (2, 2, 2), exc=ValueError, match=f"{name}: kernel_size must be an int or a pair")]


TABLE = [
    OpInfo("layer_norm", _layer_norm_samples, FLOATS, method=None, errors=_layer_norm_errors),
    OpInfo("conv2d", _conv_samples, FLOATS, method=None, errors=_conv_errors),
    OpInfo("max_pool2d", _pool_samples(F.max_pool2d), FLOATS, method=None, errors=_pool_errors("max_pool2d")),
    OpInfo("avg_pool2d", _pool_samples(F.avg_pool2d), FLOATS, method=None, errors=_pool_errors("avg_pool2d")),
]
