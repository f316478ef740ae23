"""Results: the case key, records (written safely, resumable), verdicts from them, comparison, imported benchmarks."""
