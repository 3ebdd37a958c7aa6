"""YAML read with limits, for config files: a size cap, a cap on what aliases expand to, a depth cap, and
no duplicate keys. An alias bomb (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) is refused from the node
graph, before anything is built from it; anchors and aliases that stay small work as usual."""

from __future__ import annotations

from pathlib import Path

import yaml

from neudep_assets.lib.config_schema import ConfigError

MAX_BYTES = 1 << 20  # a config is a few kB
MAX_NODES = 100_000  # scalars, lists and mappings, each alias counted as what it expands to
MAX_DEPTH = 64


def load_yaml(path: Path, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES):
    """The parsed YAML of ``path`` (safe types only); ConfigError naming the file when it is not
    YAML, too big, expands too far through aliases, nests too deep or repeats a key."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"{path}: {size} bytes, more than a config file may have ({max_bytes})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Expansion(path, max_nodes).size(node, 0)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    finally:
        loader.dispose()


class _Expansion:
    """Counts the nodes a document expands to (an aliased node once per use), memoized per node."""

    def __init__(self, path: Path, max_nodes: int):
        self.path, self.max_nodes, self.memo, self.open = path, max_nodes, {}, set()

    def size(self, node, depth: int) -> int:
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        if key in self.open:
            raise ConfigError(f"{self.path}: line {node.start_mark.line + 1}: a recursive alias (a node that "
                              "contains itself)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{self.path}: line {node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        self.open.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(self.size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            seen = set()
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        raise ConfigError(f"{self.path}: line {k.start_mark.line + 1}: key {k.value!r} given twice")
                    seen.add(k.value)
                n += self.size(k, depth + 1) + self.size(v, depth + 1)
        self.open.discard(key)
        if n > self.max_nodes:
            raise ConfigError(f"{self.path}: line {node.start_mark.line + 1}: expands to more than {self.max_nodes} "
                              "values (a YAML alias bomb?); write the values out or use fewer aliases")
        self.memo[key] = n
        return n
