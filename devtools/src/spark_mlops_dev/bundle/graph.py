"""The one walk over a job's task graph (``depends_on`` edges), shared by the validator and the runner.

A graph here is ``{task_key: [upstream task keys]}`` in YAML order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]`` (each depends on the next), or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def ancestors(graph: Mapping[str, Sequence[str]], node: str) -> set[str]:
    """Every task ``node`` depends on, directly or transitively."""
    seen: set[str] = set()
    todo = list(graph.get(node, ()))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(graph.get(n, ()))
    return seen


def topological_order(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Tasks in an order where every task comes after its dependencies; among ready tasks the
    YAML order wins (as the local runner runs them). None when there is a cycle."""
    done: list[str] = []
    placed: set[str] = set()
    left = list(graph)
    while left:
        ready = next((k for k in left if all(d in placed for d in graph[k])), None)
        if ready is None:
            return None
        done.append(ready)
        placed.add(ready)
        left.remove(ready)
    return done
