"""The name rules of `gather`, `cumsum` and `cumprod`: what they refuse, and the messages."""

from __future__ import annotations

import numpy as np
import pytest

import nir
from nir.ir import Builder
from nir.types import TensorType


def test_gather_refuses_an_input_dim_the_indices_lack() -> None:
    b = Builder()
    x = b.input(TensorType.of({"A": 3, "V": 5}))
    idx = b.input(TensorType.of({"K": 2}, "int64"))
    with pytest.raises(nir.NamedShapeError, match=r"gather: dims \['A'\] of the input are not dims of the indices "
                                                  r"\(named shapes \{A: 3, V: 5\} and \{K: 2\}\)"):
        b.add("gather", [x, idx], dim="V")


def test_gather_refuses_float_indices() -> None:
    b = Builder()
    x = b.input(TensorType.of({"V": 5}))
    with pytest.raises(nir.NamedShapeError, match="gather: indices must be int32 or int64, got float32"):
        b.add("gather", [x, b.input(TensorType.of({"K": 2}))], dim="V")


def test_gather_refuses_a_shared_dim_of_another_size() -> None:
    b = Builder()
    x = b.input(TensorType.of({"A": 3, "V": 5}))
    idx = b.input(TensorType.of({"A": 2, "K": 2}, "int64"))
    with pytest.raises(nir.NamedShapeError, match=r"dims \['A'\] have different sizes"):
        b.add("gather", [x, idx], dim="V")


def test_gather_refuses_an_index_out_of_range_in_the_reference() -> None:
    x = nir.tensor(np.arange(5.0, dtype=np.float32), names=("V",))
    with pytest.raises(IndexError, match="gather: an index is out of range for V=5"):
        x.gather("V", nir.tensor(np.array([5]), names=("V",)))


def test_gather_by_position_refuses_names_that_differ() -> None:
    x = nir.randn(3, 5, names=("A", "V"))
    idx = nir.tensor(np.zeros((3, 2), dtype=np.int64), names=("B", None))
    with pytest.raises(nir.NamedShapeError, match="dim 'B' of the index and dim 'A' of the input are at the same"):
        x.gather("V", idx)


def test_cumsum_of_a_bool_primitive_is_refused_and_the_api_casts() -> None:
    b = Builder()
    x = b.input(TensorType.of({"T": 4}, "bool"))
    with pytest.raises(nir.NamedShapeError, match=r"cumsum: needs a numeric operand, got bool .* Cast with"):
        b.add("cumsum", [x], dim="T", reverse=False)
    flags = nir.tensor(np.array([True, False, True]), names=("T",))
    assert flags.cumsum("T").numpy().tolist() == [1, 1, 2]


def test_cumsum_names_an_unknown_dim() -> None:
    with pytest.raises(nir.NamedShapeError, match="cumsum"):
        nir.randn(2, 3, names=("A", "B")).cumsum("C")
