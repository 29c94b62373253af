"""Graph search: find a path from start to goal in a maze or a random graph.

A puzzle is ``{"kind": "maze", "nodes": ["a1", ...], "edges": [["a1", "a2"], ...],
"start": "a1", "goal": "d4"}``; an answer is the path as text, ``a1-a2-b2-...-d4``.

Two kinds of graph:

- ``maze`` (default): a perfect maze on a ``rows`` x ``cols`` grid, i.e. a uniformly random
  spanning tree of the grid drawn with Wilson's algorithm (networkx's own
  ``random_spanning_tree`` needs scipy, which the project does not depend on). Cells are
  named like chess squares, column letter then row number: ``a1`` .. ``d4``. A perfect maze
  has exactly one path between any two cells, so every wrong turn is a dead-end corridor.
  The 4x4 grid has 100,352 spanning trees (Kirchhoff's theorem).
- ``random``: ``networkx.gnm_random_graph(nodes, edges)``, redrawn until connected
  (41% of draws are connected at the default 12 nodes / 14 edges, measured over 5000, so
  about 2.5 draws a puzzle), nodes named ``A`` .. ``L``. Random graphs have cycles, so
  several paths may lead to the goal; any simple one is right.

Start and goal are drawn uniformly among the ordered pairs at least ``min_distance`` edges
apart (shortest path); the default 5 of at most 6 Manhattan steps on the 4x4 grid puts
them far apart, so the path is never a few obvious hops.

The search is a depth-first search that writes one step per move ("From a2 go to b2."),
keeps a visited set (a node is entered at most once, so at most nodes - 1 steps are ever
written), and when it reaches a node with nowhere new to go it backs out to the last node
with an unexplored neighbour: every step of the dead corridor is abandoned. Neighbour order
(``heuristic``):

- ``closest``: mazes: smallest Manhattan distance to the goal, read off the names (what a
  person looking at the grid does); random graphs have no geometry, so the honest
  equivalent is one step of look-ahead: neighbours with an edge to the goal first, then
  alphabetical;
- ``order``: alphabetical (for mazes: column, then row);
- ``random``: shuffled with the solve rng.

Under every heuristic the goal itself is taken first when it is a neighbour: nobody walks
past the exit to explore. ``max_steps`` is the node budget (steps written, kept or
abandoned); a search that would exceed it returns None and the sampler draws again.

Measured over 2000 puzzles each (backspace style, paraphraser template; share of traces
with at least one abandoned step; trace length median / p95 / max in characters):

==========================  ==========  ================
config                      dead ends   length
==========================  ==========  ================
maze 4x4, closest (default) 61%         219 / 430 / 578
maze 4x4, order             77%         272 / 484 / 581
maze 4x4, random            77%         273 / 485 / 629
random 12/14, closest       34%         145 / 257 / 374
random 12/14, order         52%         173 / 298 / 387
random 12/14, random        54%         173 / 305 / 374
==========================  ==========  ================

Sample + solve runs at about 750-900 puzzles/s for mazes and 1100-1650/s for random
graphs on one core. Distinct puzzles: 100,352 mazes times ~100 start/goal pairs 5 or more
apart (measured mean) is about 10 million for the default; 2000 draws gave 2000 keys.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import networkx as nx

from solvers.config import ConfigError, check_choice, check_int_range
from solvers.trace import Event, Recorder

NAME = "graph"
HEURISTICS = ("closest", "order", "random")
ANSWER_KIND = "text"  # a path such as "a1-a2-b2"
KINDS = ("maze", "random")


@dataclass
class Config:
    # The defaults, measured over 2000 puzzles (backspace style, paraphraser template):
    # 61% of the traces abandon at least one step; length median 219, p95 430, max 578
    # characters; 8.4 steps on average, 15 at most. Other settings: module docstring.
    kind: str = "maze"  # maze | random
    rows: int = 4  # maze: 2 to 9 rows (row numbers stay one digit)
    cols: int = 4  # maze: 2 to 26 columns (letters a..z)
    nodes: int = 12  # random graph: 3 to 26 nodes (A..Z)
    # 12 nodes, 14 edges: a tree plus 3 edges, sparse enough that a third of the searches
    # meet a dead end even with look-ahead (16 edges: 16%).
    edges: int = 14  # random graph: nodes - 1 (a tree) to nodes * (nodes - 1) / 2
    # Share of traces with dead ends by min_distance (1000 puzzles each): 3: 48%, 4: 55%,
    # 5: 62%, 6: 67%. 5 leaves ~100 ordered start/goal pairs per maze (6: ~69), measured.
    min_distance: int = 5  # shortest start-goal distance in edges; 1 allows one-hop answers
    heuristic: str = "closest"  # neighbour order: closest | order | random
    # A search enters each node at most once, so it writes at most nodes - 1 steps: 15 on the
    # 4x4 maze, 24 on 5x5. 30 steps of ~25 characters, erased ones twice, stay under 2048.
    max_steps: int = 30  # node budget: steps written, kept or abandoned

    def __post_init__(self) -> None:
        check_choice("task.kind", self.kind, KINDS)
        check_int_range("task.rows", self.rows, 2, 9)
        check_int_range("task.cols", self.cols, 2, 26)
        check_int_range("task.nodes", self.nodes, 3, 26)
        check_int_range("task.edges", self.edges, self.nodes - 1, self.nodes * (self.nodes - 1) // 2)
        # A perfect maze's path between opposite corners is at least rows + cols - 2 long, so
        # that bound is always reachable; a random graph's longest shortest path is < nodes.
        longest = self.rows + self.cols - 2 if self.kind == "maze" else self.nodes - 1
        check_int_range("task.min_distance", self.min_distance, 1, longest)
        check_choice("task.heuristic", self.heuristic, HEURISTICS)
        check_int_range("task.max_steps", self.max_steps, 1, 10**6)


# ----------------------------------------------------------------------------- puzzles

MAZE_NAME = re.compile(r"[a-z][1-9]")  # column letter, row number: a1 .. z9
NODE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,7}")  # starts with a letter: see _name_key


def _name_key(name: str) -> tuple:
    """Natural order: letters, then the number (a2 before a10). Names start with a letter,
    which also keeps any digit in them from being read as an equation by the validator
    (its regex wants no word character before a number)."""
    m = re.fullmatch(r"([A-Za-z]+)(\d*)(.*)", name)
    return (m[1], int(m[2]) if m[2] else -1, m[3]) if m else (name, -1, "")


def _cell(name: str) -> tuple[int, int]:
    return ord(name[0]) - ord("a"), int(name[1:])


def question(puzzle: dict) -> str:
    label = "Corridors" if puzzle["kind"] == "maze" else "Edges"
    edges = ", ".join(f"{a}-{b}" for a, b in puzzle["edges"])
    return (f"Find a path from {puzzle['start']} to {puzzle['goal']}. {label}: {edges}. "
            f"Give the path as node names joined by dashes.")


def puzzle_key(puzzle: dict) -> str:
    """Canonical content: the same edges in any order (either way round) are the same graph.
    The reverse trip (goal to start) is a different puzzle: its trace is different."""
    edges = sorted(tuple(sorted(e, key=_name_key)) for e in puzzle["edges"])
    nodes = sorted(puzzle["nodes"], key=_name_key)
    return (f"{puzzle['kind']}|{','.join(nodes)}|{','.join(a + '-' + b for a, b in edges)}"
            f"|{puzzle['start']}>{puzzle['goal']}")


def is_heldout(puzzle: dict, config: Config) -> bool:
    return False


def parse_puzzle(obj: Any) -> dict:
    """Check a puzzle read from a file; raise ValueError naming the field that is wrong.
    The graph need not be connected: a puzzle without a path is reported unsolved."""
    fields = {"kind", "nodes", "edges", "start", "goal"}
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object with fields {sorted(fields)}, got {type(obj).__name__}")
    unknown = set(obj) - fields
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; a puzzle has {sorted(fields)}")
    kind, nodes, edges = obj.get("kind"), obj.get("nodes"), obj.get("edges")
    if kind not in KINDS:
        raise ValueError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    pattern = MAZE_NAME if kind == "maze" else NODE_NAME
    if not isinstance(nodes, list) or not 2 <= len(nodes) <= 400:
        raise ValueError("'nodes' must be a list of 2 to 400 names")
    if not all(isinstance(n, str) and pattern.fullmatch(n) for n in nodes):
        form = ("a column letter and a row digit like 'b3'" if kind == "maze"
                else "a letter, then up to 7 letters or digits")
        raise ValueError(f"'nodes' must be names of {form}")
    if len(set(nodes)) != len(nodes):
        raise ValueError("'nodes' has a repeated name")
    if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 2 for e in edges):
        raise ValueError("'edges' must be a list of [node, node] pairs")
    known = set(nodes)
    seen = set()
    for a, b in edges:
        if a not in known or b not in known:
            raise ValueError(f"'edges' names a node not in 'nodes': {[a, b]}")
        if a == b or frozenset((a, b)) in seen:
            raise ValueError(f"'edges' has a loop or a repeated edge: {[a, b]}")
        seen.add(frozenset((a, b)))
        if kind == "maze" and sum(abs(x - y) for x, y in zip(_cell(a), _cell(b))) != 1:
            raise ValueError(f"'edges' joins cells that are not side by side in a maze: {[a, b]}")
    for field in ("start", "goal"):
        if obj.get(field) not in known:
            raise ValueError(f"'{field}' must be one of the nodes, got {obj.get(field)!r}")
    if obj["start"] == obj["goal"]:
        raise ValueError("'goal' must differ from 'start'")
    return {"kind": kind, "nodes": list(nodes), "edges": [list(e) for e in edges],
            "start": obj["start"], "goal": obj["goal"]}


def _maze(rows: int, cols: int, rng: random.Random) -> nx.Graph:
    """A uniformly random perfect maze: Wilson's algorithm (loop-erased random walks) on the
    grid. Uniform means every one of the grid's spanning trees is equally likely, which
    gives the many short side branches a hand-drawn maze has (a randomised DFS would give
    a few long winding corridors instead)."""
    grid = nx.relabel_nodes(nx.grid_2d_graph(cols, rows),
                            {(c, r): f"{chr(ord('a') + c)}{r + 1}" for c in range(cols) for r in range(rows)})
    order = sorted(grid, key=_name_key)
    in_tree = {order[rng.randrange(len(order))]}
    maze = nx.Graph()
    maze.add_nodes_from(order)
    for cell in order:
        nxt: dict[str, str] = {}  # the walk's last exit from each cell: loops erase themselves
        u = cell
        while u not in in_tree:
            nxt[u] = rng.choice(sorted(grid[u], key=_name_key))
            u = nxt[u]
        u = cell
        while u not in in_tree:
            in_tree.add(u)
            maze.add_edge(u, nxt[u])
            u = nxt[u]
    return maze


def _random_graph(n: int, m: int, rng: random.Random) -> nx.Graph:
    names = {i: chr(ord("A") + i) for i in range(n)}
    for _ in range(10_000):
        g = nx.gnm_random_graph(n, m, seed=rng.randrange(2**32))
        if nx.is_connected(g):
            return nx.relabel_nodes(g, names)
    raise ConfigError("task.edges", f"no connected graph in 10000 draws of {n} nodes and {m} edges")


def sample(config: Config, rng: random.Random) -> dict:
    """A graph of the configured kind and a start/goal pair drawn uniformly among those at
    least ``min_distance`` apart. Only ``rng`` is used (networkx gets a seed drawn from it)."""
    for _ in range(1000):
        if config.kind == "maze":
            g = _maze(config.rows, config.cols, rng)
        else:
            g = _random_graph(config.nodes, config.edges, rng)
        nodes = sorted(g, key=_name_key)
        dist = dict(nx.all_pairs_shortest_path_length(g))
        pairs = [(a, b) for a in nodes for b in nodes if dist[a][b] >= config.min_distance]
        if pairs:  # a dense random graph may have no pair that far apart: draw again
            start, goal = rng.choice(pairs)
            pairs_sorted = (sorted(e, key=_name_key) for e in g.edges)
            edges = sorted(pairs_sorted, key=lambda e: (_name_key(e[0]), _name_key(e[1])))
            return {"kind": config.kind, "nodes": nodes, "edges": edges, "start": start, "goal": goal}
    raise ConfigError("task.min_distance", f"no two nodes {config.min_distance} edges apart in 1000 graphs; "
                      "lower task.min_distance or task.edges")


# ----------------------------------------------------------------------------- search

class _OutOfBudget(Exception):
    pass


def _order(g: nx.Graph, options: list[str], goal: str, kind: str, heuristic: str,
           rng: random.Random) -> list[str]:
    options = sorted(options, key=_name_key)  # alphabetical: "order", and the tie-break
    if heuristic == "random":
        rng.shuffle(options)
    elif heuristic == "closest":
        if kind == "maze":
            gc, gr = _cell(goal)
            options.sort(key=lambda n: abs(_cell(n)[0] - gc) + abs(_cell(n)[1] - gr))
        else:  # no coordinates: look one edge ahead instead
            options.sort(key=lambda n: not g.has_edge(n, goal))
    if goal in options:  # seen from here: never walk past the goal
        options.remove(goal)
        options.insert(0, goal)
    return options


def solve(puzzle: dict, config: Config, rng: random.Random) -> list[Event] | None:
    """Depth-first search, recorded. Returns the events, or None when the budget runs out
    or the goal cannot be reached from the start."""
    g = nx.Graph()
    g.add_nodes_from(puzzle["nodes"])
    g.add_edges_from(puzzle["edges"])
    start, goal = puzzle["start"], puzzle["goal"]
    rec = Recorder()
    visited = {start}
    path = [start]

    def dfs(at: str) -> bool:
        options = [n for n in g[at] if n not in visited]
        for to in _order(g, options, goal, puzzle["kind"], config.heuristic, rng):
            if to in visited:  # entered from a sibling's subtree meanwhile (random graphs)
                continue
            if rec.steps >= config.max_steps:
                raise _OutOfBudget
            visited.add(to)
            path.append(to)
            rec.step({"at": at, "to": to, "final": to == goal})
            if to == goal or dfs(to):
                return True
            path.pop()
            rec.backtrack({"node": at})  # consecutive backtracks merge: back to the last fork
        return False

    try:
        if start == goal or not dfs(start):
            return None
    except _OutOfBudget:
        return None
    rec.answer("-".join(path))
    return rec.events


# ----------------------------------------------------------------------------- words

# The first phrase of each list is the plain wording (paraphraser=none). No digits appear
# in any phrase except inside node names, so nothing here can look like an equation.
STEP_PHRASES = (
    "From {at} go to {to}.\n",
    "From {at}, try {to}.\n",
    "Let me go from {at} to {to}.\n",
    "Next: {at} to {to}.\n",
    "Take {at}-{to}.\n",
    "Move on from {at} to {to}.\n",
    "{at} leads to {to}; go there.\n",
)
FINAL_PHRASES = (
    "From {at} go to {to}. That is the goal.\n",
    "From {at} reach {to}, the goal!\n",
    "And {at} to {to}: there is the goal.\n",
    "Finally {at} to {to}. Goal reached.\n",
    "Take {at}-{to}, which is the goal.\n",
)
BACK_PHRASES = (
    "Dead end. Back to {node}.\n",
    "Nowhere new to go. Back to {node}.\n",
    "That way is blocked; back to {node}.\n",
    "No way on from there, so back to {node}.\n",
)
# The notes variant: after a dead end is erased, what failed, kept on the page.
NOTE_PHRASES = (
    "({to} leads to a dead end.)\n",
    "(From {at}, {to} goes nowhere.)\n",
    "({to} was a dead end.)\n",
    "(Not {to}: dead end.)\n",
)


def step_slots(data: dict) -> dict:
    return {"at": data["at"], "to": data["to"]}


def step_phrases(data: dict) -> tuple[str, ...]:
    return FINAL_PHRASES if data.get("final") else STEP_PHRASES


def back_slots(state: dict) -> dict:
    return {"node": state["node"]}


def note_slots(data: dict, state: dict) -> dict:
    """``data``: the first abandoned step (the move out of ``state``'s node)."""
    return {"at": data["at"], "to": data["to"], "node": state["node"]}


# ----------------------------------------------------------------------------- verifier

MAX_ANSWER_CHARS = 4096  # a 26 x 9 maze's longest path: 234 two-character names and dashes


def verify(puzzle: dict, answer: Any) -> bool:
    """True when ``answer`` is a simple path ``start-...-goal`` along the puzzle's edges.

    Spaces around the whole answer and around each ``-`` are allowed; names are exact.

    >>> p = {"kind": "maze", "nodes": ["a1", "a2", "b1", "b2"], "start": "a1", "goal": "b2",
    ...      "edges": [["a1", "a2"], ["a2", "b2"], ["a1", "b1"]]}
    >>> verify(p, "a1-a2-b2"), verify(p, " a1 - a2 - b2 "), verify(p, "a1-b1-b2")
    (True, True, False)
    >>> verify(p, "a1-a2-a1-a2-b2"), verify(p, "b2-a2-a1"), verify(p, None)
    (False, False, False)
    """
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        path = [name.strip() for name in answer.strip().split("-")]
        edges = {frozenset(e) for e in puzzle["edges"]}
        if len(path) < 2 or path[0] != puzzle["start"] or path[-1] != puzzle["goal"]:
            return False
        if len(set(path)) != len(path):  # a simple path: no node twice
            return False
        return all(frozenset((a, b)) in edges for a, b in zip(path, path[1:]))
    except (KeyError, TypeError):  # a puzzle dict that is not one: no answer solves it
        return False
