"""Records: schema, atomic writes, resume after an interrupted sweep."""
import json
import re
import stat
from pathlib import Path

import pytest

from scanlab.harness.run import accuracy
from scanlab.harness.results import records
from scanlab.harness.results.records import SCHEMA, atomic_write_text, load_rows, open_run

TINY = {"lengths": [3, 5], "batch": 1, "channels": 2, "dtypes": ["float64"], "gate_regimes": ["sigmoid"],
        "kv_regimes": ["normal"], "gradients_max_len": 5, "backends": ["assoc", "fft"]}


def test_rows_follow_the_schema(tmp_path):
    run = accuracy.run_accuracy(TINY, "cpu", tmp_path, progress=False)
    rows = load_rows(run.rows_path)
    assert set(rows.columns) == set(SCHEMA)
    assert set(rows["suite"]) == {"accuracy"}
    assert rows["commit"].notna().all() and rows["timestamp"].str.endswith("Z").all()
    assert json.loads(run.meta_path.read_text())["status"] == "complete"
    passed = rows[rows["metric"] == "passed"]
    assert len(passed) > 0 and (passed["value"] == 1.0).all()


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, monkeypatch):
    calls = []
    real_measure = accuracy._measure

    def dies_on_third(key, regime, config):
        calls.append(key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_measure(key, regime, config)

    monkeypatch.setattr(accuracy, "_measure", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        accuracy.run_accuracy(TINY, "cpu", tmp_path, progress=False)
    [meta_path] = tmp_path.glob("*/runs/*.meta.json")
    assert json.loads(meta_path.read_text())["status"] == "running"
    rows_path = meta_path.with_name(meta_path.name.replace(".meta.json", ".jsonl"))
    assert len({json.loads(line)["unit_id"] for line in rows_path.read_text().splitlines()}) == 2

    measured = []
    monkeypatch.setattr(accuracy, "_measure", lambda *a: measured.append(a[0]) or real_measure(*a))
    run = accuracy.run_accuracy(TINY, "cpu", tmp_path, progress=False)
    total = len(accuracy.accuracy_units(TINY))
    assert len(measured) == total - 2  # only the units the first run had not finished
    assert run.rows_path == rows_path and len(run.done_units()) == total
    assert not list(tmp_path.glob("**/*.tmp"))


def test_fresh_flag_starts_a_new_run(tmp_path):
    first = open_run(tmp_path, "accuracy", {"x": 1})
    assert open_run(tmp_path, "accuracy", {"x": 1}).run_id == first.run_id
    assert open_run(tmp_path, "accuracy", {"x": 2}).run_id != first.run_id


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "rows.jsonl"
    atomic_write_text(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]


def _units(run_path):
    return [json.loads(line)["unit_id"] for line in run_path.read_text().splitlines()]


def test_adding_a_unit_appends_and_never_rewrites_the_file(tmp_path, monkeypatch):
    rewrites = []
    monkeypatch.setattr(records, "atomic_write_text", lambda path, text: rewrites.append(str(path)))
    run = open_run(tmp_path, "accuracy", {"x": 1})
    for unit in ("u1", "u2", "u3"):
        run.add_unit([{"unit_id": unit, "metric": "m", "value": 1.0}, {"unit_id": unit, "metric": "n", "value": 2.0}])
    assert _units(run.rows_path) == ["u1", "u1", "u2", "u2", "u3", "u3"]
    assert not [p for p in rewrites if p.endswith(".jsonl")]


def test_a_unit_torn_by_a_crash_is_dropped_and_measured_again(tmp_path):
    run = open_run(tmp_path, "accuracy", {"x": 1})
    for unit in ("u1", "u2"):
        run.add_unit([{"unit_id": unit, "metric": "m", "value": 1.0}, {"unit_id": unit, "metric": "n", "value": 2.0}])
    text = run.rows_path.read_text()
    run.rows_path.write_text(text[:-25])  # the crash cut u2's second row short
    resumed = open_run(tmp_path, "accuracy", {"x": 1})
    assert resumed.run_id == run.run_id and resumed.done_units() == {"u1"}
    resumed.add_unit([{"unit_id": "u2", "metric": "m", "value": 1.0}])
    assert _units(run.rows_path) == ["u1", "u1", "u2"]


def test_a_corrupt_line_that_is_not_the_last_is_an_error(tmp_path):
    run = open_run(tmp_path, "accuracy", {"x": 1})
    run.add_unit([{"unit_id": "u1", "metric": "m", "value": 1.0}])
    run.rows_path.write_text("{not json\n" + run.rows_path.read_text())
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        open_run(tmp_path, "accuracy", {"x": 1})


def test_a_resumed_run_stamps_new_rows_with_the_commit_it_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "code_state", lambda: {"commit": "aaaa", "dirty": False})
    open_run(tmp_path, "accuracy", {"x": 1}).add_unit([{"unit_id": "u1", "metric": "m", "value": 1.0}])
    monkeypatch.setattr(records, "code_state", lambda: {"commit": "bbbb", "dirty": True})
    resumed = open_run(tmp_path, "accuracy", {"x": 1})
    resumed.add_unit([{"unit_id": "u2", "metric": "m", "value": 1.0}])
    stamped = {r["unit_id"]: (r["commit"], r["dirty"]) for r in map(json.loads, resumed.rows_path.read_text().splitlines())}
    assert stamped == {"u1": ("aaaa", False), "u2": ("bbbb", True)}


def test_a_finished_run_is_not_resumed_by_default(tmp_path):
    first = open_run(tmp_path, "accuracy", {"x": 1})
    first.finish()
    assert open_run(tmp_path, "accuracy", {"x": 1}).run_id != first.run_id
    assert open_run(tmp_path, "accuracy", {"x": 1}, keep_complete=True).run_id == first.run_id


def test_of_two_unfinished_runs_of_a_config_the_newest_is_resumed(tmp_path):
    newest = open_run(tmp_path, "accuracy", {"x": 1})
    older_id = newest.run_id.replace("-2", "-1", 1)  # the same config, started a millennium earlier
    meta = {**newest.meta, "run_id": older_id}
    newest.meta_path.with_name(f"{older_id}.meta.json").write_text(json.dumps(meta))
    assert open_run(tmp_path, "accuracy", {"x": 1}).run_id == newest.run_id


def test_run_files_are_found_again_by_the_digest_of_their_config():
    """The digest in a run's name is how open_run finds it again (resume, --skip-complete): the
    committed baseline's runs must keep their names under any change of how the digest is made."""
    metas = sorted(Path(__file__).parent.parent.glob("baseline/*/runs/*.meta.json"))
    assert metas
    for path in metas:
        meta = json.loads(path.read_text())
        assert path.name == f"{meta['run_id']}.meta.json"
        assert meta["run_id"].endswith("-" + records.config_hash({"suite": meta["suite"], **meta["config"]}))


def test_a_row_without_a_timestamp_is_stamped_and_one_with_it_keeps_it(tmp_path):
    run = open_run(tmp_path, "accuracy", {"x": 1})
    run.add_unit([{"unit_id": "u1", "metric": "m", "value": 1.0},
                  {"unit_id": "u1", "metric": "n", "value": 1.0, "timestamp": "2020-01-01T00:00:00Z"}])
    stamps = [json.loads(line)["timestamp"] for line in run.rows_path.read_text().splitlines()]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamps[0]) and stamps[0] > "2026"
    assert stamps[1] == "2020-01-01T00:00:00Z"


def test_rows_files_are_not_executable(tmp_path):
    run = open_run(tmp_path, "accuracy", {"x": 1})
    run.add_unit([{"unit_id": "u1", "metric": "m", "value": 1.0}])
    assert stat.S_IMODE(run.rows_path.stat().st_mode) & 0o111 == 0


def test_rows_are_read_back_as_written(tmp_path):
    """No type guessing: a commit that looks like a number stays a string, a timestamp stays text."""
    run = open_run(tmp_path, "accuracy", {"x": 1})
    run.code = {"commit": "0123", "dirty": False}
    run.add_unit([{"unit_id": "u1", "metric": "m", "value": 1.0}, {"unit_id": "u1", "metric": "n", "value": 2.0}])
    rows = load_rows(run.rows_path)
    assert list(rows["commit"]) == ["0123", "0123"]
    assert all(isinstance(t, str) for t in rows["timestamp"])


def _two_units(tmp_path):
    run = open_run(tmp_path, "accuracy", {"x": 1})
    for unit in ("u1", "u2"):
        run.add_unit([{"unit_id": unit, "metric": "m", "value": 1.0}, {"unit_id": unit, "metric": "n", "value": 2.0}])
    return run


def test_a_torn_first_line_of_a_new_unit_drops_that_unit_alone(tmp_path):
    """The crash cut the first row of u3 short: u2 is complete (its last row is 2/2) and stays."""
    run = _two_units(tmp_path)
    with open(run.rows_path, "a") as handle:
        handle.write('{"run_id": "r", "suite": "accuracy", "fam')  # too short to name its unit
    resumed = open_run(tmp_path, "accuracy", {"x": 1})
    assert resumed.done_units() == {"u1", "u2"} and _units(run.rows_path) == ["u1", "u1", "u2", "u2"]


def test_a_torn_tail_in_an_older_file_without_row_counts_keeps_a_unit_the_fragment_does_not_name(tmp_path):
    run = _two_units(tmp_path)
    rows = [{k: v for k, v in json.loads(line).items() if k != "unit_row"} for line in run.rows_path.read_text().splitlines()]
    fragment = json.dumps({**rows[0], "unit_id": "u3"})
    fragment = fragment[:fragment.index('"u3"') + 6]  # cut just after it names its unit
    run.rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows) + fragment)
    assert records.read_complete_units(run.rows_path) == rows  # the fragment names u3: u2 is whole


def test_report_and_compare_read_a_torn_file_as_an_unfinished_run(tmp_path, capsys):
    run = _two_units(tmp_path)
    run.rows_path.write_text(run.rows_path.read_text()[:-25])  # u2's second row cut short
    rows = load_rows(run.rows_path)
    assert list(rows["unit_id"]) == ["u1", "u1"]
    assert "ends in a torn line" in capsys.readouterr().err


def test_a_run_another_process_is_writing_cannot_be_resumed_and_names_its_holder(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from scanlab.harness.results.records import open_run; "
        "open_run(sys.argv[1], 'accuracy', {'x': 1}); print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(records.RunLocked, match=f"being written by pid {holder.pid} on "):
            open_run(tmp_path, "accuracy", {"x": 1})
    finally:
        holder.kill()
        holder.wait()
    assert open_run(tmp_path, "accuracy", {"x": 1}).meta["status"] == "running"  # free once its holder is gone


def test_a_rename_and_a_new_file_fsync_their_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(records, "fsync_folder", lambda folder: synced.append(Path(folder)))
    atomic_write_text(tmp_path / "a.txt", "x")
    records.append_durably(tmp_path / "b.jsonl", "y\n")
    records.append_durably(tmp_path / "b.jsonl", "z\n")  # not new: its entry is durable already
    assert synced == [tmp_path, tmp_path]


def test_a_crash_between_two_lines_of_a_unit_drops_that_unit_though_no_line_is_torn(tmp_path):
    run = _two_units(tmp_path)
    lines = run.rows_path.read_text().splitlines(keepends=True)
    run.rows_path.write_text("".join(lines[:-1]))  # u2's first row made it, its second never did
    assert open_run(tmp_path, "accuracy", {"x": 1}).done_units() == {"u1"}
    assert _units(run.rows_path) == ["u1", "u1"]


def test_one_append_of_many_units_is_whole_when_its_last_row_is(tmp_path):
    """Skipped rows go in one append with a unit id each: complete, though no two share an id."""
    run = open_run(tmp_path, "accuracy", {"x": 1})
    run.add_unit([{"unit_id": f"skipped|{n}", "metric": "skipped", "value": None} for n in range(3)])
    with open(run.rows_path, "a") as handle:
        handle.write('{"run_id": "r", "su')
    assert len(open_run(tmp_path, "accuracy", {"x": 1}).rows) == 3
