import re
import time
import uuid

from trio_codex.runtime.kernel import ids
from trio_codex.runtime.kernel.ids import uuid7

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid7_is_an_rfc_9562_version_7_uuid_carrying_the_current_time():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert UUID7.match(value)
    parsed = uuid.UUID(value)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after


def test_uuid7_values_strictly_increase_within_one_millisecond():
    values = [uuid7() for _ in range(10_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert all(UUID7.match(v) for v in values)


def test_uuid7_stays_ordered_when_the_clock_steps_back(monkeypatch):
    first = uuid7()
    monkeypatch.setattr(ids.time, "time_ns", lambda: 0)
    second = uuid7()
    assert first < second
    assert UUID7.match(second)
