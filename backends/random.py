"""The seeded random baseline (the paper's "Random" row).

Each item's draw depends only on (seed, item index), never on order or concurrency, so a run is
reproducible however it is scheduled. Single-answer items get one option uniformly; multi-answer
items get a uniform non-empty subset of the options (the paper's random multi-label baseline).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError
from gmai_client.types import Request, Response


class RandomBackend:
    """Uniform random choice among each item's options (seeded)."""

    cacheable = False  # costs nothing to ask again; caching would only fill the cache

    name = "random"
    OPTIONS: Mapping[str, str] = {"seed": "overrides the run's --seed for this model"}

    def __init__(self, seed: int = 0):
        self.seed = seed

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> RandomBackend:
        raw = spec.option("seed") or ""
        if not raw:
            return cls(seed)
        try:
            return cls(int(raw))
        except ValueError:
            raise ConfigError(f"{spec.label}: option seed={raw!r} is not an integer") from None

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": f"random-seed{self.seed}", "endpoint": ""}

    async def start(self) -> None:
        return None

    async def generate(self, request: Request) -> Response:
        letters = [letter for letter, _ in request.options]
        rng = random.Random(f"{self.seed}:{request.item_index}")
        if request.multi_answer:
            while True:
                chosen = [letter for letter in letters if rng.random() < 0.5]
                if chosen:
                    return Response(",".join(chosen), model="random")
        return Response(rng.choice(letters), model="random")

    async def close(self) -> None:
        return None
