"""Rust's integer types as msgspec constraints.

A field the original declares ``u16``, ``u32``, ``usize``... is refused when
it decodes out of that type's range, before any handler sees it, instead of
reaching a ``struct.pack`` or an SQLite bind that cannot take it. The Rust
name rides in the ``Meta`` (``extra={"rust": ...}``) so that errors can be
worded as serde words them (``invalid value: integer `70000`, expected
u16``). msgspec bounds stop at i64, so ``u64`` and ``usize`` stop there too.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

#: serde's bounds for each Rust integer type.
RUST_INTS = {
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "usize": (0, 2**64 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
}


def _rust_int(name: str) -> Any:
    low, high = RUST_INTS[name]
    return Annotated[int, msgspec.Meta(ge=low, le=min(high, 2**63 - 1), extra={"rust": name})]


U16 = _rust_int("u16")
U32 = _rust_int("u32")
U64 = _rust_int("u64")
USIZE = _rust_int("usize")
I32 = _rust_int("i32")
I64 = _rust_int("i64")
