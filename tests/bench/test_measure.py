"""The measurement method: round-robin order, samples per variant, summary statistics."""

import time

from nir.bench.measure import calibrate, round_robin, stats


def test_round_robin_rotates_the_order_every_round():
    seen = []
    calls = {n: (lambda n=n: seen.append(n)) for n in "abc"}
    samples = round_robin(calls, {"a": 1, "b": 1, "c": 1}, rounds=3, settle_s=0)
    assert seen == list("abc" "bca" "cab")
    assert all(len(s) == 3 and min(s) >= 0 for s in samples.values())


def test_each_sample_runs_the_calibrated_number_of_calls():
    seen = []
    round_robin({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, {"a": 4, "b": 1}, rounds=2,
                settle_s=0)
    assert seen.count("a") == 8 and seen.count("b") == 2


def test_each_interleaved_sample_settles_with_one_untimed_call_first():
    seen = []
    round_robin({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, {"a": 2, "b": 1}, rounds=2,
                settle_s=1e-4)
    assert "".join(seen) == "aaa" "bb" "bb" "aaa"  # the settling call, then the sample's calls


def test_settling_idles_between_one_variant_and_the_next():
    stamps = []
    calls = {n: (lambda n=n: stamps.append((n, time.perf_counter()))) for n in "ab"}
    round_robin(calls, {"a": 1, "b": 1}, rounds=3, settle_s=0.01)
    switches = [t1 - t0 for (n0, t0), (n1, t1) in zip(stamps, stamps[1:]) if n0 != n1]
    assert len(switches) == 3 and min(switches) >= 0.01  # a -> b, then b -> a in round 1, a -> b in round 2


def test_a_single_variant_does_not_settle():
    seen = []
    round_robin({"a": lambda: seen.append("a")}, {"a": 3}, rounds=2, settle_s=0.01)
    assert len(seen) == 6


def test_calibrate_runs_the_warmup_calls_and_asks_for_at_least_one_call():
    seen = []
    assert calibrate(lambda: seen.append(1), warmup=5, sample_s=0.0) == 1
    assert len(seen) == 5 + 3  # warm-up, then three timed calls


def test_stats_are_median_quartiles_and_minimum():
    s = stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.p25, s.p75, s.min, s.n) == (3.0, 2.0, 4.0, 1.0, 5)
