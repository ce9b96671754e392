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
share one ``SharedModel``: one load, one worker thread, reference-counted; the last ``close()``
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
import importlib
import io
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image as PILImage

from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.errors import BackendError, BadRequest, ConfigError, FatalError, Overloaded, UnsupportedInput
from gmai_client.options import BackendOptions, option
from gmai_client.types import FinishReason, Request, Response, Usage

if TYPE_CHECKING:
    from gmai_client.backends._torch_model import SharedModel

__all__ = ["TorchBackend", "TorchOptions", "TorchStats", "fingerprint", "load_count"]


def _lib() -> ModuleType:
    """torch, transformers and the shared model loader, imported when a model is built, never when
    this module is: listing the backends (``backends``, the registry) reads the options here and
    would otherwise wait 20-30 s for torch. Missing, they raise ``MissingExtra`` naming the extra."""
    return importlib.import_module("gmai_client.backends._torch_model")


def fingerprint(path: str) -> str:
    """A short hash of a model directory's small config files (``_torch_model.fingerprint``)."""
    return str(_lib().fingerprint(path))


def load_count() -> int:
    """How many models this process has loaded (``_torch_model.load_count``)."""
    return int(_lib().load_count())


@dataclass(frozen=True)
class TorchOptions(BackendOptions):
    device: str = option("auto", "auto | cpu | cuda | cuda:N", default_text="auto: cuda:0 if available, else cpu")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", "the weights' type", default_text="auto: bf16/fp16 on GPU, fp32 on CPU"
    )
    max_batch_size: int = option(8, "most requests per model.generate call", minimum=1, neutral=True)
    max_wait_ms: float = option(
        10.0, "how long a batch waits for more requests after its first", minimum=0, neutral=True
    )
    max_new_tokens: int | None = option(None, "caps each request's max_tokens", minimum=1, default_text="no cap")
    image_max_side: int | None = option(
        None, "downscale images whose longer side exceeds this many pixels first", minimum=1, default_text="as is"
    )
    trust_remote_code: bool = option(False, "allow the model directory's own Python code")


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


class TorchBackend(Backend):
    """A local transformers image-text-to-text model (torch:/path), micro-batched on one thread."""

    name = "torch"
    Options = TorchOptions
    requires = MappingProxyType({"torch": "torch", "transformers": "torch"})

    def __init__(self, path: str, options: TorchOptions | None = None):
        if not path:
            raise ConfigError("torch needs a model directory: torch:/path/to/model")
        self.path = path
        options = options or TorchOptions()
        lib = _lib()
        device = lib.resolve_device(options.device)  # "auto" becomes what this machine has
        self.options = replace(options, device=device, dtype=lib.resolve_dtype(options.dtype, device))
        self.stats = TorchStats()
        self._fingerprint = fingerprint(path)
        self._shared: SharedModel | None = None
        self._jobs: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> TorchBackend:
        # The endpoint part of the spec is unused: a local model has none.
        return cls(spec.target, cls.parse_options(spec))

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
            device, dtype, remote = self.options.device, self.options.dtype, self.options.trust_remote_code
            self._shared = _lib().acquire(self.path, device, dtype, remote, self._fingerprint)
        try:
            await asyncio.wrap_future(self._shared.start_loading())
        except BaseException:
            shared, self._shared = self._shared, None
            _lib().release(shared)
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
            _lib().release(shared)

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
                reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", _lib().first_line(exc))
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
        return _Prepared(request, tuple(images), max_new, float(params.temperature), params.sample_seed)

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

    def _run_batch(self, shared: SharedModel, batch: Sequence[_Prepared]) -> list[Response | BaseException]:
        """Runs on the model's worker thread; returns one Response or exception per request."""
        lib = _lib()
        torch, first_line = lib.torch, lib.first_line
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
            return [kind(f"torch: item {batch[0].request.item_index}: {type(exc).__name__}: {first_line(exc)}")]

    def _generate(self, shared: SharedModel, batch: Sequence[_Prepared]) -> list[Response]:
        torch = _lib().torch
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
