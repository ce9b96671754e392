"""Ray itself and the actor that serves one loaded torch model inside it (``--executor ray``).

``acquire_ray`` / ``release_ray``: this process's connection to Ray, started once (a local
instance on loopback, or a cluster joined by address) and shut down by the last user only if this
process started it. ``ModelActor``: what runs in each Ray worker, a ``TorchBackend`` whose
dispatcher micro-batches the requests that arrive together on that actor. ``ray.py`` drives them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from gmai_client.config import ModelSpec
from gmai_client.errors import BackendError, FatalError, MissingExtra
from gmai_client.types import Request

try:
    import ray
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("ray", "ray", "ray") from exc

from gmai_client.backends.torch import TorchBackend

#: The Ray setting that keeps a local instance's addresses on 127.0.0.1 (read by Ray when it
#: picks the node's address; on Linux it otherwise uses the machine's network address).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_RAY_LOCK = threading.Lock()
_RAY_USERS = 0
_RAY_OURS = False


@contextlib.contextmanager
def _loopback() -> Iterator[None]:
    """Start a local instance on 127.0.0.1 only (Ray's processes inherit the setting)."""
    from ray._private import ray_constants  # read when Ray picks the node's address

    saved_env, saved_flag = os.environ.get(_LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = saved_env


def _use_saved_token() -> None:
    """Send the token ``ray start`` saved (~/.ray/auth_token) when joining a cluster by address.

    Ray turns token auth on for clusters it starts, but a driver joining one by address sends
    no token unless RAY_AUTH_MODE=token: with that unset and a token saved, turn it on (what
    Ray itself does for a local instance). Older Rays have no token auth: nothing to do.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    with contextlib.suppress(Exception):
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _machine_cpus() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def acquire_ray(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray; returns True if this call started it.

    ``num_cpus`` sizes a local instance (default: the CPUs this process may use).

    Runs on the caller's thread on purpose: a Ray started from a worker thread can keep the
    process from exiting for a minute when it is not shut down explicitly.
    """
    global _RAY_USERS, _RAY_OURS
    with _RAY_LOCK:
        started = False
        if not ray.is_initialized():
            try:
                if address:
                    _use_saved_token()
                    # A cluster on loopback (ray start --head --node-ip-address 127.0.0.1): this
                    # driver must say 127.0.0.1 too, or Ray announces the machine's address.
                    with _loopback() if _is_loopback(address) else contextlib.nullcontext():
                        ray.init(address=address, log_to_driver=False)
                else:
                    with _loopback():
                        ray.init(
                            address="local",
                            num_cpus=num_cpus or _machine_cpus(),
                            include_dashboard=False,
                            log_to_driver=False,
                        )
            except ConnectionError as exc:
                raise FatalError(f"ray: cannot connect to the cluster at {address}: {first_line(exc)}") from None
            except (RuntimeError, ValueError) as exc:
                where = f"the cluster at {address}" if address else "a local instance"
                raise FatalError(f"ray: cannot start or join {where}: {first_line(exc)}") from None
            _RAY_OURS = started = True
        _RAY_USERS += 1
        return started


def release_ray() -> None:
    global _RAY_USERS, _RAY_OURS
    with _RAY_LOCK:
        _RAY_USERS = max(0, _RAY_USERS - 1)
        if _RAY_USERS == 0 and _RAY_OURS:
            _RAY_OURS = False
            with contextlib.suppress(Exception):
                ray.shutdown()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]



class ModelActor:
    """Runs inside a Ray worker (created through ``ray.remote``): a ``TorchBackend`` and counters.

    Every method is ``async``: the actor's requests share one event loop, which is where the
    backend's dispatcher batches them. Errors of a request come back as values, not exceptions,
    so that Ray does not wrap them and the driver re-raises them unchanged.
    """

    def __init__(self, spec: ModelSpec, seed: int, torch_threads: int | None):
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self._backend = TorchBackend.from_spec(spec, seed=seed)
        self._served = 0
        self._began = time.time()

    async def load(self) -> tuple[str, Any]:
        """Load the model (once); ("ok", info) or ("error", the BackendError that stopped it)."""
        try:
            await self._backend.start()
        except BackendError as exc:
            return "error", exc
        except Exception as exc:
            return "error", FatalError(f"torch: loading {self._backend.path} failed: {first_line(exc)}")
        return "ok", await self.info()

    async def generate(self, request: Request) -> tuple[str, Any]:
        self._served += 1
        try:
            return "ok", await self._backend.generate(request)
        except BackendError as exc:
            return "error", exc
        except Exception as exc:  # a bug: fail this request alone, with a readable message
            return "error", FatalError(f"ray actor: item {request.item_index}: {type(exc).__name__}: {exc}")

    async def info(self) -> dict[str, Any]:
        import torch

        stats = self._backend.stats
        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "torch_threads": torch.get_num_threads(),
            "restarted": self.restarted,
            "identity": dict(self._backend.identity()),
            "served": self._served,
            "generate_calls": stats.generate_calls,
            "batch_sizes": list(stats.batch_sizes),
            "uptime_s": time.time() - self._began,
        }

