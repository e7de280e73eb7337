"""`model/list`, `account/read`, `config/read`: what a client asks before it
starts a thread."""

from __future__ import annotations

from typing import Any

import msgspec

from ..rust import U32
from ._base import Wire


class ReasoningEffortOption(Wire, frozen=True):
    reasoning_effort: str
    description: str


class Model(Wire, frozen=True):
    id: str
    model: str
    display_name: str
    description: str
    hidden: bool
    is_default: bool
    default_reasoning_effort: str
    supported_reasoning_efforts: list[ReasoningEffortOption]
    input_modalities: list[str] = msgspec.field(default_factory=lambda: ["text", "image"])


class ModelListParams(Wire, frozen=True):
    cursor: str | None = None
    limit: U32 | None = None
    include_hidden: bool | None = None
    model_provider: str | None = None


class ModelListResponse(Wire, frozen=True):
    data: list[Model]
    next_cursor: str | None = None


class AccountReadParams(Wire, frozen=True):
    refresh_token: bool | None = None


class AccountReadResponse(Wire, frozen=True):
    account: dict[str, Any] | None
    requires_openai_auth: bool


class ConfigReadParams(Wire, frozen=True):
    cwd: str | None = None
    include_layers: bool | None = None
