"""Locating a hunk's lines in a file and replacing them (``seek_sequence.rs``
and ``compute_replacements``): exact, then ignoring trailing whitespace, then
any surrounding whitespace, then with typographic punctuation normalised."""

from __future__ import annotations

from collections.abc import Sequence

from .patch import WHITESPACE, ComputeReplacementsError, UpdateFileChunk, trim

_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
        **dict.fromkeys(
            "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "
        ),
    }
)

_PASSES = (
    None,  # exact
    lambda s: s.rstrip(WHITESPACE),
    trim,
    lambda s: trim(s).translate(_PUNCTUATION),
)


def _seek_sequence(lines: Sequence[str], pattern: Sequence[str], start: int, eof: bool) -> int | None:
    """Index of ``pattern`` in ``lines`` at or after ``start``, trying four
    passes of decreasing strictness: exact, trailing whitespace ignored,
    surrounding whitespace ignored, typographic punctuation and spaces read
    as ASCII. With ``eof`` only the position that ends the file is tried,
    and only if it is not before ``start``."""
    if not pattern:
        return start
    if len(pattern) > len(lines):
        return None
    first = max(start, len(lines) - len(pattern)) if eof else start
    width = len(pattern)
    for norm in _PASSES:
        have = lines if norm is None else [norm(line) for line in lines]
        want = list(pattern) if norm is None else [norm(line) for line in pattern]
        for i in range(first, len(lines) - width + 1):
            if have[i] == want[0] and list(have[i:i + width]) == want:
                return i
    return None


def _chunk_lines(chunk: UpdateFileChunk) -> list[tuple[str, str]]:
    """The chunk's lines as ``(kind, text)`` in patch order."""
    if not chunk.kinds:
        return [("-", t) for t in chunk.old_lines] + [("+", t) for t in chunk.new_lines]
    old, new = iter(chunk.old_lines), iter(chunk.new_lines)
    out = []
    for kind in chunk.kinds:
        text = next(new) if kind == "+" else next(old)
        if kind == " ":
            next(new)
        out.append((kind, text))
    return out


def _drop_final_newline_line(lines: list[tuple[str, str]], new_ends_empty: bool) -> list[tuple[str, str]]:
    """Drop the empty last old line, and the empty last new line if there is
    one: they stand for the file's final line break."""
    lines = list(lines)
    old_at = max(i for i, (kind, _) in enumerate(lines) if kind != "+")
    kind, text = lines[old_at]
    if kind == " " and not new_ends_empty:
        lines[old_at] = ("+", text)  # it stays on the new side
        return lines
    del lines[old_at]
    if new_ends_empty and kind == "-":
        del lines[max(i for i, (k, _) in enumerate(lines) if k != "-")]
    return lines


def new_contents(original: str, path: str, chunks: Sequence[UpdateFileChunk]) -> str:
    """The file after ``chunks``.

    Lines are matched without their endings. A context line keeps the
    file's text and ending (the match may have been whitespace-lenient);
    written lines get the file's preferred ending, that of its first line
    break (``\n`` when it has none); the result always ends with a line
    break.
    """
    texts: list[str] = []
    endings: list[str | None] = []
    for line in original.split("\n")[:-1]:
        crlf = line.endswith("\r")
        texts.append(line[:-1] if crlf else line)
        endings.append("\r\n" if crlf else "\n")
    if original and not original.endswith("\n"):
        texts.append(original.rpartition("\n")[2])
        endings.append(None)
    preferred = endings[0] if endings and endings[0] else "\n"

    replacements: list[tuple[int, int, list[tuple[str, str]]]] = []
    line_index = 0
    for chunk in chunks:
        if chunk.change_context is not None:
            found = _seek_sequence(texts, [chunk.change_context], line_index, False)
            if found is None:
                raise ComputeReplacementsError(
                    f"Failed to find context '{chunk.change_context}' in {path}"
                )
            line_index = found + 1
        lines = _chunk_lines(chunk)
        if not chunk.old_lines:
            replacements.append((len(texts), 0, lines))
            continue
        pattern = chunk.old_lines
        found = _seek_sequence(texts, pattern, line_index, chunk.is_end_of_file)
        if found is None and pattern[-1] == "":
            # A trailing empty line stands for the file's final line break.
            pattern = pattern[:-1]
            lines = _drop_final_newline_line(lines, bool(chunk.new_lines) and chunk.new_lines[-1] == "")
            found = _seek_sequence(texts, pattern, line_index, chunk.is_end_of_file)
        if found is None:
            raise ComputeReplacementsError(
                f"Failed to find expected lines in {path}:\n" + "\n".join(chunk.old_lines)
            )
        replacements.append((found, len(pattern), lines))
        line_index = found + len(pattern)
    replacements.sort(key=lambda r: r[0])

    out: list[str] = []
    done = 0
    for at, old_len, lines in replacements:
        if at > done:
            out += [text + (ending or preferred) for text, ending in zip(texts[done:at], endings[done:at])]
            done = at
        old_at = at
        for kind, text in lines:
            if kind == "+":
                out.append(text + preferred)
                continue
            if kind == " " and old_at < len(texts):
                out.append(texts[old_at] + (endings[old_at] or preferred))
            old_at += 1
        done = max(done, at + old_len)
    out += [text + (ending or preferred) for text, ending in zip(texts[done:], endings[done:])]
    return "".join(out)
