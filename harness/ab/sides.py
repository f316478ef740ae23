"""The parent's end of a side's worker (worker.py): requests with a time limit, and a fresh worker
after a death, with the cases it had prepared prepared again, so one crashing case costs only itself."""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300  # imports, plugins, JAX start-up; a numba cache miss compiles later, per case


class WorkerGone(RuntimeError):
    """The worker died (a signal, an exit) or gave no answer in time: the request in flight caused it."""


class SideUnmeasurable(RuntimeError):
    """HEAD's harness cannot run against this side's `impls` (an import fails): no case of it is measured."""


def _death(code):
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Worker:
    def __init__(self, side, folder, threads=None, modules=(), timeout_s=900.0):
        self.side, self.folder, self.timeout_s = side, Path(folder), timeout_s
        self.argv = [sys.executable, "-X", "faulthandler", "-m", "harness.ab.worker", str(folder)]
        self.argv += ["--threads", str(threads)] if threads else []
        self.argv += [part for spec in modules for part in ("--backend-module", spec)]
        self.process = self.hello = None
        self.prepared = {}  # name -> prepare request, replayed into a fresh worker
        self.starts = 0

    def _start(self):
        path = os.pathsep.join(p for p in (str(ROOT), os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env={**os.environ, "PYTHONPATH": path})
        self.answers = queue.Queue()
        threading.Thread(target=_read_lines, args=(self.process.stdout, self.answers), daemon=True).start()
        self.starts += 1
        hello = self.hello = self._answer(START_TIMEOUT_S)
        if not hello["ok"]:
            self.close()
            raise SideUnmeasurable(hello["error"])
        if Path(hello["impls"]) != self.side.impls.resolve():
            self.close()
            raise SideUnmeasurable(f"the worker imported impls from {hello['impls']}, not {self.side.impls}")
        for request in self.prepared.values():  # a fresh worker: the group's live cases again
            self._send(request)
            self._answer(self.timeout_s)

    def _send(self, request):
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: _answer reads the end of its output and says how

    def _answer(self, timeout_s):
        try:
            line = self.answers.get(timeout=timeout_s)
        except queue.Empty:
            self.close()
            raise WorkerGone(f"hung: no answer in {timeout_s:g} s, worker killed") from None
        if line is None:
            code = self.process.wait()
            raise WorkerGone(f"{_death(code)}{self._stderr_tail()}")
        return json.loads(line)

    def _stderr_tail(self, lines=12):
        self.log.seek(0)
        tail = [line for line in self.log.read().splitlines() if line.strip()][-lines:]
        return (": " + " / ".join(line.strip() for line in tail)) if tail else ""

    def request(self, op, **fields):
        """The worker's answer (a dict with `ok`); WorkerGone if it died or hung on this request, after
        which the next request starts a fresh worker."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        request = {"op": op, **fields}
        self._send(request)
        return self._answer(self.timeout_s)

    def prepare(self, name, key):
        answer = self.request("prepare", name=name, key=key)
        if answer["ok"] and "refusal" not in answer:
            self.prepared[name] = {"op": "prepare", "name": name, "key": key}
        return answer

    def drop(self, name):
        self.prepared.pop(name, None)

    def forget(self):
        self.prepared.clear()
        if self.process is not None and self.process.poll() is None:
            self.request("forget")

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _read_lines(stream, answers):
    for line in stream:
        answers.put(line)
    answers.put(None)
