"""``${VAR}`` expansion and the small helpers every parsing module shares.

Owns the parsing :class:`Context` (environment and base directory), field-path
joining, the wording of "found ..." in messages (never quoting a secret), and
the checks for mappings, allowed keys, required keys and either-or keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimecast_exporter.config.model import ConfigError, Problems

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "$$" is a literal "$" (so "$${X}" is a literal "${X}"); "${NAME}" is expanded;
# a "${" with no closing brace is reported rather than silently kept.
_ENV_REF_RE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<name>[^}]*)\}|(?P<open>\{))")

_MAX_SHOWN = 60  # longest found value quoted in a message


@dataclass(frozen=True)
class Context:
    """What parsing needs besides the document itself."""

    environ: Mapping[str, str]
    base_dir: Path | None


def join(path: str, key: object) -> str:
    key = number_text(key) if isinstance(key, int) else key  # a YAML key may be 0x<4000 digits>
    return f"{path}.{key}" if path else str(key)


def number_text(value: int | float) -> str:
    """``str(value)``, but an integer too long to print (str() refuses over 4300
    digits, and YAML's ``0x...`` makes them) is shown by its magnitude."""
    if isinstance(value, int) and abs(value) >= 10**_MAX_SHOWN:
        return f"{'-' if value < 0 else ''}~10^{int(math.log10(abs(value)))}"
    return str(value)


def found(value: Any, *, secret: bool = False) -> str:
    """Describe a wrong value for a message; for secrets, only its type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        kind = "an integer" if isinstance(value, int) else "a number"
        return kind if secret else f"{kind} ({number_text(value)})"
    if isinstance(value, str):
        if secret:
            return "a string"
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"  # e.g. a YAML date


def expect_mapping(
    value: Any, path: str, what: str = "a mapping", *, secret: bool = False
) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected {what}; found {found(value, secret=secret)}")
    return value


def flag(value: Any, path: str) -> bool:
    """A yes/no setting: true or false (absent or null: false)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false; found {found(value)}")
    return value


def check_keys(mapping: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
    """Every unknown key of ``mapping``, each its own error."""
    problems = Problems()
    for key in mapping:
        if key not in allowed:
            problems.found.append(
                ConfigError(join(path, key), f"unknown key; allowed keys are: {', '.join(allowed)}")
            )
    problems.check()


def one_of(mapping: Mapping[str, Any], first: str, second: str, path: str, hint: str = "") -> str:
    """Return which of two mutually exclusive keys is present; exactly one must be."""
    if first in mapping and second in mapping:
        raise ConfigError(
            join(path, second), f"cannot be combined with '{first}'; give exactly one of them"
        )
    if first not in mapping and second not in mapping:
        raise ConfigError(
            path, f"needs exactly one of '{first}' or '{second}'{hint}; found neither"
        )
    return first if first in mapping else second


def required(mapping: Mapping[str, Any], key: str, path: str, what: str) -> Any:
    if key not in mapping:
        raise ConfigError(join(path, key), f"is required: {what}")
    return mapping[key]


# --- ${ENV} expansion ---------------------------------------------------------


def expand_env(text: str, field_path: str, environ: Mapping[str, str]) -> str:
    """Expand ``${NAME}`` from ``environ``; ``$$`` is a literal ``$``.

    Messages never quote ``text``: it may be a secret.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        if match.group("open"):
            raise ConfigError(
                field_path, "has '${' without a closing '}'; write '$${' for a literal '${'"
            )
        name = match.group("name")
        if not _ENV_NAME_RE.fullmatch(name):
            raise ConfigError(
                field_path,
                "has a '${...}' whose name is not an environment variable name "
                "(letters, digits and '_', not starting with a digit); "
                "write '$$' for a literal '$'",
            )
        if name not in environ:
            raise ConfigError(field_path, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF_RE.sub(replace, text)


def expand_tree(node: Any, path: str, ctx: Context) -> Any:
    """Expand every string inside a pass-through value (keys are left alone)."""
    if isinstance(node, str):
        return expand_env(node, path, ctx.environ)
    if isinstance(node, list):
        return [expand_tree(item, f"{path}[{i}]", ctx) for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: expand_tree(value, join(path, key), ctx) for key, value in node.items()}
    return node


def string_value(value: Any, path: str, ctx: Context, *, secret: bool = False) -> str:
    """A string field, after ${ENV} expansion."""
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string; found {found(value, secret=secret)}")
    return expand_env(value, path, ctx.environ)
