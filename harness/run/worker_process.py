"""The parent's end of a worker process that answers JSON-line requests (ab's sides, isolated sweeps):
requests with a time limit between messages, progress messages, and a description of a death.

A request's answer is one line with `ok`; before it the worker may send `{"progress": ...}` lines
(the case it is starting), each of which restarts the clock, so the limit is per case, not per unit.
A worker that dies or stays silent past the limit raises WorkerGone, saying how (the signal, the exit
status, the end of its stderr, where faulthandler writes the Python stack of a fatal signal); the
next request starts a fresh one."""
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time

# a worker killed by one of these was stopped from outside (a job's time limit, Ctrl-C): the run is
# interrupted, not the case crashed
INTERRUPTS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
POLL_S = 1.0  # how often a silent worker is checked for having exited


class WorkerGone(RuntimeError):
    """The worker died or hung on the request in flight; `signal` is the one that killed it, if any."""

    def __init__(self, why, killed_by=None):
        super().__init__(why)
        self.killed_by = killed_by

    @property
    def interrupted(self):
        return self.killed_by in INTERRUPTS


def death(code):
    """(text, signal or None) for a worker's exit status."""
    if code is not None and code < 0:
        try:
            killed_by = signal.Signals(-code)
        except ValueError:
            return f"killed by signal {-code}", None
        hint = " (out of memory?)" if killed_by == signal.SIGKILL else ""
        return f"killed by {killed_by.name}{hint}", killed_by
    return f"exited with status {code}", None


class WorkerProcess:
    def __init__(self, argv, env=None, timeout_s=1800.0, start_timeout_s=300.0, cwd=None):
        self.argv, self.env, self.cwd = argv, env, cwd
        self.timeout_s, self.start_timeout_s = timeout_s, start_timeout_s
        self.process = self.hello = None
        self.starts = 0

    @property
    def alive(self):
        return self.process is not None and self.process.poll() is None

    def start(self):
        """A fresh worker; its first line (`hello`) is returned."""
        self.close()
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=self.env, cwd=self.cwd)
        self.answers = queue.Queue()
        threading.Thread(target=_read_lines, args=(self.process.stdout, self.answers), daemon=True).start()
        self.starts += 1
        self.hello = self._line(self.start_timeout_s)
        return self.hello

    def send(self, request):
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: reading its answer says how

    def request(self, op, on_progress=None, **fields):
        """The answer to one request (a dict with `ok`); `on_progress` sees each progress message."""
        if not self.alive:
            self.start()
        self.send({"op": op, **fields})
        return self.answer(on_progress)

    def answer(self, on_progress=None):
        while True:
            message = self._line(self.timeout_s)
            if "progress" not in message:
                return message
            if on_progress is not None:
                on_progress(message["progress"])

    def _line(self, timeout_s):
        """The next message. The worker's exit is watched too, not only the end of its output: a child
        it forked may hold the pipe open after it died."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.answers.get(timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
                break
            except queue.Empty:
                if self.process.poll() is not None and self.answers.empty():
                    line = None
                    break
                if time.monotonic() >= deadline:
                    self.close()
                    raise WorkerGone(f"hung: no answer in {timeout_s:g} s, worker killed") from None
        if line is None:
            why, killed_by = death(self.process.wait())
            raise WorkerGone(why + self._stderr_tail(), killed_by)
        return json.loads(line)

    def _stderr_tail(self, lines=40):
        """What the worker said last: from faulthandler's "Fatal Python error" on when there is one (the
        innermost frame, the kernel's, comes first), else its last lines."""
        self.log.seek(0)
        said = [line.strip() for line in self.log.read().splitlines() if line.strip()]
        fatal = max((i for i, line in enumerate(said) if line.startswith("Fatal Python error")), default=None)
        tail = said[fatal:fatal + lines] if fatal is not None else said[-12:]
        return (": " + " / ".join(tail)) if tail else ""

    def close(self):
        if self.alive:
            self.process.kill()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # stuck in the kernel (a wedged driver): left to the OS
                pass


def _read_lines(stream, answers):
    for line in stream:
        answers.put(line)
    answers.put(None)


def answer_stream():
    """In the worker: a copy of stdout for the answers, with stdout itself pointed at stderr, so that a
    kernel that prints, from Python or from C, cannot corrupt them."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import sys

    sys.stdout = sys.stderr
    return out
