"""What a command tells its user while it runs: log lines, and on a terminal a live line with
the phase (building the topology, booting the microVM, warmup, op k of n) and an ETA.

The ETA comes from the α-β model: each op or workload iteration is worth its predicted time,
so the bar moves in predicted seconds and rich's rate turns that into measured time left.
Inside the microVM nothing is drawn: updates go out as `fabric-progress {json}` lines, which
the host reads from the guest's output and draws on its own terminal.
"""
from __future__ import annotations

import json
import sys

MARK = "fabric-progress "


class Progress:
    def __init__(self, quiet: bool = False, forward: bool = False):
        self.quiet, self.forward = quiet, forward
        self._bar = self._task = None
        self._sent = False   # forward: a live line is open on the host
        if not quiet and not forward and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, Progress as Bar, SpinnerColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)

    def log(self, message: str) -> None:
        """A line for the user (stderr), above the live line; nothing with --quiet."""
        if self.quiet:
            return
        if self._bar is not None and self._task is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def phase(self, description: str, total: float | None = None) -> None:
        """Start a phase: a spinner (total None) or a bar of `total` units."""
        self._send({"phase": description, "total": total})
        if self._bar is None:
            return
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(description, total=total)
        else:
            self._bar.reset(self._task, total=total, description=description)

    def update(self, completed: float, description: str | None = None) -> None:
        self._send({"completed": completed, "description": description})
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed, description=description or None)

    def feed(self, line: str) -> bool:
        """Host side: draw a guest's progress line; False when the line is not one."""
        if not line.startswith(MARK):
            return False
        try:
            msg = json.loads(line[len(MARK):])
        except ValueError:
            return False
        if "phase" in msg:
            self.phase(msg["phase"], msg["total"])
        elif msg.get("done"):
            self.close()
        else:
            self.update(msg["completed"], msg["description"])
        return True

    def close(self) -> None:
        """End the live line (before the table, so it prints on a clean terminal)."""
        if self.forward and self._sent:
            self._send({"done": True})
            self._sent = False
        if self._bar is not None and self._task is not None:
            self._bar.stop()
            self._task = None

    def _send(self, msg: dict) -> None:
        if self.forward and not self.quiet:
            print(MARK + json.dumps(msg), file=sys.stderr, flush=True)
            self._sent = True
