"""Tidy long-format records, one row per case and metric, stored as JSON lines per run.

Layout: reports/<machine_id>/runs/<run_id>.jsonl (rows) and <run_id>.meta.json (the sweep's
config, the machine, status). A finished unit is appended to the rows file in one write and
fsynced: a kill can tear only the last unit, and resuming drops that torn tail (rewriting the file
once) and measures the unit again. Whole-file writes (meta, reports) go to a temporary file that is
fsynced and renamed over the old one. A run whose meta says "running" is resumed by the next run of
the same config, which skips the units it has; each session stamps its rows with the commit it ran.
A sharded sweep (`--shard I/N`, harness/run/shard.py) is one run per shard, its config naming the
shard; readers merge the shards of a machine's newest sweep (latest_sweeps).

JSON lines rather than CSV or Parquet: rows keep their types (floats, None, booleans) without a
schema file, diff line by line in git, and need no pyarrow.
"""
import hashlib
import itertools
import json
import fcntl
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .case_key import DENSE
from ..measure.machine import code_state, machine_info
from ..run.shard import Shard

# Column -> meaning. tests/test_readme.py checks that README.md documents every column.
SCHEMA = {
    "run_id": "the run that produced the row",
    "suite": "accuracy | perf | benchmark",
    "family": "scan | dss | layer",
    "unit_id": "the resumable unit (a case, or an interleaved group of cases)",
    "backend": "scan or conv backend, DSS path ('conv:fft', 'recurrent:chunked'), layer path, 'floor' or 'floor_prealloc'",
    "mode": "forward | forward+backward (perf); the quantity checked (accuracy)",
    "device": "cpu | cuda",
    "dtype": "float32 | float64 | complex64 | complex128 | bfloat16 | float16 ( on a skipped row: every dtype)",
    "layout": "dense | reverse | varlen | varlen+reverse: the scan's direction and packing (dense on rows from before layouts)",
    "B": "batch", "L": "sequence length", "D": "channels (H for DSS)", "N": "DSS modes (0 for scans)",
    "regime": "gate/kv regime (scan accuracy), kernel decay (DSS), '' for perf",
    "metric": "what value measures: see README 'Metrics' ('skipped': not run here, note says why)",
    "value": "the measurement (median for times)",
    "lo": "p20 for times, else empty", "hi": "p80 for times, else empty",
    "samples": "per-round values behind `value` (perf times and x floor ratios), for compare's significance test",
    "unit_row": "i/N: the row's place in the append that wrote its unit; a last row short of N/N was cut by a crash",
    "unit": "s, bytes, GB/s, x (ratio), 1 (flag), tokens/s",
    "note": "why a row has no speed figure, why a backend was skipped, domain violations, spread warnings",
    "timestamp": "UTC time the row was measured",
    "machine_id": "folder under reports/", "cpu": "CPU model", "threads": "torch intra-op threads (perf --threads)", "gpu": "GPU name",
    "gpu_driver": "NVIDIA driver version", "gpu_capability": "CUDA compute capability (9.0 for H100)",
    "cuda": "CUDA version of torch", "torch": "torch version", "jax": "JAX version", "python": "Python version",
    "commit": "git commit measured", "dirty": "whether the tree had uncommitted changes",
}
# config fields that tell the shards of one sweep apart
SHARD_FIELDS = ("shard", "shard_offset")
MACHINE_COLUMNS = ("machine_id", "cpu", "threads", "gpu", "gpu_driver", "gpu_capability", "cuda", "torch", "jax", "python", "commit", "dirty")


def fsync_folder(folder):
    """A rename or a new file is durable only once its folder's entry is: fsync the folder too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def append_durably(path, text):
    """One write at the end of the file, fsynced before returning (and its folder, when it is new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_folder(path.parent)


UNIT_ID = re.compile(r'"unit_id": "((?:[^"\\]|\\.)*)"')


def _split_torn(path):
    """(complete rows, torn fragment or None): a crash mid-append leaves a last line without its newline."""
    text = Path(path).read_text()
    lines = text.splitlines()
    fragment = lines.pop() if text and not text.endswith("\n") else None
    return _parse(path, lines, " (not a torn last line: the file is corrupt)"), fragment


def _torn_tail(rows, fragment):
    """How many rows at the end belong to an append a crash cut short (0: none). Each row of one
    append carries `unit_row` "i/N", so a last row short of N/N was cut, whether the cut fell inside
    a line (a fragment is left) or between two. In an older file without it, a fragment tears the
    last unit unless it names another (one too short to name one tears it too: measured again,
    nothing is lost)."""
    if not rows:
        return 0
    position = rows[-1].get("unit_row")
    if position:
        index, count = (int(n) for n in str(position).split("/"))
        return 0 if index == count else index
    if fragment is None:
        return 0
    last = rows[-1]["unit_id"]
    named = UNIT_ID.search(fragment)
    if named is not None and json.loads(f'"{named.group(1)}"') != last:
        return 0
    return next((i for i, row in enumerate(reversed(rows)) if row["unit_id"] != last), len(rows))


def complete_rows(path):
    """(the rows of every append that finished, whether the file was torn)."""
    rows, fragment = _split_torn(path)
    torn = _torn_tail(rows, fragment)
    return (rows[:len(rows) - torn] if torn else rows), bool(torn) or fragment is not None


def read_complete_units(path):
    """The rows of a run file without the unit a crash tore, and exactly that unit: the file is
    rewritten once without it so that appending can go on, and resuming measures it again."""
    rows, torn = complete_rows(path)
    if torn:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _parse(path, lines, why=""):
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}: line {number} is not JSON{why}") from None
    return rows


def config_hash(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Run:
    """One sweep's records; `add_unit` persists a finished unit (appended, fsynced)."""

    directory: Path
    run_id: str
    meta: dict
    rows: list = field(default_factory=list)
    code: dict = field(default_factory=dict)  # commit and dirty flag of this session (open_run)

    @property
    def rows_path(self):
        return self.directory / f"{self.run_id}.jsonl"

    @property
    def meta_path(self):
        return self.directory / f"{self.run_id}.meta.json"

    def done_units(self):
        return {row["unit_id"] for row in self.rows}

    def add_unit(self, rows):
        machine = {k: self.meta["machine"].get(k, "") for k in MACHINE_COLUMNS}
        stamped = [{**{k: "" for k in SCHEMA}, **row, **machine, **self.code, "run_id": self.run_id,
                    "unit_row": f"{index}/{len(rows)}", "timestamp": row.get("timestamp") or utc_now()}
                   for index, row in enumerate(rows, 1)]
        append_durably(self.rows_path, "".join(json.dumps(r) + "\n" for r in stamped))
        self.rows.extend(stamped)

    def retry(self, failed):
        """Measure again every unit with a row for which `failed(row)` is true: their rows are dropped
        (the file rewritten once, atomically) and a complete run is running again."""
        units = {row["unit_id"] for row in self.rows if failed(row)}
        if not units:
            return units
        self.rows = [row for row in self.rows if row["unit_id"] not in units]
        atomic_write_text(self.rows_path, "".join(json.dumps(r) + "\n" for r in self.rows))
        if self.meta["status"] != "running":
            self.meta.update(status="running")
            self.meta.pop("finished", None)
            atomic_write_text(self.meta_path, json.dumps(self.meta, indent=1, default=str))
        return units

    def finish(self):
        append_durably(self.rows_path, "")  # a complete run has a rows file, if empty (a shard with no unit)
        self.meta.update(status="complete", finished=utc_now())
        atomic_write_text(self.meta_path, json.dumps(self.meta, indent=1))
        self.release()

    def release(self):
        """Let another process resume this run (a finished run, or a sweep that stopped in-process)."""
        fd = _HELD.pop((self.directory / f"{self.run_id}.lock").resolve(), None)
        if fd is not None:
            os.close(fd)


class RunLocked(RuntimeError):
    """Another process is writing this run (resuming it too would interleave duplicate rows)."""


def _hold(run):
    """An exclusive lock on the run for as long as this process lives (flock: the kernel drops it when
    the holder dies, however it dies), with who holds it written inside for the next one to name."""
    path = (run.directory / f"{run.run_id}.lock").resolve()
    if path in _HELD:  # this process holds it already (a run opened again, resumed in-process)
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # a read-only records folder: nothing will be written there either
        print(f"note: run {run.run_id} is not locked ({error.strerror})", file=sys.stderr)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Path(path).read_text().strip() or "another process"
        os.close(fd)
        raise RunLocked(f"run {run.run_id} is being written by {holder}; wait for it to end (or stop it) before "
                        "resuming it, or start a separate run with --fresh") from None
    except OSError as error:  # a filesystem without flock (Lustre -o noflock, NFS without lockd)
        os.close(fd)
        print(f"note: run {run.run_id} is not locked: this filesystem refuses flock ({error.strerror}); do not "
              "resume it from two processes at once", file=sys.stderr)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {utc_now()}".encode())
    _HELD[path] = fd


_HELD = {}  # lock path -> descriptor, open until the process ends


def open_run(reports_dir, suite, config, resume=True, keep_complete=False):
    """The unfinished run of this suite and config on this machine, or a new one; with
    `keep_complete`, a complete run of it first, if there is one (the caller then measures nothing)."""
    machine = machine_info()
    directory = Path(reports_dir) / machine["machine_id"] / "runs"
    digest = config_hash({"suite": suite, **config})
    wanted = (["complete"] if keep_complete else []) + (["running"] if resume else [])
    for status in wanted:
        for meta_path in sorted(directory.glob(f"{suite}-*-{digest}.meta.json"), reverse=True):
            meta = json.loads(meta_path.read_text())
            if meta.get("status") == status:
                run = Run(directory, meta["run_id"], meta, code=code_state())
                _hold(run)
                run.meta = json.loads(meta_path.read_text())  # as it is now that no one else writes it
                if run.meta.get("status") != status:  # it finished while we waited for it
                    run.release()
                    continue
                if run.rows_path.exists():
                    run.rows = read_complete_units(run.rows_path)
                return run
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    run_id = f"{suite}-{stamp}-{digest}"
    for again in itertools.count(1):  # a run of this config finished within the same second
        if not (directory / f"{run_id}.meta.json").exists():
            break
        run_id = f"{suite}-{stamp}.{again}-{digest}"
    meta = {"run_id": run_id, "suite": suite, "config": config, "machine": machine,
            "status": "running", "started": utc_now()}
    run = Run(directory, run_id, meta, code=code_state())
    directory.mkdir(parents=True, exist_ok=True)
    _hold(run)
    atomic_write_text(directory / f"{run_id}.meta.json", json.dumps(meta, indent=1, default=str))
    return run


AB_PREFIX = "ab-"  # runs of `ab` (one per side): each case twice, so never read into a folder's rows


def load_rows(path):
    """Rows of a run file, or of the latest sweep of each suite under a machine folder (all its shards;
    not `ab` runs, which hold every case once per side: compare their run files by name)."""
    path = Path(path)
    if path.is_file():
        return _read_rows(path)
    frames = [_read_rows(p) for suite, sweep in latest_sweeps(path).items() if not suite.startswith(AB_PREFIX)
              for p in sweep.rows_paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SCHEMA))


def _read_rows(path):
    """Values as written. Not pandas.read_json: it guesses types (a commit "0123" became 123, and
    pandas < 3 turned "timestamp" into datetimes by its name) and the flag against it is deprecated.
    A torn last line (a run killed mid-write) is left out, the torn unit with it, and said on stderr:
    that run is unfinished, and resuming it measures the unit again."""
    rows, torn = complete_rows(path)
    if torn:
        print(f"note: {path} ends in a torn line (a run killed while writing): read as an unfinished run, "
              "without its torn unit", file=sys.stderr)
    if not rows:
        return pd.DataFrame(columns=list(SCHEMA))
    frame = pd.DataFrame(rows)
    # records from before layouts have no `layout`; skipped rows have an empty one: both are dense cases
    frame["layout"] = frame["layout"].replace("", DENSE).fillna(DENSE) if "layout" in frame else DENSE
    return frame


@dataclass
class Sweep:
    """The runs of one sweep on one machine: one per shard (a single one when unsharded)."""

    suite: str
    count: int
    parts: dict  # shard index -> (status, rows path, meta)

    @property
    def rows_paths(self):
        return [self.parts[i][1] for i in sorted(self.parts)]

    @property
    def unfinished(self):
        """'I/N status' for each shard not complete: running (or failed, or killed) or never run."""
        return [f"{i}/{self.count} " + (self.parts[i][0] if i in self.parts else "not run")
                for i in range(1, self.count + 1) if i not in self.parts or self.parts[i][0] != "complete"]


def latest_sweeps(machine_dir):
    """suite -> the newest sweep of it under a machine folder, all shards complete preferred; within
    it, each shard's newest run, complete preferred. Shards of one sweep share their config but for
    `shard` (and perf's `shard_offset`)."""
    found = {}  # (suite, sweep config, shard count) -> {index: (rank, status, rows, meta)}
    for meta_path in sorted(Path(machine_dir).glob("runs/*.meta.json")):
        meta = json.loads(meta_path.read_text())
        rows = meta_path.with_name(meta["run_id"] + ".jsonl")
        if not rows.exists():
            continue
        config = meta.get("config", {})
        shard = Shard.parse(config.get("shard", "1/1"))
        sweep = config_hash({k: v for k, v in config.items() if k not in SHARD_FIELDS})
        status = meta.get("status", "running")
        rank = (status == "complete", meta.get("started", ""))
        parts = found.setdefault((meta["suite"], sweep, shard.count), {})
        if shard.index not in parts or rank >= parts[shard.index][0]:
            parts[shard.index] = (rank, status, rows, meta)
    chosen = {}
    for (suite, _, count), parts in found.items():
        done = len(parts) == count and all(p[1] == "complete" for p in parts.values())
        rank = (done, max(p[0][1] for p in parts.values()))
        if suite not in chosen or rank >= chosen[suite][0]:
            chosen[suite] = (rank, Sweep(suite, count, {i: p[1:] for i, p in parts.items()}))
    return {suite: sweep for suite, (_, sweep) in sorted(chosen.items())}
