"""A scripted fake backend for tests and demos: answers (or fails) per item as told.

``scripted:PATH`` reads a JSON object mapping item index -> answer text, or -> {"error": KIND}
where KIND is an error class name from ``gmai_client.errors`` (e.g. "RateLimited", "AuthError").
From Python, pass any callable ``Request -> str | Response | Exception``. Unlike a mock, it goes
through the whole runner path (prompt, scoring, records, metrics) exactly as a real backend does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gmai_client import errors
from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError
from gmai_client.options import BackendOptions, option
from gmai_client.types import Request, Response

Script = Callable[[Request], "str | Response | Exception"]


def script_from_mapping(answers: Mapping[str, object], default: str | None = None) -> Script:
    def answer(request: Request) -> str | Response | Exception:
        value = answers.get(request.item_index, default)
        if value is None:
            return errors.BadRequest(f"scripted: nothing scripted for index {request.item_index}")
        if isinstance(value, Mapping) and "error" in value:
            kind = getattr(errors, str(value["error"]), None)
            if not (isinstance(kind, type) and issubclass(kind, errors.BackendError)):
                return ConfigError(f"scripted: unknown error kind {value['error']!r}")
            return kind(str(value.get("message", value["error"])))
        return str(value)

    return answer


@dataclass(frozen=True)
class ScriptedOptions(BackendOptions):
    latency: float = option(0.0, "seconds to wait per request", minimum=0, neutral=True)


class ScriptedBackend(Backend):
    """Answers from a script (a JSON file index -> text or {"error": kind}); for tests and demos."""

    name = "scripted"
    Options = ScriptedOptions

    def __init__(self, script: Script, *, latency: float = 0.0, model: str = "scripted"):
        self.script = script
        self.latency = latency
        self.model = model
        self.requests: list[Request] = []

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> ScriptedBackend:
        if not spec.target:
            raise ConfigError("scripted needs a script file: scripted:PATH")
        options = cls.parse_options(spec)
        path = Path(spec.target)
        try:
            answers = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"scripted: cannot read {path}: {exc}") from exc
        return cls(script_from_mapping(answers), latency=options.latency, model=str(path))

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": self.model, "endpoint": ""}

    def cacheable(self) -> bool:
        return False  # answers come from the test's function, which may change between runs

    async def generate(self, request: Request) -> Response:
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        outcome = self.script(request)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome if isinstance(outcome, Response) else Response(outcome, model=self.model)
