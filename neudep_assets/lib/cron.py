"""Cron strings as Dagster takes them (five fields, no seconds), checked without importing Dagster:
`cron_problem` says what is wrong, or None. A test holds it to Dagster's own `is_valid_cron_string`."""

from __future__ import annotations

import re

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
#: (name, lowest, highest, names mapped to numbers)
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
          ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
          ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}))
_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")


def cron_problem(text) -> str | None:
    """None for a valid five-field cron string, else what is wrong with it."""
    if not isinstance(text, str):
        return f"a string is needed, not {type(text).__name__}"
    text = MACROS.get(text.strip().lower(), text)
    parts = text.split()
    if len(parts) != 5:
        return f"{len(parts)} fields, 5 needed"
    values = []
    for part, (name, lo, hi, names) in zip(parts, FIELDS):
        seen: set[int] = set()
        for item in part.lower().split(","):
            m = _ITEM.match(item)
            if not m:
                return f"{name} {part!r} is not a number, range, list or step"
            star, a, b, step = m.groups()
            try:
                first = lo if star else _value(a, names, lo, hi)
                last = hi if star or (b is None and step) else _value(b, names, lo, hi) if b else first
            except ValueError as exc:
                return f"{name} {part!r}: {exc}"
            if step is not None and int(step) < 1:
                return f"{name} {part!r}: step must be ≥ 1"
            span = range(first, last + 1) if first <= last else [*range(first, hi + 1), *range(lo, last + 1)]  # wraps
            seen.update(span[::int(step or 1)])
        values.append(seen)
    if values[3] == {2} and values[2] and min(values[2]) >= 30:
        return "February has no day 30 or 31"
    return None


def _value(token: str, names: dict, lo: int, hi: int) -> int:
    v = names.get(token) if not token.isdigit() else int(token)
    if v is None:
        raise ValueError(f"unknown name {token!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{v} is outside {lo}-{hi}")
    return v
