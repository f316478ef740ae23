"""The CPU memory method measures allocations of known size within 10%, one case after another."""
import pytest

from scanlab.harness.results.case_key import CaseKey
from scanlab.harness.measure.memory import cpu_peaks, rss_peak_above_start

MiB = 2 ** 20


def allocation(n_bytes, family="alloc"):
    """A case that allocates and touches n_bytes of float32."""
    return CaseKey(family=family, device="cpu", dtype="float32", mode="forward", B=1, L=n_bytes // 4, D=1, N=0,
                   backend="ones")


def test_known_allocations_in_the_worker():
    sizes = [200 * MiB, 20 * MiB, 50 * MiB]  # a large case first: its memory must not hide the next ones
    peaks = cpu_peaks([allocation(n) for n in sizes])
    for size, peak in zip(sizes, peaks):
        assert peak == pytest.approx(size, rel=0.10)


def test_in_process_peak_sees_a_temporary():
    import torch

    def temporary():
        torch.ones(64 * MiB // 4).sum()

    assert rss_peak_above_start(temporary) == pytest.approx(64 * MiB, rel=0.10)


def test_a_failing_case_reports_none_and_keeps_the_others():
    peaks = cpu_peaks([allocation(MiB, family="nope"), allocation(20 * MiB)])
    assert peaks[0] is None and peaks[1] == pytest.approx(20 * MiB, rel=0.10)
