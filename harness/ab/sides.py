"""The parent's end of a side's worker (worker.py): a fresh worker after a death gets the cases it had
prepared prepared again, so one crashing case costs only itself."""
import os
import sys
from pathlib import Path

from ..run.worker_process import WorkerGone, WorkerProcess

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["SideUnmeasurable", "Worker", "WorkerGone"]


class SideUnmeasurable(RuntimeError):
    """HEAD's harness cannot run against this side's `impls` (an import fails): no case of it is measured."""


class Worker(WorkerProcess):
    def __init__(self, side, folder, threads=None, modules=(), timeout_s=1800.0):
        argv = [sys.executable, "-X", "faulthandler", "-m", "scanlab.harness.ab.worker", str(folder)]
        argv += ["--threads", str(threads)] if threads else []
        argv += [part for spec in modules for part in ("--backend-module", spec)]
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        # scanlab.harness is HEAD's (the installed scanlab, as in this process); the working folder stays
        # on the path for plugin modules named by import path
        super().__init__(argv, {**os.environ, "PYTHONPATH": path}, timeout_s)
        self.side = side
        self.prepared = {}  # name -> prepare request, replayed into a fresh worker
        self.lost = {}  # name -> why a replayed case is no longer timed (failed, raised or crashed on replay)

    def start(self):
        hello = super().start()
        if not hello["ok"]:
            self.close()
            raise SideUnmeasurable(hello["error"])
        for what, found, wanted in (("impls", hello["impls"], self.side.impls), ("harness", hello["harness"], ROOT / "harness")):
            if Path(found) != Path(wanted).resolve():
                self.close()
                raise SideUnmeasurable(f"the worker imported {what} from {found}, not {wanted}")
        for name, request in list(self.prepared.items()):  # a fresh worker: the group's live cases again
            self.send(request)
            try:
                answer = self.answer()
            except WorkerGone as gone:  # this replay killed it: that case is the culprit
                self._lose(name, f"crashed when prepared again: {gone}")
                return self.start()
            failed = [v for v in answer.get("verdicts", ()) if not v["passed"]]
            if not answer["ok"] or "refusal" in answer or failed:
                self._lose(name, "prepared again after its worker restarted, it "
                           + (f"raised: {answer['error']}" if not answer["ok"] else "no longer passes its check"))
        return hello

    def _lose(self, name, why):
        self.prepared.pop(name, None)
        self.lost[name] = why

    def prepare(self, name, key, check=True):
        answer = self.request("prepare", name=name, key=key, check=check)
        if answer["ok"] and "refusal" not in answer and all(v["passed"] for v in answer["verdicts"]):
            self.prepared[name] = {"op": "prepare", "name": name, "key": key, "check": check}
        return answer

    def drop(self, name):
        self.prepared.pop(name, None)

    def forget(self):
        self.prepared.clear()
        self.lost.clear()
        if self.alive:
            try:
                self.request("forget")
            except WorkerGone:
                pass  # the next group starts a fresh worker
