"""Which runs a machine folder's report shows: latest_sweeps on hand-written run files.

test_shards.py runs real sweeps through the CLI; these write the meta files directly, so that each
rule of the choice (shard, status, age, completeness) is pinned by a case that breaks only it."""
import json

import pytest

from scanlab.harness.results.records import SCHEMA, latest_sweeps, load_rows


def _run(machine, run_id, suite="accuracy", shard=None, status="complete", started="2026-01-01T00:00:00Z",
         rows=1, **config):
    """A run's meta and rows file; each row's value is the run id, so the merge can be traced."""
    runs = machine / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    config = {"lengths": [7], **config, **({"shard": shard} if shard else {})}
    meta = {"run_id": run_id, "suite": suite, "config": config, "started": started,
            **({"status": status} if status else {})}
    (runs / f"{run_id}.meta.json").write_text(json.dumps(meta))
    if rows is not None:
        (runs / f"{run_id}.jsonl").write_text("".join(
            json.dumps({"unit_id": f"u{k}", "metric": "m", "value": run_id}) + "\n" for k in range(rows)))


def _chosen(machine):
    return {suite: [json.loads(p.read_text().splitlines()[0])["value"] for p in sweep.rows_paths]
            for suite, sweep in latest_sweeps(machine).items()}


def test_shards_of_one_config_are_one_sweep_in_shard_order(tmp_path):
    _run(tmp_path, "b", shard="2/3")
    _run(tmp_path, "a", shard="3/3")
    _run(tmp_path, "c", shard="1/3")
    sweep = latest_sweeps(tmp_path)["accuracy"]
    assert (sweep.count, sorted(sweep.parts)) == (3, [1, 2, 3])
    assert _chosen(tmp_path) == {"accuracy": ["c", "b", "a"]}
    assert sweep.unfinished == []


def test_a_run_without_a_shard_is_the_whole_sweep(tmp_path):
    _run(tmp_path, "old", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "new", started="2026-01-02T00:00:00Z", lengths=[9])
    sweep = latest_sweeps(tmp_path)["accuracy"]
    assert (sweep.count, _chosen(tmp_path)) == (1, {"accuracy": ["new"]})


def test_a_run_whose_rows_file_is_missing_is_ignored(tmp_path):
    _run(tmp_path, "kept", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "newer_without_rows", started="2026-01-09T00:00:00Z", rows=None, lengths=[9])
    assert _chosen(tmp_path) == {"accuracy": ["kept"]}


def test_a_shard_rerun_that_is_still_running_does_not_hide_its_complete_run(tmp_path):
    _run(tmp_path, "done", shard="1/1", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "rerun", shard="1/1", status="running", started="2026-01-05T00:00:00Z")
    assert _chosen(tmp_path) == {"accuracy": ["done"]}
    assert latest_sweeps(tmp_path)["accuracy"].unfinished == []


def test_of_two_complete_runs_of_a_shard_the_newer_is_shown(tmp_path):
    _run(tmp_path, "older", shard="1/2", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "newer", shard="1/2", started="2026-01-03T00:00:00Z")
    _run(tmp_path, "two", shard="2/2", started="2026-01-02T00:00:00Z")
    assert _chosen(tmp_path) == {"accuracy": ["newer", "two"]}
    _run(tmp_path, "aa_newest", shard="1/2", started="2026-01-04T00:00:00Z")  # sorts first by name
    assert _chosen(tmp_path) == {"accuracy": ["aa_newest", "two"]}


def test_of_two_runs_of_a_shard_started_in_the_same_second_the_later_is_shown(tmp_path):
    _run(tmp_path, "accuracy-20260101T000000-x", shard="1/1")
    _run(tmp_path, "accuracy-20260101T000000.1-x", shard="1/1")  # open_run's name for the second
    assert _chosen(tmp_path) == {"accuracy": ["accuracy-20260101T000000.1-x"]}


def test_a_meta_without_a_status_counts_as_running(tmp_path):
    _run(tmp_path, "one", shard="1/2")
    _run(tmp_path, "two", shard="2/2", status=None)
    assert latest_sweeps(tmp_path)["accuracy"].unfinished == ["2/2 running"]


def test_unfinished_names_each_shard_not_complete_in_order(tmp_path):
    _run(tmp_path, "three", shard="3/4", status="running")
    _run(tmp_path, "one", shard="1/4", status="failed")
    _run(tmp_path, "two", shard="2/4")
    assert latest_sweeps(tmp_path)["accuracy"].unfinished == ["1/4 failed", "3/4 running", "4/4 not run"]


def test_a_complete_sweep_is_preferred_to_a_newer_unfinished_one(tmp_path):
    _run(tmp_path, "whole", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "half", shard="1/2", started="2026-01-05T00:00:00Z", lengths=[9])
    assert _chosen(tmp_path) == {"accuracy": ["whole"]}
    _run(tmp_path, "other_half", shard="2/2", started="2026-01-06T00:00:00Z", lengths=[9])
    assert _chosen(tmp_path) == {"accuracy": ["half", "other_half"]}


def test_a_sweep_missing_a_shard_is_not_complete(tmp_path):
    _run(tmp_path, "whole", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "one_of_two", shard="1/2", started="2026-01-05T00:00:00Z", lengths=[9])
    assert _chosen(tmp_path) == {"accuracy": ["whole"]}


def test_of_two_unfinished_sweeps_the_one_with_the_newest_shard_is_shown(tmp_path):
    _run(tmp_path, "a1", shard="1/2", started="2026-01-01T00:00:00Z", status="running")
    _run(tmp_path, "a2", shard="2/2", started="2026-01-07T00:00:00Z")
    _run(tmp_path, "b1", shard="1/2", started="2026-01-05T00:00:00Z", status="running", lengths=[9])
    assert _chosen(tmp_path) == {"accuracy": ["a1", "a2"]}


def test_each_suite_gets_its_own_sweep_in_name_order(tmp_path):
    _run(tmp_path, "p", suite="perf", started="2026-01-01T00:00:00Z")
    _run(tmp_path, "a", suite="accuracy", started="2026-01-02T00:00:00Z")
    assert list(latest_sweeps(tmp_path)) == ["accuracy", "perf"]
    assert _chosen(tmp_path) == {"accuracy": ["a"], "perf": ["p"]}


def test_perf_shards_with_different_offsets_are_one_sweep(tmp_path):
    _run(tmp_path, "one", suite="perf", shard="1/2", shard_offset=0)
    _run(tmp_path, "two", suite="perf", shard="2/2", shard_offset=3)
    assert latest_sweeps(tmp_path)["perf"].unfinished == []


def test_load_rows_merges_the_chosen_shards_of_each_suite(tmp_path):
    _run(tmp_path, "one", shard="1/2", rows=2)
    _run(tmp_path, "two", shard="2/2", rows=3)
    _run(tmp_path, "p", suite="perf", rows=1)
    rows = load_rows(tmp_path)
    assert sorted(rows["value"]) == ["one"] * 2 + ["p"] + ["two"] * 3
    assert list(rows.index) == list(range(6))  # one row per label: .loc picks one row


def test_a_corrupt_line_is_named_with_its_file_and_number(tmp_path):
    _run(tmp_path, "bad", rows=3)
    path = tmp_path / "runs" / "bad.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2 is not JSON"):
        load_rows(tmp_path)


@pytest.mark.parametrize("empty", ["no runs", "empty rows file"])
def test_load_rows_of_nothing_is_an_empty_table_with_every_column(tmp_path, empty):
    if empty == "empty rows file":
        _run(tmp_path, "e", rows=0)
    rows = load_rows(tmp_path)
    assert rows.empty and list(rows.columns) == list(SCHEMA)
