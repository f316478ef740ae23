"""Running sweeps: presets, cases, the accuracy, perf and decode sweeps, process isolation, shards and cluster jobs."""
