"""Constant folding (nir.fold): equations on constants become constants, results do not change, and
programs never grow."""

import numpy as np

import nir
from nir.fold import fold_constants


def scaled(x):
    w = nir.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), names=("A", "C"))
    g = (w.rename(A="B") * 2.0).sum("B")  # constants only: folds to one constant {C: 3}
    return x * g


def test_equations_on_constants_fold_into_one_constant_with_the_same_results() -> None:
    p = nir.trace(scaled, nir.spec(N=4, C=3)).program
    q = nir.verify(fold_constants(p))
    assert [e.prim for e in q.eqns] == ["constant", "mul"]
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(nir.interpret(q, x)[0], nir.interpret(p, x)[0])


def test_a_program_without_foldable_equations_is_returned_as_it_is() -> None:
    p = nir.trace(lambda x: x.relu(), nir.spec(N=4)).program
    assert fold_constants(p) is p
