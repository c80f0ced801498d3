"""The workload registry: every workload has both sizes, deterministic inputs and a traceable program."""

import numpy as np
import pytest

import nir
from nir.bench.workloads import FAMILIES, SIZES, WORKLOADS, select

DEFAULT = [name for name, w in WORKLOADS.items() if w.default]  # the zoo has tests of its own (tests/zoo)


@pytest.mark.parametrize("name", DEFAULT)
def test_inputs_are_deterministic_per_seed(name):
    w = WORKLOADS[name]
    a, b, c = w.make_inputs("small", 0), w.make_inputs("small", 0), w.make_inputs("small", 1)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))
    assert any(not np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, c))


@pytest.mark.parametrize("name", DEFAULT)
def test_both_sizes_trace_with_every_input_named(name):
    w = WORKLOADS[name]
    for size in SIZES:
        inputs = w.make_inputs(size, 0)
        assert all(None not in x.names for x in inputs)
        program = nir.trace(w.fn, *inputs).program
        # a train step returns the loss and the updated parameters (half of the state after batch and target)
        assert len(program.outputs) == (1 + (len(inputs) - 2) // 2 if w.family == "training" else 1)


def test_registry_has_the_issue_workloads():
    assert {"normalize_nchw", "normalize_nhwc", "lenet5", "mlp", "attention", "conv3x3", "layer_norm", "softmax",
            "rnn", "rnn_scan", "rnn_scan_512", "rnn_512"} <= set(WORKLOADS)
    assert {"mlp_train", "lenet5_train", "attention_train"} <= set(WORKLOADS)
    assert all(set(WORKLOADS[n].peers) == ({"torch", "jax"} if WORKLOADS[n].family == "training"
                                           else {"numpy", "torch", "jax"}) for n in DEFAULT)


def test_select_takes_names_and_families():
    assert [w.name for w in select("mlp,cnn")] == ["mlp", "lenet5", "conv3x3"]
    assert [w.name for w in select(None)] == DEFAULT
    assert len(select("all")) == len(WORKLOADS)
    assert [w.name for w in select("rnn")] == ["rnn"]  # the workload, not its family
    assert [w.name for w in select("rnn_512")] == ["rnn_512"]  # a non-default workload runs when named
    assert set(FAMILIES) == {w.family for w in WORKLOADS.values()}


def test_select_names_the_choices_for_an_unknown_workload():
    with pytest.raises(ValueError, match="unknown workload or family 'resnet'.*attention"):
        select("resnet")


def test_unknown_size_is_refused():
    with pytest.raises(ValueError, match="unknown size 'huge'; sizes are small, full"):
        WORKLOADS["mlp"].make_inputs("huge", 0)


def test_intermediate_bytes_count_a_scan_body_once():
    from nir.bench.variants import program_bytes
    from nir.bench.workloads.rnn import inputs_for, rnn_scan
    short = nir.trace(rnn_scan, *inputs_for(16)("small", 0)).program
    long = nir.trace(rnn_scan, *inputs_for(512)("small", 0)).program
    assert program_bytes(short) == program_bytes(long)  # one step's values, whatever T
    assert program_bytes(short)[1] > 0
