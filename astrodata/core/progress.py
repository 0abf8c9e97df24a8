"""One progress style for every long stage: rich bars on a terminal, plain lines in a log.

rich's live bars redraw one screen region, which a log file or a cluster job's output cannot
show: there, `RunProgress` draws nothing live and instead prints one plain line per task every
`interval_s` seconds (`stage: done/total (pct), rate/s, ETA, N failures`), and a last line when
it stops. Given a `Run`, it also writes the tasks' state to the run's status file
(`Workspace.Run.write_status`) at the same pace, which `astrodata status` reads while the run
holds the catalog. A task's failures are its `failures` field (`progress.update(task, failures=n)`).

Written on rich's `Progress` (it already tracks completion, speed and time remaining); only the
plain-line printer and the status file are ours, as rich has neither.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task

from astrodata.core.workspace import Run

DEFAULT_INTERVAL_S = float(os.environ.get("ASTRODATA_PROGRESS_INTERVAL", "10"))
_stderr = Console(stderr=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plain_line(task: Task) -> str:
    """`description: done/total (pct), rate/s, ETA h:mm:ss, N failures` for one task."""
    done = int(task.completed)
    parts = [f"{task.description}: {done}/{int(task.total)} ({100 * done / task.total:.0f}%)" if task.total
             else f"{task.description}: {done}"]
    parts.append(f"{task.speed:.2f}/s" if task.speed else "-/s")
    if task.total:
        parts.append(f"ETA {_duration(task.time_remaining)}")
    parts.append(f"{task.fields.get('failures', 0)} failures")
    return ", ".join(parts)


class RunProgress(Progress):
    """rich's `Progress` that falls back to plain timed lines off a terminal and reports to a run."""

    def __init__(self, *columns: str | ProgressColumn, console: Console | None = None, enabled: bool = True,
                 run: Run | None = None, interval_s: float = DEFAULT_INTERVAL_S, **kwargs: Any):
        console = console or _stderr
        self.plain = enabled and not console.is_terminal
        self.run = run
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        super().__init__(*columns, console=console, disable=not enabled or self.plain, **kwargs)

    def start(self) -> None:
        super().start()
        if (self.plain or self.run is not None) and self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="progress-lines", daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
            self.report()
        super().stop()

    def report(self) -> None:
        """Print the plain lines (off a terminal) and write the run's status file, now."""
        with self._lock:
            tasks = list(self._tasks.values())
        if self.plain:
            for task in tasks:
                self.console.print(plain_line(task), highlight=False, soft_wrap=True)
        if self.run is not None:
            self.run.write_status("running", {t.description: {
                "done": int(t.completed), "total": None if t.total is None else int(t.total),
                "failures": int(t.fields.get("failures", 0)), "rate_per_s": round(t.speed or 0.0, 3),
                "eta_s": None if t.time_remaining is None else round(t.time_remaining)} for t in tasks})

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()
