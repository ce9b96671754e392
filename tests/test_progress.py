"""The progress display: what it prints for a note, on a terminal and in a log."""

from __future__ import annotations

import io
import re

from rich.console import Console

from gmai_client.errors import register_secret
from gmai_client.runner.progress import PlainProgress, RichProgress


def test_notes_print_brackets_as_text_and_no_key() -> None:
    key = "cred-PROGRESS-0123456789"
    register_secret(key)
    reason = f"stopped: 401 from http://h/v1 [model m[v2]] key {key} refused"

    buffer = io.StringIO()
    rich = RichProgress(Console(file=buffer, width=200, force_terminal=False))
    with rich:
        track = rich.add_model("m[v2]")
        track.status("waiting [rate limit]")
        rich.note("m[v2]", reason)
    plain_stream = io.StringIO()
    PlainProgress(stream=plain_stream).note("m[v2]", reason)

    for printed in (buffer.getvalue(), plain_stream.getvalue()):
        assert "m[v2]" in printed and "[model m[v2]]" in printed  # not swallowed as markup
        assert key not in printed and "[REDACTED]" in printed


def test_a_rerun_of_a_finished_run_says_its_items_were_already_done() -> None:
    plain_stream, buffer = io.StringIO(), io.StringIO()
    plain, rich = PlainProgress(stream=plain_stream), RichProgress(Console(file=buffer, width=200))
    for progress in (plain, rich):
        with progress:
            track = progress.add_model("m")
            track.set_total(300)
            for _ in range(300):
                track.advance(skipped=True)
    for printed in (plain_stream.getvalue(), buffer.getvalue()):
        assert "300/300" in printed and "already done in an earlier run" in printed, printed
        assert "0.0 it/s" not in printed


def test_a_resumed_run_counts_the_items_of_the_earlier_run_apart() -> None:
    stream = io.StringIO()
    with PlainProgress(stream=stream) as progress:
        track = progress.add_model("m")
        track.set_total(10)
        for number in range(10):
            track.advance(skipped=number < 4, error=number == 9)
    (line,) = stream.getvalue().splitlines()
    assert re.fullmatch(r"\[m\] 10/10 items \(4 done in an earlier run\), [0-9.]+ it/s, 1 errors", line), line
