"""Progress output of the demo: one timestamped line per step, indented command output."""

from __future__ import annotations

import sys
import time
from typing import NoReturn, TextIO


class DemoFailed(Exception):
    """A step of the demo did not produce what it should; the message says which and why."""


class Reporter:
    def __init__(self, out: TextIO | None = None, *, interactive: bool = False) -> None:
        self.out = out or sys.stdout
        self.interactive = interactive
        self.t0 = time.monotonic()
        self.acts = 0

    def _stamp(self) -> str:
        wall = time.strftime("%H:%M:%S", time.gmtime())
        return f"[{time.monotonic() - self.t0:6.1f}s {wall}]"

    def step(self, text: str) -> None:
        print(f"{self._stamp()} {text}", file=self.out, flush=True)

    def act(self, title: str) -> None:
        """A new act of the narrative (pauses first on a terminal)."""
        self.acts += 1
        if self.interactive and self.acts > 1:
            try:
                input("\n   ... press Enter to continue ")
            except EOFError:
                self.interactive = False
        print(f"{self._stamp()} === {title}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            print(f"{'':20}| {line}", file=self.out)
        self.out.flush()

    def fail(self, text: str) -> NoReturn:
        raise DemoFailed(text)
