"""Errors of a config checked against a pydantic schema, as one line per bad value naming the file and
the key path (``neudep.yaml: dataset.glyphs.val_per_class: must be ≥ 1 (got 0)``); an unknown key names
the closest known one."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A malformed project config; the message names the file and the key."""


def plain_lists(obj):
    """Tuples as lists, recursively (the schema's lists are strict)."""
    if isinstance(obj, dict):
        return {k: plain_lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_lists(v) for v in obj]
    return obj


def check(schema: type[BaseModel], raw: Any, where: str, prefix: str = "") -> BaseModel:
    """``schema`` validated on ``raw``; ConfigError with one line ``where: key.path: problem`` per bad value."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{where}: {_problem(schema, e, prefix)}" for e in exc.errors(include_url=False)]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def _key(loc: tuple, prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(schema, err: dict, prefix: str) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":  # the last part is the user's key, whatever it is called
        parent = tuple(p for p in err["loc"][:-1] if not _is_tag(p))
        known = fields_at(schema, parent)
        near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"{_key(parent + (err['loc'][-1],), prefix)}: unknown key{hint} (known: {', '.join(known)})"
    loc = tuple(p for p in err["loc"] if not _is_tag(p))
    key = _key(loc, prefix)
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error", err["msg"]))
        head = re.match(r"[A-Za-z_]\w*", msg)
        if msg.startswith("["):  # an item of the list at loc
            return f"{key}{msg}"
        if ":" in msg and head and head.group() in fields_at(schema, loc):  # the message names a key below loc
            return f"{key}.{msg}" if key else msg
        return f"{key}: {msg}" if key else msg
    text = {
        "greater_than_equal": lambda: f"must be ≥ {_num(ctx.get('ge'))}",
        "greater_than": lambda: f"must be > {_num(ctx.get('gt'))}",
        "less_than_equal": lambda: f"must be ≤ {_num(ctx.get('le'))}",
        "less_than": lambda: f"must be < {_num(ctx.get('lt'))}",
        "finite_number": lambda: "must be a finite number (no NaN or inf)",
        "int_type": lambda: "must be an integer",
        "float_type": lambda: "must be a number" + (" (YAML reads 1e-9 as text: write 1.0e-9)" if _exp_text(got)
                                                    else ""),
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be a string",
        "list_type": lambda: "must be a list",
        "dict_type": lambda: "must be a mapping",
        "model_type": lambda: "must be a mapping",
        "literal_error": lambda: f"must be one of {_options(ctx.get('expected', ''))}",
        "too_short": lambda: f"must have at least {ctx.get('min_length')} item(s)",
        "too_long": lambda: f"must have at most {ctx.get('max_length')} item(s)",
        "string_too_short": lambda: "must not be empty",
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters",
        "string_pattern_mismatch": lambda: "must be a single folder name: letters, digits, '_', '.', '-', not "
                                           "starting with '.' (no '/', no '..')",
        "missing": lambda: "is required",
    }.get(kind, lambda: err["msg"])()
    return f"{key or '(top level)'}: {text}" + ("" if kind == "missing" else f" (got {_short(got)})")


def _exp_text(value) -> bool:
    """A number YAML 1.1 read as text (an exponent without a dot)."""
    return isinstance(value, str) and re.fullmatch(r"[-+]?[\d.]+e[-+]?\d+", value) is not None


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _options(expected: str) -> str:
    """pydantic's "'raw' or 'centered'" as "raw, centered"."""
    return ", ".join(x.strip().strip("'") for x in re.split(r",| or ", expected) if x.strip())


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_tag(part) -> bool:
    # pydantic adds union/function tags to a loc ('list[str]', 'constrained-str', 'function-after[...]', ...)
    return isinstance(part, str) and ("[" in part or part.startswith("constrained-")
                                      or part in ("str", "int", "float", "bool", "none"))


def _unwrap(ann):
    """The schema class or the item type inside Optional / list / dict / Annotated."""
    while True:
        origin = typing.get_origin(ann)
        if origin is Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = next((a for a in args if typing.get_origin(a) is list or _is_schema(a)), args[0])
        else:
            return ann


def _is_schema(ann) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def fields_at(schema, loc: tuple) -> list[str]:
    """The keys allowed at ``loc`` (a path of keys and list indices) of ``schema``."""
    ann = schema
    for part in loc:
        ann = _unwrap(ann)
        if isinstance(part, int):
            args = typing.get_args(ann)
            ann = args[0] if args else ann
        elif _is_schema(ann) and part in ann.model_fields:
            ann = ann.model_fields[part].annotation
        else:
            return []
    ann = _unwrap(ann)
    return list(ann.model_fields) if _is_schema(ann) else []
