"""The timing statistics and the adaptive rounds rule, on synthetic samples with known answers."""
import itertools

import pytest
import torch

from scanlab.harness.measure import timing
from scanlab.harness.measure.timing import Rounds, Timing, interleaved, ratios_to_floor


def test_timing_statistics_on_known_samples():
    timing = Timing([5.0, 1.0, 3.0, 2.0, 4.0], first_call_s=13.0, number=1)
    assert timing.median == 3.0
    assert timing.p20 == pytest.approx(1.8) and timing.p80 == pytest.approx(4.2)  # linear interpolation
    assert timing.spread == pytest.approx((4.2 - 1.8) / 3.0)
    assert timing.compile_s == 10.0


def test_floor_ratio_is_per_round_and_scaled_to_the_bytes_moved():
    case = Timing([2.0, 4.0, 6.0], 0.0, 1)
    floor = Timing([1.0, 1.0, 3.0], 0.0, 1)
    # the case moves twice the floor's bytes: per round t / (2 f) = 1, 2, 1 (never the ratio of medians, 4/2)
    assert ratios_to_floor(case, floor, case_bytes=200, floor_bytes=100) == [1.0, 2.0, 1.0]


def test_iqr_fraction_on_known_samples():
    assert Timing([1.0, 2.0, 3.0, 4.0, 5.0], 0.0, 1).iqr_fraction == pytest.approx((4.0 - 2.0) / 3.0)


def _scripted(monkeypatch, durations):
    """seconds_per_call answers from `durations` (case -> iterator of seconds, 1 s for the others)
    instead of a clock; the cases' callables are their names."""
    monkeypatch.setattr(timing, "seconds_per_call",
                        lambda fn, number, device: next(durations[fn]) if fn in durations else 1.0)


def test_steady_cases_stop_at_the_least_rounds(monkeypatch):
    _scripted(monkeypatch, {})
    timings = interleaved({"a": "a", "floor": "floor"}, "cpu", Rounds(6, 20), 0.0)
    assert [len(t.samples) for t in timings.values()] == [6, 6]


def test_a_noisy_case_gets_more_rounds_until_its_iqr_settles(monkeypatch):
    # 1, 2, 1, 2, ... for 10 rounds (IQR 100% of the median), then steady at 1
    noisy = itertools.chain([1.0, 2.0] * 5, itertools.repeat(1.0))
    _scripted(monkeypatch, {"noisy": noisy})
    timings = interleaved({"noisy": "noisy", "floor": "floor"}, "cpu", Rounds(6, 40), 0.0)
    rounds = len(timings["noisy"].samples)
    assert len(timings["floor"].samples) == rounds  # every round holds every case and the floor
    assert 10 < rounds < 40 and timings["noisy"].iqr_fraction < 0.10


def test_noise_that_never_settles_stops_at_the_most_rounds(monkeypatch):
    _scripted(monkeypatch, {"noisy": itertools.cycle([1.0, 2.0])})
    timings = interleaved({"noisy": "noisy", "floor": "floor"}, "cpu", Rounds(6, 15), 0.0)
    assert len(timings["noisy"].samples) == 15


def test_the_time_budget_ends_the_extra_rounds(monkeypatch):
    _scripted(monkeypatch, {"noisy": itertools.cycle([1.0, 2.0])})
    timings = interleaved({"noisy": "noisy", "floor": "floor"}, "cpu", Rounds(6, 1000, budget_s=0.0), 0.0)
    assert len(timings["noisy"].samples) == 6


@pytest.mark.parametrize("least,most", [(0, 5), (7, 6)])
def test_rounds_out_of_order_are_refused(least, most):
    with pytest.raises(ValueError, match="1 <= least <= most"):
        Rounds(least, most)


def test_the_round_rule_defaults_are_torch_utils_benchmarks():
    import inspect

    from torch.utils.benchmark import Timer

    torch_rule = inspect.signature(Timer.adaptive_autorange).parameters
    rounds = Rounds(1, 1)
    assert rounds.budget_s == torch_rule["max_run_time"].default
    assert rounds.iqr_threshold == torch_rule["threshold"].default


@pytest.mark.parametrize("least,most", [(1, 1), (1, 5), (3, 3)])
def test_rounds_in_order_are_taken(least, most):
    assert (Rounds(least, most).least, Rounds(least, most).most) == (least, most)


def test_rounds_are_a_frozen_value():
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        Rounds(1, 2).least = 3


def test_compile_time_is_never_negative():
    assert Timing([2.0, 2.0], first_call_s=1.5, number=1).compile_s == 0.0
    assert Timing([2.0, 2.0], first_call_s=2.5, number=1).compile_s == 0.5


def test_seconds_per_call_is_a_mean_per_call():
    import time

    per_call = timing.seconds_per_call(lambda: time.sleep(0.01), 5, "cpu")
    assert 0.01 <= per_call < 0.045  # sleep never returns early; a loaded machine adds, not 5x


def test_the_first_call_is_timed_alone_and_samples_last_min_sample_s(monkeypatch):
    calls = []

    def fake(fn, number, device):
        calls.append((fn, number))
        return {"cold": 5.0, "steady": 0.001}["cold" if len(calls) == 1 else "steady"]
    monkeypatch.setattr(timing, "seconds_per_call", fake)
    timings = interleaved({"a": "a"}, "cpu", Rounds(2, 2), min_sample_s=0.01)
    assert calls[0] == ("a", 1) and calls[1] == ("a", 1)  # cold, then one steady call
    assert timings["a"].first_call_s == 5.0
    assert timings["a"].number == 10 and all(number == 10 for _, number in calls[2:])


def test_earlier_first_calls_are_kept(monkeypatch):
    _scripted(monkeypatch, {})
    timings = interleaved({"a": "a"}, "cpu", Rounds(2, 2), 0.0, first_call_s={"a": 7.0})
    assert timings["a"].first_call_s == 7.0


@pytest.mark.parametrize("spread,flagged", [(0.05, False), (0.2, True)])
def test_a_spread_above_ten_percent_is_flagged_in_the_row(spread, flagged):
    from scanlab.harness.results.case_key import CaseKey
    from scanlab.harness.run.cases import Case
    from scanlab.harness.run.perf import timing_rows

    key = CaseKey(family="scan", device="cpu", dtype="float32", mode="forward", B=1, L=4, D=1, N=0, backend="x")
    samples = [1.0 - spread / 2] * 3 + [1.0] + [1.0 + spread / 2] * 3  # p80 - p20 = spread
    rows = timing_rows(key, "u", Case(key, None, 0, 4), Timing(samples, 1.0, 1), {})
    note = [r["note"] for r in rows if r["metric"] == "time_s"][0]
    assert ("spread" in note) == flagged


def test_each_device_gets_its_own_flush_buffer():
    cpu, meta = timing._flush_buffer("cpu"), timing._flush_buffer("meta")
    assert cpu is not meta and cpu.device.type == "cpu" and meta.device.type == "meta"
    assert timing._flush_buffer(torch.device("cpu")) is cpu


def test_the_l2_flush_buffer_outsizes_every_l2_and_is_made_once():
    buffer = timing._flush_buffer("cpu")
    assert buffer.numel() * buffer.element_size() >= 126e6 * 2  # B200's L2 is 126 MB
    assert timing._flush_buffer("cpu") is buffer


def test_a_call_longer_than_min_sample_s_is_sampled_once_a_round(monkeypatch):
    _scripted(monkeypatch, {"slow": itertools.repeat(0.5)})
    assert interleaved({"slow": "slow"}, "cpu", Rounds(2, 2), min_sample_s=0.01)["slow"].number == 1


def test_an_iqr_exactly_at_the_threshold_is_not_yet_settled(monkeypatch):
    pattern = [1.0, 1.0, 2.0, 2.0]
    threshold = Timing(pattern, 0.0, 1).iqr_fraction  # 1 / 1.5, reached exactly after 4 rounds
    _scripted(monkeypatch, {"a": itertools.cycle(pattern), "b": itertools.cycle(pattern)})
    timings = interleaved({"a": "a", "b": "b"}, "cpu", Rounds(4, 9, iqr_threshold=threshold), 0.0)
    assert len(timings["a"].samples) > 4
