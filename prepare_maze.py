"""
Prepare Maze-Hard for TRM: find the shortest path from S to G in a size x size maze.

    python prepare_maze.py                                  # Maze-Hard from Hugging Face (network)
    python prepare_maze.py --source=csv --train_csv=train.csv --test_csv=test.csv  # local files
    python prepare_maze.py --source=generate                # offline: 1000 + 1000 hard 30x30 mazes
    python prepare_maze.py --source=generate --size=9 --num_train=8000 --num_test=1000 --aug \
        --output_dir=data/maze9                             # the CPU quick start, 3 s
    python prepare_maze.py --aug                            # + 8 dihedral versions (train only)

A maze is a grid over "# SGo" (wall, open, start, goal, path); token = index + 1, pad 0, so
vocab 6 and seq_len = size*size. The input has no 'o'; the label marks the shortest start-goal path
with 'o' (S and G stay). Path lengths are counted in moves, i.e. 'o' cells + 1. Every label, read
or generated, is checked by breadth-first search. Output: the layout of puzzle_data.py,
one puzzle and one group per maze, puzzle identifier 0 ("<blank>") for all.

Maze-Hard (sapientinc/maze-30x30-hard-1k) has 1000 train and 1000 test 30x30 mazes whose shortest
path is longer than 110 steps. The generator here is our own: a depth-first-search maze on the odd
lattice, a few extra openings that make loops (so walking the only corridor, or filling dead ends,
does not solve it: routes must be compared), a random start, and a goal drawn among the cells whose
shortest path is unique (so exact match is a fair score) and at least --min_path_len moves long.
The path-length distribution and wall density of whatever is written are printed. Speed, one
core: 1000 hard 30x30 mazes in about 2 s, 5000 13x13 mazes in about 3 s.
"""
import argparse
import csv
import itertools
import os
import sys
import time

import numpy as np

from configurator import ArgumentParser, number
from data_writer import OutputDir, download_csvs, write_json, write_split
from puzzles import CHARSET, GOAL, MOVES, OPEN, PATH, START, TOKEN, WALL, bfs, check_maze, dihedral, find

HF_URL = "https://huggingface.co/datasets/sapientinc/maze-30x30-hard-1k/resolve/main"
LOOPS = 6  # inner walls opened per maze on average, to make loops (see carve)
ORDERS = list(itertools.permutations(range(4)))  # the 24 orders to try a cell's 4 neighbours in


def default_min_path_len(size):
    """Maze-Hard keeps 30x30 mazes with a shortest path longer than 110 moves; scale by area."""
    return 110 * size * size // 900 + 1

# -----------------------------------------------------------------------------
# shortest paths (the rules a valid path keeps are in puzzles.py)

def trace(grid, dist, goal):
    """grid with PATH on a shortest path to goal, walked back along decreasing distances."""
    label, padded = grid.copy(), np.full((dist.shape[0] + 2, dist.shape[1] + 2), -1)
    padded[1:-1, 1:-1] = dist  # the border stops the walk wrapping around an edge
    dist, (r, c) = padded.tolist(), goal  # lists: fast to index one by one
    for k in range(dist[r + 1][c + 1] - 1, 0, -1):
        r, c = next((r + dr, c + dc) for dr, dc in MOVES if dist[r + dr + 1][c + dc + 1] == k)
        label[r, c] = PATH
    return label


def shortest_path_label(grid):
    """(label, moves, unique) for a maze input with one S and one G; None if G is unreachable."""
    goal = find(grid, GOAL)
    dist, count = bfs(grid, find(grid, START))
    if dist[goal] < 0:
        return None
    return trace(grid, dist, goal), int(dist[goal]), bool(count[goal] == 1)

# -----------------------------------------------------------------------------
# generating

def carve(size, rng, loops=LOOPS):
    """A perfect maze by randomized depth-first search on the odd lattice of the largest odd square
    inside the grid (an even size keeps one extra wall row and column), then loops."""
    m = size if size % 2 else size - 1
    k = (m - 1) // 2  # lattice cells per side, at odd coordinates 1, 3, ..., m - 2
    grid = np.full((size, size), WALL, np.uint8)
    r0, c0 = rng.integers(0, size - m + 1, 2)  # where the odd square sits when size is even
    sub = grid[r0:r0 + m, c0:c0 + m]
    w = k + 2  # the lattice, flattened, with a border of cells marked seen: no bounds checks
    seen = [not (0 < i // w <= k and 0 < i % w <= k) for i in range(w * w)]
    steps = [dr * w + dc for dr, dc in MOVES]
    order = [ORDERS[i] for i in rng.integers(24, size=w * w).tolist()]  # random neighbour orders
    u = (int(rng.integers(k)) + 1) * w + int(rng.integers(k)) + 1
    seen[u], stack, opened = True, [(u, iter(order[u]))], []
    while stack:  # iterative, so big mazes do not hit the recursion limit
        u, moves = stack[-1]
        for i in moves:
            if not seen[v := u + steps[i]]:
                seen[v] = True
                opened.append(4 * u + i)
                stack.append((v, iter(order[v])))
                break
        else:  # every neighbour seen: backtrack
            stack.pop()
    u, i = np.divmod(np.array(opened), 4)
    dr, dc = np.array(MOVES)[i].T
    sub[2 * (u // w) - 1 + dr, 2 * (u % w) - 1 + dc] = OPEN  # the walls the search went through
    sub[1::2, 1::2] = OPEN  # the lattice cells themselves
    between = np.zeros((m, m), bool)  # inner walls that separate two lattice cells
    between[1:-1:2, 2:-2:2] = between[2:-2:2, 1:-1:2] = True
    # a count, not a share: 6 loops leave ~1% of 13x13 and 30x30 mazes solved by dead-end filling;
    # a share that suits 13x13 leaves few long 30x30 paths. At most 1/4: 7x7 mazes stay mazes
    sub[between & (rng.random((m, m)) < min(0.25, loops / max(1, (k - 1) ** 2)))] = OPEN
    return grid


def generate_maze(size, rng, min_path_len=None, loops=LOOPS, max_tries=1000):
    """(input, label): a random maze whose unique shortest S-G path has >= min_path_len moves."""
    min_path_len = default_min_path_len(size) if min_path_len is None else min_path_len
    for _ in range(max_tries):
        grid = carve(size, rng, loops)
        free = np.argwhere(grid == OPEN)
        start = tuple(free[rng.integers(len(free))])
        dist, count = bfs(grid, start)
        # drawing G among far cells reached one way only needs no rejection loop over pairs
        goals = np.argwhere((dist >= min_path_len) & (count == 1))
        if len(goals):
            goal = tuple(goals[rng.integers(len(goals))])
            grid[start], grid[goal] = START, GOAL
            return grid, trace(grid, dist, goal)
    raise ValueError(f"no {size}x{size} maze with a unique shortest path of >= {min_path_len} "
                     f"moves in {max_tries} tries: lower --min_path_len")


def generate_split(n, size, rng, min_path_len, loops, seen):
    """n mazes, none equal to a maze in `seen` (up to symmetry), which collects their keys."""
    inputs, labels, misses = [], [], 0
    while len(inputs) < n:
        inp, label = generate_maze(size, rng, min_path_len, loops)
        key = min(dihedral(inp, k).tobytes() for k in range(8))  # --aug shows all 8 to the model
        if key in seen:
            misses += 1
            if misses == 1000:  # small sizes have few distinct mazes
                raise ValueError(f"only {len(inputs)} distinct {size}x{size} mazes found: ask for "
                                 f"fewer, a bigger --size or a lower --min_path_len")
            continue
        seen.add(key)
        inputs.append(inp)
        labels.append(label)
        misses = 0
    return np.stack(inputs), np.stack(labels)

# -----------------------------------------------------------------------------
# reading CSV files

def parse_row(row, size=None):
    """(input, label) token grids of one CSV row, or ValueError saying what is wrong with it."""
    if len(row) != 4:
        raise ValueError(f"{len(row)} columns, expected 4: source,question,answer,rating")
    size = size or int(len(row[1]) ** 0.5)  # unknown: the question must be a square
    grids = []
    for name, text in (("question", row[1]), ("answer", row[2])):
        if len(text) != size * size:
            raise ValueError(f"{name} has {len(text)} characters, expected {size * size} "
                             f"for a {size}x{size} maze")
        if bad := sorted(set(text) - set(CHARSET)):
            raise ValueError(f"{name} holds bytes that are not UTF-8 text" if "\ufffd" in bad else
                             f"unknown character {bad[0]!r} in {name} (allowed: {CHARSET!r})")
        grids.append(TOKEN[np.frombuffer(text.encode(), np.uint8)].reshape(size, size))
    if error := check_maze(*grids):
        raise ValueError(error)
    return grids


def parse_csv(path, size=None, limit=None, skip_invalid=False):
    """(inputs, labels, skipped) from a Maze-Hard CSV; size defaults to the first row's square.
    A bad row raises ValueError('file:line: why'), or is dropped and counted with skip_invalid."""
    inputs, labels, skipped = [], [], 0
    # -sig: a byte-order mark is not a character; a byte that is not UTF-8 becomes U+FFFD, refused with its line
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        if next(reader, [])[1:3] != ["question", "answer"]:
            raise ValueError(f"{path}:1: expected the header source,question,answer,rating")
        for row in reader:
            if limit is not None and len(inputs) >= limit:
                break
            try:
                inp, label = parse_row(row, size)
                size = inp.shape[0]  # the first good row sets the size of the others
            except ValueError as e:
                if not skip_invalid:
                    raise ValueError(f"{path}:{reader.line_num}: {e}") from None
                if not skipped:
                    print(f"skipping {path}:{reader.line_num}: {e}")
                skipped += 1
                continue
            inputs.append(inp)
            labels.append(label)
    if not inputs:
        raise ValueError(f"{path}: no valid mazes")
    if skipped:
        print(f"skipped {skipped} invalid rows of {path}")
    return np.stack(inputs), np.stack(labels), skipped

# -----------------------------------------------------------------------------
# writing

def describe(name, inputs, labels):
    """Print the path-length distribution, wall density and share of unique shortest paths."""
    moves = (labels == PATH).sum((1, 2)) + 1
    unique = np.mean([shortest_path_label(x)[2] for x in inputs])
    q = np.percentile(moves, [0, 10, 50, 90, 100]).astype(int)
    print(f"{name}: {len(inputs)} mazes {inputs.shape[1]}x{inputs.shape[2]}, shortest path moves "
          f"min {q[0]} p10 {q[1]} median {q[2]} p90 {q[3]} max {q[4]} mean {moves.mean():.1f}, "
          f"walls {(inputs == WALL).mean():.1%}, unique shortest path {unique:.1%}")


def write_maze_split(root, split, inputs, labels, aug):
    """One maze per group; with aug its 8 dihedral versions are the group's puzzles."""
    versions = range(8 if aug else 1)
    inputs = np.stack([dihedral(x, k) for x in inputs for k in versions])
    labels = np.stack([dihedral(y, k) for y in labels for k in versions])
    n = len(inputs)
    return write_split(root, split, inputs.reshape(n, -1), labels.reshape(n, -1),
                       puzzle_identifiers=np.zeros(n, np.int32), puzzle_indices=np.arange(n + 1),
                       group_indices=np.arange(0, n + 1, len(versions)),
                       vocab_size=len(CHARSET) + 1, num_puzzle_identifiers=1)


def load_mazes(args):
    """{'train': (inputs, labels), 'test': ...} as (N, size, size) token grids, from the source."""
    if args.source == "generate":
        size = args.size or 30
        min_len = default_min_path_len(size) if args.min_path_len is None else args.min_path_len
        print(f"generating {size}x{size} mazes, shortest path >= {min_len} moves, "
              f"loops {args.loops}")
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(2)]
        seen, splits = set(), {}
        for rng, split, n in zip(rngs, ("train", "test"), (args.num_train, args.num_test)):
            t0 = time.time()
            splits[split] = generate_split(1000 if n is None else n, size, rng, min_len,
                                           args.loops, seen)
            dt = time.time() - t0
            print(f"  {split}: {len(splits[split][0])} mazes in {dt:.2f} s "
                  f"({len(splits[split][0]) / max(dt, 1e-9):.0f} mazes/s)")
        return splits
    splits = {}
    for split, path, limit in (("train", args.train_csv, args.num_train),
                               ("test", args.test_csv, args.num_test)):
        if args.source == "hf":
            path = download_csvs(args.hf_url, args.cache_dir, [f"{split}.csv"])[0]
        inputs, labels, _ = parse_csv(path, args.size, limit, args.skip_invalid)
        splits[split] = (inputs, labels)
    if (a := splits["train"][0].shape[1]) != (b := splits["test"][0].shape[1]):
        raise ValueError(f"train mazes are {a}x{a} but test mazes {b}x{b}")
    return splits


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    positive = number(int, "[1, inf)")
    p.add_argument("--source", choices=["hf", "csv", "generate"], default="hf")
    p.add_argument("--hf_url", default=HF_URL, help="base URL holding train.csv and test.csv")
    p.add_argument("--cache_dir", default="data/.cache/maze-30x30-hard-1k")
    p.add_argument("--train_csv", help="--source=csv: train file")
    p.add_argument("--test_csv", help="--source=csv: test file")
    p.add_argument("--output_dir", "--output-dir", help="default data/maze-30x30-hard-1k, or "
                   "data/maze-NxN (the authors' dashed spellings work too)")
    p.add_argument("--size", type=number(int, "[7, 200]"), help="grid side (generate: default 30)")
    p.add_argument("--num_train", type=positive, help="mazes to generate (1000), or rows to read")
    p.add_argument("--num_test", type=positive, help="mazes to generate (1000), or rows to read")
    p.add_argument("--min_path_len", type=positive, help="generate: fewest moves S to G "
                   "(default: 110 * size^2 / 900 rounded down, + 1; 111 at 30x30)")
    p.add_argument("--loops", type=number(float, "[0, 1000]"), default=LOOPS, help="generate: walls opened per maze")
    p.add_argument("--subsample_size", "--subsample-size", type=positive,
                   help="keep a random subset of the train mazes")
    p.add_argument("--aug", action="store_true", help="add the 8 dihedral transforms (train only)")
    p.add_argument("--skip_invalid", action="store_true", help="drop and count bad CSV rows")
    p.add_argument("--seed", type=number(int, "[0, 4294967295]"), default=0)
    args = p.parse_args(argv)
    if args.source == "csv" and not (args.train_csv and args.test_csv):
        p.error("--source=csv needs --train_csv and --test_csv")
    for path in (args.train_csv, args.test_csv) if args.source == "csv" else ():
        if not os.path.isfile(path):  # both, before reading either
            p.error(f"{path}: " + ("not a file" if os.path.exists(path) else "no such file"))
    size = args.size or 30
    if args.source == "generate" and args.min_path_len is not None and args.min_path_len >= size * size:
        p.error(f"--min_path_len={args.min_path_len}: a {size}x{size} maze has {size * size} cells")
    out = args.output_dir if args.output_dir is not None else (None if args.source == "csv" and not args.size else
                              "data/maze-30x30-hard-1k" if size == 30 else f"data/maze-{size}x{size}")
    out = None if out is None else OutputDir(out)  # refuse a bad target before any work
    try:
        splits = load_mazes(args)
    except (ValueError, ConnectionError, OSError) as e:
        sys.exit(f"prepare_maze.py: {e}")
    if args.subsample_size is not None and args.subsample_size < len(splits["train"][0]):
        keep = np.sort(np.random.default_rng(args.seed).choice(
            len(splits["train"][0]), args.subsample_size, replace=False))
        splits["train"] = tuple(a[keep] for a in splits["train"])
    size = splits["train"][0].shape[1]
    out = out or OutputDir("data/maze-30x30-hard-1k" if size == 30 else f"data/maze-{size}x{size}")
    print("Maze-Hard, for reference: 1000 + 1000 mazes 30x30, shortest path longer than 110 steps")
    with out as tmp:
        for split, (inputs, labels) in splits.items():
            describe(split, inputs, labels)
            meta = write_maze_split(tmp, split, inputs, labels, args.aug and split == "train")
            print(f"  {split}: {meta['total_groups']} groups, {meta['total_puzzles']} puzzles")
        write_json(os.path.join(tmp, "identifiers.json"), ["<blank>"])
    print(f"wrote {out.path}")


if __name__ == "__main__":
    main()
