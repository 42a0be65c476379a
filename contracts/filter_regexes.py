"""Regexes for `read_all`'s `stream_regex` and `event_type_regex` that RE2, the server's
matcher, accepts: RE2 has no look-arounds and no `\\Z`."""

from __future__ import annotations

import re


def exactly(value: str) -> str:
    """A regex matching `value` and nothing else."""
    return f"^{re.escape(value)}$"


def not_starting_with(prefix: str) -> str:
    """A regex matching every string that does not start with `prefix`, as `^(?!prefix)` would
    with a backtracking matcher: the string ends before the prefix does, or differs from it at
    some character."""
    if not prefix:
        raise ValueError("every string starts with the empty prefix")
    regex = ""
    for char in reversed(prefix):
        literal = re.escape(char)
        regex = f"(?:$|[^{literal}]|{literal}{regex})" if regex else f"(?:$|[^{literal}])"
    return "^" + regex


def excluded_prefix(pattern: str) -> str | None:
    """The prefix `pattern` was made for by `not_starting_with`, else None: a matcher may
    then test the prefix instead of running the regex, with the same answers."""
    prefix: list[str] = []
    rest = pattern.removeprefix("^")
    while rest.startswith("(?:$|[^"):
        rest = rest[len("(?:$|[^") :]
        literal = rest[:2] if rest.startswith("\\") else rest[:1]
        if not literal:
            return None
        prefix.append(literal[-1])
        rest = rest[len(literal) :]
        if rest.startswith("])"):
            break
        rest = rest.removeprefix("]|" + literal)
    found = "".join(prefix)
    return found if found and not_starting_with(found) == pattern else None
