"""Which namespaces the operator serves: one answer for the custom resources and their children alike.

The patterns are kopf's (its documented `--namespace` syntax): each pattern is comma-separated globs, read left
to right; `!glob` excludes; a pattern that starts with an exclusion implies a leading `*`; an inclusive glob after
the first only brings back what the first one matched and a later one excluded. `team-*,!team-x` serves
`team-a` and not `team-x`. A namespace is served when any of the patterns matches it. kopf keeps its matcher
private, so it is written here once; the operator's informers are the only ones that filter by it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

_GLOB = set("*?[]!,")


def match_namespace(name: str, pattern: str) -> bool:
    """kopf's semantics for one pattern (see the module's docstring)."""
    globs = [glob.strip() for glob in pattern.split(",")]
    if not globs or globs[0].startswith("!"):
        globs.insert(0, "*")
    matches = first = fnmatch.fnmatchcase(name, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matches = matches and not fnmatch.fnmatchcase(name, glob[1:])
        else:
            matches = matches or (first and fnmatch.fnmatchcase(name, glob))
    return matches


class Scope:
    """The served namespaces: None for every namespace, else kopf-style patterns (exact names included)."""

    def __init__(self, patterns: Iterable[str] | None):
        self.patterns = None if patterns is None else [p for p in patterns if p.strip()]

    def served(self, namespace: str) -> bool:
        return self.patterns is None or any(match_namespace(namespace, p) for p in self.patterns)

    def exact(self) -> list[str] | None:
        """The namespaces to list and watch one by one when every pattern is a plain name (a namespaced install
        has Roles only); None: list and watch all namespaces and filter with served()."""
        if self.patterns is None or any(set(p) & _GLOB for p in self.patterns):
            return None
        return [p.strip() for p in self.patterns]
