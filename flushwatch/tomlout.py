"""A small TOML writer for ``flushwatch config show``: the output can be saved and used as a config file.

TOML has no null; unset optional settings are written as comments so the operator still sees them.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dump_toml"]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return orjson.dumps(str(value)).decode()


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else orjson.dumps(key).decode()


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Render nested dicts as TOML tables; dicts whose values are all scalars stay inline tables only
    when they are free-form maps (e.g. per-asset floors), which sit under their parent table."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
            continue
        nested = isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values())
        if nested or (isinstance(value, dict) and _is_section(value)):
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {_key(key)} = (unset)")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    out = ""
    if lines:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(lines) + "\n\n"
    for key, value in tables:
        out += dump_toml(value, f"{prefix}.{_key(key)}" if prefix else _key(key))
    for key, items in arrays:  # arrays of tables, e.g. [[sink.targets]]
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        for item in items:
            body = dump_toml(item, name)
            out += body.replace(f"[{name}]\n", f"[[{name}]]\n", 1) if body.startswith(f"[{name}]") \
                else f"[[{name}]]\n" + body
    return out


def _is_section(value: dict[str, Any]) -> bool:
    # settings sections have snake_case identifiers as keys; free-form maps (asset -> floor) are upper case
    return any(isinstance(k, str) and k.islower() for k in value)
