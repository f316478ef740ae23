"""The parent's end of a side's worker (worker.py): a fresh worker after a death gets the cases it had
prepared prepared again, so one crashing case costs only itself."""
import os
import sys
from pathlib import Path

from ..worker_process import WorkerGone, WorkerProcess

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["SideUnmeasurable", "Worker", "WorkerGone"]


class SideUnmeasurable(RuntimeError):
    """HEAD's harness cannot run against this side's `impls` (an import fails): no case of it is measured."""


class Worker(WorkerProcess):
    def __init__(self, side, folder, threads=None, modules=(), timeout_s=1800.0):
        argv = [sys.executable, "-X", "faulthandler", "-m", "harness.ab.worker", str(folder)]
        argv += ["--threads", str(threads)] if threads else []
        argv += [part for spec in modules for part in ("--backend-module", spec)]
        path = os.pathsep.join(p for p in (str(ROOT), os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        super().__init__(argv, {**os.environ, "PYTHONPATH": path}, timeout_s)
        self.side = side
        self.prepared = {}  # name -> prepare request, replayed into a fresh worker

    def start(self):
        hello = super().start()
        if not hello["ok"]:
            self.close()
            raise SideUnmeasurable(hello["error"])
        if Path(hello["impls"]) != self.side.impls.resolve():
            self.close()
            raise SideUnmeasurable(f"the worker imported impls from {hello['impls']}, not {self.side.impls}")
        for request in self.prepared.values():  # a fresh worker: the group's live cases again
            self.send(request)
            self.answer()
        return hello

    def prepare(self, name, key):
        answer = self.request("prepare", name=name, key=key)
        if answer["ok"] and "refusal" not in answer:
            self.prepared[name] = {"op": "prepare", "name": name, "key": key}
        return answer

    def drop(self, name):
        self.prepared.pop(name, None)

    def forget(self):
        self.prepared.clear()
        if self.alive:
            self.request("forget")
