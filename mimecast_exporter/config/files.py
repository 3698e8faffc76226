"""Files the configuration names, and its YAML, read as hostile input.

Every file the exporter reads because a configuration says so (the
configuration itself, secret files, CA bundles, the web configuration and its
certificates and keys) is read by :func:`read_file`: only a regular file, only
up to a bound, and without blocking on a FIFO or a device. A reload runs these
reads too, so a FIFO named by mistake can never hold up anything.

YAML is loaded by :func:`load_yaml`: anchors and aliases let a few lines stand
for billions of values ("billion laughs"), and a value that contains itself
for infinitely many. The document is composed first, its size as the
exporter would walk it counted (every alias counted each time it is used),
and refused past :data:`MAX_YAML_VALUES`, before anything is built from it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

# A configuration file, the web configuration: some KiB in practice.
MAX_CONFIG_BYTES = 1024 * 1024
# A secret: a few hundred bytes in practice (an OAuth client secret, a key).
MAX_SECRET_BYTES = 64 * 1024
# A CA bundle, a certificate chain, a key: a system bundle is about 200 KiB.
MAX_PEM_BYTES = 4 * 1024 * 1024
# Values in a YAML document once its aliases are expanded. A configuration of
# 1,000 accounts is some 20,000.
MAX_YAML_VALUES = 100_000


class BadYaml(Exception):
    """A document that is not YAML the exporter reads: its message says where
    and what, never the source line (it may hold a secret, or a hash)."""


class FileProblem(Exception):
    """Why a file could not be read ("no such file", "a FIFO, not a regular
    file"): the caller names the file. Never any of its content."""


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once; the
        # check below then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except ValueError:  # a NUL byte in the name
        raise FileProblem("not a valid file name") from None
    except OSError as err:
        if err.errno == errno.ENXIO:  # a socket, or a device without its driver
            try:
                raise FileProblem(f"{_kind(os.stat(path).st_mode)}, not a regular file") from None
            except OSError:
                pass
        raise FileProblem(_reason(err)) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise FileProblem("it is a directory")
        if not stat.S_ISREG(mode):
            raise FileProblem(f"{_kind(mode)}, not a regular file")
        chunks, size = [], 0
        while size <= limit:  # a file may grow as it is read: the bound holds anyway
            chunk = os.read(descriptor, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise FileProblem(_reason(err)) from None
    finally:
        os.close(descriptor)
    if size > limit:
        raise FileProblem(f"larger than the {limit:,} bytes such a file may have")
    return b"".join(chunks)


def read_text(path: Path, limit: int) -> str:
    """:func:`read_file` as UTF-8 text."""
    try:
        return read_file(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem("not UTF-8 text") from None


def load_yaml(
    text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader, *, source: str = ""
) -> Any:
    """The YAML document in ``text``. Raises :class:`BadYaml`, "invalid
    YAML{source} at line L, column C: problem", for bad YAML, for aliases
    that expand past :data:`MAX_YAML_VALUES` values or a document that
    contains itself, and for what YAML reads but Python cannot hold (a date
    that does not exist, an integer over 4300 digits, nesting deeper than the
    recursion limit)."""
    try:
        reader = loader(text)  # reads the first characters already
        try:
            node = reader.get_single_node()
            if node is None:
                return None
            _check_expansion(node)
            return reader.construct_document(node)
        finally:
            reader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise BadYaml(f"invalid YAML{source}{where}: {problem}") from None
    except (ValueError, RecursionError) as err:  # their text never quotes the value
        raise BadYaml(f"invalid YAML{source}: {err}") from None


def _check_expansion(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
    # Depth first without recursion: (node, its children were pushed).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_VALUES:
                raise ValueError(
                    f"its anchors and aliases expand to more than {MAX_YAML_VALUES:,} values"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ValueError("a value contains itself through a YAML alias")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return "no such file"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EISDIR:
        return "it is a directory"
    return err.strerror or str(err)
