"""What a run will send and what it will cost, before it is run (``python -m gmai_client plan``).

For each model of a configuration: the items selected, those already finished in the run folder
(a resume sends nothing for them), those the response cache answers, and the requests left to
send; the input tokens those requests will cost by the provider's documented rule for their text
and images (``Backend.estimate_input_tokens``); the output tokens, bounded by the model's output bound
(``Backend.output_bound``: ``max_tokens``, or the larger bound a reasoning model's family needs),
and expected (``expected_output``: the mean of this model's earlier answers, in the run folder or
the cache, else the model families table's typical figure; the source is said);
the cost live and through the batch API at the prices of ``prices`` (which say where they come
from and how old they are); and the time the rate limits imply (requests / rpm, tokens / tpm).

``plan_model`` is the arithmetic; ``plan_run`` gathers what it needs for a configuration, with no
request sent and nothing written: the items through the run's own selection and prompt, the
backends built but not started, the run folder a run of this configuration would use (only read),
the response cache (only looked up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from gmai_client.backend import Backend
from gmai_client.backends import registry
from gmai_client.config import RunConfig
from gmai_client.data.dataset import open_dataset
from gmai_client.data.select import parse_selection
from gmai_client.data.splits import resolve_data
from gmai_client.errors import DataError
from gmai_client.policy.cache import ResponseCache, cache_key, default_cache_path, key_fields
from gmai_client.protocol.prices import Price, PriceTable
from gmai_client.results import rundir
from gmai_client.results.records import read_records
from gmai_client.runner.wiring import Items, folder_labels, model_limits, request_builder, stream_ask
from gmai_client.samples import sample_streams
from gmai_client.types import Item, Record, Request


@dataclass(frozen=True)
class ExpectedOutput:
    """The output tokens one answer is expected to take (thinking included), and where the figure
    comes from: earlier answers of the same model, else the model families table."""

    per_item: float
    source: str


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
    expected: ExpectedOutput | None = None

    @property
    def output_tokens_expected(self) -> int | None:
        """The output tokens the requests left are expected to take (never above the bound)."""
        if self.expected is None:
            return None
        return min(self.output_tokens_max, round(self.expected.per_item * self.to_send))

    @property
    def input_tokens_per_item(self) -> float | None:
        return self.input_tokens / self.to_send if self.to_send else None

    def cost(self, *, batch: bool = False, output_share: float = 1.0, expected: bool = False) -> float | None:
        """Estimated cost in the price's currency; ``output_share`` of the output bound is what the
        answers are assumed to use (1.0: the upper bound); ``expected``: the expected output instead
        (None when nothing is known to expect)."""
        if self.price is None:
            return None
        output = self.output_tokens_max * output_share
        if expected:
            if self.output_tokens_expected is None:
                return None
            output = self.output_tokens_expected
        return self.price.cost(self.input_tokens, output, batch=batch)

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
    bound: Callable[[Request], int] = lambda request: request.params.max_tokens,
    rpm: float | None = None,
    tpm: float | None = None,
    expected: ExpectedOutput | None = None,
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
            output_max += bound(request)
    return ModelPlan(label, selected, done, cached, to_send, input_tokens, output_max, price, rpm, tpm, expected)


def plan_run(config: RunConfig, prices: PriceTable) -> list[ModelPlan]:
    """Every model's plan for ``config`` (see the module docstring); nothing is sent or written."""
    data, policy, seed = config.data, config.policy, config.execution.seed
    files = tuple(open_dataset(resolve_data(data.files, data_dir=data.data_dir)))
    items = Items(files, parse_selection(data.select or None), data.limit)
    backends = {spec.label: registry.create(spec, seed=seed) for spec in config.models}
    judge = registry.create(config.protocol.judge, seed=seed) if config.protocol.judge else None
    ident = rundir.identity(config, [str(f.path) for f in files], backends, judge, registry.answer_neutral_options)
    labelled = folder_labels(config, ident)  # the labels of the records already in the run folder
    backends = {new.label: backends[old.label] for old, new in zip(config.models, labelled.models, strict=True)}
    config = labelled
    previous = read_records(config.output.out / rundir.folder_name(config, ident) / rundir.RECORDS_FILE)
    cache_path = policy.cache_path if policy.cache_path is not None else default_cache_path()
    # Only looked up: a missing cache answers nothing, and opening it would create it.
    cache = ResponseCache(cache_path) if policy.cache and cache_path.exists() else None
    ask = request_builder(config.protocol)
    plans = []
    try:
        # With --epochs N, every sample is a stream of its own: the plan counts samples, not items.
        for spec, stream, repeat in sample_streams(config.models, config.protocol.epochs):
            backend = backends[spec.label]
            retried = policy.retry_errors
            finished = {r.index for r in previous if r.model == stream.label and not (retried and r.status == "error")}
            limits = model_limits(spec, policy)
            plans.append(
                plan_model(
                    stream.label,
                    _requests(items, stream_ask(ask, repeat)),
                    finished=finished,
                    is_cached=_cached(cache, backend),
                    estimate=backend.estimate_input_tokens,
                    bound=backend.output_bound,
                    expected=expected_output(spec.label, backend, previous, cache),
                    price=prices.price(spec.backend, spec.target, spec.options),
                    rpm=limits.rpm,
                    tpm=limits.tpm,
                )
            )
    finally:
        if cache is not None:
            cache.close()
    return plans


def expected_output(
    label: str, backend: Backend, previous: Iterable[Record], cache: ResponseCache | None
) -> ExpectedOutput | None:
    """What one answer of this model is expected to take: the mean output of its answers in the run
    folder, else of those in the response cache (same identity), else the family table's figure."""
    earlier = [r.output_tokens for r in previous if r.model == label and r.status != "error" and r.output_tokens]
    where = "in the run folder"
    if not earlier and cache is not None and backend.cacheable():
        earlier, where = cache.output_tokens(backend.identity()), "in the response cache"
    if earlier:
        count = len(earlier)
        return ExpectedOutput(sum(earlier) / count, f"the mean of {count:,} earlier answers {where}")
    typical = getattr(backend, "typical_output", None)
    figure = typical() if callable(typical) else None
    return ExpectedOutput(*figure) if figure else None


def _requests(items: Items, ask: Callable[[Item], Request]) -> Iterator[Request]:
    for entry in items.entries():
        if isinstance(entry, Item):
            try:
                yield ask(entry)
            except DataError:
                continue  # an unreadable image is an error record in a run: nothing is sent for it


def _cached(cache: ResponseCache | None, backend: Backend) -> Callable[[Request], bool]:
    if cache is None or not backend.cacheable():
        return lambda request: False
    identity = backend.identity()
    return lambda request: cache.lookup(cache_key(key_fields(identity, request))) is not None
