"""What a client such as the Codex TUI or an IDE extension asks about while
it starts, beyond models and config: requirements, skills, hooks, plugins,
apps, experimental features, collaboration modes and the Bedrock GovCloud
check. trio-codex has none of these to offer, so it
answers each with the empty, valid value the original gives when nothing is
configured, rather than an error that stops the client's start-up."""

from __future__ import annotations

from typing import Any

import msgspec

from ..rust import U32
from ._base import Wire


class ConfigRequirementsReadResponse(Wire, frozen=True):
    #: Null: no requirements.toml or MDM entries.
    requirements: dict[str, Any] | None = None


class CwdsParams(Wire, frozen=True):
    """``skills/list`` and ``hooks/list``: the directories to look in (empty:
    the server's working directory)."""

    cwds: list[str] = []
    thread_id: str | None = None


class SkillsListEntry(Wire, frozen=True):
    cwd: str
    skills: list[Any] = []
    errors: list[Any] = []


class SkillsListResponse(Wire, frozen=True):
    data: list[SkillsListEntry]


class HooksListEntry(Wire, frozen=True):
    cwd: str
    hooks: list[Any] = []
    errors: list[Any] = []
    warnings: list[str] = []


class HooksListResponse(Wire, frozen=True):
    data: list[HooksListEntry]


class PagedParams(Wire, frozen=True):
    """``app/list``, ``experimentalFeature/list``; other keys are ignored."""

    cursor: str | None = None
    limit: U32 | None = None


class EmptyPage(Wire, frozen=True):
    data: list[Any] = []
    next_cursor: str | None = None


class PluginInstalledParams(Wire, frozen=True):
    cwds: list[str] | None = None


class PluginInstalledResponse(Wire, frozen=True):
    marketplaces: list[Any] = []
    marketplace_load_errors: list[Any] = []


class EmptyParams(Wire, frozen=True):
    """Params that are an object with nothing we read."""


#: The original's collaboration mode presets (0.169, as ``collaborationMode/list``
#: answers): Plan at medium effort, then Default; no model of their own.
COLLABORATION_PRESETS: list[dict[str, Any]] = [
    {"name": "Plan", "mode": "plan", "model": None, "reasoning_effort": "medium"},
    {"name": "Default", "mode": "default", "model": None, "reasoning_effort": None},
]


class CollaborationModeListResponse(Wire, frozen=True):
    data: list[Any] = msgspec.field(default_factory=lambda: list(COLLABORATION_PRESETS))


class BedrockCheckGovCloudRequirementsResponse(Wire, frozen=True):
    #: No Bedrock provider here, so no GovCloud region either.
    is_gov_cloud: bool = False
    should_warn: bool = False
