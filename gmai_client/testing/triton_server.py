"""The server side of the Triton model contract (see ``gmai_client.backends.triton``), via PyTriton.

Owns: the contract's tensor declarations, the inference callables that answer through it (a
transformers vision-language model, and deterministic ``echo`` / ``inspect`` / ``slow`` models
that need no torch), and ``serve()``, which runs a real Triton Inference Server until SIGTERM or
SIGINT. ``examples/serve_triton.py`` and the tests both use it, so the contract lives in one place.

Command line (the tests run it in a subprocess; ``examples/serve_triton.py`` is the friendly face)::

    python -m gmai_client.testing.triton_server --http-port 8000 --grpc-port 8001 \\
        --bind llava=vlm:/models/llava --bind echo=echo --bind inspect=inspect

Binding kinds:

* ``vlm:PATH``  ``AutoModelForImageTextToText`` + ``AutoProcessor`` from a local directory;
  chat template with the image first, greedy decoding (sampling when ``temperature`` > 0).
* ``tiny-llava`` a random-weight Llava built on the spot (``testing.tiny_models``), served as ``vlm``.
* ``echo``      answers the first option letter found in the prompt ("A. ..." lines), else "A".
* ``inspect``   answers JSON describing what arrived: the prompt, the image's byte count and
  sha256, ``max_tokens``, ``temperature`` and the server-side batch size. For byte-exact tests.
* ``slow:SECONDS`` like ``inspect`` after sleeping; with a queue of 1, so that a burst of
  requests meets Triton's "exceeds maximum queue size" back-pressure.

Needs ``nvidia-pytriton`` (the ``dev`` extra); ``vlm`` also needs torch and transformers.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOG = logging.getLogger("gmai_client.triton_server")

#: Server-side default when a request carries no ``max_tokens`` (0 means "not sent").
DEFAULT_MAX_TOKENS = 64

# An option line of the reference prompt: "A. text" (also "A) text", "A: text").
_OPTION_LINE = re.compile(r"^\s*([A-Z])[.):]\s", re.MULTILINE)


@dataclass(frozen=True)
class Binding:
    """One model to serve: its name, an inference callable over the contract's tensors, and batching."""

    name: str
    infer: Callable[..., Any]
    max_batch_size: int = 8
    max_queue_size: int = 0  # 0: unbounded; >0: Triton rejects requests beyond it (back-pressure)
    max_queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch


# --------------------------------------------------------------------------------------------
# The contract: tensors as PyTriton declares them (shapes exclude the batch dimension).


def contract_inputs() -> list[Any]:
    from pytriton.model_config import Tensor

    return [
        Tensor(name="prompt", dtype=bytes, shape=(1,)),
        Tensor(name="image", dtype=bytes, shape=(1,)),
        Tensor(name="max_tokens", dtype=np.int32, shape=(1,), optional=True),
        Tensor(name="temperature", dtype=np.float32, shape=(1,), optional=True),
    ]


def contract_outputs() -> list[Any]:
    from pytriton.model_config import Tensor

    return [Tensor(name="text", dtype=bytes, shape=(1,))]


def _optional_defaults() -> dict[str, np.ndarray]:
    # Requests may omit the optional inputs; the batcher needs every request to have the same keys.
    return {"max_tokens": np.array([0], dtype=np.int32), "temperature": np.array([0.0], dtype=np.float32)}


def _as_bytes(value: Any) -> bytes:
    # BYTES tensors arrive as object arrays of ``bytes``; never go through numpy's "S" dtype, which
    # drops trailing NUL bytes.
    return value if isinstance(value, bytes) else bytes(value)


def _text_output(texts: Sequence[str]) -> dict[str, np.ndarray]:
    return {"text": np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)}


# --------------------------------------------------------------------------------------------
# Deterministic models (no torch).


def echo_letter(prompt: str) -> str:
    """The first option letter of a reference prompt, or "A" when there is none."""
    match = _OPTION_LINE.search(prompt)
    return match.group(1) if match else "A"


def inspect_reply(prompt: bytes, image: bytes, max_tokens: int, temperature: float, batch_size: int) -> str:
    return json.dumps(
        {
            "prompt": prompt.decode("utf-8"),
            "image_bytes": len(image),
            "image_sha256": hashlib.sha256(image).hexdigest(),
            "max_tokens": int(max_tokens),
            "temperature": round(float(temperature), 6),
            "batch_size": batch_size,
        },
        ensure_ascii=False,
    )


def make_echo_infer(kind: str = "echo", delay_s: float = 0.0) -> Callable[..., Any]:
    """A batched inference callable for ``echo``, ``inspect`` or ``slow`` (inspect after a sleep)."""
    from pytriton.decorators import batch, fill_optionals

    if kind not in ("echo", "inspect", "slow"):
        raise ValueError(f"unknown echo kind {kind!r}")

    @fill_optionals(**_optional_defaults())
    @batch
    def infer(prompt: np.ndarray, image: np.ndarray, max_tokens: np.ndarray, temperature: np.ndarray):
        if delay_s:
            time.sleep(delay_s)
        rows = len(prompt)
        texts = []
        for row in range(rows):
            prompt_bytes = _as_bytes(prompt[row, 0])
            if kind == "echo":
                texts.append(echo_letter(prompt_bytes.decode("utf-8", errors="replace")))
            else:
                image_bytes = _as_bytes(image[row, 0])
                texts.append(inspect_reply(prompt_bytes, image_bytes, max_tokens[row, 0], temperature[row, 0], rows))
        return _text_output(texts)

    return infer


# --------------------------------------------------------------------------------------------
# A transformers vision-language model.


class VisionLanguageModel:
    """``AutoModelForImageTextToText`` + ``AutoProcessor`` from a local path, answering one batch at a time."""

    def __init__(self, model_path: str | os.PathLike[str], *, default_max_tokens: int = DEFAULT_MAX_TOKENS):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.path = str(model_path)
        self.default_max_tokens = default_max_tokens
        self.processor = AutoProcessor.from_pretrained(self.path)
        tokenizer = self.processor.tokenizer
        # Batched generation of a decoder-only model needs left padding and a pad token.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=dtype).eval()
        if torch.cuda.is_available():
            self.model = self.model.to("cuda")
        self.lock = threading.Lock()  # one generate at a time, even with several model instances

    def answer(
        self, prompts: Sequence[str], images: Sequence[bytes], max_tokens: Sequence[int], temperature: float
    ) -> list[str]:
        from PIL import Image as PILImage

        pictures = []
        for row, data in enumerate(images):
            try:
                with PILImage.open(io.BytesIO(data)) as picture:
                    pictures.append(picture.convert("RGB"))
            except Exception as exc:  # PIL raises several types for bad bytes
                # One bad image fails the whole batch: PyTriton has no per-request errors in a batch.
                raise ValueError(f"request {row} of the batch: cannot decode image ({len(data)} bytes): {exc}") from exc
        texts = [
            self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for prompt in prompts
        ]
        limits = [int(n) if int(n) > 0 else self.default_max_tokens for n in max_tokens]
        inputs = self.processor(images=pictures, text=texts, return_tensors="pt", padding=True)
        inputs = inputs.to(self.model.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature)}
        with self.lock, self.torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max(limits), **sampling)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        # The batch generated up to the largest limit: cut each row back to its own.
        return [
            self.processor.tokenizer.decode(row[:limit], skip_special_tokens=True).strip()
            for row, limit in zip(new_tokens, limits, strict=True)
        ]


def make_vlm_infer(
    model_path: str | os.PathLike[str], *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> Callable[..., Any]:
    """A batched inference callable serving a local transformers vision-language model."""
    from pytriton.decorators import batch, fill_optionals, group_by_values

    vlm = VisionLanguageModel(model_path, default_max_tokens=default_max_tokens)

    @fill_optionals(**_optional_defaults())
    @batch
    @group_by_values("temperature")  # one generate call per temperature: greedy and sampled rows differ
    def infer(prompt: np.ndarray, image: np.ndarray, max_tokens: np.ndarray, temperature: np.ndarray):
        prompts = [_as_bytes(value).decode("utf-8") for value in prompt[:, 0]]
        images = [_as_bytes(value) for value in image[:, 0]]
        return _text_output(vlm.answer(prompts, images, list(max_tokens[:, 0]), float(temperature[0, 0])))

    return infer


# --------------------------------------------------------------------------------------------
# Running the server.


def prepare_environment() -> None:
    """Make the python-backend stub load *this* interpreter's libpython.

    The stub that tritonserver starts links against ``libpython3.X.so``; with a pyenv (or any
    non-system) Python the loader otherwise finds the distribution's libpython of the same version,
    and the model fails to load (``'_thread.RLock' object has no attribute '_recursion_count'``).
    PyTriton copies ``os.environ`` into the server's environment when it starts it, so setting the
    variable here, before ``Triton()`` runs, is enough.
    """
    lib = str(Path(sys.base_prefix) / "lib")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if lib not in current.split(os.pathsep):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in (lib, current) if part)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def serve(
    bindings: Sequence[Binding],
    *,
    host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    log_verbose: int = 0,
    list_models: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``bindings`` on one Triton server until SIGTERM/SIGINT; stops the server and cleans up.

    ``list_models=True`` opens Triton's read-only statistics API, which PyTriton otherwise guards with
    a token: it is the one place a PyTriton server lists its models (they are loaded through the
    repository API, so the repository index is empty), and the client names them when asked for a
    model that is not there. Pass False to keep per-model request counts private.
    """
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    prepare_environment()
    # SIGTERM must unwind through ``with Triton()``: otherwise the tritonserver child outlives us
    # and the workspace stays behind.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    restricted = [e for e in DEFAULT_PROTECTED_ENDPOINTS if not (list_models and e == "statistics")]
    config = TritonConfig(
        http_address=host,
        http_port=http_port,
        grpc_address=host,
        grpc_port=grpc_port,
        allow_metrics=False,
        log_verbose=log_verbose,
        # Time for models to unload on stop; when it runs out tritonserver exits at once and leaves
        # its python-backend shared memory in /dev/shm (seen here with 2 s).
        exit_timeout_secs=15,
    )
    with tempfile.TemporaryDirectory(prefix="gmai-triton-") as workspace:
        try:
            with Triton(
                config=config,
                workspace=Path(workspace) / "pytriton",
                security_config=TritonSecurityConfig(restricted_endpoints=restricted),
            ) as triton:
                for binding in bindings:
                    _bind(triton, binding)
                if on_ready is not None:
                    # bind() returns once each model is loaded; serve() below only waits.
                    on_ready()
                triton.serve()
        except KeyboardInterrupt:
            LOG.info("stopping Triton")


def _bind(triton: Any, binding: Binding) -> None:
    """Load ``binding`` on ``triton`` behind the contract, with its batching and queue limits."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy

    queue = QueuePolicy(max_queue_size=binding.max_queue_size) if binding.max_queue_size else None
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=binding.max_queue_delay_us,
        **({"default_queue_policy": queue} if queue else {}),
    )
    triton.bind(
        model_name=binding.name,
        infer_func=binding.infer,
        inputs=contract_inputs(),
        outputs=contract_outputs(),
        config=ModelConfig(max_batch_size=binding.max_batch_size, batcher=batcher),
        strict=True,
    )


def parse_binding(text: str, max_batch_size: int = 8, scratch: Path | None = None) -> Binding:
    """``NAME=vlm:PATH`` | ``NAME=tiny-llava`` | ``NAME=echo`` | ``NAME=inspect`` | ``NAME=slow:SECONDS``."""
    name, sep, spec = text.partition("=")
    kind, _, arg = spec.partition(":")
    if not sep or not name:
        raise ValueError(f"--bind {text!r}: expected NAME=KIND[:ARG]")
    if kind == "vlm":
        if not arg:
            raise ValueError(f"--bind {text!r}: vlm needs a model path (NAME=vlm:PATH)")
        return Binding(name, make_vlm_infer(arg), max_batch_size=max_batch_size)
    if kind == "tiny-llava":
        # Built here rather than by the caller: this process imports torch anyway, and the build
        # needs nothing else (no download). For tests.
        from gmai_client.testing.tiny_models import build_tiny_llava

        if scratch is None:
            raise ValueError(f"--bind {text!r}: tiny-llava needs a scratch directory to build in")
        path = build_tiny_llava(scratch / f"tiny-llava-{name}")
        return Binding(name, make_vlm_infer(path), max_batch_size=max_batch_size)
    if kind in ("echo", "inspect"):
        return Binding(name, make_echo_infer(kind), max_batch_size=max_batch_size)
    if kind == "slow":
        # One executing batch of one, one waiting: the rest of a burst is refused as queue-full.
        return Binding(name, make_echo_infer("slow", float(arg or 0.5)), max_batch_size=1, max_queue_size=1)
    raise ValueError(f"--bind {text!r}: unknown kind {kind!r} (vlm, tiny-llava, echo, inspect, slow)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve models behind the gmai_client Triton contract.")
    parser.add_argument(
        "--bind",
        action="append",
        required=True,
        help="NAME=vlm:PATH | NAME=tiny-llava | NAME=echo | NAME=inspect | NAME=slow:S",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument(
        "--private-statistics",
        action="store_true",
        help="guard the statistics API (then clients cannot list the served models in their errors)",
    )
    parser.add_argument("--ready-file", help="written (empty) once every model is loaded")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # From here on SIGTERM unwinds (loading a model can take a while), so the scratch dir goes too.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="gmai-triton-models-") as scratch:
            bindings = [parse_binding(text, args.max_batch_size, Path(scratch)) for text in args.bind]

            def ready() -> None:
                names = ", ".join(b.name for b in bindings)
                LOG.info(
                    "serving %s on http %s:%d, grpc %s:%d", names, args.host, args.http_port, args.host, args.grpc_port
                )
                if args.ready_file:
                    Path(args.ready_file).touch()

            serve(
                bindings,
                host=args.host,
                http_port=args.http_port,
                grpc_port=args.grpc_port,
                list_models=not args.private_statistics,
                on_ready=ready,
            )
    except KeyboardInterrupt:
        LOG.info("interrupted")


if __name__ == "__main__":
    main()
