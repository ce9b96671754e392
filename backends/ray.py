"""The Ray executor for local transformers models: one ``torch:`` model served by N Ray actors.

``python -m gmai_client run --executor ray --model torch:/models/X -B actors=4`` (or
``RunConfig(executor="ray")``) replaces each ``torch:`` model's ``TorchBackend`` by a
``RayTorchBackend``. Nothing else changes: the driver stays the single asyncio runner and the only
writer of records, cache and metrics; this class is just a ``Backend`` whose ``generate`` is
answered by one of N actors, each holding one loaded model.

How a request flows:

1. ``generate(request)`` picks the ready actor with the fewest requests in flight (ties: round
   robin) and sends it the ``Request`` itself: the text plus the images as the encoded bytes
   the TSV holds (PNG), never decoded arrays.
2. The actor (an async actor, ``max_concurrency`` requests at once) hands it to its own
   ``TorchBackend``, whose dispatcher micro-batches the requests that arrive together on that
   actor, exactly as the local backend does in one process.
3. The actor returns the ``Response`` (or the ``BackendError`` its backend raised, unchanged, so
   retry decisions are the same as with the local executor).

Back-pressure is the runner's: its concurrency bounds the items in flight over all actors.

Placement: ``num_gpus=1`` per actor when the cluster has GPUs (``device=auto`` then picks the GPU
Ray assigned to the actor), else ``num_cpus=1`` with torch held to one thread per actor. The
number of actors defaults to the cluster's GPU count, or 2 on CPU.

Faults: actors are created with ``max_restarts`` (default 3) and no Ray-side task retries
(retries happen in one place, ``gmai_client.policy.retry``). An actor that dies mid-request
(``RayActorError``: ``ActorDiedError`` / ``ActorUnavailableError``, or a crashed worker) fails
the requests it held with ``ConnectionLost`` (retryable: the runner sends them again, to another
actor), after marking the actor as recovering. A recovery task then waits for Ray to restart it
and for its model to load again; an actor that cannot be restarted (restarts used up, killed for
good) is replaced by a new one. An actor that cannot come back is dropped; when none is left the
model's run stops (``ExecutorLost``).

Identity: the same as the local ``TorchBackend`` of the same spec (as reported by the actors
once loaded), so the response cache is shared between executors.

Ray start-up: with no ``ray_address`` a local instance is started with this machine's CPUs, no
dashboard, no worker logs on the driver, and every address on loopback; with an address (``auto``,
``HOST:PORT``, ``ray://...``) the driver joins that cluster, where ``gmai_client`` must be
installed and the model path readable on every node. Ray is shut down at ``close()`` only if
this process started it (and no other ``RayTorchBackend`` still uses it).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.errors import BackendError, ConfigError, ConnectionLost, FatalError, MissingExtra, ServerError
from gmai_client.options import POLICY_OPTIONS, BackendOptions, option
from gmai_client.types import Request, Response

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("ray", "ray", "ray") from exc

from gmai_client.backends._ray_actor import ModelActor, acquire_ray, first_line, release_ray
from gmai_client.backends.torch import TorchBackend, TorchOptions

__all__ = ["ExecutorLost", "RayOptions", "RayTorchBackend", "acquire_ray", "release_ray"]

#: New actors a slot may get after its actor died for good, before the slot is given up.
MAX_REPLACEMENTS = 3
#: Seconds between readiness probes of an actor Ray is restarting.
PROBE_INTERVAL_S = 0.2


class ExecutorLost(FatalError):
    """Every actor of the model is gone and none could be restarted or replaced."""

    kind = "executor_lost"
    stops_model = True


@dataclass(frozen=True)
class RayOptions(BackendOptions):
    """Where the actors run and how they are kept alive: none of it changes an answer."""

    actors: int | None = option(
        None, "number of Ray actors, one loaded model each", minimum=1, neutral=True,
        default_text="the cluster's GPUs, or 2 on CPU",
    )  # fmt: skip
    gpus_per_actor: float | None = option(
        None, "GPUs reserved per actor", minimum=0, neutral=True, default_text="1 when the cluster has GPUs, else 0"
    )
    cpus_per_actor: float = option(1.0, "CPUs reserved per actor", minimum=0, neutral=True)
    torch_threads: int | None = option(
        None, "torch intra-op threads per actor", minimum=1, neutral=True, default_text="cpus_per_actor on CPU"
    )
    max_restarts: int = option(3, "times Ray restarts a dead actor before it is replaced", minimum=0, neutral=True)
    max_concurrency: int = option(64, "requests one actor takes at once", minimum=1, neutral=True)
    load_timeout_s: float = option(
        600.0, "seconds an actor may take to be placed and load its model", above=0, neutral=True
    )


@dataclass(frozen=True)
class RayTorchOptions(TorchOptions, RayOptions):
    """A torch model's options under Ray: the torch backend's, which travel to the actors, and Ray's."""


#: The options read here; the others are the torch backend's and travel to the actors unchanged.
RAY_OPTIONS = frozenset(f.name for f in fields(RayOptions))


@dataclass
class ActorSlot:
    """One place for an actor; the actor in it may be restarted (same handle) or replaced."""

    index: int
    handle: Any = None
    state: str = "starting"  # starting | ready | recovering | dead
    in_flight: int = 0
    sent: int = 0  # requests sent to this slot's actors
    lost: int = 0  # requests that failed because the actor died
    restarts: int = 0  # times Ray restarted the actor and it loaded again
    replacements: int = 0  # new actors put in this slot
    problem: str = ""  # why the slot is dead
    info: dict[str, Any] = field(default_factory=dict)
    recovery: asyncio.Task[None] | None = None


class RayTorchBackend(Backend):
    """A ``torch:`` model served by N Ray actors, one loaded model each (``--executor ray``)."""

    name = "torch"
    Options = RayTorchOptions

    def __init__(
        self,
        spec: ModelSpec,
        *,
        seed: int = 0,
        address: str | None = None,
        first_actor: type[ModelActor] | None = None,
    ):
        """``first_actor``: a ``ModelActor`` subclass for actor 0's first start (tests use one that
        dies mid-request, ``gmai_client.testing.ray_hooks``); never a user option."""
        if spec.backend != "torch":
            raise ConfigError(f"the ray executor serves torch models only, not {spec.backend!r}")
        parsed = self.parse_options(spec)  # every option checked here, before any actor starts
        self.options = RayOptions(**{name: getattr(parsed, name) for name in RAY_OPTIONS})
        # What the actors build: the spec without the options read here or by the client.
        torch_options = {k: v for k, v in spec.options.items() if k not in RAY_OPTIONS | set(POLICY_OPTIONS)}
        self.spec = replace(spec, options=MappingProxyType(torch_options))
        self.seed = seed
        self.address = address
        # Built here, never started: validates the torch options at once, and answers identity()
        # until the actors report theirs.
        self._local = TorchBackend.from_spec(self.spec, seed=seed)
        self.path = self._local.path
        self.slots: list[ActorSlot] = []
        self._identity: Mapping[str, str] | None = None
        self._actor_class: Any = None
        self._first_actor = first_actor
        self._first_actor_class: Any = None
        self._per_gpu = 0.0
        self._holds_ray = False
        self._started = False
        self._closed = False
        self._start_lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._turn = 0

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0, address: str | None = None) -> RayTorchBackend:
        return cls(spec, seed=seed, address=address)

    def identity(self) -> Mapping[str, str]:
        return dict(self._identity or self._local.identity())

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise FatalError("ray: backend closed")
            self._changed = asyncio.Event()
            if not self._holds_ray:
                acquire_ray(self.address)
                self._holds_ray = True
            try:
                count, resources = self._actor_resources()
                settings = {
                    "max_restarts": self.options.max_restarts,
                    "max_task_retries": 0,  # retries happen in one place: gmai_client.policy.retry
                    "max_concurrency": self.options.max_concurrency,
                    **resources,
                }
                self._actor_class = ray.remote(ModelActor).options(**settings)
                if self._first_actor is not None:
                    self._first_actor_class = ray.remote(self._first_actor).options(**settings)
                self.slots = [ActorSlot(i) for i in range(count)]
                for slot in self.slots:
                    slot.handle = self._new_actor(slot.index, first=True)
                loads = [self._load(slot, slot.handle) for slot in self.slots]
                outcomes = await asyncio.gather(*loads, return_exceptions=True)
                failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
                if failed:
                    raise failed[0]
                infos: list[dict[str, Any]] = list(outcomes)  # type: ignore[arg-type]
                identities = {tuple(sorted(info["identity"].items())) for info in infos}
                if len(identities) > 1:
                    raise ConfigError(
                        f"ray: the actors of {self.spec.key} disagree on what they loaded "
                        f"({'; '.join(str(dict(i)) for i in identities)}): mixed devices or model folders"
                    )
                for slot, info in zip(self.slots, infos, strict=True):
                    slot.info, slot.state = info, "ready"
                self._identity = dict(infos[0]["identity"])
                self._started = True
            except BaseException:
                await self._teardown()
                raise

    def _actor_resources(self) -> tuple[int, dict[str, float]]:
        """How many actors, and what each reserves; a clear error when the cluster cannot hold them."""
        total = ray.cluster_resources()
        gpus, cpus = float(total.get("GPU", 0)), float(total.get("CPU", 0))
        per_gpu = self.options.gpus_per_actor if self.options.gpus_per_actor is not None else (1.0 if gpus else 0.0)
        per_cpu = self.options.cpus_per_actor
        count = self.options.actors
        if count is None:  # one per GPU; on CPU 2 (or 1 if only one fits)
            count = int(gpus // per_gpu) if per_gpu else min(2, int(cpus // per_cpu) if per_cpu else 2)
            count = max(1, count)
        if per_gpu and count * per_gpu > gpus:
            raise ConfigError(
                f"ray: {count} actors x {per_gpu:g} GPU need {count * per_gpu:g} GPUs; the cluster has {gpus:g}"
            )
        if per_cpu and count * per_cpu > cpus:
            raise ConfigError(
                f"ray: {count} actors x {per_cpu:g} CPU need {count * per_cpu:g} CPUs; the cluster has {cpus:g} "
                "(-B actors=N or -B cpus_per_actor=X)"
            )
        self._per_gpu = per_gpu
        return count, {"num_cpus": per_cpu, "num_gpus": per_gpu}

    def _new_actor(self, index: int, *, first: bool = False) -> Any:
        threads = self.options.torch_threads
        if threads is None and not self._per_gpu:  # on CPU: as many threads as reserved CPUs
            threads = max(1, int(self.options.cpus_per_actor))
        actor_class = self._first_actor_class if first and index == 0 and self._first_actor_class else None
        return (actor_class or self._actor_class).remote(self.spec, self.seed, threads)

    async def _load(self, slot: ActorSlot, handle: Any) -> dict[str, Any]:
        """Wait for one actor to be placed and to load its model; its info, or a clear error."""
        where = f"ray actor {slot.index} of {self.spec.key}"
        try:
            kind, value = await asyncio.wait_for(_awaitable(handle.load.remote()), self.options.load_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise FatalError(
                f"{where} did not load {self.path} within {self.options.load_timeout_s:g} s "
                f"(is the cluster short of the resources an actor reserves? -B load_timeout_s=S)"
            ) from None
        except ray.exceptions.RayActorError as exc:
            raise FatalError(f"{where} died while loading {self.path}: {_actor_reason(exc)}") from None
        except ray.exceptions.RayError as exc:
            raise FatalError(f"{where} failed while loading {self.path}: {first_line(exc)}") from None
        if kind == "error":
            raise _prefixed(value, f"{where}: ")
        return value

    async def close(self) -> None:
        self._closed = True
        self._started = False
        await self._teardown()

    async def _teardown(self) -> None:
        for slot in self.slots:
            if slot.recovery is not None:
                slot.recovery.cancel()
                with contextlib.suppress(BaseException):
                    await slot.recovery
                slot.recovery = None
            if slot.handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle, no_restart=True)
            slot.state = "dead" if self._closed else slot.state
        if self._changed is not None:
            self._changed.set()  # wake requests waiting for an actor: they see the backend closed
        if self._holds_ray:
            self._holds_ray = False
            release_ray()

    # -- requests -----------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        if not self._started:
            await self.start()
        slot = await self._pick()
        handle = slot.handle
        slot.in_flight += 1
        slot.sent += 1
        # Only the encoded bytes travel to the actor, not also the base64 text they came from.
        ref = handle.generate.remote(replace(request, images=tuple(image.without_text() for image in request.images)))
        try:
            kind, value = await _awaitable(ref)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                ray.cancel(ref)  # an attempt timeout or Ctrl-C: free the actor's slot too
            raise
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            slot.lost += 1
            self._actor_failed(slot, handle)
            raise ConnectionLost(
                f"ray actor {slot.index} was lost while answering item {request.item_index}: {_actor_reason(exc)}"
            ) from None
        except ray.exceptions.RayTaskError as exc:  # a bug inside the actor method itself
            raise FatalError(f"ray actor {slot.index}: item {request.item_index}: {first_line(exc)}") from None
        except ray.exceptions.RayError as exc:  # object store or scheduling trouble: try again
            raise ServerError(f"ray: item {request.item_index}: {type(exc).__name__}: {first_line(exc)}") from None
        finally:
            slot.in_flight -= 1
        if kind == "error":
            raise value
        return value

    async def _pick(self) -> ActorSlot:
        """The ready actor with the fewest requests in flight (ties: round robin)."""
        assert self._changed is not None
        while True:
            if self._closed:
                raise FatalError("ray: backend closed")
            ready = [slot for slot in self.slots if slot.state == "ready"]
            if ready:
                n = len(self.slots)
                slot = min(ready, key=lambda s: (s.in_flight, (s.index - self._turn) % n))
                self._turn = slot.index + 1
                return slot
            if all(slot.state == "dead" for slot in self.slots):
                problems = "; ".join(f"actor {s.index}: {s.problem}" for s in self.slots)
                raise ExecutorLost(f"ray: no actor of {self.spec.key} is left ({problems})")
            self._changed.clear()
            await self._changed.wait()  # some actor is recovering; the attempt timeout bounds this

    def _actor_failed(self, slot: ActorSlot, handle: Any) -> None:
        if slot.handle is not handle or slot.state != "ready" or self._closed:
            return  # already noticed (another request of the same actor got here first)
        slot.state = "recovering"
        slot.recovery = asyncio.get_running_loop().create_task(
            self._recover(slot), name=f"ray-recover-{self.spec.key}-{slot.index}"
        )

    async def _recover(self, slot: ActorSlot) -> None:
        """Wait for Ray to restart the actor and its model to load; replace it if it cannot come back."""
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.load_timeout_s
        restarted = True
        try:
            while not self._closed:
                handle = slot.handle
                remaining = deadline - loop.time()
                if remaining <= 0:
                    slot.problem = f"did not come back within {self.options.load_timeout_s:g} s"
                    break
                try:
                    kind, value = await asyncio.wait_for(_awaitable(handle.load.remote()), remaining)
                except ray.exceptions.ActorUnavailableError:  # Ray is restarting it
                    await asyncio.sleep(PROBE_INTERVAL_S)
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    # Dead for good (restarts used up, or killed): a fresh actor in its place.
                    if slot.replacements >= MAX_REPLACEMENTS:
                        slot.problem = f"died {slot.replacements + 1} times, last: {_actor_reason(exc)}"
                        break
                    with contextlib.suppress(Exception):
                        ray.kill(handle, no_restart=True)
                    slot.replacements += 1
                    slot.handle = self._new_actor(slot.index)
                    deadline = loop.time() + self.options.load_timeout_s
                    restarted = False
                    continue
                except (asyncio.TimeoutError, TimeoutError):
                    slot.problem = f"did not come back within {self.options.load_timeout_s:g} s"
                    break
                except ray.exceptions.RayError as exc:
                    slot.problem = f"cannot be reached: {first_line(exc)}"
                    break
                if kind == "error":
                    slot.problem = f"cannot load the model again: {value}"
                    break
                # A restart is a new process; a probe that finds the same one means it never died.
                slot.restarts += restarted and value["pid"] != slot.info.get("pid")
                slot.info = value
                slot.state = "ready"
                return
            slot.state = "dead"
            with contextlib.suppress(Exception):
                ray.kill(slot.handle, no_restart=True)
        finally:
            slot.recovery = None
            self._changed.set()

    # -- what happened ------------------------------------------------------------------------

    async def actor_info(self) -> list[dict[str, Any]]:
        """Each live actor's report (pid, node, requests served, batch sizes); {} for dead ones."""

        async def one(slot: ActorSlot) -> dict[str, Any]:
            if slot.state != "ready":
                return {}
            try:
                return await asyncio.wait_for(_awaitable(slot.handle.info.remote()), 30)
            except (ray.exceptions.RayError, asyncio.TimeoutError, TimeoutError):
                return {}

        return list(await asyncio.gather(*(one(slot) for slot in self.slots)))

    def placement(self) -> list[dict[str, Any]]:
        """The driver's view of each slot: requests sent and lost, restarts, replacements, state."""
        return [
            {
                "actor": slot.index,
                "state": slot.state,
                "sent": slot.sent,
                "lost": slot.lost,
                "restarts": slot.restarts,
                "replacements": slot.replacements,
                "problem": slot.problem,
            }
            for slot in self.slots
        ]


def _awaitable(ref: Any) -> asyncio.Future[Any]:
    """A Ray ObjectRef as an asyncio future of the running loop."""
    return asyncio.wrap_future(ref.future())


def _actor_reason(exc: BaseException) -> str:
    # Ray's messages run to many lines (ids, namespace, advice); the first says what happened.
    return f"{type(exc).__name__}: {first_line(exc)}"


def _prefixed(error: BaseException, prefix: str) -> BaseException:
    """The same error class with ``prefix`` before its message (attributes kept)."""
    if not isinstance(error, BackendError):
        return FatalError(f"{prefix}{error}")
    try:
        copy = type(error)(f"{prefix}{error}")
    except TypeError:
        return error
    copy.__dict__.update({k: v for k, v in error.__dict__.items() if k not in ("args",)})
    return copy
