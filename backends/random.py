"""The seeded random baseline (the paper's "Random" row).

Each item's draw depends only on (seed, item index), never on order or concurrency, so a run is
reproducible however it is scheduled. Single-answer items get one option uniformly; multi-answer
items get a uniform non-empty subset of the options (the paper's random multi-label baseline).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.options import BackendOptions, option
from gmai_client.types import Request, Response


@dataclass(frozen=True)
class RandomOptions(BackendOptions):
    seed: int | None = option(None, "seed of this model's draws", default_text="the run's --seed")


class RandomBackend(Backend):
    """Uniform random choice among each item's options (seeded)."""

    name = "random"
    Options = RandomOptions

    def __init__(self, seed: int = 0):
        self.seed = seed

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> RandomBackend:
        own = cls.parse_options(spec).seed
        return cls(seed if own is None else own)

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": f"random-seed{self.seed}", "endpoint": ""}

    def cacheable(self) -> bool:
        return False  # costs nothing to ask again; caching would only fill the cache

    async def generate(self, request: Request) -> Response:
        letters = [letter for letter, _ in request.options]
        rng = random.Random(f"{self.seed}:{request.item_index}")
        if request.multi_answer:
            while True:
                chosen = [letter for letter in letters if rng.random() < 0.5]
                if chosen:
                    return Response(",".join(chosen), model="random")
        return Response(rng.choice(letters), model="random")
