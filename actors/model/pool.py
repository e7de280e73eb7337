"""The model clients of one server: one per provider, made on first use.

Not an actor: the registry holds the pool and hands each thread the client
of its provider (:class:`~.model.ModelClient`), which the thread's turns
stream through. A client is made anew when the provider's key changed (an
``account/login/start`` or ``account/logout`` since); threads started
before keep the old one, closed with the pool.

The built-in ``scripted`` provider has no URL: its server is started by the
host (``runtime/app.py``, which may import transports/) through
``start_scripted``, the first time a thread needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ...runtime.config import ConfigError, Settings, resolve_provider
from ...runtime.server.rate_limits import RateLimits
from .stream import ModelClient

__all__ = ["ModelPool"]

log = logging.getLogger("trio_codex.app")


class ModelPool:
    """One model client per provider, made on first use. ``start_scripted``
    starts the embedded scripted Responses server and returns its base URL;
    it is called once, when a thread first uses the ``scripted`` provider."""

    def __init__(self, settings: Settings, nursery: trio.Nursery, rate_limits: RateLimits | None = None, *,
                 start_scripted: Callable[[], Awaitable[str]] | None = None) -> None:
        self.settings = settings
        self.nursery = nursery
        self.rate_limits = rate_limits or RateLimits()
        self.clients: dict[str, ModelClient] = {}
        #: Clients made before a login or logout changed their key: threads
        #: started then keep them; closed with the pool.
        self.retired: list[ModelClient] = []
        self._start_scripted = start_scripted
        self._scripted_url: str | None = None
        self._scripted_lock = trio.Lock()  # two threads' first turns start one server

    async def get(self, provider_id: str) -> ModelClient:
        """The provider's client, made anew when its key changed (an
        ``account/login/start`` or ``account/logout`` since)."""
        p = resolve_provider(self.settings, provider_id)
        client = self.clients.get(provider_id)
        if client is not None and client.api_key != (p.api_key or None):
            self.retired.append(self.clients.pop(provider_id))
            client = None
        if client is None:
            base_url = p.base_url or await self._scripted()
            client = self.clients[provider_id] = ModelClient(
                base_url, p.api_key or "", headers=p.headers, query_params=p.query_params,
                request_max_retries=p.request_max_retries, stream_max_retries=p.stream_max_retries,
                stream_idle_timeout_ms=p.stream_idle_timeout_ms, rate_limits=self.rate_limits,
            )
            # Loading the SDK client takes ~0.1 s: do it now, in a worker
            # thread, rather than in front of the first turn.
            self.nursery.start_soon(client.warm)
        return client

    async def _scripted(self) -> str:
        async with self._scripted_lock:
            if self._scripted_url is None:
                if self._start_scripted is None:
                    raise RuntimeError(
                        "the built-in `scripted` provider needs its server: pass start_scripted to "
                        "ModelPool (runtime/app.py does), or point a provider's base_url at a running one")
                self._scripted_url = await self._start_scripted()
            return self._scripted_url

    async def warm(self) -> None:
        """At start-up: make the configured provider's client, so that
        loading the openai SDK overlaps the client's first requests instead
        of following its first turn's. Returns once it is made. Best effort: a provider that cannot be resolved
        now is reported by the turn that needs it; the built-in scripted
        provider is left until a thread uses it."""
        try:
            if resolve_provider(self.settings).base_url is None:
                return
            client = await self.get(self.settings.model_provider)
        except ConfigError as exc:
            log.debug("model client not made at start-up: %s", exc)
            return
        await client.warm()  # returns once it is made (see ModelClient.sdk)

    async def aclose(self) -> None:
        for client in [*self.clients.values(), *self.retired]:
            await client.aclose()
