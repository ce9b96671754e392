"""Local transformers vision-language models (``torch:/path/to/model``), micro-batched.

Owns: loading a model directory with ``AutoModelForImageTextToText`` + ``AutoProcessor`` once per
process, turning ``Request``s into chat-template prompts (images first, then the text), and
serving concurrent ``generate()`` calls with as few ``model.generate`` calls as possible.

How a request flows:

1. ``generate()`` decodes the request's images off the event loop (a bad image fails that
   request alone, as ``UnsupportedInput``), then queues a job and awaits its future.
2. One dispatcher coroutine per backend (per event loop) takes the oldest job, waits at most
   ``max_wait_ms`` for up to ``max_batch_size`` jobs with the same generation parameters, and
   runs them as ONE left-padded, attention-masked ``model.generate`` call.
3. That call runs on the model's single worker thread, so the event loop never blocks and the
   model (and its tokenizer, which is not thread-safe) is never used by two threads at once.

Sharing: backends over the same (path, device, dtype, trust_remote_code, config fingerprint)
share one ``_SharedModel``: one load, one worker thread, reference-counted; the last ``close()``
frees it. The worker thread belongs to the shared model rather than to each backend because two
backends on one model must not drive it from two threads.

Errors: a missing model -> ``ModelNotFound``; any other load failure -> ``FatalError``; an image
PIL cannot decode -> ``UnsupportedInput`` naming the item and image; CUDA out of memory -> the
batch is split in halves and retried, and a single request that still does not fit raises
``Overloaded`` (retryable: GPU memory is shared with other work, a later attempt may fit). Any
other failure of a batch is retried request by request, so only the culprit fails.

Decoding is greedy when ``temperature == 0``. Sampled answers (``temperature > 0``) depend on the
batch a request lands in; the request's seed, if any, seeds torch's generator for its batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmai_client.config import ModelSpec
from gmai_client.errors import (
    BackendError,
    BadRequest,
    ConfigError,
    FatalError,
    MissingExtra,
    ModelNotFound,
    Overloaded,
    UnsupportedInput,
)
from gmai_client.types import FinishReason, Request, Response, Usage

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("torch", "torch", "torch") from exc
try:
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("torch", "torch", "transformers") from exc

from PIL import Image as PILImage

_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
# Small files that decide how a model directory answers (architecture, generation defaults, chat
# template, image preprocessing): a change to any of them must change the backend's identity.
_FINGERPRINT_FILES = (
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class TorchOptions:
    """The resolved backend options (``auto`` already turned into a concrete device and dtype)."""

    device: str = "cpu"
    dtype: str = "float32"
    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_new_tokens: int | None = None  # caps request.params.max_tokens when set
    image_max_side: int | None = None
    trust_remote_code: bool = False


def resolve_device(value: str) -> str:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; validates explicit devices."""
    value = (value or "auto").strip().lower()
    if value == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if value == "cuda" or value.startswith("cuda:"):
        index = value.partition(":")[2] or "0"
        if not index.isdigit():
            raise ConfigError(f"torch: device {value!r} is not cuda:N")
        return f"cuda:{int(index)}"
    raise ConfigError(f"torch: device must be auto, cpu, cuda or cuda:N, got {value!r}")


def resolve_dtype(value: str, device: str) -> str:
    """``auto`` -> bfloat16 on a GPU that supports it (else float16), float32 on the CPU."""
    value = (value or "auto").strip().lower()
    if value == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if value not in _DTYPES:
        raise ConfigError(f"torch: dtype must be auto, {', '.join(_DTYPES)}, got {value!r}")
    return value


def _positive_int(spec: ModelSpec, key: str, default: int | None) -> int | None:
    raw = spec.option(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"torch: option {key} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"torch: option {key} must be >= 1, got {value}")
    return value


def _bool(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def fingerprint(path: str) -> str:
    """A short hash of a local model directory's small config files ("" if it is not a directory).

    Weights are not hashed (gigabytes); a model retrained into the same directory with an
    unchanged config keeps its fingerprint.
    """
    folder = Path(path)
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# One loaded model per process


@dataclass
class _SharedModel:
    """A model + processor loaded once, its single worker thread, and how many backends use it."""

    key: tuple[str, ...]
    path: str
    device: str
    dtype: str
    trust_remote_code: bool
    executor: ThreadPoolExecutor = field(init=False)
    users: int = 0
    loading: ThreadFuture[None] | None = None
    model: Any = None
    processor: Any = None
    eos_ids: frozenset[int] = frozenset()
    pad_id: int = 0

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"torch-{Path(self.path).name}")

    def load(self) -> None:
        """Runs on the worker thread (see ``_SharedModel.start_loading``)."""
        local = Path(self.path).expanduser()
        if not local.exists() and (self.path.startswith((".", "/", "~")) or self.path.count("/") != 1):
            # Not a directory and not shaped like a hub id (org/name) that could be in the HF cache.
            raise ModelNotFound(f"torch: no model directory at {self.path}")
        if local.is_dir() and not (local / "config.json").is_file():
            raise ModelNotFound(f"torch: {self.path} has no config.json: not a transformers model directory")
        source = str(local) if local.exists() else self.path
        if self.device.startswith("cuda"):
            index = int(self.device.partition(":")[2] or 0)
            if not torch.cuda.is_available():
                raise FatalError(f"torch: device {self.device} asked for, but this torch sees no CUDA GPU")
            if index >= torch.cuda.device_count():
                raise FatalError(f"torch: device {self.device} asked for, but only {torch.cuda.device_count()} GPU(s)")
        dtype = _DTYPES[self.dtype]
        try:
            processor = AutoProcessor.from_pretrained(source, trust_remote_code=self.trust_remote_code)
            model = _from_pretrained(source, dtype, self.trust_remote_code)
        except OSError as exc:
            raise ModelNotFound(f"torch: cannot load a model from {self.path}: {_first_line(exc)}") from exc
        except (ValueError, KeyError) as exc:
            raise FatalError(
                f"torch: {self.path} is not an image-text-to-text model transformers "
                f"{transformers.__version__} can load: {_first_line(exc)}"
            ) from exc
        except ImportError as exc:
            raise FatalError(f"torch: loading {self.path} needs a missing package: {_first_line(exc)}") from exc
        try:
            model.to(self.device)
        except (RuntimeError, AssertionError) as exc:
            raise FatalError(f"torch: cannot move {self.path} to {self.device}: {_first_line(exc)}") from exc
        model.eval()
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise FatalError(f"torch: the processor of {self.path} has no tokenizer")
        # Batched generation of a decoder-only model needs LEFT padding: every row's last prompt
        # token must sit at the same position, where generation continues.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else [int(e) for e in eos or ()])
        self.pad_id = int(tokenizer.pad_token_id)
        self.model, self.processor = model, processor
        global _LOADS
        with _LOCK:
            _LOADS += 1

    def start_loading(self) -> ThreadFuture[None]:
        with _LOCK:
            if self.loading is None or (self.loading.done() and self.loading.exception() is not None):
                self.loading = self.executor.submit(self.load)
            return self.loading

    def release(self) -> None:
        self.model = self.processor = None
        self.executor.shutdown(wait=False)
        if self.device.startswith("cuda"):
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()


_LOCK = threading.Lock()
_MODELS: dict[tuple[str, ...], _SharedModel] = {}
_LOADS = 0


def load_count() -> int:
    """How many models this process has loaded (tests and benchmarks read it to prove sharing)."""
    return _LOADS


def _acquire(path: str, options: TorchOptions, fp: str) -> _SharedModel:
    # "./m" and "/abs/m" are one model: key local directories by their resolved path.
    local = Path(path).expanduser()
    where = str(local.resolve()) if local.exists() else path
    key = (where, options.device, options.dtype, str(options.trust_remote_code), fp)
    with _LOCK:
        shared = _MODELS.get(key)
        if shared is None:
            shared = _MODELS[key] = _SharedModel(key, path, options.device, options.dtype, options.trust_remote_code)
        shared.users += 1
        return shared


def _release(shared: _SharedModel) -> None:
    with _LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        _MODELS.pop(shared.key, None)
    shared.release()


def _from_pretrained(source: str, dtype: torch.dtype, trust_remote_code: bool) -> Any:
    # transformers renamed ``torch_dtype`` to ``dtype`` (4.56); the old name still works but warns.
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    kwargs["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = dtype
    return AutoModelForImageTextToText.from_pretrained(source, **kwargs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# --------------------------------------------------------------------------------------------
# The backend


@dataclass
class TorchStats:
    """What the batcher did: proof that concurrent requests shared ``model.generate`` calls."""

    generate_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    generate_s: float = 0.0  # time spent inside model.generate (worker thread)

    @property
    def items(self) -> int:
        return sum(self.batch_sizes)


@dataclass(frozen=True)
class _Prepared:
    """A request with its images decoded (PIL, RGB) and its generation parameters resolved."""

    request: Request
    images: tuple[Any, ...]
    max_new_tokens: int
    temperature: float
    seed: int | None

    @property
    def group(self) -> tuple[int, float, int | None]:
        # Only requests that generate alike can share one model.generate call.
        return (self.max_new_tokens, self.temperature, self.seed if self.temperature > 0 else None)


@dataclass
class _Job:
    prepared: _Prepared
    future: asyncio.Future[Response]
    arrived: float  # loop.time() when queued: a batch waits at most max_wait after its first job


class TorchBackend:
    """A local transformers image-text-to-text model (torch:/path), micro-batched on one thread."""

    name = "torch"
    EXTRA = "torch"
    OPTIONS: Mapping[str, str] = {
        "device": "auto | cpu | cuda | cuda:N (default auto: cuda:0 if available, else cpu)",
        "dtype": "auto | bfloat16 | float16 | float32 (default auto: bf16/fp16 on GPU, fp32 on CPU)",
        "max_batch_size": "most requests per model.generate call (default 8)",
        "max_wait_ms": "how long a batch waits for more requests after its first (default 10)",
        "max_new_tokens": "caps each request's max_tokens (default: no cap)",
        "image_max_side": "downscale images whose longer side exceeds this many pixels first",
        "trust_remote_code": "allow the model directory's own Python code (default false)",
    }

    def __init__(self, path: str, options: TorchOptions | None = None):
        if not path:
            raise ConfigError("torch needs a model directory: torch:/path/to/model")
        self.path = path
        self.options = options or TorchOptions()
        if self.options.max_batch_size < 1:
            raise ConfigError("torch: max_batch_size must be >= 1")
        self.stats = TorchStats()
        self._fingerprint = fingerprint(path)
        self._shared: _SharedModel | None = None
        self._jobs: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> TorchBackend:
        device = resolve_device(spec.option("device", "auto") or "auto")
        wait = spec.option("max_wait_ms", "10") or "10"
        try:
            max_wait_ms = float(wait)
        except ValueError:
            raise ConfigError(f"torch: option max_wait_ms must be a number, got {wait!r}") from None
        if max_wait_ms < 0:
            raise ConfigError(f"torch: option max_wait_ms must be >= 0, got {max_wait_ms}")
        options = TorchOptions(
            device=device,
            dtype=resolve_dtype(spec.option("dtype", "auto") or "auto", device),
            max_batch_size=_positive_int(spec, "max_batch_size", 8) or 8,
            max_wait_ms=max_wait_ms,
            max_new_tokens=_positive_int(spec, "max_new_tokens", None),
            image_max_side=_positive_int(spec, "image_max_side", None),
            trust_remote_code=_bool(spec.option("trust_remote_code")),
        )
        # The endpoint part of the spec is unused: a local model has none.
        return cls(spec.target, options)

    def identity(self) -> Mapping[str, str]:
        model = f"{self.path}#{self._fingerprint}" if self._fingerprint else self.path
        identity = {"backend": self.name, "model": model, "endpoint": self.options.device}
        identity["dtype"] = self.options.dtype
        if self.options.image_max_side:
            identity["image_max_side"] = str(self.options.image_max_side)
        return identity

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._shared is None:
            self._shared = _acquire(self.path, self.options, self._fingerprint)
        try:
            await asyncio.wrap_future(self._shared.start_loading())
        except BaseException:
            shared, self._shared = self._shared, None
            _release(shared)
            raise

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(BaseException):
                await self._dispatcher
            self._dispatcher = None
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(FatalError("torch: backend closed"))
        self._jobs.clear()
        if self._shared is not None:
            shared, self._shared = self._shared, None
            _release(shared)

    @property
    def model(self) -> Any:
        return self._shared.model if self._shared else None

    # -- requests -----------------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        if self._shared is None or self._shared.model is None:
            await self.start()
        prepared = await asyncio.to_thread(self._prepare, request)
        if self._shared is None:  # close() ran while the images were being decoded
            raise FatalError("torch: backend closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._dispatcher is None or self._dispatcher.done():
            # A fresh event loop (a new asyncio.run) needs its own Event and dispatcher task;
            # jobs left from a finished loop have no one awaiting them.
            if self._loop is not loop:
                self._jobs = []
            self._loop, self._wakeup = loop, asyncio.Event()
            self._dispatcher = loop.create_task(self._dispatch(), name=f"torch-batcher-{self.path}")
        job = _Job(prepared, loop.create_future(), loop.time())
        self._jobs.append(job)
        assert self._wakeup is not None
        self._wakeup.set()
        return await job.future

    def _prepare(self, request: Request) -> _Prepared:
        """Decode images (worker pool, not the model thread) and resolve generation parameters."""
        images = []
        count = len(request.images)
        for number, image in enumerate(request.images, 1):
            which = f"image {number} of {count}" if count > 1 else "image"
            try:
                pil = PILImage.open(io.BytesIO(image.data))
                pil.load()
                pil = pil.convert("RGB")
            except Exception as exc:  # PIL raises many types for bad bytes
                # PIL names the BytesIO object (with its address): noise in a record, drop it.
                reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", _first_line(exc))
                raise UnsupportedInput(
                    f"torch: item {request.item_index}: {which} cannot be decoded ({image.mime}): {reason}"
                ) from exc
            side = self.options.image_max_side
            if side and max(pil.size) > side:
                pil.thumbnail((side, side), PILImage.Resampling.BICUBIC)
            images.append(pil)
        params = request.params
        max_new = max(1, params.max_tokens)
        if self.options.max_new_tokens:
            max_new = min(max_new, self.options.max_new_tokens)
        return _Prepared(request, tuple(images), max_new, float(params.temperature), params.seed)

    async def _dispatch(self) -> None:
        """Forever: form a batch from the oldest job's group, run it on the model thread."""
        assert self._wakeup is not None and self._shared is not None
        loop = asyncio.get_running_loop()
        wait_s = self.options.max_wait_ms / 1000.0
        limit = self.options.max_batch_size
        while True:
            self._jobs = [job for job in self._jobs if not job.future.done()]  # drop cancelled callers
            if not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = self._jobs[0].prepared.group
            deadline = self._jobs[0].arrived + wait_s
            # Wait (at most max_wait_ms) for the batch to fill. Jobs queued while the previous
            # batch ran are already here, so under load batches form without waiting at all.
            while sum(job.prepared.group == group for job in self._jobs) < limit:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except (TimeoutError, asyncio.TimeoutError):
                    break
            batch = [job for job in self._jobs if job.prepared.group == group and not job.future.done()][:limit]
            taken = {id(job) for job in batch}
            self._jobs = [job for job in self._jobs if id(job) not in taken]
            if not batch:
                continue
            shared = self._shared
            try:
                results = await loop.run_in_executor(
                    shared.executor, self._run_batch, shared, [job.prepared for job in batch]
                )
            except BaseException as exc:  # cancellation (close) or a bug: fail the batch, not hang it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(
                            exc if isinstance(exc, Exception) else FatalError("torch: backend closed")
                        )
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    # -- the model thread ---------------------------------------------------------------------

    def _run_batch(self, shared: _SharedModel, batch: Sequence[_Prepared]) -> list[Response | BaseException]:
        """Runs on the model's worker thread; returns one Response or exception per request."""
        try:
            return list(self._generate(shared, batch))
        except torch.cuda.OutOfMemoryError:
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
            if len(batch) == 1:
                return [
                    Overloaded(
                        f"torch: CUDA out of memory generating item {batch[0].request.item_index} "
                        f"on {shared.device} even alone"
                    )
                ]
            half = len(batch) // 2  # halve and retry: the halves may fit where the whole did not
            return self._run_batch(shared, batch[:half]) + self._run_batch(shared, batch[half:])
        except BackendError as exc:
            if len(batch) == 1:
                return [exc]
            return [result for one in batch for result in self._run_batch(shared, [one])]
        except Exception as exc:
            if len(batch) > 1:  # find the culprit: one bad request must not fail its batch-mates
                return [result for one in batch for result in self._run_batch(shared, [one])]
            kind = BadRequest if isinstance(exc, (ValueError, TypeError, IndexError)) else FatalError
            return [kind(f"torch: item {batch[0].request.item_index}: {type(exc).__name__}: {_first_line(exc)}")]

    def _generate(self, shared: _SharedModel, batch: Sequence[_Prepared]) -> list[Response]:
        processor, model = shared.processor, shared.model
        if model is None:
            raise FatalError("torch: backend closed")
        texts = [self._prompt(processor, prepared.request) for prepared in batch]
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if any(prepared.images for prepared in batch):
            # One list per row: processors (Idefics3, Qwen2-VL, Llava) map images to rows this way.
            kwargs["images"] = [list(prepared.images) for prepared in batch]
        inputs = processor(**kwargs)
        inputs = inputs.to(shared.device, dtype=model.dtype)
        first = batch[0]
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_new_tokens,
            "pad_token_id": shared.pad_id,
        }
        if first.temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=first.temperature)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        else:
            # Explicit, so a model's generation_config (sampling by default) cannot override greedy.
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        started = time.perf_counter()
        with torch.inference_mode():
            sequences = model.generate(**inputs, **gen_kwargs)
        self.stats.generate_s += time.perf_counter() - started
        self.stats.generate_calls += 1
        self.stats.batch_sizes.append(len(batch))

        attention = inputs["attention_mask"]
        prompt_len = inputs["input_ids"].shape[1]
        generated = sequences[:, prompt_len:].tolist()
        model_name = Path(self.path).name
        responses = []
        for row, tokens in enumerate(generated):
            finish: FinishReason = "length"
            for end, token in enumerate(tokens):
                if token in shared.eos_ids:
                    tokens, finish = tokens[: end + 1], "stop"  # the EOS counts as generated
                    break
            text = processor.decode(tokens, skip_special_tokens=True).strip()
            usage = Usage(input_tokens=int(attention[row].sum()), output_tokens=len(tokens))
            responses.append(Response(text, finish_reason=finish, usage=usage, model=model_name))
        return responses

    @staticmethod
    def _prompt(processor: Any, request: Request) -> str:
        content: list[dict[str, str]] = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.text})
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if request.system:
            system = [{"role": "system", "content": [{"type": "text", "text": request.system}]}]
            try:
                return processor.apply_chat_template(system + messages, add_generation_prompt=True, tokenize=False)
            except Exception:
                # Some templates reject a system turn: fold it into the user's text instead.
                content[-1] = {"type": "text", "text": f"{request.system}\n\n{request.text}"}
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
