"""Dispatch a sweep's shards to machines through submitit: SLURM on a cluster, subprocesses here.

One job per (machine kind, shard). A machine kind is a SLURM partition (each kind of node its own
partition, as clusters are usually laid out); without SLURM there is one kind, this machine. Each
job runs the sweep's command line with `--shard I/N --skip-complete`, so it writes its records
under reports/<machine_id>/ as a hand-run shard does, and a job submitted again redoes nothing a
finished shard did and resumes an unfinished one where it stopped.

Timing jobs never share a machine: on SLURM a perf job takes its node whole (`--exclusive`); on
the local executor perf shards run one after another. Accuracy shards measure errors, not time,
and run side by side.

submitit rather than Ray or Dask: the job here is "run this command line on that kind of node",
which is what sbatch does, and submitit is sbatch from Python (a job folder, logs, states, a
local executor that behaves the same), with no cluster service to start; Ray and Dask schedule
tasks inside a cluster they run themselves, which SLURM sites would have to host first.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

from .shard import Shard

TIMING_SUITES = ("perf",)
ALL_DEVICES = "all"
# A local job runs on this machine for as long as it takes: submitit's local default (2 minutes, its
# controller's 5) killed the README's own `submit accuracy --preset full` every few minutes.
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


class Command:
    """A command line as a submitit job: its output goes to the job's log; a cancelled or
    timed-out job kills it (submitit interrupts the job's Python process, not its children)."""

    def __init__(self, argv, cwd, devices=None):
        self.argv, self.cwd = [str(a) for a in argv], str(cwd)
        self.devices = devices  # CUDA_VISIBLE_DEVICES for the command (None: as the job has it; "all": unset)

    def __call__(self):
        print("running:", " ".join(self.argv), flush=True)
        env = dict(os.environ)
        if self.devices == ALL_DEVICES:
            env.pop("CUDA_VISIBLE_DEVICES", None)
        elif self.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.devices
        process = subprocess.Popen(self.argv, cwd=self.cwd, stderr=subprocess.PIPE, text=True, env=env)
        last = ""
        try:
            for line in process.stderr:  # to the job's log as it comes; the last line says why it failed
                sys.stderr.write(line)
                last = line.strip() or last
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code:
            raise RuntimeError(f"exit status {code}: {last}")
        return code


@dataclass
class ShardJob:
    kind: str  # the partition, or "local"
    shard: Shard
    job: object  # a submitit Job

    def outcome(self):
        """'done', 'running', or 'failed: <why>' (a cancelled or killed job is failed)."""
        if not self.job.done():
            return "running"
        error = self.job.exception()
        if error is None:
            return "done"
        if re.search(r"\bTIMEOUT\b|timed-out", str(error)):  # SLURM's state, or submitit's local timeout
            return "failed: timed out at its time limit (submit again: it resumes where it stopped)"
        # submitit wraps the job's exception in its traceback: its last "SomeError: why" line says why
        reasons = re.findall(r"^\w+(?:Error|Exception|Interrupt)\b:?\s*(.*)$", str(error), re.MULTILINE)
        return "failed: " + (reasons[-1] if reasons and reasons[-1] else type(error).__name__)

    def log(self):
        return self.job.paths.stderr


def executor(folder, cluster=None):
    """submitit's AutoExecutor: `cluster` None picks SLURM where srun is found, else local. A
    ValueError naming the cluster where it is not to be had here."""
    import submitit

    try:
        return submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as error:  # submitit's SLURM executor on a machine without srun
        raise ValueError(f"no {cluster} executor here: {error}") from None


def submit_shards(pool, argv, suite, count, partitions=(None,), gpus_per_node=None, cpus_per_task=None,
                  timeout_min=None, mem_gb=None, python=sys.executable, cwd=".", wait=None):
    """Submit `count` shards of the sweep `argv` (run_bench.py's arguments, no --shard) for each
    partition to the executor `pool`; a list of ShardJob. Local perf shards run one after another,
    so this returns when the last has ended; `wait` also waits for the others."""
    local = pool.cluster != "slurm"
    timing = suite in TIMING_SUITES
    # a local job sees the devices its caller sees (submitit's local executor would blank
    # CUDA_VISIBLE_DEVICES without gpus_per_node, and a GPU sweep would silently time the CPU)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", ALL_DEVICES) if local else None
    jobs = []
    for partition in partitions:
        for index in range(1, count + 1):
            shard = Shard(index, count)
            pool.update_parameters(name=f"scanlab-{suite}-{index}of{count}",
                                   timeout_min=timeout_min or (LOCAL_TIMEOUT_MIN if local else None),
                                   gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, mem_gb=mem_gb,
                                   slurm_partition=partition, slurm_exclusive=True if timing else None)
            command = Command([python, "-m", "scanlab.run_bench", *argv, "--shard", str(shard), "--skip-complete", "--no-progress"], cwd,
                              devices)
            job = ShardJob(partition or ("local" if local else "default"), shard, pool.submit(command))
            jobs.append(job)
            if local and timing:
                job.job.wait()
    if wait or local:
        for job in jobs:
            job.job.wait()
    return jobs


def summary(jobs):
    """One line per job, failed ones with their log, and what to do about them."""
    lines = [f"{j.kind} shard {j.shard}: {j.outcome()}" + ("" if j.outcome() in ("done", "running")
                                                            else f" (log: {j.log()})") for j in jobs]
    if any(j.outcome().startswith("failed") for j in jobs):
        lines.append("submit the same command again: finished shards are skipped, the others resume where they "
                     "stopped")
    return "\n".join(lines)


def cluster_of(name: Optional[str]):
    """The --executor flag as submitit's cluster name (None: choose)."""
    return {"auto": None, "local": "local", "slurm": "slurm"}[name]
