"""The verdict on a case timed on both sides in the same rounds: each round gives one paired ratio
HEAD/BASE, so a drift of the machine that slows both sides of a round cancels out of it.

- The ratio reported is the median of the per-round ratios, with its distribution-free interval
  (order statistics of the sign test: no assumption on the shape of timing noise, which is skewed).
- Clarity is a one-sided Wilcoxon signed-rank test on the log-ratios (exact for these sample sizes):
  it uses the ranks of the ratios' sizes as well as their signs, so it needs fewer rounds than the
  sign test, and a single wild round moves it by one rank.
- A regression needs both: a median ratio above `factor`, and p < alpha. Either alone is noise.

ALPHA and the rounds `ab` takes were chosen from tests/ab_power.py's measurement (README: CI).
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, wilcoxon

ALPHA = 0.001
# the signed-rank test's smallest one-sided p is 2^-n (every round the same way): below this many rounds
# it cannot reach ALPHA, and `ab` refuses them
MIN_PAIRED_ROUNDS = math.ceil(math.log2(1 / ALPHA))
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedVerdict:
    verdict: str  # regression | improvement | noise | same
    ratio: float  # median over rounds of HEAD time / BASE time
    lo: float  # the interval of that median at `coverage`
    hi: float
    coverage: float
    p_value: float  # one-sided, in the direction of the change; nan when within the factor
    rounds: int


def median_interval(values, confidence=CONFIDENCE):
    """(lo, hi, coverage): [x_(k), x_(n-k+1)] with the largest k whose coverage, 1 - 2 P(Bin(n, 1/2) < k),
    is at least `confidence`; below 6 values no k reaches 95% and it is (min, max) with the coverage
    it has. Holds for any continuous distribution of the values."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0.0
    tail = (1 - confidence) / 2
    k = 1
    while k < (n + 1) // 2 and binom.cdf(k, n, 0.5) <= tail:
        k += 1
    return float(x[k - 1]), float(x[n - k]), float(1 - 2 * binom.cdf(k - 1, n, 0.5))


def signed_rank_p(log_ratios, alternative):
    """One-sided Wilcoxon signed-rank p of the log-ratios being shifted `alternative` ('greater' or
    'less') of 0; 1.0 when every ratio is exactly 1 (nothing to rank)."""
    values = np.asarray(log_ratios, dtype=float)
    if not len(values) or not np.any(values):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes; the exact distribution is used where it exists
        return float(wilcoxon(values, alternative=alternative, zero_method="wilcox").pvalue)


def paired_verdict(base, head, factor, alpha=ALPHA):
    """The verdict on HEAD against BASE from per-round times taken in the same rounds."""
    base, head = np.asarray(base, dtype=float), np.asarray(head, dtype=float)
    if base.shape != head.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"paired samples need one time per round on each side, got {base.shape} and {head.shape}")
    if not (np.all(base > 0) and np.all(head > 0)):
        raise ValueError("paired samples must be positive times")
    ratios = head / base
    ratio = float(np.median(ratios))
    lo, hi, coverage = median_interval(ratios)
    if 1 / factor <= ratio <= factor:
        return PairedVerdict("same", ratio, lo, hi, coverage, math.nan, len(ratios))
    slower = ratio > factor
    p = signed_rank_p(np.log(ratios), "greater" if slower else "less")
    verdict = ("regression" if slower else "improvement") if p < alpha else "noise"
    return PairedVerdict(verdict, ratio, lo, hi, coverage, p, len(ratios))
