"""The verdict on a case timed on both sides in the same rounds: each round gives one paired ratio
HEAD/BASE, so a drift of the machine that slows both sides of a round cancels out of it.

Pairing rounds cannot remove what differs between two processes (measured here: one worker of the
same tree 1.2x slower than another on `jax_scan`, case after case, rebuilt or not). So `ab` runs K
workers per side and round r times the (r mod K)-th of each: the unit of evidence is a worker pair
(a block), not a round.

- With K >= 2 blocks: each block's estimate is the median of its rounds' log-ratios; the ratio
  reported is exp of their mean, with a t interval over blocks (K - 1 degrees of freedom, so a
  process effect widens it as it should), and clarity is a one-sided one-sample t-test on the
  blocks' estimates at BLOCK_ALPHA.
- With one block (K = 1): the median of the per-round ratios, with its distribution-free interval
  (order statistics of the sign test), and a one-sided Wilcoxon signed-rank test on the log-ratios
  at ALPHA. It assumes the two processes run alike, which this machine does not promise.
- A regression needs both: a ratio above `factor`, and p below alpha. Either alone is noise.

The alphas and the rounds `ab` takes were chosen from tests/ab_power.py's measurement (README: CI).
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, t, wilcoxon

ALPHA = 0.001
# the signed-rank test's smallest one-sided p is 2^-n (every round the same way): below this many rounds
# it cannot reach ALPHA, and `ab --processes 1` refuses them
MIN_PAIRED_ROUNDS = math.ceil(math.log2(1 / ALPHA))
CONFIDENCE = 0.95
# the blocks' t-test is valid across processes: under no change a case is called a regression or an
# improvement with probability at most 2 x 0.01, and only beyond the factor too. Not corrected across
# cases (README: CI): one run of 44 cases has a false call from the test alone in at most 0.88 on average
BLOCK_ALPHA = 0.01


@dataclass(frozen=True)
class PairedVerdict:
    verdict: str  # regression | improvement | noise | same
    ratio: float  # HEAD time / BASE time: the median over rounds (one block), else exp(mean of the blocks' estimates)
    lo: float  # its interval at `coverage`
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


def block_estimates(log_ratios, blocks):
    """Each block's median log-ratio; round r belongs to block r mod `blocks`."""
    labels = np.arange(len(log_ratios)) % blocks
    return np.array([np.median(log_ratios[labels == block]) for block in range(min(blocks, len(log_ratios)))])


def _t_p(shift, standard_error, df):
    """One-sided p of a mean `shift` > 0; blocks that all agree exactly leave no spread to scale by."""
    if standard_error > 0:
        return float(t.sf(shift / standard_error, df))
    return 0.0 if shift > 0 else 1.0


def paired_verdict(base, head, factor, alpha=None, blocks=1):
    """The verdict on HEAD against BASE from per-round times taken in the same rounds, round r on
    worker pair r mod `blocks`."""
    base, head = np.asarray(base, dtype=float), np.asarray(head, dtype=float)
    if base.shape != head.shape or base.ndim != 1 or not len(base):
        raise ValueError(f"paired samples need one time per round on each side, got {base.shape} and {head.shape}")
    if not (np.all(base > 0) and np.all(head > 0)):
        raise ValueError("paired samples must be positive times")
    if not (isinstance(blocks, (int, np.integer)) and blocks >= 1):
        raise ValueError(f"blocks must be a whole number >= 1, got {blocks!r}")
    ratios = head / base
    if blocks == 1:
        alpha = ALPHA if alpha is None else alpha
        ratio = float(np.median(ratios))
        lo, hi, coverage = median_interval(ratios)
        one_sided_p = lambda alternative: signed_rank_p(np.log(ratios), alternative)
    else:
        alpha = BLOCK_ALPHA if alpha is None else alpha
        estimates = block_estimates(np.log(ratios), blocks)
        if len(estimates) < 2:
            raise ValueError(f"a verdict over worker pairs needs rounds on 2 of them at least, got {len(ratios)} round(s)")
        mean, spread = float(np.mean(estimates)), float(np.std(estimates, ddof=1)) / math.sqrt(len(estimates))
        df = len(estimates) - 1
        ratio, coverage = math.exp(mean), CONFIDENCE
        half = t.ppf((1 + CONFIDENCE) / 2, df) * spread
        lo, hi = math.exp(mean - half), math.exp(mean + half)
        one_sided_p = lambda alternative: _t_p(mean if alternative == "greater" else -mean, spread, df)
    if 1 / factor <= ratio <= factor:
        return PairedVerdict("same", ratio, lo, hi, coverage, math.nan, len(ratios))
    slower = ratio > factor
    p = one_sided_p("greater" if slower else "less")
    verdict = ("regression" if slower else "improvement") if p < alpha else "noise"
    return PairedVerdict(verdict, ratio, lo, hi, coverage, p, len(ratios))
