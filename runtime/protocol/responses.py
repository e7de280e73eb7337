"""The OpenAI Responses API wire vocabulary: request body, stream events, items.

Pure: no trio, no I/O. The model actor (client side) and the scripted server
(server side) both speak through these types, so a field added here reaches
both ends at once.

Design:

* Every event is a frozen ``msgspec.Struct`` tagged on ``"type"`` with its wire
  type; :data:`ResponsesEvent` is their union, decoded by one reused
  ``Decoder``. Events carry the fields the openai SDK's typed models require,
  with defaults, so that our server's output also satisfies the SDK while our
  decoder accepts the sparse events of minimal servers (the original's mocks).
* Output items stay ``msgspec.Raw`` inside events: they are passed back,
  byte-exact, as the next request's ``input``. :func:`decode_item` gives the
  typed view when one is wanted; it never changes the bytes.
* :class:`SSEDecoder` is sans-I/O: ``feed(bytes) -> list[event]`` with any
  chunk boundaries. Like the original, it skips events whose ``data`` does not
  decode, nests too deep, has a type it does not know or an item that is not
  an object with a ``type``, and stops at bytes that are not UTF-8. Each event's data is copied out of the network buffer
  before decoding, so a ``Raw`` item kept in history pins only its own event,
  never a whole read.
"""

from __future__ import annotations

import codecs
import re
from typing import TypeAlias

import msgspec

__all__ = [
    "CustomToolCallInputDelta",
    "CustomToolCallItem",
    "FunctionCallItem",
    "MAX_DEPTH",
    "IncompleteDetails",
    "InputTokensDetails",
    "Item",
    "MessageItem",
    "OtherItem",
    "OutputItemAdded",
    "OutputItemDone",
    "OutputText",
    "OutputTextDelta",
    "OutputTokensDetails",
    "ReasoningItem",
    "ReasoningSummaryPartAdded",
    "ReasoningSummaryTextDelta",
    "ReasoningText",
    "ReasoningTextDelta",
    "Refusal",
    "Response",
    "ResponseCompleted",
    "ResponseCreated",
    "ResponseError",
    "ResponseFailed",
    "ResponseIncomplete",
    "ResponsesEvent",
    "ResponsesRequest",
    "SSEDecoder",
    "SummaryText",
    "TokenUsage",
    "Usage",
    "decode_item",
    "encode_request",
    "render_event",
]


# --- request -----------------------------------------------------------------


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``POST {base_url}/responses``.

    ``input`` holds history items as ``Raw`` so they travel byte-exact. Encode
    with :func:`encode_request`, which leaves out the fields that are None.
    """

    model: str
    input: list[msgspec.Raw]
    instructions: str | None = None
    tools: list[msgspec.Raw] = msgspec.field(default_factory=list)
    tool_choice: str = "auto"
    parallel_tool_calls: bool = False
    reasoning: dict | None = None
    store: bool = False
    stream: bool = True
    include: list[str] = msgspec.field(default_factory=list)
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    text: dict | None = None
    client_metadata: dict[str, str] | None = None


_json_encoder = msgspec.json.Encoder()


def encode_request(request: ResponsesRequest) -> bytes:
    """The JSON body for ``request``, without the fields that are None."""
    fields = {}
    for name in request.__struct_fields__:
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    return _json_encoder.encode(fields)


# --- response objects ----------------------------------------------------------


class InputTokensDetails(msgspec.Struct, frozen=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, frozen=True):
    """``response.usage`` as the API sends it."""

    input_tokens: int = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails | None = None
    total_tokens: int = 0


class TokenUsage(msgspec.Struct, frozen=True):
    """Token counts of one response, flattened the way Codex reports them."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_usage(cls, usage: Usage) -> TokenUsage:
        cached = usage.input_tokens_details
        reasoning = usage.output_tokens_details
        return cls(
            input_tokens=usage.input_tokens,
            cached_input_tokens=cached.cached_tokens if cached else 0,
            output_tokens=usage.output_tokens,
            reasoning_output_tokens=reasoning.reasoning_tokens if reasoning else 0,
            total_tokens=usage.total_tokens,
        )

    def to_usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            input_tokens_details=InputTokensDetails(self.cached_input_tokens),
            output_tokens=self.output_tokens,
            output_tokens_details=OutputTokensDetails(self.reasoning_output_tokens),
            total_tokens=self.total_tokens,
        )


class ResponseError(msgspec.Struct, frozen=True):
    """``response.error`` of a failed response."""

    code: str | None = None
    message: str | None = None


class IncompleteDetails(msgspec.Struct, frozen=True):
    reason: str | None = None


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The response object carried by the lifecycle events.

    ``output`` and ``tools`` stay raw: the stream's items already arrived one
    by one in ``response.output_item.done``.
    """

    id: str = ""
    object: str = "response"
    created_at: float = 0
    model: str = ""
    status: str | None = None
    output: tuple[msgspec.Raw, ...] = ()
    usage: Usage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    parallel_tool_calls: bool = False
    tool_choice: str | dict = "auto"
    tools: tuple[msgspec.Raw, ...] = ()


# --- stream events ---------------------------------------------------------------


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    sequence_number: int = 0


class ResponseCreated(_Event, tag="response.created", frozen=True):
    response: Response = Response()


class OutputItemAdded(_Event, tag="response.output_item.added", frozen=True):
    """An item starts streaming; ``item`` is its partial state."""

    item: msgspec.Raw
    output_index: int = 0


class OutputTextDelta(_Event, tag="response.output_text.delta", frozen=True):
    delta: str
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    logprobs: tuple[msgspec.Raw, ...] = ()


class SummaryText(msgspec.Struct, frozen=True, tag_field="type", tag="summary_text"):
    text: str = ""


class ReasoningSummaryPartAdded(_Event, tag="response.reasoning_summary_part.added", frozen=True):
    summary_index: int
    item_id: str = ""
    output_index: int = 0
    part: SummaryText = SummaryText()


class ReasoningSummaryTextDelta(_Event, tag="response.reasoning_summary_text.delta", frozen=True):
    delta: str
    summary_index: int
    item_id: str = ""
    output_index: int = 0


class ReasoningTextDelta(_Event, tag="response.reasoning_text.delta", frozen=True):
    delta: str
    content_index: int
    item_id: str = ""
    output_index: int = 0


class CustomToolCallInputDelta(_Event, tag="response.custom_tool_call_input.delta", frozen=True):
    """Progress of a freeform tool call's input (apply_patch streams this)."""

    delta: str
    item_id: str = ""
    output_index: int = 0


class OutputItemDone(_Event, tag="response.output_item.done", frozen=True):
    """An item is final: the only source of tool calls and final messages."""

    item: msgspec.Raw
    output_index: int = 0


class ResponseCompleted(_Event, tag="response.completed", frozen=True):
    """The stream's last event on success; ``response.usage`` counts tokens."""

    response: Response


class ResponseFailed(_Event, tag="response.failed", frozen=True):
    """The model failed; ``response.error`` says why."""

    response: Response


class ResponseIncomplete(_Event, tag="response.incomplete", frozen=True):
    """The model stopped early; ``response.incomplete_details.reason`` says why."""

    response: Response


ResponsesEvent: TypeAlias = (
    ResponseCreated
    | OutputItemAdded
    | OutputTextDelta
    | ReasoningSummaryPartAdded
    | ReasoningSummaryTextDelta
    | ReasoningTextDelta
    | CustomToolCallInputDelta
    | OutputItemDone
    | ResponseCompleted
    | ResponseFailed
    | ResponseIncomplete
)

_event_decoder = msgspec.json.Decoder(ResponsesEvent)


def render_event(event: ResponsesEvent) -> bytes:
    """One SSE frame, ``event: <type>\\ndata: <json>\\n\\n``, as the API sends it."""
    return b"event: %s\ndata: %s\n\n" % (
        str(event.__struct_config__.tag).encode(),
        _json_encoder.encode(event),
    )


#: The deepest nesting of an event's JSON the original's serde_json takes
#: (its recursion limit is 128); deeper events are skipped. Items inside the
#: events that pass stay far from Python's own recursion limit.
MAX_DEPTH = 127


class SSEDecoder:
    """Turns the bytes of a ``text/event-stream`` body into events.

    Handles any chunk boundaries, CRLF and CR line ends, comments, ``event:``
    and ``id:`` lines (ignored: the type comes from the data, as in the
    original), and ``data:`` split over several lines. An event left
    unterminated when the stream ends is dropped, as the SSE spec says.

    As the original's SSE reader (eventsource-stream) does:

    * ``dispatched`` counts the events that carried data, decodable or not:
      what proves the stream alive. Comments (proxies' keepalives) and
      events without data do not count.
    * Bytes that are not UTF-8 stop the stream: nothing from them on is
      decoded, and :meth:`end_error` says what the stream fails with when it
      ends.
    """

    __slots__ = ("_parts", "_tail_lf", "_skip_lf", "_utf8_tail", "_utf8_error", "dispatched")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._tail_lf = False
        self._skip_lf = False
        self._utf8_tail = b""  # an incomplete UTF-8 sequence that ended the last chunk
        self._utf8_error: str | None = None
        self.dispatched = 0

    def end_error(self) -> str | None:
        """The original's error for a body that ends now, if its bytes were
        not all UTF-8; None if they were."""
        if self._utf8_error is None and self._utf8_tail:
            return "UTF8 error: incomplete utf-8 byte sequence from index 0"
        return self._utf8_error

    def feed(self, data: bytes) -> list[ResponsesEvent]:
        """Take the next bytes of the body; return the events they complete."""
        if self._utf8_error is not None:
            return []
        if self._utf8_tail or not data.isascii():
            data = self._valid_utf8(data)
        if self._skip_lf and data[:1] == b"\n":
            data = data[1:]
        self._skip_lf = False
        if b"\r" in data:
            # A final CR ends its line now; an LF starting the next chunk
            # completes that CRLF and is dropped.
            self._skip_lf = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not data:
            return []
        ends_event = b"\n\n" in data or (self._tail_lf and data[0] == 10)
        self._tail_lf = data[-1] == 10
        if not ends_event:
            self._parts.append(data)
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts.clear()
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            self._parts.append(rest)
        events = []
        dispatched = 0
        for block in blocks:
            payload = _event_data(block)
            if payload is None:
                continue
            dispatched += 1
            if len(payload) > _DEEP_ENOUGH and _too_deep(payload):
                continue
            try:
                event = _event_decoder.decode(payload)
                if isinstance(event, _ITEM_EVENTS):
                    _other_item_decoder.decode(event.item)  # an object with a string type, or skipped
            except (msgspec.DecodeError, RecursionError):
                continue
            events.append(event)
        self.dispatched += dispatched
        return events

    def _valid_utf8(self, data: bytes) -> bytes:
        """``data`` up to its first byte that is not UTF-8. The original
        stops there: the rest of the stream never makes an event, and the
        error says how long the bad sequence is, from index 0 of the bytes it
        kept."""
        checked = self._utf8_tail + data
        try:
            _, used = codecs.utf_8_decode(checked, "strict", False)
        except UnicodeDecodeError as exc:
            self._utf8_error = f"UTF8 error: invalid utf-8 sequence of {exc.end - exc.start} bytes from index 0"
            return data[: max(exc.start - len(self._utf8_tail), 0)]
        self._utf8_tail = checked[used:]
        return data


_ITEM_EVENTS = (OutputItemAdded, OutputItemDone)
_DEEP_ENOUGH = 2 * MAX_DEPTH  # nesting deeper takes more bytes than this
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(payload: bytes) -> bool:
    """Whether ``payload`` (JSON) nests deeper than :data:`MAX_DEPTH`."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    for byte in _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _event_data(block: bytes) -> bytes | None:
    """The joined ``data`` of one event block, or None if it has none."""
    if block.startswith(b"data: ") and b"\n" not in block:
        return block[6:]
    # The API's own shape, "event: T\ndata: {...}": one find, no split.
    nl = block.find(b"\n")
    if block.startswith(b"event:") and block.startswith(b"data: ", nl + 1) and block.find(b"\n", nl + 1) < 0:
        return block[nl + 7:]
    data = None
    for line in block.split(b"\n"):
        if line.startswith(b"data"):
            if line == b"data":
                value = b""
            elif line[4] == 58:  # b":"
                value = line[6:] if line[5:6] == b" " else line[5:]
            else:
                continue
            data = value if data is None else data + b"\n" + value
    return data


# --- output items ------------------------------------------------------------------
#
# Optional fields default to None and are left out when encoding, so the
# scripted server renders items the way the API does.


class OutputText(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="output_text"):
    text: str
    annotations: tuple[msgspec.Raw, ...] | None = None


class Refusal(msgspec.Struct, frozen=True, tag_field="type", tag="refusal"):
    refusal: str


class ReasoningText(msgspec.Struct, frozen=True, tag_field="type", tag="reasoning_text"):
    text: str


class _Item(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type"):
    pass


class MessageItem(_Item, tag="message", frozen=True):
    role: str
    content: tuple[OutputText | Refusal, ...]
    id: str = ""
    status: str | None = None
    phase: str | None = None

    @property
    def text(self) -> str:
        """The concatenated ``output_text`` parts."""
        return "".join(part.text for part in self.content if type(part) is OutputText)


class ReasoningItem(_Item, tag="reasoning", frozen=True):
    summary: tuple[SummaryText, ...]
    id: str = ""
    content: tuple[ReasoningText, ...] | None = None
    encrypted_content: str | None = None


class FunctionCallItem(_Item, tag="function_call", frozen=True):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    namespace: str | None = None
    status: str | None = None


class CustomToolCallItem(_Item, tag="custom_tool_call", frozen=True):
    call_id: str
    name: str
    input: str
    id: str | None = None
    status: str | None = None


class OtherItem(msgspec.Struct, frozen=True):
    """Any item this module does not model; its Raw is still passed through."""

    type: str
    id: str | None = None


Item: TypeAlias = MessageItem | ReasoningItem | FunctionCallItem | CustomToolCallItem

_item_decoder = msgspec.json.Decoder(Item)
_other_item_decoder = msgspec.json.Decoder(OtherItem)


def decode_item(raw: msgspec.Raw | bytes) -> Item | OtherItem:
    """The typed view of one output item.

    An item of another type, or of a known type in a shape this module does
    not model, comes back as :class:`OtherItem`. Raises
    ``msgspec.ValidationError`` only if ``raw`` is not an object with a string
    ``type`` (the original skips such items).
    """
    try:
        return _item_decoder.decode(raw)
    except msgspec.ValidationError:
        return _other_item_decoder.decode(raw)
