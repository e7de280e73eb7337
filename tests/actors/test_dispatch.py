"""The method table dispatches: every row names who answers it and a
handler bound on that class, and no class holds a handler no row names
(runtime/protocol/methods.py, :func:`dispatches`)."""

from __future__ import annotations

import pytest

from trio_codex.actors.connection import Connection
from trio_codex.actors.threads import ThreadRegistry
from trio_codex.runtime.protocol.methods import (
    CONNECTION,
    HANDLER_PREFIX,
    METHODS,
    REGISTRY,
    THREAD,
    MethodSpec,
    Route,
    dispatches,
)

#: Who binds the handlers of each route.
OWNERS: dict[Route, type] = {CONNECTION: Connection, THREAD: Connection, REGISTRY: ThreadRegistry}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_row_has_a_route_and_a_handler_bound_by_its_owner(method: str) -> None:
    spec = METHODS[method]
    assert isinstance(spec, MethodSpec) and isinstance(spec.route, Route)
    owner = OWNERS[spec.route]
    assert owner.HANDLERS[method] is getattr(owner, HANDLER_PREFIX + spec.handler)  # type: ignore[attr-defined]


def test_no_class_holds_a_handler_that_no_row_names() -> None:
    for owner in {Connection, ThreadRegistry}:
        routes = {r for r, o in OWNERS.items() if o is owner}
        named = {HANDLER_PREFIX + s.handler for s in METHODS.values() if s.route in routes}
        assert {n for n in dir(owner) if n.startswith(HANDLER_PREFIX)} == named
        assert set(owner.HANDLERS) == {m for m, s in METHODS.items() if s.route in routes}  # type: ignore[attr-defined]


def test_a_class_missing_a_handler_of_its_route_is_refused_at_creation() -> None:
    with pytest.raises(TypeError, match="handlers missing for rows of the method table: .*rpc_thread_list"):
        @dispatches(REGISTRY)
        class Partial:
            pass


def test_a_handler_no_row_names_is_refused_at_creation() -> None:
    handlers = {HANDLER_PREFIX + s.handler: lambda self, req: None for s in METHODS.values() if s.route is REGISTRY}
    with pytest.raises(TypeError, match=r"handlers no row names: \['rpc_nope_list'\]"):
        dispatches(REGISTRY)(type("Stray", (), {**handlers, "rpc_nope_list": lambda self, req: None}))
