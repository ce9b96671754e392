"""A Ray model actor that dies mid-request, for the tests of what happens when one does.

``RayTorchBackend(spec, first_actor=CrashingActor)`` starts actor 0 as a ``CrashingActor``: it
exits (``os._exit``, as a crashed or preempted node would) when its ``CRASH_AFTER``-th request
arrives, once: when Ray restarts it, it serves normally. Test-only: never a user option.
"""

from __future__ import annotations

import os
from typing import Any

from gmai_client.backends._ray_actor import ModelActor
from gmai_client.types import Request

CRASH_AFTER = 3


class CrashingActor(ModelActor):
    async def generate(self, request: Request) -> tuple[str, Any]:
        if not self.restarted and self._served + 1 >= CRASH_AFTER:
            os._exit(1)
        return await super().generate(request)
