"""The fake batch APIs' OpenAI Files endpoints: upload, list, retrieve, download and delete.

Owns ``POST /v1/files`` (a multipart upload, streamed to the state directory, refused as the Files
API refuses it: ``fake_batch_wire.receive_upload``), ``GET /v1/files`` (newest first unless
``order=asc``; ``purpose``, ``after`` and ``limit`` (1 to 10,000) as OpenAI's list takes them),
``GET /v1/files/{id}`` and ``/content``, and ``DELETE /v1/files/{id}``. Uploads and the result files
a batch writes live in the same store (``fake_batch_store``), so a client can find, read and delete
both. Mixed into ``fake_batches.FakeBatches``, whose store, lock, clock and upload limit it uses.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gmai_client.testing import fake_batch_wire as wire
from gmai_client.testing.fake_batch_store import BatchStore, CallNote
from gmai_client.testing.fake_batch_wire import Refused

_MAX_LIST = 10_000  # OpenAI's largest (and default) page of files


class FileEndpoints:
    """The Files endpoints of ``FakeBatches`` (a mixin)."""

    if TYPE_CHECKING:  # what FakeBatches provides
        _store: BatchStore
        _lock: threading.RLock
        openai_max_bytes: int

        def now(self) -> float: ...

    async def _files_create(self, http: web.Request, call: CallNote) -> web.Response:
        file_id = self._store.new_file_id()
        path = self._store.file_path(file_id)
        purpose, filename, _ = await wire.receive_upload(http, path, self.openai_max_bytes)
        with path.open("rb") as lines:
            call.requests = sum(1 for line in lines if line.strip())
        call.file_id = file_id
        with self._lock:
            return web.json_response(self._store.add_file(file_id, filename, purpose, self.now()))

    async def _files_list(self, http: web.Request, call: CallNote) -> web.Response:
        query = http.query
        try:
            limit = int(query.get("limit", str(_MAX_LIST)))
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIST:
            raise Refused(wire.batch_error("openai", 400, f"limit: must be between 1 and {_MAX_LIST:,}", param="limit"))
        with self._lock:  # in the order they were stored: by creation, also within one second
            files = [f for f in self._store.files.values() if query.get("purpose") in (None, f["purpose"])]
        if query.get("order", "desc") != "asc":
            files.reverse()
        ids = [f["id"] for f in files]
        after = query.get("after")
        start = ids.index(after) + 1 if after in ids else (len(ids) if after is not None else 0)
        page = files[start : start + limit]
        return web.json_response(wire.listing("openai", page, start + limit < len(files)))

    def _file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            file = self._store.files.get(file_id)
        if file is None:
            raise Refused(wire.batch_error("openai", 404, f"No such File object: {file_id}", param="id"))
        return file

    async def _files_retrieve(self, http: web.Request, call: CallNote) -> web.Response:
        return web.json_response(self._file(http.match_info["file_id"]))

    async def _files_content(self, http: web.Request, call: CallNote) -> web.StreamResponse:
        file = self._file(http.match_info["file_id"])
        return web.FileResponse(self._store.file_path(file["id"]), headers={"Content-Type": "application/octet-stream"})

    async def _files_delete(self, http: web.Request, call: CallNote) -> web.Response:
        file = self._file(http.match_info["file_id"])
        with self._lock:
            self._store.delete_file(file["id"])
        return web.json_response({"id": file["id"], "object": "file", "deleted": True})
