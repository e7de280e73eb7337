"""The model-facing history: which items are the user's turns, what a
rollback cuts, and compaction (its prompt, the summary, the replacement
history), as the original's ``ContextManager`` and ``compact.rs``.

Items are kept as the raw Responses JSON (``msgspec.Raw``); only the head of
an item (type, role, texts) is decoded, and only when needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec
from msgspec import Raw, Struct

_encoder = msgspec.json.Encoder()

#: The request that makes the model write the summary (the original's
#: ``SUMMARIZATION_PROMPT``, ``templates/compact/prompt.md``, verbatim).
SUMMARIZATION_PROMPT: Final = (
    "You are performing a CONTEXT CHECKPOINT COMPACTION. Create a handoff summary for another LLM that will "
    "resume the task.\n\nInclude:\n- Current progress and key decisions made\n- Important context, constraints, "
    "or user preferences\n- What remains to be done (clear next steps)\n- Any critical data, examples, or "
    "references needed to continue\n\nBe concise, structured, and focused on helping the next LLM seamlessly "
    "continue the work.\n"
)
#: What precedes the summary in the replacement history (``SUMMARY_PREFIX``,
#: ``templates/compact/summary_prefix.md``, verbatim).
SUMMARY_PREFIX: Final = (
    "Another language model started to solve this problem and produced a summary of its thinking process. "
    "You also have access to the state of the tools that were used by that language model. Use this to build "
    "on the work that has already been done and avoid duplicating work. Here is the summary produced by the "
    "other language model, use the information in this summary to assist with your own analysis:"
)
_SUMMARY_OPENING: Final = SUMMARY_PREFIX + "\n"


class _Content(Struct):
    type: str = ""
    text: str | None = None


class _Provenance(Struct):
    type: str = ""


class _ContentMeta(Struct):
    provenance: _Provenance | None = None


class _Passthrough(Struct):
    content_item_metadata: list[_ContentMeta] | None = None


class _ItemHead(Struct):
    type: str = ""
    role: str | None = None
    content: list[_Content] | None = None
    internal_chat_message_metadata_passthrough: _Passthrough | None = None


_item_head_decoder = msgspec.json.Decoder(_ItemHead)

#: Openings of the harness-authored user messages that carry context, not
#: user intent (the original's ``ContextualUserFragment`` markers).
_CONTEXTUAL_USER_MARKERS: Final = (
    "<environment_context>", "<turn_aborted>", "<user_instructions>", "# agents.md instructions",
    "<user_shell_command>", "<skill>", "<subagent_notification>", "<hook_prompt",
)
#: Openings of developer messages that only carry context updates.
_CONTEXTUAL_DEV_MARKERS: Final = (
    "<permissions instructions>", "<skills_instructions>", "<collaboration_mode>",
    "<model_switch>", "<personality_spec>", "<apps_instructions>", "<environment_context>",
)


def _head(item: Raw) -> _ItemHead:
    try:
        return _item_head_decoder.decode(item)
    except msgspec.ValidationError:
        return _ItemHead()


def _is_contextual(head: _ItemHead, markers: tuple[str, ...]) -> bool:
    passthrough = head.internal_chat_message_metadata_passthrough
    if passthrough is not None and passthrough.content_item_metadata:
        # 0.169 labels each part: only parts the user typed have provenance "user".
        return all(m.provenance is None or m.provenance.type != "user"
                   for m in passthrough.content_item_metadata)
    texts = [c.text for c in head.content or () if c.text is not None]
    return bool(texts) and all(t.lstrip().lower().startswith(markers) for t in texts)


def _is_user_turn_boundary(head: _ItemHead) -> bool:
    if head.type == "agent_message":
        return True
    return (head.type == "message" and head.role == "user"
            and not _is_contextual(head, _CONTEXTUAL_USER_MARKERS))


def drop_last_user_turns(history: list[Raw], num_turns: int) -> list[Raw]:
    """``ContextManager::drop_last_n_user_turns``: cut at the ``num_turns``-th
    newest user turn, then also drop the context updates just above it."""
    if num_turns <= 0:
        return history
    heads = [_head(item) for item in history]
    positions = [i for i, h in enumerate(heads) if _is_user_turn_boundary(h)]
    if not positions:
        return history
    first = positions[0]
    cut = first if num_turns >= len(positions) else positions[-num_turns]
    while cut > first:
        h = heads[cut - 1]
        if h.type == "message" and (
                (h.role == "developer" and _is_contextual(h, _CONTEXTUAL_DEV_MARKERS))
                or (h.role == "user" and _is_contextual(h, _CONTEXTUAL_USER_MARKERS))):
            cut -= 1
        else:
            break
    return history[:cut]


#: The user-message budget of the replacement history
#: (``COMPACT_USER_MESSAGE_MAX_TOKENS``), at the original's 4 bytes a token.
_COMPACT_USER_MESSAGE_MAX_BYTES: Final = 20_000 * 4


def compacted_history(history: list[Raw], summary: str) -> list[Raw]:
    """The history after a compaction: the newest real user messages within
    the budget (not the summaries of earlier compactions), then ``summary``
    (:func:`summary_text`) as a user message. The original also re-inserts
    its initial context; ours has none to re-insert."""
    kept: list[Raw] = []
    budget = _COMPACT_USER_MESSAGE_MAX_BYTES
    for item in reversed(history):
        head = _head(item)
        if head.type == "message" and head.role == "user" and not _is_contextual(head, _CONTEXTUAL_USER_MARKERS) \
                and not _is_summary(head):
            if len(item) > budget:
                break
            budget -= len(item)
            kept.append(item)
    kept.reverse()
    kept.append(user_message(summary))
    return kept


def _is_summary(head: _ItemHead) -> bool:
    return any(c.text is not None and c.text.startswith(_SUMMARY_OPENING) for c in head.content or ())


def developer_message(text: str) -> Raw:
    """A developer message item of the Responses API."""
    return Raw(_encoder.encode({"type": "message", "role": "developer",
                                "content": [{"type": "input_text", "text": text}]}))


def user_message(text: str) -> Raw:
    """A user message item of the Responses API."""
    return Raw(_encoder.encode({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}))


def summary_text(reply: str) -> str:
    """The user message that stands for the compacted history: the prefix,
    then what the model wrote when asked to summarize."""
    return f"{SUMMARY_PREFIX}\n{reply or '(no summary available)'}"


def estimate_tokens(items: Iterable[Raw]) -> int:
    """The original's rough token count of history items: 4 bytes a token."""
    return sum(len(item) for item in items) // 4


def auto_compact_limit(context_window: int, configured: int | None) -> int:
    """Compact once the context holds this many tokens: the configured
    ``model_auto_compact_token_limit``, at most 90 % of the window."""
    limit = context_window * 9 // 10
    return min(limit, configured) if configured else limit


def is_api_item(item: Raw) -> bool:
    """Whether the original keeps this item in the history (``is_api_message``)."""
    data = bytes(item)
    if b'"system"' not in data and b'"compaction_trigger"' not in data and b'"other"' not in data:
        return True  # the common case, without decoding the item
    head = _head(item)
    return not (head.type in ("compaction_trigger", "other") or (head.type == "message" and head.role == "system"))


def user_texts(history: Iterable[Raw]) -> list[str]:
    """What the user wrote in each of their messages, oldest first, without
    the harness's context messages and compaction summaries: the
    ``input-messages`` of a notify payload, as the original lists them."""
    texts = []
    for item in history:
        head = _head(item)
        if (head.type == "message" and head.role == "user"
                and not _is_contextual(head, _CONTEXTUAL_USER_MARKERS) and not _is_summary(head)):
            texts.append("".join(c.text for c in head.content or () if c.type == "input_text" and c.text))
    return texts


def message_texts(history: Iterable[Raw]) -> list[str]:
    """The text of each user message (as :func:`user_texts`) and each
    assistant message, oldest first: what ``thread/search`` searches."""
    texts = []
    for item in history:
        head = _head(item)
        if head.type != "message":
            continue
        if head.role == "assistant":
            texts.append("".join(c.text for c in head.content or () if c.type == "output_text" and c.text))
        elif head.role == "user" and not _is_contextual(head, _CONTEXTUAL_USER_MARKERS) and not _is_summary(head):
            texts.append("".join(c.text for c in head.content or () if c.type == "input_text" and c.text))
    return [text for text in texts if text]


class _CallHead(Struct):
    type: str = ""
    call_id: str | None = None


_call_head_decoder = msgspec.json.Decoder(_CallHead)

#: A call's type -> the type of the output that answers it.
_OUTPUT_OF: Final = {"function_call": "function_call_output", "local_shell_call": "function_call_output",
                     "custom_tool_call": "custom_tool_call_output"}
_OUTPUTS: Final = frozenset(_OUTPUT_OF.values())


def _call_head(item: Raw) -> _CallHead:
    data = bytes(item)
    if b"call" not in data:
        return _CallHead()  # no call or output: skip the decode
    try:
        return _call_head_decoder.decode(data)
    except msgspec.ValidationError:
        return _CallHead()


def pair_calls_and_outputs(history: list[Raw]) -> list[Raw]:
    """Every call answered and every answer called, as the original's
    ``normalize_history`` makes the history it sends: a call without an
    output (the process died while it ran) gets ``"aborted"`` right after
    it; an output without its call is dropped."""
    heads = [_call_head(item) for item in history]
    answered = {h.call_id for h in heads if h.type in _OUTPUTS}
    called = {h.call_id for h in heads if h.type in _OUTPUT_OF}
    if called <= answered and answered <= called:
        return history
    out: list[Raw] = []
    for item, head in zip(history, heads):
        if head.type in _OUTPUTS and head.call_id not in called:
            continue
        out.append(item)
        if head.type in _OUTPUT_OF and head.call_id not in answered:
            out.append(Raw(_encoder.encode({"type": _OUTPUT_OF[head.type], "call_id": head.call_id,
                                            "output": "aborted"})))
    return out
