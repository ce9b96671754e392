"""What a run will send and what it will cost, before it is run (``python -m gmai_client plan``).

For each model of a configuration: the items selected, those already finished in the run folder
(a resume sends nothing for them), those the response cache answers, and the requests left to
send; the input tokens those requests will cost by the provider's documented rule for their text
and images (``Backend.estimate_input_tokens``); the output tokens, bounded by ``max_tokens``;
the cost live and through the batch API at the prices of ``prices`` (which say where they come
from and how old they are); and the time the rate limits imply (requests / rpm, tokens / tpm).

Pure arithmetic over what the caller gathered: the caller (the CLI, through the wiring) builds
the requests and knows the cache and the run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gmai_client.prices import Price
from gmai_client.types import Request


@dataclass(frozen=True)
class ModelPlan:
    label: str
    selected: int  # items the selection keeps
    finished: int  # already recorded in the run folder: never sent again
    cached: int  # answered by the response cache
    to_send: int  # requests left
    input_tokens: int  # estimated, for the requests left
    output_tokens_max: int  # ``to_send`` x max_tokens: an upper bound
    price: Price | None
    rpm: float | None = None
    tpm: float | None = None

    @property
    def input_tokens_per_item(self) -> float | None:
        return self.input_tokens / self.to_send if self.to_send else None

    def cost(self, *, batch: bool = False, output_share: float = 1.0) -> float | None:
        """Estimated cost in the price's currency; ``output_share`` of ``max_tokens`` is what the
        answers are assumed to use (1.0: the upper bound)."""
        if self.price is None:
            return None
        return self.price.cost(self.input_tokens, self.output_tokens_max * output_share, batch=batch)

    @property
    def minutes(self) -> float | None:
        """The time the rate limits imply for the requests left (None when no limit is set)."""
        bounds = []
        if self.rpm:
            bounds.append(self.to_send / self.rpm)
        if self.tpm:
            bounds.append((self.input_tokens + self.output_tokens_max) / self.tpm)
        return max(bounds) if bounds else None


def plan_model(
    label: str,
    requests: Iterable[Request],
    *,
    finished: set[str],
    is_cached: Callable[[Request], bool],
    estimate: Callable[[Request], int],
    price: Price | None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> ModelPlan:
    """Count one model's requests: ``finished`` indexes are skipped, cache hits counted apart."""
    selected = done = cached = to_send = input_tokens = output_max = 0
    for request in requests:
        selected += 1
        if request.item_index in finished:
            done += 1
        elif is_cached(request):
            cached += 1
        else:
            to_send += 1
            input_tokens += estimate(request)
            output_max += request.params.max_tokens
    return ModelPlan(label, selected, done, cached, to_send, input_tokens, output_max, price, rpm, tpm)
