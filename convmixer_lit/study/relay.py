"""A child's console output into its log file, with progress-bar redraws thinned to one line every few seconds (a
bar redraws itself many times a second with `\\r`, which would make a log of megabytes)."""

from __future__ import annotations

import time
from collections import deque
from typing import IO


class OutputRelay:
    """Copies a child's output to its log, keeping progress-bar redraws (`\\r`) to one line every few seconds.

    Also echoes the latest progress line to the console now and then (unless `echo_every_s` is None), so a study in
    the background shows life; `progress` holds that line for a caller that shows several runs at once.
    """

    def __init__(self, log: IO[str], label: str, log_every_s: float = 10.0,
                 echo_every_s: float | None = 60.0) -> None:
        self.log, self.label = log, label
        self.log_every_s, self.echo_every_s = log_every_s, echo_every_s
        self.pending = ""
        self.progress = ""
        self.last_log = self.last_echo = time.monotonic()
        self.tail: deque[str] = deque(maxlen=30)

    def feed(self, text: str) -> None:
        self.pending += text
        while True:
            cut = min((i for i in (self.pending.find("\n"), self.pending.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            piece, sep, self.pending = self.pending[:cut], self.pending[cut], self.pending[cut + 1:]
            if sep == "\n":
                self._line(piece)
            elif piece.strip():
                self._progress(piece.strip())

    def _line(self, line: str) -> None:
        if self.progress and line.strip().startswith(self.progress[:20]):
            self.progress = ""  # the bar's final state, printed once with a newline
        self.log.write(line + "\n")
        self.log.flush()
        if line.strip():
            self.tail.append(line.strip())

    def _progress(self, line: str) -> None:
        self.progress = line
        now = time.monotonic()
        if now - self.last_log >= self.log_every_s:
            self.log.write(line + "\n")
            self.log.flush()
            self.last_log = now
        if self.echo_every_s is not None and now - self.last_echo >= self.echo_every_s:
            print(f"    {self.label} | {line}", flush=True)
            self.last_echo = now

    def close(self) -> None:
        if self.pending.strip():
            self._line(self.pending)
        self.pending = ""
