"""Token prices: a dated table shipped as data, overridable by the user's own file or per model.

``gmai_client/data/prices.json`` holds list prices per 1M input and output tokens by
``backend:model`` (the longest matching prefix wins: ``openai:gpt-4o-2024-08-06`` is priced as
``openai:gpt-4o``, ``openai:gpt-4o-mini`` as itself), the date they were copied (``as_of``) and the
batch discount per provider. A cloud deployment named otherwise than its model is priced as the
model its ``-B model=`` option names (``azure:my-deployment`` with ``-B model=gpt-4o`` as
``azure:gpt-4o``). A user's file of the same shape (``--prices FILE`` or
``$GMAI_CLIENT_PRICES``) is laid over it; ``-B price_in=`` / ``-B price_out=`` price one model.
Every price says where it came from and how old it is, because prices change.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from gmai_client.errors import ConfigError

PRICES_ENV = "GMAI_CLIENT_PRICES"


@dataclass(frozen=True)
class Price:
    input_per_m: float  # per 1M input tokens
    output_per_m: float  # per 1M output tokens
    batch_discount: float  # the batch price is this fraction of the live one
    source: str  # where the price came from, for the output
    as_of: date | None = None

    def cost(self, input_tokens: float, output_tokens: float, *, batch: bool = False) -> float:
        factor = self.batch_discount if batch else 1.0
        return factor * (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6

    def age_days(self, today: date | None = None) -> int | None:
        return None if self.as_of is None else ((today or date.today()) - self.as_of).days


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, tuple[float, float]]  # "backend:model" -> (input, output) per 1M tokens
    batch_discount: Mapping[str, float]
    as_of: date | None
    source: str
    overrides: Mapping[str, str] = field(default_factory=dict)  # model key -> the file it came from

    def price(self, backend: str, model: str, options: Mapping[str, str] | None = None) -> Price | None:
        """The price of ``backend:model``; ``price_in`` / ``price_out`` options override it."""
        discount = self.batch_discount.get(backend, 1.0)
        options = options or {}
        if "price_in" in options or "price_out" in options:
            return Price(_number(options, "price_in"), _number(options, "price_out"), discount, "-B price_in/price_out")
        wanted = f"{backend}:{options.get('model') or model}".lower()
        matches = [key for key in self.models if wanted.startswith(key.lower())]
        if not matches:
            return None
        key = max(matches, key=len)
        source = self.overrides.get(key, self.source)
        as_of = None if key in self.overrides else self.as_of
        return Price(*self.models[key], discount, f"{source} ({key})", as_of)


def load_prices(user_file: Path | None = None) -> PriceTable:
    """The shipped table, with the user's file (argument or ``$GMAI_CLIENT_PRICES``) laid over it."""
    shipped_path = importlib.resources.files("gmai_client") / "data" / "prices.json"
    shipped = _parse(json.loads(shipped_path.read_text(encoding="utf-8")), "gmai_client/data/prices.json")
    user_file = user_file or (Path(os.environ[PRICES_ENV]) if os.environ.get(PRICES_ENV) else None)
    if user_file is None:
        return shipped
    try:
        data = json.loads(Path(user_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"prices file {user_file}: cannot read it ({exc})") from None
    user = _parse(data, str(user_file))
    label = f"{user_file}" + (f", as of {user.as_of}" if user.as_of else "")
    return PriceTable(
        models={**shipped.models, **user.models},
        batch_discount={**shipped.batch_discount, **user.batch_discount},
        as_of=shipped.as_of,
        source=shipped.source,
        overrides={key: label for key in user.models},
    )


def _parse(data: Any, where: str) -> PriceTable:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(
            f"prices file {where}: expected {{'models': {{'backend:model': {{'input': .., 'output': ..}}}}}}"
        )
    models = {}
    for key, entry in data["models"].items():
        try:
            models[str(key)] = (float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise ConfigError(f"prices file {where}: model {key!r} needs numeric 'input' and 'output'") from None
    as_of = None
    if data.get("as_of"):
        try:
            as_of = date.fromisoformat(str(data["as_of"]))
        except ValueError:
            raise ConfigError(f"prices file {where}: as_of {data['as_of']!r} is not a YYYY-MM-DD date") from None
    discount = {str(k): float(v) for k, v in (data.get("batch_discount") or {}).items()}
    source = where + (f", as of {as_of}" if as_of else "")
    return PriceTable(models, discount, as_of, source)


def _number(options: Mapping[str, str], key: str) -> float:
    raw = options.get(key, "0")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"option {key}={raw!r} is not a number (USD per 1M tokens)") from None
    if not value >= 0:
        raise ConfigError(f"option {key}={raw!r} must be a non-negative number")
    return value
