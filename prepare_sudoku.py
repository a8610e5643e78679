"""
Prepare a Sudoku dataset for TRM: Sudoku-Extreme (the paper's benchmark) or generated puzzles.

    python prepare_sudoku.py       # the paper's set: 1000 Sudoku-Extreme train puzzles x 1001
                                   # versions + the full test set -> data/sudoku-extreme-1k-aug-1000
    python prepare_sudoku.py --source=csv --train_csv=train.csv --test_csv=test.csv
    python prepare_sudoku.py --source=generate --size=6 --num_train=20000 --num_test=1000 \
        --num_aug=10 --output_dir=data/sudoku6          # offline, seconds: the CPU quick start

--source: `hf` downloads train.csv and test.csv of the Hugging Face dataset
sapientinc/sudoku-extreme (resumable, cached in --cache_dir; --hf_url points elsewhere), `csv`
reads the same format from local files, `generate` makes puzzles with a unique solution offline
for sizes 4 (2x2 boxes), 6 (2x3) and 9 (3x3). CSV rows are `source,question,answer,rating`,
size*size characters per grid, '.' or '0' for a blank. A bad row stops the run with file:line
(--skip_invalid drops and counts such rows instead).

Difficulty: Sudoku-Extreme's `rating` is the number of backtracks of a fast solver (filter with
--min_difficulty). The generator blanks cells in random order while the solution stays unique,
down to a minimal puzzle or --min_givens, and rates a puzzle by the guesses (branch points) our
solver makes to prove it unique: it fills naked and hidden singles and branches on the cell with
the fewest candidates, so rating 0 means singles alone solve it. --max_givens, --min_rating and
--max_rating reject puzzles outside those bounds. No test grid occurs among the train grids.

Output (the layout of puzzle_data.py): tokens are digit+1, blank 1, pad 0; labels are the solved grid. In
train every puzzle and its --num_aug augmented versions form one group; test is not augmented.
Same --seed, same bytes.
"""
import argparse
import functools
import os
import time

import numpy as np

from configurator import ArgumentParser, number
from data_writer import NpyWriter, OutputDir, download_csvs, write_json, write_split
from puzzles import BOXES, sudoku_problems, units

HF_URL = "https://huggingface.co/datasets/sapientinc/sudoku-extreme/resolve/main"
MIN_GIVENS = {4: 4, 6: 8, 9: 17}  # the fewest givens a puzzle with one solution can have (9x9: McGuire et al. 2012)
POP = np.array([bin(m).count("1") for m in range(512)], np.int8)  # candidates in a bitmask
DIGIT = np.zeros(512, np.uint8)  # one-bit mask -> its digit 1..9
DIGIT[1 << np.arange(9)] = np.arange(1, 10)

# -----------------------------------------------------------------------------
# grid geometry and a batched solver: candidate bitmasks, every puzzle of a batch at once

@functools.lru_cache(None)
def geometry(size):
    """Cells of the 3*size units (rows, columns, boxes), each cell's peers, and where each cell
    sits in the flattened rows / columns / boxes (to scatter per-unit results back to cells)."""
    u = units(size)                                              # (3n, n)
    same = np.zeros((size * size, size * size), bool)
    for cells in u:
        same[np.ix_(cells, cells)] = True
    np.fill_diagonal(same, False)
    peers = np.nonzero(same)[1].reshape(size * size, -1)         # (N, 20) for 9x9
    return u, peers, np.argsort(u.reshape(3, -1), axis=1)


def singles(cand, size):
    """One round of naked and hidden singles. cand: (N, S) uint16 candidate masks, cells first
    so that every gather below copies whole contiguous rows of S states."""
    units, peers, where = geometry(size)
    # naked single: a cell with one candidate left removes it from all its peers
    fixed = cand * (cand & (cand - 1) == 0)  # arithmetic, not np.where: several times faster
    taken = np.zeros_like(cand)
    for j in range(peers.shape[1]):
        taken |= fixed[peers[:, j]]
    cand = cand & ~taken
    # hidden single: a digit with one place left in a unit must go there
    c = cand[units]                                              # (3n, n, S)
    once, twice = np.zeros_like(c[:, 0]), np.zeros_like(c[:, 0])
    for k in range(size):
        twice |= once & c[:, k]
        once |= c[:, k]
    hidden = (c & (once & ~twice)[:, None]).reshape(3, size * size, -1)  # rows, cols, boxes
    forced = hidden[0][where[0]] | hidden[1][where[1]] | hidden[2][where[2]]
    return forced | cand * (forced == 0)  # 2+ bits in forced: no solution, found later


def propagate(cand, size):
    """Singles until nothing changes, each round only on the states the last round changed."""
    cand, active = cand.copy(), np.arange(cand.shape[1])
    while len(active):
        old = cand.take(active, axis=1)  # take, not [:, active]: keeps rows contiguous
        new = singles(old, size)
        cand[:, active] = new
        active = active[(new != old).any(0)]
    return cand


def status(cand, size):
    """Per state: dead (a cell, or a digit of a unit, has no place left) and solved."""
    union = np.bitwise_or.reduce(cand[geometry(size)[0]], axis=1)  # (3n, S)
    dead = (cand == 0).any(0) | (union != (1 << size) - 1).any(0)
    return dead, ~dead & (cand & (cand - 1) == 0).all(0)


def branch_cell(cand, noise=0.0):
    """Per state, the open cell with the fewest candidates (ties: the first, or by noise)."""
    pop = POP.take(cand).astype(np.float64)
    pop[pop < 2] = 99
    return np.argmin(pop + noise, axis=0)


def solve(puzzles, size, limit=2):
    """Count the solutions (up to limit) and guesses of (B, N) digit puzzles, 0 = blank.

    Breadth-first over all puzzles at once: propagate every state, then split each open one on
    its cell with the fewest candidates (a branch point = a guess). Meant for puzzles with few
    solutions: memory grows with the width of the search tree.
    Returns counts (B,), guesses (B,) and a solution (B, N) of each solvable puzzle."""
    p = np.asarray(puzzles, np.int64).T                         # (N, B)
    cand = np.where(p > 0, 1 << np.clip(p - 1, 0, size), (1 << size) - 1).astype(np.uint16)
    owner = np.arange(p.shape[1])
    counts, guesses = np.zeros(len(owner), np.int64), np.zeros(len(owner), np.int64)
    solutions = np.zeros(p.shape[::-1], np.uint8)
    while len(owner):
        cand = propagate(cand, size)
        dead, solved = status(cand, size)
        np.add.at(counts, owner[solved], 1)
        solutions[owner[solved]] = DIGIT[cand.compress(solved, axis=1).T]
        open_ = ~dead & ~solved & (counts[owner] < limit)
        cand, owner = cand.compress(open_, axis=1), owner[open_]
        cell = branch_cell(cand)
        np.add.at(guesses, owner, 1)
        bits = (cand[cell, np.arange(len(owner))][:, None] >> np.arange(size)) & 1  # (S, n)
        state, digit = np.nonzero(bits)  # one child state per candidate of the chosen cell
        cand, cell, owner = cand.take(state, axis=1), cell[state], owner[state]
        cand[cell, np.arange(len(state))] = 1 << digit
    return counts, guesses, solutions

# -----------------------------------------------------------------------------
# the generator

def random_grids(size, count, rng):
    """count random solved grids: set the fewest-candidates cell to a random candidate and
    propagate, again and again; a grid that runs into a contradiction is dropped and redone."""
    done = []
    while (have := sum(map(len, done))) < count:
        cand = np.full((size * size, count - have), (1 << size) - 1, np.uint16)
        while cand.shape[1]:
            cand = propagate(cand, size)
            dead, solved = status(cand, size)
            done.append(DIGIT[cand.compress(solved, axis=1).T])
            cand = cand.compress(~dead & ~solved, axis=1)
            # ties broken at random, else every grid would start in the same corner
            cell = branch_cell(cand, noise=rng.random(cand.shape))
            cols = np.arange(cand.shape[1])
            has = (cand[cell, cols][:, None] >> np.arange(size)) & 1      # (S, n)
            cand[cell, cols] = 1 << np.argmax(has * rng.random(has.shape), axis=1)
    return np.concatenate(done)


def dig(grids, size, rng, min_givens=0):
    """Blank the cells of each grid in a random order, keeping a blank only while the solution
    stays unique, and stop at min_givens. Returns puzzles and their ratings (guesses)."""
    puzzles = grids.copy()
    order = np.argsort(rng.random(grids.shape), axis=1)
    for k in range(grids.shape[1]):
        live = np.flatnonzero((puzzles > 0).sum(1) > min_givens)
        trial = puzzles[live]
        trial[np.arange(len(live)), order[live, k]] = 0
        unique = solve(trial, size, limit=2)[0] == 1
        puzzles[live[unique]] = trial[unique]
    # One pass gives a minimal puzzle: a given that had to stay then must stay now, since
    # blanking more cells only adds solutions.
    return puzzles, solve(puzzles, size)[1]


def generate(size, num, rng, min_givens=0, max_givens=None, min_rating=0, max_rating=None,
             exclude=()):
    """num puzzles with one solution each, all solution grids distinct and none in `exclude`
    (a set of grid bytes). Returns puzzles, solutions (digits, 0 = blank) and ratings."""
    seen, out, tried, kept, misses = set(exclude), [], 0, 0, 0
    max_givens = size * size if max_givens is None else max_givens
    max_rating = np.inf if max_rating is None else max_rating
    while kept < num:
        if misses > 2000:  # fail early, not after hours
            raise SystemExit(f"generate: no new {size}x{size} puzzle met the bounds in {misses} "
                             f"tries ({kept} of {num} made): relax --min_rating/--max_givens or "
                             f"ask for fewer" + (" (there are 288 4x4 grids)" if size == 4 else ""))
        rate = max(kept / tried, 0.02) if tried else 1.0  # bigger batches when many fail
        batch = int(min(4096, max(16, (num - kept) / rate)))
        tried += batch
        grids = random_grids(size, batch, rng)
        first = np.sort(np.unique(grids, axis=0, return_index=True)[1])  # no repeats, in order
        grids = grids[[i for i in first if grids[i].tobytes() not in seen]]
        seen.update(g.tobytes() for g in grids)
        puzzles, ratings = dig(grids, size, rng, min_givens)
        givens = (puzzles > 0).sum(1)
        ok = (givens <= max_givens) & (ratings >= min_rating) & (ratings <= max_rating)
        out.append((puzzles[ok], grids[ok], ratings[ok]))
        kept, misses = kept + int(ok.sum()), 0 if ok.any() else misses + batch
    return tuple(np.concatenate(a)[:num] for a in zip(*out))

# -----------------------------------------------------------------------------
# reading Sudoku-Extreme CSV files, vectorised over blocks of lines

def parse_block(buf, size, first_line):
    """Parse whole lines (buf ends with a newline) into question and answer digits and ratings.
    Returns (q, a, ratings, problems) with problems = [(reason, count, first line, message)]."""
    N, b = size * size, np.frombuffer(buf + bytes(size * size + 9), np.uint8)  # pad: safe reads
    ends = np.flatnonzero(b == ord("\n"))
    starts, lines = np.concatenate([[0], ends + 1])[:-1], first_line + np.arange(len(ends))
    ends = ends - ((ends > starts) & (b[ends - 1] == ord("\r")))
    filled = ends > starts  # empty lines are skipped
    starts, ends, lines = starts[filled], ends[filled], lines[filled]
    # the last three commas split a line, so a quoted source may hold commas of its own: columns are
    # counted after its closing quote (the last quote of the line; question, answer, rating have none)
    commas, quotes = np.r_[np.flatnonzero(b == ord(",")), 0], np.r_[np.flatnonzero(b == ord('"')), 0]
    hi = np.searchsorted(commas[:-1], ends)
    source_end = np.where(b[starts] == ord('"'), quotes[np.maximum(np.searchsorted(quotes[:-1], ends) - 1, 0)], starts)
    ncommas = hi - np.searchsorted(commas[:-1], source_end)
    c1, c2, c3 = (commas[np.maximum(hi - k, 0)] for k in (3, 2, 1))

    def take(start, width):  # (rows, width) bytes from each start: whole windows, fast
        return np.lib.stride_tricks.sliding_window_view(b, width)[np.minimum(start, len(b) - width)]
    q_raw, a_raw, r_raw = take(c1 + 1, N), take(c2 + 1, N), take(c3 + 1, 9)
    q = (q_raw - ord("0")) * (q_raw != ord("."))  # digits, 0 = blank; uint8, so any other
    a = a_raw - ord("0")                           # character lands outside 1..size
    q_bad, a_bad = q > size, (a == 0) | (a > size)
    qlen, alen, rlen = c2 - c1 - 1, c3 - c2 - 1, ends - c3 - 1
    r_digits = r_raw - ord("0")
    ratings = np.zeros(len(q), np.int64)
    for k in range(9):
        ratings = np.where(k < rlen, ratings * 10 + r_digits[:, k], ratings)
    bad_rating = (rlen < 1) | (rlen > 9) | ((r_digits > 9) & (np.arange(9) < rlen[:, None])).any(1)
    checks = [  # (failing rows, message); a row is reported for its first failure
        (ncommas != 3, lambda i: f"expected 4 columns source,question,answer,rating, got {ncommas[i] + 1}"),
        (qlen != N, lambda i: f"question has {qlen[i]} characters, expected {N}"),
        (alen != N, lambda i: f"answer has {alen[i]} characters, expected {N}"),
        (q_bad.any(1), lambda i: f"question has {chr(q_raw[i][q_bad[i]][0])!r}, expected "
                                 f"'.', '0' or a digit 1-{size}"),
        (a_bad.any(1), lambda i: f"answer has {chr(a_raw[i][a_bad[i]][0])!r}, expected "
                                 f"a digit 1-{size}"),
        (sudoku_problems(np.ones_like(a), a + 1) != 0, lambda i: "answer is not a solved grid (a digit repeats in a "
                                        "row, column or box)"),
        (((q > 0) & (q != a)).any(1), lambda i: "answer contradicts the question's givens"),
        (bad_rating, lambda i: f"rating {bytes(r_raw[i][:max(rlen[i], 0)]).decode('latin1')!r}"
                               f" is not a whole number"),
    ]
    reason = np.zeros(len(q), np.int64)
    problems = []
    for k, (bad, message) in enumerate(checks, 1):
        rows = np.flatnonzero((reason == 0) & bad)
        reason[rows] = k
        if len(rows):
            problems.append((k, len(rows), int(lines[rows[0]]), message(rows[0])))
    return q[reason == 0], a[reason == 0], ratings[reason == 0], problems


def parse_csv(path, size=9, skip_invalid=False, min_difficulty=None, subsample_size=None,
              rng=None, block_bytes=8 << 20):
    """Read a Sudoku CSV into questions, answers ((R, size*size) uint8 digits, 0 = blank) and
    ratings (R,). Keeps rows rated >= min_difficulty; subsample_size keeps a random subset
    (seeded by rng) without holding the whole file: every row draws a random key and the
    smallest keys win. A bad row aborts with file:line, or is dropped with skip_invalid."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file")
    kept, skipped = [], {}
    with open(path, "rb") as f:
        head = f.readline().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not a cell
        if b"\r" in head.rstrip(b"\r\n"):
            raise SystemExit(f"{path}: lines end in a bare CR (old Mac style): convert them, e.g. tr '\\r' '\\n'")
        line, rest = (2, b"") if b"question" in head else (1, head)  # optional header
        while True:
            block = f.read(block_bytes)
            buf = rest + block
            cut = buf.rfind(b"\n") + 1 if block else len(buf)
            buf, rest = buf[:cut], buf[cut:]
            if buf and not buf.endswith(b"\n"):
                buf += b"\n"
            q, a, r, problems = parse_block(buf, size, line)
            line += buf.count(b"\n")
            if problems and not skip_invalid:
                _, _, at, message = min(problems, key=lambda p: p[2])
                raise SystemExit(f"{path}:{at}: {message} (--skip_invalid drops such rows)")
            for k, count, at, message in problems:
                skipped.setdefault(k, [0, at, message])[0] += count
            keep = r >= (min_difficulty if min_difficulty is not None else -np.inf)
            q, a, r = q[keep], a[keep], r[keep]
            kept.append((rng.random(len(q)) if subsample_size else np.zeros(len(q)), q, a, r))
            if subsample_size:  # only the subsample_size smallest keys so far
                keys, q, a, r = (np.concatenate(x) for x in zip(*kept))
                best = np.argsort(keys, kind="stable")[:subsample_size]
                kept = [(keys[best], q[best], a[best], r[best])]
            if not block:
                break
    for count, at, message in skipped.values():
        print(f"{path}: skipped {count} invalid rows like line {at}: {message}")
    return tuple(np.concatenate(x) for x in list(zip(*kept))[1:])

# -----------------------------------------------------------------------------
# augmentation and writing

def augment(inputs, labels, size, rng):
    """One random Sudoku symmetry per row of (B, size*size) token arrays, the same for a row's
    input and label: relabel the digits, permute the bands and the rows inside each band, the
    stacks and the columns inside each stack, and transpose half of the grids where boxes are
    square (a 6x6 grid's 2x3 boxes would become 3x2). Tokens 0 (pad) and 1 (blank) stay."""
    B, n = len(inputs), size
    br, bc = BOXES[size]

    def perm(*shape):  # random permutations of range(shape[-1]) along the last axis
        return rng.permuted(np.broadcast_to(np.arange(shape[-1]), shape), axis=-1)
    rows = (perm(B, n // br)[:, :, None] * br + perm(B, n // br, br)).reshape(B, n)
    cols = (perm(B, n // bc)[:, :, None] * bc + perm(B, n // bc, bc)).reshape(B, n)
    # out[r, c] = grid[rows[r], cols[c]], or grid[cols[c], rows[r]] (transposed) for half of
    # them where boxes are square; as flat indices into the whole batch, for one fast np.take
    flip = rng.random((B, 1)) < 0.5 if br == bc else np.zeros((B, 1), bool)
    row_term = np.where(flip, rows, rows * n) + np.arange(B)[:, None] * (n * n)
    col_term = np.where(flip, cols * n, cols)
    src = (row_term[:, :, None] + col_term[:, None, :]).reshape(B, n * n)
    relabel = np.concatenate([np.tile([0, 1], (B, 1)), 2 + perm(B, n)], axis=1).astype(np.uint8)
    offset = np.arange(B)[:, None] * (n + 2)
    return tuple(np.take(relabel, np.take(x, src) + offset) for x in (inputs, labels))


def augment_groups(inputs, labels, size, num_aug, rng, rows_per_chunk=1 << 14):
    """Yield (inputs, labels) token chunks in which every puzzle is followed by its num_aug
    augmented versions, a few groups at a time so that memory stays small."""
    step = max(1, rows_per_chunk // (num_aug + 1))
    for g in range(0, len(inputs), step):
        x, y = inputs[g:g + step], labels[g:g + step]
        ax, ay = augment(np.repeat(x, num_aug, 0), np.repeat(y, num_aug, 0), size, rng)
        yield tuple(np.concatenate([o[:, None], v.reshape(len(o), num_aug, size * size)], axis=1)
                    .reshape(-1, size * size) for o, v in ((x, ax), (y, ay)))


def write_dataset(out, size, train, test, num_aug, rng):
    """train, test: (questions, answers) digit arrays; out: an OutputDir. The train arrays are
    streamed to disk chunk by chunk; all is written under a temporary name and renamed when
    complete, so an interrupted run leaves nothing that looks like a dataset."""
    meta, n = dict(vocab_size=size + 2, num_puzzle_identifiers=1), len(train[0]) * (num_aug + 1)
    with out as tmp:
        os.makedirs(os.path.join(tmp, "train"))
        path = os.path.join(tmp, "train", "all__{}.npy").format
        with NpyWriter(path("inputs"), (n, size * size), np.uint8) as fx, \
                NpyWriter(path("labels"), (n, size * size), np.uint8) as fy:
            for x, y in augment_groups(train[0] + 1, train[1] + 1, size, num_aug, rng):
                fx.write(x)
                fy.write(y)
        write_split(tmp, "train", None, None, np.zeros(n), np.arange(n + 1),
                    np.arange(0, n + 1, num_aug + 1), **meta)
        x, y = test[0] + 1, test[1] + 1  # one puzzle per group
        write_split(tmp, "test", x, y, np.zeros(len(x)), np.arange(len(x) + 1),
                    np.arange(len(x) + 1), **meta)
        write_json(os.path.join(tmp, "identifiers.json"), ["<blank>"])
    print(f"wrote {out.path}: train {len(train[0])} puzzles x {num_aug + 1} versions, "
          f"test {len(test[0])} puzzles")


def summarize(name, puzzles, solutions, ratings):
    """One line: how many puzzles, their givens (range and histogram) and ratings."""
    if len(puzzles):
        givens = (puzzles > 0).sum(1)
        hist = " ".join(f"{g}:{c}" for g, c in enumerate(np.bincount(givens)) if c)
        print(f"{name}: {len(puzzles)} puzzles, givens {givens.min()}-{givens.max()} ({hist}), "
              f"rating min {ratings.min()} mean {ratings.mean():.2f} max {ratings.max()}")

# -----------------------------------------------------------------------------

def parse_args(argv):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arg = p.add_argument  # the authors' options also take their dashed spelling
    count = number(int, "[0, inf)")
    arg("--source", choices=["hf", "csv", "generate"], default="hf")
    arg("--output_dir", "--output-dir", help="default: data/<a name from the options>")
    arg("--subsample_size", "--subsample-size", type=count, default=1000,
        help="train rows sampled from the CSV (0 = all)")
    arg("--min_difficulty", "--min-difficulty", type=count, help="keep CSV rows rated >= this")
    arg("--num_aug", "--num-aug", type=number(int, "[0, 100000]"), default=1000, help="augmented versions per puzzle")
    arg("--seed", type=number(int, "[0, 4294967295]"), default=0)
    arg("--skip_invalid", action="store_true", help="drop and count bad CSV rows, not abort")
    arg("--hf_url", default=HF_URL, help="where train.csv and test.csv are downloaded from")
    arg("--cache_dir", default="data/.cache/sudoku-extreme")
    arg("--train_csv")
    arg("--test_csv")
    arg("--size", type=int, default=9, choices=sorted(BOXES), help="grid size (csv, generate)")
    arg("--num_train", type=number(int, "[1, inf)"), default=1000, help="generated train puzzles")
    arg("--num_test", type=number(int, "[1, inf)"), default=1000, help="generated test puzzles")
    arg("--min_givens", type=count, default=0, help="stop blanking cells at this many givens")
    arg("--max_givens", type=count, help="reject generated puzzles with more givens")
    arg("--min_rating", type=count, default=0, help="reject generated puzzles rated lower")
    arg("--max_rating", type=count, help="reject generated puzzles rated higher")
    args = p.parse_args(argv)
    cells = args.size * args.size
    if args.source == "hf" and args.size != 9:
        p.error("Sudoku-Extreme is 9x9: --size is for --source=csv or generate")
    if args.source == "csv" and not (args.train_csv and args.test_csv):
        p.error("--source=csv needs --train_csv and --test_csv")
    for path in (args.train_csv, args.test_csv) if args.source == "csv" else ():
        if not os.path.isfile(path):  # both, before reading either
            p.error(f"{path}: " + ("not a file" if os.path.exists(path) else "no such file"))
    if args.max_givens is not None and args.max_givens < MIN_GIVENS[args.size]:
        p.error(f"--max_givens={args.max_givens}: a {args.size}x{args.size} Sudoku with one solution has at least "
                f"{MIN_GIVENS[args.size]} givens")
    for key in ("min_givens", "max_givens"):
        if (getattr(args, key) or 0) > cells:
            p.error(f"--{key}={getattr(args, key)}: a {args.size}x{args.size} grid has {cells} cells")
    if args.max_givens is not None and args.min_givens > args.max_givens:
        p.error("--min_givens is above --max_givens")
    if args.max_rating is not None and args.min_rating > args.max_rating:
        p.error("--min_rating is above --max_rating")
    if args.output_dir is None:
        k = args.subsample_size
        sub = "full" if not k else f"{k // 1000}k" if k % 1000 == 0 else str(k)
        name = {"hf": f"sudoku-extreme-{sub}", "csv": f"sudoku{args.size}-csv-{sub}",
                "generate": f"sudoku{args.size}-gen-{args.num_train}"}[args.source]
        args.output_dir = f"data/{name}-aug-{args.num_aug}"
    return args


def main(argv=None):
    args = parse_args(argv)
    out = OutputDir(args.output_dir)  # refuse a bad target before any work
    rng, t0 = np.random.default_rng(args.seed), time.time()
    if args.source == "generate":
        bounds = {k: getattr(args, k) for k in ("min_givens", "max_givens", "min_rating",
                                                "max_rating")}
        train = generate(args.size, args.num_train, rng, **bounds)
        test = generate(args.size, args.num_test, rng, **bounds,
                        exclude={g.tobytes() for g in train[1]})
        num, dt = args.num_train + args.num_test, time.time() - t0
        print(f"generated {num} {args.size}x{args.size} puzzles in {dt:.1f} s "
              f"({num / dt:.0f} puzzles/s)")
    else:
        paths = (download_csvs(args.hf_url, args.cache_dir) if args.source == "hf"
                 else (args.train_csv, args.test_csv))
        train = parse_csv(paths[0], args.size, args.skip_invalid, args.min_difficulty,
                          args.subsample_size or None, rng)
        test = parse_csv(paths[1], args.size, args.skip_invalid, args.min_difficulty)
    for split, rows, path in (("train", train, args.train_csv), ("test", test, args.test_csv)):
        if not len(rows[0]):  # an empty split is an error, never a dataset of 0 puzzles
            raise SystemExit(f"{path or split}: no {split} puzzles" + (f" rated >= {args.min_difficulty}"
                                                                      if args.min_difficulty else ""))
        summarize(split, *rows)
    write_dataset(out, args.size, train[:2], test[:2], args.num_aug, rng)
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
