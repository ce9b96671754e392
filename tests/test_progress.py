"""The progress display: what it prints for a note, on a terminal and in a log."""

from __future__ import annotations

import io

from rich.console import Console

from gmai_client.errors import register_secret
from gmai_client.progress import PlainProgress, RichProgress


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
