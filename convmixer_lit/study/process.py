"""One `python -m convmixer_lit.fit ...` child process: its output relayed into its log by a thread (so several can
run at once), and stopped the way a study is stopped.

Each run is its own process so that a crash or a leak ends one run, not the study.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from convmixer_lit.study.relay import OutputRelay


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the study is: it stops like a Ctrl+C, and the running fits get the SIGTERM."""


def on_sigterm(signum, frame) -> None:
    raise Terminated()


def failure_reason(tail: list[str]) -> str:
    """The line that says why a fit failed: its last `error:` line (fit's one-line errors), else its last line."""
    errors = [line for line in tail if line.startswith("error:")]
    return (errors[-1] if errors else tail[-1] if tail else "no output").removeprefix("error: ")


class FitProcess:
    """A `fit` child writing into `log` (appended to, after a header with the command and the time).

    `env` is added to this process's environment; `cpus`, where given, is the set of cores the child may run on.
    `echo` lets the relay print the child's progress line to the console every minute (one run at a time only).
    """

    def __init__(self, argv: list[str], log: Path, label: str, env: dict[str, str] | None = None,
                 cpus: list[int] | None = None, echo: bool = True, cwd: str | None = None) -> None:
        self.argv, self.log_path, self.label = argv, log, label
        self.env, self.cpus, self.echo, self.cwd = env or {}, cpus, echo, cwd
        self.proc: subprocess.Popen | None = None
        self.relay: OutputRelay | None = None
        self.started = 0.0
        self._pump: threading.Thread | None = None

    def start(self) -> FitProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a", encoding="utf-8")  # closed by the pump thread when the child's output ends
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')}  {shlex.join(['python', *self.argv])}\n")
        log.flush()
        self.relay = OutputRelay(log, self.label, echo_every_s=60.0 if self.echo else None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, *self.argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env}, cwd=self.cwd)
        if self.cpus is not None:  # before the child has imported torch, so every thread it starts inherits the set
            os.sched_setaffinity(self.proc.pid, self.cpus)
        self._pump = threading.Thread(target=self._relay_output, args=(log,), name=f"relay {self.label}",
                                      daemon=True)
        self._pump.start()
        return self

    def _relay_output(self, log) -> None:
        try:
            while chunk := self.proc.stdout.read1(1 << 16):
                self.relay.feed(chunk.decode("utf-8", errors="replace"))
            self.relay.close()
        finally:
            log.close()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self) -> tuple[int, list[str]]:
        """The child's exit code and its last lines of output, once it has ended and its output is in the log.

        Waits for the end of the output first: a signal handler may then stop the child from within this wait (a
        SLURM job's checkpoint does), which Popen.wait would deadlock on, as it holds a lock while it blocks."""
        self._pump.join()
        return self.proc.wait(), list(self.relay.tail)

    def stop(self, terminated: bool) -> None:
        """End the child as the study is being ended: a SIGTERM (kill, a batch scheduler) reached only us, so pass
        it on; a Ctrl+C in a terminal reached the child too, so give it time to save and exit, then make sure."""
        if self.proc.poll() is None:
            if terminated:
                self.proc.send_signal(signal.SIGTERM)
            else:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(signal.SIGINT)
        self.wait()
