"""The timing statistics and the adaptive rounds rule, on synthetic samples with known answers."""
import itertools

import pytest

from harness import timing
from harness.timing import Rounds, Timing, interleaved, ratios_to_floor


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
