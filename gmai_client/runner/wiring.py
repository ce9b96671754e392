"""Wiring: a ``RunConfig`` turned into the ready objects a run needs, and their lifetimes.

``wire(config)`` is an async context manager; the loop (``runner``) only uses what it yields. In
order, so that a bad value fails before a folder is made or anything is sent:

1. the data files are opened, the selection parsed, each model's ``rpm=``/``tpm=`` options read;
2. the backends are built through the registry, placed on the configured executor by its name
   (``registry.create(..., executor=)``: this module names no backend), and the judge's;
3. the run folder is named from the identity, locked, checked against the run it holds and its
   config.json written (``rundir``); a model whose label is the default one takes the label the
   folder's records already carry (``folder_labels``);
4. what every model shares is made: the response cache, the endpoint limiters, the token budget,
   the retry policy; the judge is started behind its own dispatcher; the record writer is opened,
   the progress display made.

On leaving, the writer, the cache, the folder lock and every backend are closed, in that order.

Each model's ``Dispatcher`` is made by the loop through ``ModelPlan.dispatcher`` once the backend
has started (the limiter scope reads the started backend's identity) and its progress line exists.
``ModelPlan.batch`` says whether the model's items go through its vendor's batch API (``batch``):
its ``-B batch=`` option, else the run's ``--batch``, for a backend that has one. With ``--epochs N``
each model is N plans, one per sample (``samples``), sharing its backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from gmai_client.backend import Backend, as_backend
from gmai_client.backends import registry
from gmai_client.batch_api import BatchApi, BatchSettings
from gmai_client.config import ModelSpec, PolicySection, ProtocolSection, RunConfig, flatten
from gmai_client.data.dataset import DatasetFile, iter_items, open_dataset
from gmai_client.data.select import Selection, parse_selection, selected_entries
from gmai_client.data.splits import resolve_data
from gmai_client.errors import ConfigError, GmaiError
from gmai_client.options import model_policy
from gmai_client.policy.cache import ResponseCache
from gmai_client.policy.dispatch import Dispatcher, TokenBudget
from gmai_client.policy.limiter import AdaptiveConcurrency, LimiterPool, Limits
from gmai_client.policy.retry import RetryPolicy
from gmai_client.protocol.prompt import build_request
from gmai_client.protocol.rulesets import DEFAULT_RULES, RuleSet, rule_set
from gmai_client.results import rundir
from gmai_client.results.html.gallery import select_gallery
from gmai_client.results.html.gallery_items import ThumbnailCollector
from gmai_client.results.records import RECORDS_FILE, RecordWriter, read_records
from gmai_client.runner.judge import Judge
from gmai_client.runner.progress import ProgressReporter, make_progress
from gmai_client.samples import sample_streams
from gmai_client.types import BadRow, Item, Record, Request

#: What a dispatcher reports its waits to (a progress line's ``status``), if anything.
OnStatus = Callable[[str], None] | None


@dataclass(frozen=True)
class Items:
    """The items a run asks: the data files, the selection, the first ``limit``."""

    files: tuple[DatasetFile, ...]
    selection: Selection
    limit: int | None = None
    # ``count``'s result, made once (the run's count and every progress bar share it), under its lock.
    _counted: list[int] = field(default_factory=list, compare=False, repr=False)
    _counting: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def entries(self) -> Iterator[Item | BadRow]:
        """Items the selection keeps (bad rows always pass: they must be reported), up to ``limit``."""
        return selected_entries(iter_items(list(self.files)), self.selection, self.limit)

    def count(self) -> int:
        """How many entries ``entries`` yields: a full parse of the files, once (called in threads)."""
        with self._counting:
            if not self._counted:
                self._counted.append(sum(1 for _ in self.entries()))
            return self._counted[0]


@dataclass(frozen=True)
class Shared:
    """What every model of a run shares: one cache, one limiter per endpoint, one budget, one policy."""

    cache: ResponseCache | None
    limiters: LimiterPool
    budget: TokenBudget | None
    retry: RetryPolicy
    # Backend -> its start, shared by the streams of one model's samples (``samples``): started once.
    starts: dict[int, asyncio.Future[str]] = field(default_factory=dict)

    async def start_once(self, backend: Backend) -> str:
        """Start ``backend`` unless another stream of the same model (``samples``) did: "" when it
        started, else why it could not."""
        key = id(backend)
        if key not in self.starts:
            self.starts[key] = asyncio.ensure_future(_started(backend))
        return await asyncio.shield(self.starts[key])


async def _started(backend: Backend) -> str:
    try:
        await backend.start()
    except (GmaiError, OSError) as exc:
        return str(exc)
    return ""


@dataclass(frozen=True)
class ModelPlan:
    """One model of the run: its spec, its built (not yet started) backend, its dispatcher (made
    once the backend has started), and what it shares with the other models."""

    spec: ModelSpec
    backend: Backend
    dispatcher: Callable[[OnStatus], Dispatcher]
    shared: Shared
    batch: BatchSettings | None = None  # set: through the vendor's batch API
    repeat: int = 0  # the sample this stream asks for (``samples``): 0 for the model's first

    def ask(self, wired_ask: Callable[[Item], Request]) -> Callable[[Item], Request]:
        """The run's request builder as this stream sends: its sample's ``repeat`` in the parameters."""
        return stream_ask(wired_ask, self.repeat)


def stream_ask(ask: Callable[[Item], Request], repeat: int) -> Callable[[Item], Request]:
    """``ask`` with the sample's ``repeat`` in every request's parameters (``samples``)."""
    if not repeat:
        return ask

    def asked(item: Item) -> Request:
        request = ask(item)  # once: it holds the item's images
        return replace(request, params=replace(request.params, repeat=repeat))

    return asked


@dataclass(frozen=True)
class Wired:
    """Everything the loop needs, ready: no config beyond the policy section travels further."""

    run_dir: Path
    items: Items
    models: tuple[ModelPlan, ...]
    ask: Callable[[Item], Request]  # the item as a request (the protocol section applied)
    judge: Judge | None
    writer: RecordWriter
    previous: tuple[Record, ...]  # what records.jsonl held before this run (resume)
    progress: ProgressReporter
    count_total: bool  # count the selection for the progress bar (a second full parse)
    started: float  # time.monotonic() when wiring began
    gallery: ThumbnailCollector  # the report's thumbnails, made while the run goes
    rules: RuleSet = DEFAULT_RULES  # the rule set the headline is scored under (``rulesets``)


@contextlib.asynccontextmanager
async def wire(config: RunConfig, *, backends: Mapping[str, Backend] | None = None) -> AsyncIterator[Wired]:
    """The ready objects of ``config``'s run (see the module docstring). ``backends`` maps a model
    label (or its spec as written) to a backend the caller built; the others are built from their specs.

    Raises ``ConfigError`` before anything is sent when a value is bad, or the run folder holds
    another run, is in use by another process or cannot be written.
    """
    started = time.monotonic()
    data, policy = config.data, config.policy
    files = tuple(open_dataset(resolve_data(data.files, data_dir=data.data_dir)))
    items = Items(files, parse_selection(data.select or None), data.limit)
    judge_spec = config.protocol.judge
    rules = rule_set(config.protocol.rules)  # an unknown name fails before any folder
    limits = {spec.label: model_limits(spec, policy) for spec in config.models}
    if judge_spec is not None:
        model_limits(judge_spec, policy)  # a bad value fails before any folder
    built = _given(config, backends or {})
    judge_backend: Backend | None = None
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(_close_all, built, lambda: judge_backend)  # last out: after the lock
        for spec in config.models:
            if spec.label not in built:
                built[spec.label] = _create(spec, config)
        if judge_spec is not None:
            judge_backend = registry.create(judge_spec, seed=config.execution.seed)
        for backend in (*built.values(), *([judge_backend] if judge_backend is not None else [])):
            backend.preflight()  # a missing key is a usage error before any folder is made
        before = config
        config, run_dir = _claim_folder(config, files, built, judge_backend, stack)
        built = {spec.label: built[old.label] for old, spec in zip(before.models, config.models, strict=True)}
        limits = {spec.label: limits[old.label] for old, spec in zip(before.models, config.models, strict=True)}
        shared = _shared(policy, stack)
        plans = tuple(
            ModelPlan(
                stream,
                built[spec.label],
                partial(_dispatcher, built[spec.label], limits[spec.label], policy, shared),
                shared,
                batch_settings(built[spec.label], policy),
                repeat,
            )
            for spec, stream, repeat in sample_streams(config.models, config.protocol.epochs)
        )
        judge = await _start_judge(judge_spec, judge_backend, policy, shared, rules)
        previous = tuple(read_records(run_dir / RECORDS_FILE))
        gallery = ThumbnailCollector(files, partial(select_gallery, labels=[plans[0].spec.label]))
        stack.callback(gallery.collected)  # its worker stops with the run, however the run ends
        yield Wired(
            run_dir=run_dir,
            items=items,
            models=plans,
            ask=request_builder(config.protocol),
            judge=judge,
            writer=_writer(run_dir, stack),
            previous=previous,
            progress=make_progress(enabled=config.output.progress),
            count_total=config.output.progress,
            started=started,
            gallery=gallery,
            rules=rules,
        )


def request_builder(protocol: ProtocolSection) -> Callable[[Item], Request]:
    """The protocol section as a function: an item -> the request every model is sent."""
    return partial(
        build_request,
        template=protocol.template,
        params=protocol.params,
        system=protocol.system_prompt,
        multi_answer_instruction=protocol.multi_answer_instruction,
    )


def batch_settings(backend: Backend, policy: PolicySection) -> BatchSettings | None:
    """The batch settings of a model whose items go through its vendor's batch API: one whose
    backend has one and whose ``-B batch=`` (else the run's ``--batch``) says so; None: live."""
    if not isinstance(backend, BatchApi):
        return None
    settings = backend.batch_settings()
    wanted = settings.enabled if settings.enabled is not None else policy.batch
    return settings if wanted else None


def model_limits(spec: ModelSpec, policy: PolicySection) -> Limits:
    """The endpoint limits of a model: its ``rpm=``/``tpm=`` options, else the run's ``--rpm``/``--tpm``."""
    own = model_policy(spec.options, owner=spec.key)  # a bad value is a ConfigError naming the model
    return Limits(rpm=own.rpm or policy.rpm, tpm=own.tpm or policy.tpm)


def _create(spec: ModelSpec, config: RunConfig) -> Backend:
    """The spec's backend; on an executor that serves its models (``--executor ray`` for torch),
    the class the registry names for that executor."""
    execution = config.execution
    placed = registry.executor_class(execution.executor, spec.backend)
    if placed is None:
        return registry.create(spec, seed=execution.seed)
    return as_backend(placed.from_spec(spec, seed=execution.seed, address=execution.ray_address))


def _claim_folder(
    config: RunConfig,
    files: tuple[DatasetFile, ...],
    built: Mapping[str, Backend],
    judge: Backend | None,
    stack: contextlib.AsyncExitStack,
) -> tuple[RunConfig, Path]:
    """The run folder: made, locked (until ``stack`` closes), checked against the run it holds,
    and its config.json written; and ``config`` with the labels the folder's records carry."""
    data_files = [str(f.path) for f in files]
    ident = rundir.identity(config, data_files, built, judge, registry.answer_neutral_options)
    config = folder_labels(config, ident)
    run_dir = rundir.make_run_dir(config, ident)
    stack.enter_context(rundir.RunLock(run_dir))
    rundir.check_reuse(run_dir, ident, config.data.limit, registry.answer_neutral_options)
    try:
        rundir.write_config(run_dir, config, data_files, identity=ident)
    except OSError as exc:
        raise ConfigError(f"cannot write in the run folder {run_dir}: {exc.strerror or exc}") from None
    return config, run_dir


def folder_labels(config: RunConfig, ident: Mapping[str, Any]) -> RunConfig:
    """``config`` with, for each model labelled by default, the label its run folder's records
    already carry. Folders made before short labels were named after, and hold records labelled
    with, each spec as written (``openai:gpt-4o``); their identity is unchanged (``ModelSpec.key``),
    so the same command finds such a folder under its earlier name and keeps resuming it."""
    out = config.output.out
    folder = out / rundir.folder_name(config, ident)
    if not config.output.run_name and not (folder / rundir.CONFIG_FILE).exists():
        as_written = config.updated(models=[replace(spec, label=spec.key) for spec in config.models])
        earlier = out / rundir.folder_name(as_written, ident)
        if (earlier / rundir.CONFIG_FILE).exists():
            folder = earlier
    document = rundir.read_config(folder)
    saved = flatten(document.config).get("models") if document is not None else None
    labels = {
        str(m.get("written") or m["label"]): str(m["label"])
        for m in saved or ()
        if isinstance(m, Mapping) and m.get("label")
    }
    models = [replace(s, label=labels[s.key]) if s.written and s.key in labels else s for s in config.models]
    return config.updated(models=models) if models != list(config.models) else config


def _given(config: RunConfig, backends: Mapping[str, Backend]) -> dict[str, Backend]:
    """The caller's backends by model label; one named by its spec as written (``openai:gpt-4o``,
    the label before short labels) is taken for that model."""
    labels = {spec.label for spec in config.models}
    by_spec = {spec.key: spec.label for spec in config.models}
    return {(name if name in labels else by_spec.get(name, name)): as_backend(b) for name, b in backends.items()}


def _shared(policy: PolicySection, stack: contextlib.AsyncExitStack) -> Shared:
    """What every model shares; the cache is closed with ``stack``."""
    cache = ResponseCache(policy.cache_path) if policy.cache else None
    if cache is not None:
        stack.callback(cache.close)
    return Shared(
        cache=cache,
        limiters=LimiterPool(),
        budget=TokenBudget(policy.token_budget) if policy.token_budget else None,
        retry=RetryPolicy(
            max_attempts=policy.max_attempts, attempt_timeout=policy.attempt_timeout, deadline=policy.item_deadline
        ),
    )


def _dispatcher(
    backend: Backend, limits: Limits, policy: PolicySection, shared: Shared, on_status: OnStatus
) -> Dispatcher:
    # One account's budget: same backend, endpoint and key variable (never the key itself).
    limiter = shared.limiters.get(backend.limit_scope(), limits) if limits != Limits() else None
    return Dispatcher(
        backend,
        retry=shared.retry,
        concurrency=AdaptiveConcurrency(policy.concurrency),
        limiter=limiter,
        cache=shared.cache,
        budget=shared.budget,
        on_status=on_status,
    )


async def _start_judge(
    spec: ModelSpec | None, backend: Backend | None, policy: PolicySection, shared: Shared, rules: RuleSet
) -> Judge | None:
    if spec is None or backend is None:
        return None
    try:
        await backend.start()
    except (GmaiError, OSError) as exc:
        raise GmaiError(f"the judge {spec.label} cannot start: {exc}") from None
    return Judge(_dispatcher(backend, model_limits(spec, policy), policy, shared, None), spec.label, rules)


def _writer(run_dir: Path, stack: contextlib.AsyncExitStack) -> RecordWriter:
    """The writer appending to records.jsonl, closed with ``stack`` (the loop closes it first, and
    says so when closing fails)."""
    path = run_dir / RECORDS_FILE
    try:
        writer = RecordWriter(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None

    def close() -> None:
        with contextlib.suppress(OSError):
            writer.close()

    stack.callback(close)
    return writer


async def _close_all(built: Mapping[str, Backend], judge: Callable[[], Backend | None]) -> None:
    """Close every backend, the judge's too; a failing close must not hide the run's outcome."""
    backend_judge = judge()
    for backend in (*built.values(), *([backend_judge] if backend_judge is not None else [])):
        with contextlib.suppress(Exception):
            await backend.close()
