"""The paired statistics behind `ab`'s verdicts, on synthetic paired samples with known answers:
the interval's coverage, pure noise almost never called a change, a 1.2x shift found."""
import math

import numpy as np
import pytest
from scipy.stats import binom

from scanlab.harness.ab.paired import (ALPHA, BLOCK_ALPHA, block_estimates, median_interval, paired_verdict,
                                        signed_rank_p)
from scanlab.harness.results.compare import compare

TRUE_MEDIAN_RATIO = 1.0


def _pairs(rng, rounds, shift, noise=0.10, drift=True):
    """Per-round BASE and HEAD times: a drift common to both sides of a round (up to 3x, as this
    machine's medians move), each call's own lognormal noise, and HEAD `shift` times slower."""
    common = np.exp(rng.uniform(0, math.log(3), rounds)) if drift else np.ones(rounds)
    base = common * np.exp(noise * rng.standard_normal(rounds))
    head = shift * common * np.exp(noise * rng.standard_normal(rounds))
    return base, head


def test_the_interval_is_the_order_statistics_of_the_sign_test():
    values = np.arange(1.0, 11.0)  # n = 10: [x_(2), x_(9)], coverage 1 - 2 P(Bin(10, 1/2) <= 1) = 97.85%
    lo, hi, coverage = median_interval(values[::-1])
    assert (lo, hi) == (2.0, 9.0) and coverage == pytest.approx(1 - 2 * 11 / 1024)
    lo, hi, coverage = median_interval([3.0, 1.0, 2.0])  # too few for 95%: (min, max) and the coverage it has
    assert (lo, hi) == (1.0, 3.0) and coverage == pytest.approx(0.75)
    assert math.isnan(median_interval([])[0])


@pytest.mark.parametrize("rounds", [6, 12, 24])
def test_the_interval_covers_the_true_median_ratio_at_least_as_often_as_it_says(rounds):
    rng = np.random.default_rng(rounds)
    trials, covered, claimed = 2000, 0, None
    for _ in range(trials):
        base, head = _pairs(rng, rounds, shift=1.0)
        lo, hi, claimed = median_interval(head / base)
        covered += lo <= TRUE_MEDIAN_RATIO <= hi
    # binomial sampling error of the observed rate: 3 standard deviations below the claim
    assert covered / trials >= claimed - 3 * math.sqrt(claimed * (1 - claimed) / trials)
    assert claimed >= 0.95 or rounds < 6


def test_the_signed_rank_p_is_exact_for_small_samples():
    assert signed_rank_p(np.linspace(0.1, 1.0, 10), "greater") == pytest.approx(1 / 1024)
    assert signed_rank_p(np.linspace(0.1, 1.0, 10), "less") == pytest.approx(1.0)
    assert signed_rank_p([0.0, 0.0, 0.0], "greater") == 1.0  # identical times: nothing to rank


def _rates(shift, rounds, trials=1000, seed=0, noise=0.10):
    rng = np.random.default_rng(seed)
    counts = {}
    for _ in range(trials):
        verdict = paired_verdict(*_pairs(rng, rounds, shift, noise), factor=1.1).verdict
        counts[verdict] = counts.get(verdict, 0) + 1
    return {k: v / trials for k, v in counts.items()}


def test_pure_noise_under_a_3x_drift_is_almost_never_a_change():
    rates = _rates(1.0, rounds=12, trials=4000)
    assert rates.get("regression", 0) + rates.get("improvement", 0) <= 2 * ALPHA


def test_a_true_1_2x_slowdown_under_a_3x_drift_is_found_with_the_rounds_ab_takes():
    """12 rounds (ab's least) suffice at 5% noise per call; at 10% it takes the 24 that ab goes on to
    while a case's spread stays above 10% (at 12 rounds alpha 0.001 then finds only about half)."""
    assert _rates(1.2, rounds=12, noise=0.05).get("regression", 0) >= 0.95
    assert _rates(1.2, rounds=24, noise=0.10).get("regression", 0) >= 0.9


def test_the_drift_is_what_pairing_removes():
    """The same 1.2x under the same drift, judged as two unpaired samples (compare's Mann-Whitney on
    the same rounds) is mostly missed: the pairing is what makes the difference."""
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(200):
        base, head = _pairs(rng, 12, 1.2)
        rows = lambda times: __import__("pandas").DataFrame([dict(
            suite="perf", family="scan", backend="x", mode="forward", device="cpu", dtype="float32", B=1, L=1, D=1,
            N=0, metric="time_s", value=float(np.median(times)), lo="", hi="", note="", samples=list(times),
            machine_id="m")])
        found += compare(rows(base), rows(head), 1.1, on="time").table.verdict.iloc[0] == "regression"
    assert found / 200 < 0.5


def test_a_ratio_within_the_factor_is_the_same_and_a_clear_speedup_is_an_improvement():
    rng = np.random.default_rng(2)
    assert paired_verdict(*_pairs(rng, 12, 1.05, noise=0.01), factor=1.1).verdict == "same"
    faster = paired_verdict(*_pairs(rng, 12, 0.7), factor=1.1)
    assert faster.verdict == "improvement" and faster.hi < 1 and faster.p_value < ALPHA


def test_a_large_median_ratio_with_five_rounds_the_other_way_is_noise_not_a_regression():
    base = np.ones(12)
    head = np.array([1.5] * 7 + [0.8] * 5)  # median 1.5, but five rounds the other way: not clear
    verdict = paired_verdict(base, head, factor=1.1)
    assert verdict.ratio == pytest.approx(1.5) and verdict.verdict == "noise"


@pytest.mark.parametrize("base,head,message", [
    ([1.0, 1.0], [1.0], "one time per round"),
    ([], [], "one time per round"),
    ([1.0, 0.0], [1.0, 1.0], "positive"),
])
def test_unpaired_or_nonpositive_samples_are_refused(base, head, message):
    with pytest.raises(ValueError, match=message):
        paired_verdict(base, head, factor=1.1)


def test_twelve_rounds_take_the_third_and_tenth_order_statistics():
    lo, hi, coverage = median_interval(np.arange(12.0))
    assert (lo, hi) == (2.0, 9.0) and coverage == pytest.approx(1 - 2 * binom.cdf(2, 12, 0.5))


def _paired_rows(times):
    """name -> per-round times, as ab records them (every side the same rounds)."""
    import pandas as pd

    return pd.DataFrame([dict(suite="perf", family="scan", backend=name, mode="forward", device="cpu", dtype="float32",
                              B=1, L=1, D=1, N=0, metric="time_s", value=float(np.median(t)), lo="", hi="", note="",
                              samples=list(t), machine_id="m") for name, t in times.items()])


def test_compare_paired_judges_the_per_round_ratios_in_their_direction():
    rng = np.random.default_rng(3)
    base, head = _pairs(rng, 12, 1.5, noise=0.02)
    floor_base, floor_head = _pairs(rng, 12, 2.0, noise=0.02)  # a floor's change is noise, not a verdict
    table = compare(_paired_rows({"x": base, "floor": floor_base}), _paired_rows({"x": head, "floor": floor_head}),
                    1.1, on="time", paired=True)
    verdicts = table.table.set_index("backend")
    assert verdicts.loc["x", "verdict"] == "regression" and verdicts.loc["x", "ratio_lo"] > 1.1
    assert table.regressions == 1 and table.compared == 1  # the floor is shown, never counted
    swapped = compare(_paired_rows({"x": head}), _paired_rows({"x": base}), 1.1, on="time", paired=True)
    assert swapped.table.verdict.iloc[0] == "improvement" and swapped.regressions == 0


def _pairs_in_blocks(rng, rounds, blocks, shift, noise=0.15, process=0.10):
    """As _pairs, with round r timed on worker pair r mod `blocks`, and each pair's HEAD process its own
    lognormal speed (sd `process`): what pairing rounds cannot remove (measured here: 1.2x between two
    workers of the same tree on jax_scan)."""
    base, head = _pairs(rng, rounds, shift, noise)
    return base, head * np.exp(rng.normal(0, process, blocks))[np.arange(rounds) % blocks]


def _block_rates(shift, blocks, rounds=32, trials=2000, seed=0, **noise):
    rng = np.random.default_rng(seed)
    counts = {"round level": {}, "block level": {}}
    for _ in range(trials):
        base, head = _pairs_in_blocks(rng, rounds, blocks, shift, **noise)
        for name, count in (("round level", 1), ("block level", blocks)):
            verdict = paired_verdict(base, head, factor=1.1, blocks=count).verdict
            counts[name][verdict] = counts[name].get(verdict, 0) + 1
    return {name: {k: v / trials for k, v in c.items()} for name, c in counts.items()}


def _changed(rates):
    return rates.get("regression", 0) + rates.get("improvement", 0)


def test_a_process_effect_fools_a_verdict_over_rounds_and_not_one_over_worker_pairs():
    """The same code, 4 worker pairs whose processes differ (sd 15%): judged over rounds, a no-change
    is called a change several times as often as alpha allows; judged over the pairs, within it."""
    rates = _block_rates(1.0, blocks=4, process=0.15, trials=3000)
    assert _changed(rates["round level"]) >= 0.05
    assert _changed(rates["block level"]) <= 2 * BLOCK_ALPHA


def test_the_interval_over_worker_pairs_covers_the_true_ratio_as_often_as_it_says():
    rng = np.random.default_rng(5)
    trials, covered = 2000, 0
    for _ in range(trials):
        verdict = paired_verdict(*_pairs_in_blocks(rng, 32, 4, 1.0, process=0.10), factor=1.1, blocks=4)
        covered += verdict.lo <= TRUE_MEDIAN_RATIO <= verdict.hi
    assert verdict.coverage == 0.95
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_a_true_1_2x_slowdown_is_found_over_four_worker_pairs_at_a_compute_bound_backends_noise():
    """32 rounds on 4 pairs (ab's defaults), 3.5% noise per call (paired log-ratios' sd 0.05, as measured
    here for `assoc`, `chunked`, `sequential`) and processes differing by 3%: found in at least 9 of 10.
    At `native`'s noise (sd 0.2, memory-bound) 3 degrees of freedom leave it at about half (README: CI)."""
    assert _block_rates(1.2, blocks=4, noise=0.035, process=0.03)["block level"].get("regression", 0) >= 0.9


def test_each_block_is_the_median_of_its_rounds_and_the_ratio_their_geometric_mean():
    log_ratios = np.log([1.0, 2.0, 1.0, 2.0, 1.2, 2.2])  # rounds 0, 2, 4 on pair 0; 1, 3, 5 on pair 1
    assert np.allclose(block_estimates(log_ratios, 2), np.log([1.0, 2.0]))
    verdict = paired_verdict(np.ones(6), np.exp(log_ratios), factor=1.1, blocks=2)
    assert verdict.ratio == pytest.approx(math.sqrt(2.0)) and verdict.lo < verdict.ratio < verdict.hi
    agreeing = paired_verdict(np.ones(4), np.full(4, 1.5), factor=1.1, blocks=2)  # no spread at all: clear
    assert agreeing.verdict == "regression" and agreeing.p_value == 0.0


@pytest.mark.parametrize("rounds,blocks,message", [(6, 0, "blocks must be"), (6, 1.5, "blocks must be"),
                                                   (1, 4, "2 of them at least")])
def test_blocks_that_cannot_make_a_verdict_are_refused(rounds, blocks, message):
    with pytest.raises(ValueError, match=message):
        paired_verdict(np.ones(rounds), np.ones(rounds), factor=1.1, blocks=blocks)
