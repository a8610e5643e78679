"""
What a puzzle is at run time: Sudoku, maze and ARC grids as token rows and back, the rules a valid
answer keeps, and ARC scoring (undo each version's augmentation, vote, pass@K, submission.json).
train.py, sample.py and the prepare_*.py builders share it. numpy and the standard library only.

    kind     tokens (0 is always the pad)                          seq_len     vocab
    sudoku   blank 1, digit d is d + 1                              size**2     size + 2
    maze     "# SGo"[t - 1]: wall, open, start, goal, path cell    size**2     6
    arc      1 end-of-grid marker, colour c is c + 2, 30x30 canvas  900         12
"""
import json
import math
import os

import numpy as np

# -----------------------------------------------------------------------------
# which kind of puzzle a model or dataset is about

BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}  # Sudoku size -> (rows, columns) of a box


def kind_of(vocab_size, seq_len):
    n = math.isqrt(seq_len)
    if vocab_size == 12 and seq_len == 900:
        return "arc"
    if n * n == seq_len and vocab_size == n + 2 and n in BOXES:  # before mazes: 4x4 Sudoku has vocab 6 too
        return "sudoku"
    if n * n == seq_len and vocab_size == 6 and n >= 5:
        return "maze"
    raise ValueError(f"cannot tell the puzzle kind from vocab {vocab_size} and seq_len {seq_len} "
                     f"(Sudoku: vocab size+2; maze: vocab 6; ARC: vocab 12, seq_len 900)")


def dihedral(grid, k):
    """The k-th symmetry of the square, numbered as the authors' ARC builder (so identifiers mean
    the same): identity, rot90, rot180, rot270 (counter-clockwise, as np.rot90), flip left-right,
    flip up-down, transpose, anti-transpose. Views, no copies. Used for mazes and ARC alike."""
    g = np.asarray(grid)
    return (g, g.T[::-1], g[::-1, ::-1], g.T[:, ::-1], g[:, ::-1], g[::-1], g.T, g.T[::-1, ::-1])[k]


def inverse_dihedral(grid, k):
    return dihedral(grid, (0, 3, 2, 1, 4, 5, 6, 7)[k])

# -----------------------------------------------------------------------------
# Sudoku

def units(size):
    """(3*size, size) cell indices of the rows, columns and boxes of a size x size grid."""
    br, bc = BOXES[size]
    g = np.arange(size * size).reshape(size, size)
    boxes = g.reshape(size // br, br, size // bc, bc).transpose(0, 2, 1, 3).reshape(size, size)
    return np.concatenate([g, g.T, boxes])


def sudoku_tokens(text, size):
    """A grid written as size*size characters ('.' or '0' blank; spaces, '|', '+', '-' ignored)."""
    digits = "".join(c for c in text.replace("\ufeff", "") if c not in " \t\r\n|+-")
    if len(digits) not in (16, 36, 81):
        raise ValueError(f"a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got {len(digits)}")
    if (n := math.isqrt(len(digits))) != size:
        raise ValueError(f"this model solves {size}x{size} Sudoku, the puzzle is {n}x{n}")
    if bad := [c for c in digits if c not in ".0123456789"[:size + 2]]:
        raise ValueError(f"unknown character {bad[0]!r} in the puzzle: use digits 1-{size}, and '.' or '0' for a blank")
    return np.array([1 if c in ".0" else int(c) + 1 for c in digits], np.uint8)


SUDOKU_PROBLEMS = [None, "cells are not filled with digits", "it changes a given",
                   "a digit repeats in a row, column or box"]


def sudoku_problems(inputs, answers):
    """(N,) codes, 0 where the answer is a solution of the puzzle: every cell a digit, every given
    kept, every row, column and box a permutation. SUDOKU_PROBLEMS[code] says why not.
    inputs, answers: (N, size*size) tokens."""
    x, y = np.asarray(inputs, np.int64), np.asarray(answers, np.int64)
    size = math.isqrt(x.shape[1])
    filled = ((y >= 2) & (y <= size + 1)).all(1)
    kept = ((x <= 1) | (x == y)).all(1)
    seen = np.zeros((len(y), 3 * size, size + 2), bool)  # per unit, which tokens occur
    np.put_along_axis(seen, np.clip(y, 0, size + 1)[:, units(size)], True, axis=2)
    permutation = seen[:, :, 2:].all((1, 2))
    return np.select([~filled, ~kept, ~permutation], [1, 2, 3], 0)

def sudoku_problem(x, y):
    """Why the answer y is not a solution of the puzzle x (one grid of tokens each), or None."""
    code, n = sudoku_problems(x[None], y[None])[0], math.isqrt(len(x))
    for u, unit in enumerate(units(n) if code == 3 else []):
        digits = y[unit].astype(np.int64) - 1
        if len(set(digits.tolist())) < n:
            return f"{['row', 'column', 'box'][u // n]} {u % n + 1} repeats {next(d for d in digits if (digits == d).sum() > 1)}"
    return SUDOKU_PROBLEMS[code]

# -----------------------------------------------------------------------------
# mazes

CHARSET = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5  # token = CHARSET index + 1
TOKEN = np.zeros(256, np.uint8)                # ASCII code -> token (0 for any other character)
TOKEN[[ord(ch) for ch in CHARSET]] = np.arange(1, len(CHARSET) + 1)
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))


def maze_tokens(text, size):
    """A maze drawn with '#', ' ', 'S', 'G' (and 'o': a solved maze is read as its question)."""
    rows = text.replace("\ufeff", "").replace("\r", "").rstrip("\n").split("\n")
    h, w = len(rows), max(map(len, rows))
    if h > 30 or w > 30:
        raise ValueError(f"the maze is {h}x{w}, larger than 30x30")
    for r, row in enumerate(rows):
        if bad := [c for c in row if c not in CHARSET]:
            raise ValueError(f"unknown character {bad[0]!r} in row {r + 1} "
                             f"(a maze is '#' wall, ' ' open, 'S' start, 'G' goal, 'o' path)")
        if len(row) != w:
            raise ValueError(f"row {r + 1} has {len(row)} characters, not {w} (keep trailing spaces)")
    if (h, w) != (size, size):
        raise ValueError(f"the maze is {h}x{w}, this model solves {size}x{size} mazes")
    grid = TOKEN[np.frombuffer("".join(rows).encode(), np.uint8)]
    grid[grid == PATH] = OPEN
    for token, name in ((START, "start"), (GOAL, "goal")):
        if (k := int((grid == token).sum())) != 1:
            raise ValueError(f"a maze needs one {name} {CHARSET[token - 1]!r}, found {k}")
    return grid


def bfs(grid, src):
    """Moves from src to every cell of a 2-D grid (-1: unreachable) and the number of shortest
    paths to it (capped at 2)."""
    n, m = grid.shape
    w = m + 2  # a border of walls spares bounds checks
    free = np.zeros((n + 2, m + 2), bool)
    free[1:-1, 1:-1] = grid != WALL
    free = free.ravel().tolist()
    dist, count = [-1] * len(free), [0] * len(free)
    s = (src[0] + 1) * w + src[1] + 1
    dist[s], count[s] = 0, 1
    queue = [s]
    for u in queue:  # the list grows while we walk it: a FIFO queue without pops
        d, c = dist[u] + 1, count[u]
        for v in (u - w, u + 1, u + w, u - 1):
            if free[v]:
                if dist[v] < 0:
                    dist[v], count[v] = d, c
                    queue.append(v)
                elif dist[v] == d:  # a second way in at the same distance
                    count[v] = min(2, count[v] + c)
    crop = lambda a: np.array(a).reshape(n + 2, m + 2)[1:-1, 1:-1]
    return crop(dist), crop(count)


def find(grid, token):
    return tuple(int(i) for i in np.argwhere(grid == token)[0])


MAZE_PROBLEMS = [None, "the question needs one 'S' and one 'G' and no 'o'",
                 "the answer is not the question with open cells marked 'o'",
                 "the goal cannot be reached from the start",
                 "the 'o' cells are not a shortest path from S to G"]


def maze_problems(inputs, answers):
    """(N,) codes, 0 where the answer marks a shortest path from S to G: the question with some open
    cells turned 'o', as many as the shortest path has cells, each one move further from S than
    the last and next to the one before. Any shortest path counts, not only the dataset's.
    MAZE_PROBLEMS[code] says why not. inputs, answers: (N, size*size) tokens."""
    x, y = np.asarray(inputs, np.int64), np.asarray(answers, np.int64)
    n = math.isqrt(x.shape[1])
    x, y = x.reshape(-1, n, n), y.reshape(-1, n, n)
    well_formed = ((x == START).sum((1, 2)) == 1) & ((x == GOAL).sum((1, 2)) == 1) & ~(x == PATH).any((1, 2))
    marks = np.where(y == PATH, OPEN, y) == x
    codes = np.select([~well_formed, ~marks.all((1, 2))], [1, 2], 0)
    for i in np.flatnonzero(codes == 0):
        from_s, from_g = bfs(x[i], find(x[i], START))[0], bfs(x[i], find(x[i], GOAL))[0]
        d, path = from_s[find(x[i], GOAL)], y[i] == PATH
        if d < 0:
            codes[i] = 3
            continue
        level = np.where(path, from_s, -9)  # -9: never one move from a path cell's level
        pad = np.pad(level, 1, constant_values=-9)
        around = [pad[1 + dr:n + 1 + dr, 1 + dc:n + 1 + dc] for dr, dc in MOVES]
        on_path = (from_s + from_g == d) & (from_g >= 0)
        ahead = np.logical_or.reduce([a == level + 1 for a in around]) | (level == d - 1)
        behind = np.logical_or.reduce([a == level - 1 for a in around]) | (level == 1)
        if path.sum() != d - 1 or not (on_path & ahead & behind)[path].all():
            codes[i] = 4
    return codes


def check_maze(inp, answer):
    """Why `answer` is not a shortest path through the maze `inp` (2-D tokens), or None."""
    code = maze_problems(np.ravel(inp)[None], np.ravel(answer)[None])[0]
    for token, name in ((START, "starts 'S'"), (GOAL, "goals 'G'"), (PATH, "path cells 'o'")) if code == 1 else ():
        if (k := int((np.asarray(inp) == token).sum())) != (token != PATH):
            return f"{k} {name} in question, expected {int(token != PATH)}"
    return MAZE_PROBLEMS[code]


def problems(kind, inputs, answers):
    """(N,) codes, 0 for a valid answer by the puzzle's rules (Sudoku and mazes; None for ARC)."""
    return dict(sudoku=sudoku_problems, maze=maze_problems).get(kind, lambda *a: None)(inputs, answers)

# -----------------------------------------------------------------------------
# ARC: grids on a 30x30 canvas

GRID = 30
PAD, MARKER, COLOUR0 = 0, 1, 2
VOCAB_SIZE = 12
SEP = "|||"  # identifiers of augmented versions: name|||t<k>|||<new colour of each colour 0..9>
PASS_KS = (1, 2, 5, 10, 100, 1000)


def encode_grid(grid, offset=(0, 0)):
    """(h, w) colours -> (900,) uint8 tokens: the grid at `offset`, a marker row under it and a
    marker column right of it where they fit (no corner marker, as the authors' data)."""
    grid = np.asarray(grid, dtype=np.uint8)
    (h, w), (r, c) = grid.shape, offset
    assert r + h <= GRID and c + w <= GRID, (grid.shape, offset)
    canvas = np.zeros((GRID, GRID), np.uint8)
    canvas[r:r + h, c:c + w] = grid + COLOUR0
    if r + h < GRID:
        canvas[r + h, c:c + w] = MARKER
    if c + w < GRID:
        canvas[r:r + h, c + w] = MARKER
    return canvas.ravel()


def grid_extents(t):
    """(N, H, W) tokens, each with a grid's top-left corner at [0, 0] -> heights, widths (N,) and
    whether each is well-formed: the extent runs up to the first marker of the top row and of the
    left column (or the edge), and everything inside it is a colour (no pad, marker, token > 11)."""
    def first_marker(lines):  # (N, L) -> index of the first marker, L if none
        marker = lines == MARKER
        return np.where(marker.any(1), marker.argmax(1), lines.shape[1])
    h, w = first_marker(t[:, :, 0]), first_marker(t[:, 0, :])
    inside = (np.arange(t.shape[1])[:, None] < h[:, None, None]) & (np.arange(t.shape[2]) < w[:, None, None])
    bad = inside & ((t < COLOUR0) | (t >= COLOUR0 + 10))
    return h, w, (h > 0) & (w > 0) & ~bad.any((1, 2))


def decode_grid(tokens):
    """(900,) tokens -> (h, w) uint8 colours, or None when they hold no well-formed grid. The grid
    starts at the first non-pad token (train grids are translated); see grid_extents. So a
    prediction that drops a marker or puts pad inside its grid is wrong, not silently cropped."""
    t = np.asarray(tokens).reshape(GRID, GRID)
    nonpad = np.flatnonzero(t)
    if len(nonpad) == 0:
        return None
    r, c = divmod(int(nonpad[0]), GRID)
    (h,), (w,), (ok,) = grid_extents(t[None, r:, c:])
    return (t[r:r + h, c:c + w] - COLOUR0).astype(np.uint8) if ok else None


def parse_name(name):
    """Identifier -> (task name, dihedral k, colour mapping: new colour of colour c at [c])."""
    if SEP not in name:
        return name, 0, np.arange(10, dtype=np.uint8)
    task, t, mapping = name.split(SEP)
    return task, int(t[1:]), np.frombuffer(mapping.encode(), np.uint8) - ord("0")


def augment(grid, k, mapping):
    return dihedral(np.asarray(mapping, np.uint8)[grid], k)


def grid_key(grid):
    return grid.shape, grid.tobytes()


def to_grid(value, where):
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise ValueError(f"{where}: not a non-empty list of rows")
    widths = sorted({len(r) for r in value})
    if len(widths) > 1 or widths[0] == 0:
        raise ValueError(f"{where}: not rectangular (row lengths {widths})")
    if len(value) > GRID or widths[0] > GRID:
        raise ValueError(f"{where}: {len(value)}x{widths[0]} is larger than {GRID}x{GRID}")
    if any(isinstance(v, list) for row in value for v in row):
        raise ValueError(f"{where}: a cell holds a list, but a grid is 2-D: a list of rows of colours 0-9")
    if not all(type(v) is int and 0 <= v <= 9 for row in value for v in row):
        raise ValueError(f"{where}: colours must be integers 0-9, one per cell")
    return np.array(value, np.uint8)


def check_task(name, task, need_outputs=True):
    """Task JSON -> (demonstration pairs, test pairs) of uint8 grids; ValueError names the task and
    example. A test pair without output (an unsolved test set) gets a [[0]] stand-in, as the authors'."""
    if SEP in name:
        raise ValueError(f"task {name}: a task name may not contain {SEP!r} (it separates the parts "
                         f"of an augmented version's identifier)")
    if not isinstance(task, dict):
        raise ValueError(f'task {name}: expected {{"train": [...], "test": [...]}}, got a {type(task).__name__}')
    parts = []
    for split in ("train", "test"):
        if not isinstance(task.get(split), list) or not task[split]:
            raise ValueError(f"task {name}: missing or empty field '{split}' (a list of examples)")
        pairs = []
        for i, ex in enumerate(task[split]):
            where = f"task {name} {split} example {i}"
            if not isinstance(ex, dict) or "input" not in ex:
                raise ValueError(f"{where}: missing field 'input'")
            if "output" not in ex and (need_outputs or split == "train"):
                raise ValueError(f"{where}: missing field 'output'")
            pairs.append((to_grid(ex["input"], f"{where} input"),
                          to_grid(ex.get("output", [[0]]), f"{where} output")))
        parts.append(pairs)
    return tuple(parts)

# -----------------------------------------------------------------------------
# ARC scoring: map every version's prediction back to its task, vote, pass@K

def test_input_index(puzzle_indices):
    """For every example of the test split, which test input of its task it is (the examples of
    a version's puzzle keep the order of the task's test inputs)."""
    sizes = np.diff(puzzle_indices)
    return np.arange(puzzle_indices[-1]) - np.repeat(puzzle_indices[:-1], sizes)


def prediction_arrays(predictions):
    """The forms score() accepts -> identifiers (N,), test indices (N,), tokens (N, 900), q_halt (N,)."""
    js = None
    if isinstance(predictions, dict):
        order = np.argsort(predictions["example"], kind="stable") if "example" in predictions else slice(None)
        pids, tokens, q = (np.asarray(predictions[k])[order] for k in ("puzzle_identifiers", "preds", "q_halt"))
    else:
        columns = list(zip(*predictions)) or [[], np.zeros((0, GRID * GRID)), []]
        pids, tokens, q = columns[0], columns[-2], columns[-1]
        js = np.array(columns[1]) if len(columns) == 4 else None
    pids, tokens = np.asarray(pids, np.int64), np.asarray(tokens).reshape(-1, GRID, GRID)
    if js is None:  # given in test-split order: the j-th prediction of an identifier is test input j
        seen, js = {}, np.empty(len(pids), np.int64)
        for i, p in enumerate(pids.tolist()):
            js[i] = seen[p] = seen.get(p, -1) + 1
    return pids, js, tokens, np.asarray(q, np.float64)


def score(predictions, identifiers, test_puzzles, ks=PASS_KS):
    """Vote over versions and score. Returns a dict: pass@K (mean over tasks with answers of the
    fraction of their test inputs whose answer is among the K best-voted grids), counts of
    predictions, invalid ones (no well-formed grid at the top-left corner, where test grids are;
    they count as wrong), ignored ones (blank or non-test identifiers), per-task scores and a
    Kaggle `submission`. Grids are ranked by votes, ties by mean sigmoid(q_halt).

    predictions, one per test example, either
      - tuples (puzzle_identifier, tokens (900,), q_halt logit) in test-split order, or
        (puzzle_identifier, test_index, tokens, q_halt) with test_index from test_input_index();
      - or a dict of arrays puzzle_identifiers (N,), preds (N, 900), q_halt (N,) and optionally
        example (N,), the test-split row of each (puzzle_data.evaluate's output).
    identifiers: identifiers.json's list; test_puzzles: test_puzzles.json's dict."""
    pids, js, tokens, q = prediction_arrays(predictions)
    conf = 0.5 * (1 + np.tanh(q / 2))  # sigmoid without overflow
    versions, votes, invalid, ignored = {}, {}, 0, 0
    for lo in range(0, len(pids), 1 << 16):  # extents a chunk at a time: bounded memory
        h, w, ok = grid_extents(tokens[lo:lo + (1 << 16)])
        for i in range(lo, lo + len(ok)):
            pid, j = int(pids[i]), int(js[i])
            if pid not in versions:  # task, transform and token -> original colour table, once each
                task, k, mapping = parse_name(identifiers[pid]) if 0 < pid < len(identifiers) else ("", 0, None)
                lut = np.zeros(COLOUR0 + 10, np.uint8)
                lut[COLOUR0:] = np.argsort(mapping) if mapping is not None else 0
                versions[pid] = (task, k, lut) if task in test_puzzles else None
            if versions[pid] is None or j >= len(test_puzzles[versions[pid][0]]["test"]):
                ignored += 1
                continue
            if not ok[i - lo]:
                invalid += 1
                continue
            task, k, lut = versions[pid]
            grid = inverse_dihedral(lut[tokens[i, :h[i - lo], :w[i - lo]]], k)
            vote = votes.setdefault((task, j), {}).setdefault(grid_key(grid), [0, 0.0, grid])
            vote[0] += 1
            vote[1] += conf[i]
    per_task, submission, missing = {}, {}, 0
    for task, puzzle in test_puzzles.items():
        solved, submission[task] = np.zeros(len(ks)), []
        for j, pair in enumerate(puzzle["test"]):
            ranked = [v[2] for v in sorted(votes.get((task, j), {}).values(),
                                           key=lambda v: (v[0], v[1] / v[0]), reverse=True)]
            missing += not ranked
            best = [g.tolist() for g in ranked[:2]] or [[[0]]]
            submission[task].append(dict(attempt_1=best[0], attempt_2=best[-1]))
            if "output" in pair:
                answer = grid_key(np.array(pair["output"], np.uint8))
                rank = next((r for r, g in enumerate(ranked) if grid_key(g) == answer), math.inf)
                solved += rank < np.array(ks)
        if all("output" in pair for pair in puzzle["test"]):
            per_task[task] = dict(zip(ks, (solved / len(puzzle["test"])).tolist()))
    result = {f"pass@{k}": float(np.mean([s[k] for s in per_task.values()])) if per_task else 0.0 for k in ks}
    result.update(tasks=len(per_task), unscored_tasks=len(test_puzzles) - len(per_task), predictions=len(pids),
                  invalid=invalid, ignored=ignored, inputs_without_prediction=missing,
                  per_task=per_task, submission=submission)
    return result


def load_scoring(data_dir):
    """(identifiers, test_puzzles) of a built dataset: the arguments score() needs."""
    out = []
    for name in ("identifiers.json", "test_puzzles.json"):
        path = os.path.join(data_dir, name)
        try:
            with open(path) as f:
                out.append(json.load(f))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})")
    return tuple(out)
