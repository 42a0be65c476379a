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
