"""The vendors' shared half of the batch-API contract (``gmai_client.batch_api``) for API backends.

``VendorBatches`` is mixed into an ``ApiBackend`` subclass after it: it applies the vendor's limits
to the model's ``-B batch*`` options, writes a request as a batch line from the same
``request_body`` a live call sends (images prepared as for a live call, the body encoded as the
live path encodes it), and maps the SDK's failures on the batch endpoints to the project's errors
(``vendor_call``; a 404 there means a server without the vendor's batch API). A request the vendor
answered with an error status is read as a live error of that status (``answered_error``). The
vendor's module (``_openai_batches``, ``_anthropic_batches``) writes the rest.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from gmai_client.backends._api import (
    API_MIMES,
    Holes,
    VendorError,
    check_mimes,
    encode_body,
    prepared_images,
    short,
    status_error,
)
from gmai_client.batch_api import BatchApi, BatchOptions, BatchSettings, BatchStatus
from gmai_client.errors import BackendError, ModelNotFound, ServerError
from gmai_client.types import Image, Request

__all__ = ["BatchOptions", "VendorBatches"]

T = TypeVar("T")

#: The metadata key an OpenAI batch carries the client's journal key under (how a lost create is found).
KEY_METADATA = "gmai_client_key"
#: How far apart the vendor's clock and ours may be when a batch (or an upload) is looked for by its
#: creation time; a batch another run made in that window is told apart by its results.
CLOCK_SLACK_S = 60.0
#: Room left in a batch's byte limit for what wraps the lines (Anthropic's ``{"requests":[...]}``; each
#: line's newline stands for the comma between two requests there, so lines count as sent).
ENVELOPE_BYTES = 1024
MIB = 1024 * 1024


class VendorBatches(BatchApi):
    """The batch ability of an API backend, mixed in after ``ApiBackend`` (whose client, options,
    ``request_body`` and ``map_error`` it uses). The vendor's module writes the rest of ``BatchApi``
    and ``wrap_request``."""

    vendor_max_requests: ClassVar[int]
    vendor_max_bytes: ClassVar[int]

    if TYPE_CHECKING:  # what ApiBackend provides
        name: ClassVar[str]
        sdk: ClassVar[Any]
        model: str
        options: Any
        endpoint: str
        max_image_side: int | None
        _client: Any

        def map_error(self, exc: Any) -> BackendError: ...
        async def start(self) -> None: ...
        def request_body(self, request: Request, images: tuple[Image, ...], embed: Any = str) -> dict[str, Any]: ...

    # ---------------------------------------------------------------- settings and lines

    def batch_settings(self) -> BatchSettings:
        options = self.options
        max_requests = min(options.batch_size or self.vendor_max_requests, self.vendor_max_requests)
        limit = int(options.batch_mb * MIB) if options.batch_mb else self.vendor_max_bytes
        return BatchSettings(
            enabled=options.batch,
            vendor=self.name,
            max_requests=max_requests,
            max_bytes=max(min(limit, self.vendor_max_bytes) - ENVELOPE_BYTES, 1),
            queue=options.batch_queue,
            poll_s=options.batch_poll,
        )

    async def batch_line(self, custom_id: str, request: Request) -> bytes:
        """``request`` as one line of a batch (compact JSON and a newline): the body a live call
        sends (``request_body``, images prepared as for a live call) in the vendor's batch wrapper."""
        images = await prepared_images(request, self.max_image_side)
        check_mimes(images, API_MIMES, self.name)
        holes = Holes()
        line = self.wrap_request(custom_id, self.request_body(request, images, embed=holes))
        return encode_body(line, holes.pieces) + b"\n"

    # ---------------------------------------------------------------- the vendor's half

    @abc.abstractmethod
    def wrap_request(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request body in the vendor's batch line: ``{"custom_id", "params"}``, ``{"custom_id", "body", ...}``."""

    async def upload_input(self, spool: Path) -> str:
        return ""  # the create call carries the requests

    async def delete_input(self, key: str, file_id: str, since: float) -> None:
        return None  # nothing was uploaded

    async def delete_results(self, status: BatchStatus) -> None:
        return None  # the results are read from the batch itself

    def answered_by_this_model(self, model: str) -> bool:
        # The vendors answer an alias with the dated model it stands for ("claude-sonnet-4-5" ->
        # "claude-sonnet-4-5-20250929", "gpt-4o" -> "gpt-4o-2024-08-06").
        return model == self.model or model.startswith(self.model + "-")

    # ---------------------------------------------------------------- shared

    def answered_error(self, where: str, status: int, said: VendorError) -> BackendError:
        """The project's error for a batched request the vendor answered with an error ``status``:
        what a live call answered that way raises."""
        return status_error(
            backend=self.name, status=status, message=f"{where}: {said.message}", headers=None,
            error_type=said.error_type, code=said.code, quota=said.quota,
        )  # fmt: skip

    async def vendor_call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One call to the vendor's batch endpoints, its failures mapped to the project's errors."""
        if self._client is None:
            await self.start()
        try:
            return await call()
        except self.sdk.APIStatusError as exc:
            if exc.status_code == 404:
                raise ModelNotFound(
                    f"{self.name}: {what}: HTTP 404 from {self.endpoint} ({short(exc.message, 200)}); "
                    "a server without the vendor's batch API cannot take --batch"
                ) from None
            raise self.map_error(exc) from None
        except self.sdk.APIError as exc:
            raise self.map_error(exc) from None
        except ValueError as exc:  # a body that is not JSON, or does not fit the vendor's schema
            raise ServerError(f"{self.name}: {what}: {self.endpoint} answered with an unreadable body") from exc
