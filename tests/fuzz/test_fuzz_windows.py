"""The fuzzer's strided window chains (`fuzz._strided`): pools, strided convolutions, interior pads,
strided slices and re-factorized flattens on spatial sizes of 6-14, followed by reductions,
contractions and layout changes; in gradient mode their backward programs (max-pool and avg-pool
gradients, transposed convolutions) are what the backends run. These are the producers of reads by a
divided index (``(h - 1) // 2`` under ``1 <= h``) that hit TVM 0.27's FlattenBuffer bug."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import nir
from nir import fuzz
from nir.autodiff import vjp_program
from nir.interpret import interpret
from nir.ir import Eqn, Program
from nir.testing import random_inputs

SEEDS = range(4)
CASES = 25


def _programs(grad: bool = False) -> Iterator[Program]:
    for seed in SEEDS:
        for case in range(CASES):
            if grad:
                yield fuzz.random_program(seed, case, steps=fuzz.GRAD_STEPS, control=False, quantized=False)[0]
            else:
                yield fuzz.random_program(seed, case)[0]


def _eqns(grad: bool = False) -> list[Eqn]:
    return [e for p in _programs(grad) for e in p.eqns]


def _window(e: Eqn) -> bool:
    return e.prim in ("pool2d", "conv2d")


def test_generated_programs_include_pools_and_convolutions_with_strides_kernels_and_padding() -> None:
    seen = set()
    for e in _eqns():
        if _window(e):
            p = dict(e.params)
            kind = p.get("kind", "conv")
            seen |= {(kind, "stride", s) for s in p["stride"]} | {(kind, "pad", s) for s in p["padding"]}
            seen |= {(kind, "kernel", e.inputs[-1].type.size(s) if kind == "conv" else k)
                     for s, k in zip(p["spatial"], p.get("kernel", (0, 0)))}
    want = {(kind, what, n) for kind in ("max", "avg", "conv") for what, ns in
            (("stride", (1, 2, 3)), ("pad", (0, 1)), ("kernel", (1, 2, 3))) for n in ns}
    assert want <= seen, sorted(want - seen)


def test_generated_programs_include_interior_pads_strided_slices_and_refactorized_flattens() -> None:
    seen = set()
    for e in _eqns():
        p = dict(e.params)
        if e.prim == "pad":
            seen |= {("interior", c[3]) for c in p["pads"]}
        if e.prim == "slice":
            seen.add(("step", p["step"]))
        if e.prim == "unflatten" and e.inputs[0].type.names != e.outputs[0].type.names:
            seen.add("unflatten")
    assert {("interior", 1), ("interior", 2), ("step", 2), ("step", 3), "unflatten"} <= seen


def test_windows_run_on_even_and_odd_spatial_sizes_of_6_to_14_with_batches_of_one_and_more() -> None:
    sizes, batches = set(), set()
    for e in _eqns():
        if _window(e):
            t, p = e.inputs[0].type, dict(e.params)
            sizes |= {t.size(s) for s in p["spatial"]}
            batches |= {t.size(n) for n in t.names if n not in p["spatial"] and n != p.get("channels")}
    assert set(range(6, 15)) <= sizes
    assert {1, 2} <= batches


def test_window_results_feed_reductions_contractions_and_layout_changes() -> None:
    kinds = set()
    for p in _programs():
        windowed = {v.id for e in p.eqns if _window(e) or e.prim in ("pad", "slice") for v in e.outputs}
        kinds |= {nir.ops.get(e.prim).kind for e in p.eqns if any(v.id in windowed for v in e.inputs)}
    assert {"reduction", "normalization", "contraction", "layout"} <= kinds


def test_gradient_mode_differentiates_through_max_and_average_pools_and_convolutions_strided_2_and_3() -> None:
    seen = set()
    for e in _eqns(grad=True):
        if _window(e):
            seen |= {(dict(e.params).get("kind", "conv"), i, s) for i, s in enumerate(dict(e.params)["stride"])}
    assert {(kind, i, s) for kind in ("max", "avg", "conv") for i in (0, 1) for s in (2, 3)} <= seen


def test_backward_programs_often_reduce_what_interior_pads_of_large_dims_make() -> None:
    """The spread of a strided window's cotangent (an interior pad: reads by ``(h - low) // (interior + 1)``)
    into a dim of 12 or more, feeding a reduction downstream, in a tenth of the gradient programs at least."""
    hits = 0
    for p in _programs(grad=True):
        downstream: set[int] = set()
        reduced = False
        for e in vjp_program(p).eqns:
            reduced |= nir.ops.get(e.prim).kind == "reduction" and any(v.id in downstream for v in e.inputs)
            if any(v.id in downstream for v in e.inputs) or (e.prim == "pad" and any(
                    c[3] and e.outputs[0].type.size(c[0]) >= 12 for c in dict(e.params)["pads"])):
                downstream |= {v.id for v in e.outputs}
        hits += reduced
    assert hits >= 0.1 * len(SEEDS) * CASES


@pytest.mark.parametrize("grad", [False, True], ids=["forward", "gradient"])
def test_generated_programs_verify_and_run_on_the_reference(grad: bool) -> None:
    """Every program is valid (with its backward program in gradient mode): no shape the reference refuses."""
    for seed in SEEDS[:2]:
        for case in range(CASES):
            kw = {"steps": fuzz.GRAD_STEPS, "control": False, "quantized": False} if grad else {}
            p, ins = fuzz.random_program(seed, case, **kw)
            if grad:
                p = vjp_program(p)
                ins = random_inputs(p, seed=case)
            nir.verify(p)
            assert len(interpret(p, *ins)) == len(p.outputs)


def test_strided_chains_come_after_the_program_they_extend() -> None:
    """A chain only adds inputs and equations after the others: without it (``strided=False``) every
    (seed, case) is the program it always was."""
    extended = 0
    for seed in SEEDS:
        for case in range(CASES):
            p, ins = fuzz.random_program(seed, case)
            q, q_ins = fuzz.random_program(seed, case, strided=False)
            assert [e.prim for e in p.eqns[:len(q.eqns)]] == [e.prim for e in q.eqns]
            assert all((a == b).all() for a, b in zip(ins, q_ins))
            extended += len(p.eqns) > len(q.eqns)
    assert 0.3 * len(SEEDS) * CASES <= extended <= 0.7 * len(SEEDS) * CASES
