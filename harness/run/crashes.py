"""What a sweep records when a backend's case does not finish: the kernels scanlab measures are
unfinished, they raise, abort and hang, and the sweep records it and goes on.

- `raised`: the case raised an exception; only that case is lost.
- `crashed`: the case killed its worker process (a fatal signal: SIGSEGV, SIGABRT, ...) or hung past
  `--case-timeout`; the backend is quarantined for the rest of the sweep.
- `quarantined`: a case of a quarantined backend, not run; the note names the case that crashed.

Each is a failure of the sweep (exit 1); `--retry-crashed` runs those units again."""
from ..results.case_key import CaseKey
from ..results.records import open_run

RAISED, CRASHED, QUARANTINED = "raised", "crashed", "quarantined"
GROUP_LOST = "the group's worker died outside any backend's case"  # no backend to blame or quarantine
NOT_FINISHED = (RAISED, CRASHED, QUARANTINED)


def raised_note(error):
    return f"raised {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def not_finished_rows(key: CaseKey, suite, unit_id, metric, why, regime=""):
    """A `metric` row saying why, and for perf an empty time (compare and the report read it as broken)."""
    base = dict(key.as_row(), suite=suite, unit_id=unit_id, regime=regime, lo="", hi="", samples="", unit="")
    rows = [dict(base, metric=metric, value=None, note=why)]
    if suite == "perf":
        rows.append(dict(base, metric="time_s", value=None, unit="s", note=f"{metric}: {why}"))
    return rows


def quarantine_note(backend, unit_id, why):
    return (f"not run: {backend} crashed its worker at {unit_id} ({why.split(':')[0]}); "
            "--retry-crashed runs it again")


def quarantined_from(rows):
    """backend -> note, for backends whose worker a case crashed, from a run's rows (a resumed run
    keeps its quarantine)."""
    return {r["backend"]: quarantine_note(r["backend"], r["unit_id"], r["note"] or "") for r in rows
            if r.get("metric") == CRASHED and not str(r.get("note", "")).startswith(GROUP_LOST)}


def open_sweep_run(reports_dir, suite, settings, resume, keep_complete, retry_crashed):
    """open_run for a sweep; with `retry_crashed` (a complete run reopened too) its raised, crashed and
    quarantined units are dropped, to be measured again."""
    run = open_run(reports_dir, suite, settings, resume=resume, keep_complete=keep_complete or retry_crashed)
    if retry_crashed:
        run.retry(lambda row: row["metric"] in NOT_FINISHED)
    return run
