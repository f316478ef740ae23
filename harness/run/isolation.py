"""Where a sweep's cases run: in this process (the library's default, and the tests'), or in a worker
process that the sweep restarts after a death (the CLI's), so that neither an exception, nor a fatal
signal (SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL), nor a hang stops the sweep.

Both run the same functions (accuracy.accuracy_unit, perf.perf_group) and return the same rows. In
the worker (unit_worker.py) each case announces itself before it starts, so a death or a silence
longer than the case limit is pinned on that case (CaseCrashed). A worker killed by SIGTERM, SIGINT
or SIGHUP was stopped from outside (a job's time limit, Ctrl-C): that is SweepInterrupted, nothing
is recorded, and the next run resumes."""
import os
import sys

from .worker_process import WorkerGone, WorkerProcess

CASE_TIMEOUT_S = 1800.0  # a hang, not a slow case: the full preset's longest cases take minutes


class CaseCrashed(RuntimeError):
    """The case `backend` killed its worker or hung; `why` says how."""

    def __init__(self, backend, why):
        super().__init__(f"{backend}: {why}")
        self.backend, self.why = backend, why


class SweepInterrupted(RuntimeError):
    """The worker was stopped from outside: the sweep ends unrecorded, to be resumed."""


def _function(op):
    from .accuracy import accuracy_unit
    from .perf import perf_group

    return {"accuracy_unit": accuracy_unit, "perf_group": perf_group}[op]


class InProcess:
    """Runs each unit here: exceptions are recorded by the units themselves; a fatal signal ends the sweep."""

    def run(self, op, **fields):
        return _function(op)(**fields)

    def close(self):
        pass


class Isolated:
    """Runs each unit in a long-lived worker (JIT caches kept), started again after a death."""

    def __init__(self, threads=None, case_timeout_s=CASE_TIMEOUT_S):
        argv = [sys.executable, "-X", "faulthandler", "-m", "scanlab.harness.run.unit_worker"]
        argv += ["--threads", str(threads)] if threads else []
        # the worker imports what this process can: scanlab, plugins on the caller's path (and those
        # named by --backend-module, through plugins.MODULES_ENV, which it inherits)
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        # the working folder stays on the path for plugin modules named by import path
        self.worker = WorkerProcess(argv, {**os.environ, "PYTHONPATH": path}, case_timeout_s)

    def run(self, op, **fields):
        started = []
        if not self.worker.alive:
            try:
                hello = self.worker.start()
            except WorkerGone as gone:
                if gone.interrupted:
                    raise SweepInterrupted(str(gone)) from None
                raise RuntimeError(f"the sweep's worker cannot start: {gone}") from None
            if not hello["ok"]:
                raise RuntimeError(f"the sweep's worker cannot start: {hello['error']}")
        try:
            answer = self.worker.request(op, on_progress=started.append, **fields)
        except WorkerGone as gone:
            if gone.interrupted:
                raise SweepInterrupted(str(gone)) from None
            raise CaseCrashed(started[-1] if started else "?", str(gone)) from None
        if not answer["ok"]:  # the harness itself failed, not a kernel: a bug to see, not to record
            raise RuntimeError(f"{op} failed in the worker: {answer['error']}\n{answer.get('traceback', '')}")
        return answer["rows"]

    def close(self):
        self.worker.close()
