"""The progress display: a rich live bar per model on a terminal, plain periodic lines elsewhere.

The runner only calls ``add_model``/``advance``/``set_total``/``note``/``status``; how it is shown
is decided here. ``status`` carries what a model is waiting on (a rate limit, a backoff), so a
slow run never looks stuck; a model in batch mode shows its batches there (``batch_status``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gmai_client.errors import redact


def batch_status(submitted: int, in_progress: int, done: int, answered: int) -> str:
    """The status of a model in batch mode: its batches sent, still in progress and collected, and
    the items their results answered so far."""
    return f"batches: {submitted} sent, {in_progress} in progress, {done} done; {answered} items answered"


class ModelTrack(Protocol):
    def advance(self, *, error: bool = False, skipped: bool = False) -> None: ...
    def set_total(self, total: int) -> None: ...
    def status(self, text: str) -> None: ...


class ProgressReporter(Protocol):
    def add_model(self, label: str) -> ModelTrack: ...
    def note(self, label: str, message: str) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...


@dataclass
class _Counts:
    label: str
    done: int = 0
    errors: int = 0
    skipped: int = 0
    total: int | None = None
    state: str = ""
    started: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    @property
    def nothing_sent(self) -> bool:
        """Every item so far was done in an earlier run (a rerun of a finished run sends nothing)."""
        return self.done > 0 and self.done == self.skipped

    def rate_text(self) -> str:
        """Items per second of this run's own items: none when it had none (a rate of 0.0 would look stuck)."""
        return "" if self.nothing_sent else f"{self.rate():.1f} it/s"

    def state_text(self) -> str:
        """What the model waits on, after what an earlier run had done."""
        earlier = ""
        if self.nothing_sent:
            earlier = "already done in an earlier run: nothing sent"
        elif self.skipped:
            earlier = f"{self.skipped} from an earlier run"
        return "; ".join(part for part in (earlier, self.state) if part)


class _RichTrack:
    def __init__(self, progress: Progress, counts: _Counts):
        self._progress, self.counts = progress, counts
        # The columns are rich markup: a label or a status with brackets ("m[v2]") prints as text.
        self._task = progress.add_task(escape(counts.label), total=None, errors=0, rate="", state="")

    def advance(self, *, error: bool = False, skipped: bool = False) -> None:
        self.counts.done += 1
        self.counts.errors += error
        self.counts.skipped += skipped
        self._refresh(advance=1)

    def set_total(self, total: int) -> None:
        self.counts.total = total
        self._progress.update(self._task, total=total)

    def status(self, text: str) -> None:
        self.counts.state = text
        self._refresh()

    def _refresh(self, advance: int = 0) -> None:
        self._progress.update(
            self._task,
            advance=advance,
            errors=self.counts.errors,
            rate=self.counts.rate_text(),
            state=escape(self.counts.state_text()),
        )


class RichProgress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]} err"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("[yellow]{task.fields[state]}"),
            console=self.console,
            transient=False,
        )

    def add_model(self, label: str) -> ModelTrack:
        return _RichTrack(self._progress, _Counts(label))

    def note(self, label: str, message: str) -> None:
        # Notes carry vendor text (a stop reason) and paths: keys out, brackets printed as text.
        self._progress.console.print(f"[yellow]{escape(label)}[/]: {escape(redact(message))}", highlight=False)

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


class _PlainTrack:
    def __init__(self, owner: PlainProgress, counts: _Counts):
        self._owner, self.counts = owner, counts

    def advance(self, *, error: bool = False, skipped: bool = False) -> None:
        self.counts.done += 1
        self.counts.errors += error
        self.counts.skipped += skipped
        self._owner.maybe_print()

    def set_total(self, total: int) -> None:
        self.counts.total = total

    def status(self, text: str) -> None:
        self.counts.state = text


class PlainProgress:
    """One line per model every ``interval`` seconds (and at the end): for logs and pipes."""

    def __init__(self, interval: float = 10.0, stream: Any = None):
        self.interval = interval
        self.stream = stream or sys.stderr
        self.tracks: list[_PlainTrack] = []
        self._last = time.monotonic()

    def add_model(self, label: str) -> ModelTrack:
        track = _PlainTrack(self, _Counts(label))
        self.tracks.append(track)
        return track

    def note(self, label: str, message: str) -> None:
        print(f"[{label}] {redact(message)}", file=self.stream, flush=True)

    def maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        for track in self.tracks:
            c = track.counts
            total = f"/{c.total}" if c.total is not None else ""
            state = f" ({c.state})" if c.state else ""
            if c.nothing_sent:
                line = f"[{c.label}] {c.done}{total} items already done in an earlier run: nothing sent{state}"
            else:
                earlier = f" ({c.skipped} done in an earlier run)" if c.skipped else ""
                line = f"[{c.label}] {c.done}{total} items{earlier}, {c.rate_text()}, {c.errors} errors{state}"
            print(line, file=self.stream, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.maybe_print(force=True)


class SilentProgress:
    def add_model(self, label: str) -> ModelTrack:
        return _PlainTrack(PlainProgress(interval=float("inf")), _Counts(label))

    def note(self, label: str, message: str) -> None:
        return None

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def make_progress(*, enabled: bool = True) -> ProgressReporter:
    if not enabled:
        return SilentProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainProgress()
