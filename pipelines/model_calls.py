"""The ingress's calls to the model deployments: counted, and retried once when a replica dies under them.

Inference is idempotent: a model call has no side effects and the same input gives the same
answer (digits without a ``seed`` draws fresh dropout masks, which is an equally valid answer).
So a call that was lost because its replica died (SIGKILL, OOM, node loss: Ray raises
``ActorDiedError``/``ActorUnavailableError``, Serve ``ReplicaUnavailableError``) is sent once more;
Serve routes it to another replica, or queues it until the controller has started a new one.
The retry runs inside the request's deadline (the ingress's ``asyncio.timeout``), so it can never
keep a client waiting past it. Errors raised by the model code itself (bad input) are not
retried: the answer would be the same. A model deployment whose queue is full (Serve's
``BackPressureError``, ``max_queued_requests``) becomes our ``Overloaded``: the client gets the same
503 JSON with ``Retry-After`` as for the ingress's own limit, never Serve's text/plain.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from lensgraph.errors import Overloaded

logger = logging.getLogger("ray.serve")

RETRYABLE = (RayActorError, ReplicaUnavailableError)


class ModelCalls:
    """One per ingress replica: ``await calls("classifier", "classify", crop, 2, False)``."""

    def __init__(self, handles: dict[str, DeploymentHandle]) -> None:
        self.handles = handles
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.retried: collections.Counter[str] = collections.Counter()

    async def __call__(self, name: str, method: str, *args: Any) -> Any:
        call = getattr(self.handles[name], method)
        self.in_flight[name] += 1
        try:
            try:
                return await call.remote(*args)
            except RETRYABLE as exc:
                self.retried[name] += 1
                logger.warning("%s.%s: its replica died (%s); retrying once", name, method, type(exc).__name__)
                return await call.remote(*args)
        except BackPressureError:
            raise Overloaded(f"the {name} model's queue is full; retry after the Retry-After seconds") from None
        finally:
            self.in_flight[name] -= 1

    def stats(self) -> dict[str, Any]:
        return {"in_flight": dict(self.in_flight), "retried": dict(self.retried)}
