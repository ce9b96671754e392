"""One loaded transformers model per process, shared by the torch backends that use it.

Owns: resolving ``device``/``dtype`` (``auto`` -> the GPU when there is one), the identity
fingerprint of a model directory, loading a model + processor once on its own worker thread
(``SharedModel``), and reference counting, so that backends over the same (path, device, dtype,
trust_remote_code, fingerprint) share one load and one thread, and the last ``release`` frees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmai_client.errors import ConfigError, FatalError, MissingExtra, ModelNotFound

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("torch", "torch", "torch") from exc
try:
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("torch", "torch", "transformers") from exc

DTYPES: dict[str, torch.dtype] = {
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
    if value not in DTYPES:
        raise ConfigError(f"torch: dtype must be auto, {', '.join(DTYPES)}, got {value!r}")
    return value


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


@dataclass
class SharedModel:
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
        """Runs on the worker thread (see ``SharedModel.start_loading``)."""
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
        dtype = DTYPES[self.dtype]
        try:
            processor = AutoProcessor.from_pretrained(source, trust_remote_code=self.trust_remote_code)
            model = _from_pretrained(source, dtype, self.trust_remote_code)
        except OSError as exc:
            raise ModelNotFound(f"torch: cannot load a model from {self.path}: {first_line(exc)}") from exc
        except (ValueError, KeyError) as exc:
            raise FatalError(
                f"torch: {self.path} is not an image-text-to-text model transformers "
                f"{transformers.__version__} can load: {first_line(exc)}"
            ) from exc
        except ImportError as exc:
            raise FatalError(f"torch: loading {self.path} needs a missing package: {first_line(exc)}") from exc
        try:
            model.to(self.device)
        except (RuntimeError, AssertionError) as exc:
            raise FatalError(f"torch: cannot move {self.path} to {self.device}: {first_line(exc)}") from exc
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
_MODELS: dict[tuple[str, ...], SharedModel] = {}
_LOADS = 0


def load_count() -> int:
    """How many models this process has loaded (tests and benchmarks read it to prove sharing)."""
    return _LOADS


def acquire(path: str, device: str, dtype: str, trust_remote_code: bool, fp: str) -> SharedModel:
    """The shared model for these settings, loaded or not yet, with one more user."""
    # "./m" and "/abs/m" are one model: key local directories by their resolved path.
    local = Path(path).expanduser()
    where = str(local.resolve()) if local.exists() else path
    key = (where, device, dtype, str(trust_remote_code), fp)
    with _LOCK:
        shared = _MODELS.get(key)
        if shared is None:
            shared = _MODELS[key] = SharedModel(key, path, device, dtype, trust_remote_code)
        shared.users += 1
        return shared


def release(shared: SharedModel) -> None:
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

