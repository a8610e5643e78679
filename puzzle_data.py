"""
The on-disk puzzle dataset format, and reading it: train.py and sample.py load splits, cut
batches and score them here; the prepare_*.py builders write it with data_writer.py.

It is the layout the authors' builders write, so data prepared by either code base works with
the other:

    data/NAME/identifiers.json              index -> puzzle identifier name ("<blank>" at 0)
    data/NAME/test_puzzles.json             ARC only: the original test tasks, for scoring
    data/NAME/{train,test}/dataset.json     metadata: vocab_size, seq_len, num_puzzle_identifiers, ...
    data/NAME/{train,test}/all__inputs.npy  (examples, seq_len) small ints, 0 = pad
    data/NAME/{train,test}/all__labels.npy  (examples, seq_len) small ints, 0 = ignore
    data/NAME/{train,test}/all__puzzle_identifiers.npy   (puzzles,)   int32
    data/NAME/{train,test}/all__puzzle_indices.npy       (puzzles+1,) int32 example offsets
    data/NAME/{train,test}/all__group_indices.npy        (groups+1,)  int32 puzzle offsets

A *group* is one original puzzle with all its augmented versions, a *puzzle* is one version
(one identifier), an *example* is one input/label pair.
"""
import json
import math
import os
import sys
import time

import numpy as np

# -----------------------------------------------------------------------------
# reading and batching

ARRAYS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


def load_split(data_dir, split):
    """Metadata and memory-mapped arrays of one split, checked before any work: one line (SystemExit)
    naming the file for a missing, unreadable, corrupt, inconsistent or empty split, and for a test
    split whose sizes differ from the train split's (a model of one cannot score the other)."""
    def read_meta(path):  # a split's dataset.json, with the keys training and scoring read checked
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})")
        if not isinstance(meta, dict):
            raise SystemExit(f"{path}: expected a JSON object of metadata, got a {type(meta).__name__}")
        for key in ("vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples"):
            whole = key != "mean_puzzle_examples"
            if type(meta.get(key)) not in ((int,) if whole else (int, float)) or not 0 < meta[key] < math.inf:
                raise SystemExit(f"{path}: '{key}' must be a positive {'whole number' if whole else 'number'}, "
                                 f"got {meta.get(key)!r}")
        if type(meta.get("ignore_label_id", 0)) is not int:
            raise SystemExit(f"{path}: 'ignore_label_id' must be a whole number, got {meta['ignore_label_id']!r}")
        return meta

    d = os.path.join(data_dir, split)
    meta_path = os.path.join(d, "dataset.json")
    if not os.path.exists(meta_path):
        have = [s for s in ("train", "test") if os.path.exists(os.path.join(data_dir, s, "dataset.json"))]
        raise SystemExit(f"{meta_path} not found: " + (
            f"{data_dir} is not a folder" if os.path.exists(data_dir) and not os.path.isdir(data_dir) else
            f"{data_dir} has only the split(s) {', '.join(have)}" if have else
            f"prepare the dataset first (python prepare_sudoku.py, prepare_maze.py or prepare_arc.py "
            f"with --output_dir={data_dir})"))
    meta = read_meta(meta_path)
    if split != "train" and os.path.exists(train_path := os.path.join(data_dir, "train", "dataset.json")):
        sizes = ("seq_len", "vocab_size", "num_puzzle_identifiers")
        if [meta[k] for k in sizes] != [(train := read_meta(train_path))[k] for k in sizes]:
            raise SystemExit(f"{meta_path}: {', '.join(f'{k} {meta[k]}' for k in sizes)} differ from the train "
                             f"split's {', '.join(str(train[k]) for k in sizes)}: the splits were not built together")
    arrays = {}
    for name in ARRAYS:
        p = os.path.join(d, f"all__{name}.npy")
        try:
            arrays[name] = np.load(p, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:  # missing, truncated or not a .npy file
            raise SystemExit(f"{p}: cannot read it ({getattr(e, 'strerror', None) or e}); "
                             f"the dataset in {data_dir} is incomplete or corrupt: prepare it again")
    x, y, ids, pi, gi = (arrays[k] for k in ARRAYS)
    problem = (
        "inputs and labels must be (examples, seq_len) integer arrays of one shape"
        if not (x.ndim == 2 and x.shape == y.shape and x.shape[1] == meta["seq_len"] and x.dtype.kind in "iu"
                and y.dtype.kind in "iu") else
        "the split has no examples (an empty split cannot be trained or scored)" if len(x) == 0 else
        "puzzle_identifiers, puzzle_indices and group_indices must be integer arrays"
        if not all(a.dtype.kind in "iu" and a.ndim == 1 for a in (ids, pi, gi)) else
        "puzzle_indices must rise from 0 to the number of examples"
        if not (len(pi) >= 2 and pi[0] == 0 and pi[-1] == len(x) and (np.diff(pi) >= 0).all()) else
        "group_indices must rise from 0 to the number of puzzles"
        if not (len(gi) >= 2 and gi[0] == 0 and gi[-1] == len(pi) - 1 and (np.diff(gi) >= 0).all()) else
        f"dataset.json says total_groups {meta['total_groups']}, group_indices holds {len(gi) - 1}"
        if meta["total_groups"] != len(gi) - 1 else
        "puzzle_identifiers must hold one identifier below num_puzzle_identifiers per puzzle"
        if not (ids.shape == (len(pi) - 1,) and 0 <= ids.min() and ids.max() < meta["num_puzzle_identifiers"]) else
        f"tokens must lie below vocab_size {meta['vocab_size']}"
        if max(int(x.max()), int(y.max())) >= meta["vocab_size"] or min(int(x.min()), int(y.min())) < 0 else None)
    if problem:
        raise SystemExit(f"{d}: {problem}")
    # the puzzle each example belongs to, for its identifier
    arrays["example_puzzle"] = np.repeat(np.arange(len(pi) - 1, dtype=np.int64), np.diff(pi))
    return meta, arrays


def make_batch(arrays, idx, pad_to=None):
    """Examples `idx` as a dict of compact numpy arrays (tokens as stored, identifiers int32).
    With pad_to, the batch is padded with pad inputs, ignored labels (0) and the blank identifier."""
    n = 0 if pad_to is None else max(0, pad_to - len(idx))
    pad = lambda a: np.concatenate([a, np.zeros((n, *a.shape[1:]), a.dtype)]) if n else a
    return dict(inputs=pad(np.asarray(arrays["inputs"][idx])), labels=pad(np.asarray(arrays["labels"][idx])),
                puzzle_identifiers=pad(np.asarray(arrays["puzzle_identifiers"][arrays["example_puzzle"][idx]], np.int32)))


def to_device(batch, device, ignore_label_id=0):
    """A numpy batch -> int64 tensors on `device`; the labels' ignore id becomes model.IGNORE. On
    CUDA the copy starts from pinned memory and does not make the host wait for the device."""
    import torch
    from model import IGNORE
    cuda = torch.device(device).type == "cuda"
    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(v)
        out[k] = (t.pin_memory() if cuda else t).to(device, non_blocking=True).long()
    out["labels"] = out["labels"].masked_fill(out["labels"] == ignore_label_id, IGNORE)
    return out


class TrainBatches:
    """Endless training batches by group sampling. Each epoch shuffles the groups and, for each
    group, takes the examples of one of its puzzles picked at random; the epochs form one stream
    that is cut into global batches (a batch may span two epochs, so nothing is dropped and an
    epoch is total_groups * mean_puzzle_examples examples). Every rank computes the same stream
    from (seed, epoch) and takes its own slice, so the position (epoch, offset) is the whole state."""

    def __init__(self, arrays, global_batch_size, rank=0, world_size=1, seed=0):
        self.a, self.B, self.rank, self.world = arrays, global_batch_size, rank, world_size
        self.seed, self.epoch, self.offset = seed, 0, 0
        self._cache = {}

    def epoch_examples(self, epoch):
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, epoch])
            gi, pi = self.a["group_indices"], self.a["puzzle_indices"]
            groups = rng.permutation(len(gi) - 1)
            lo, hi = gi[groups], gi[groups + 1]
            puzzles = lo + (rng.random(len(groups)) * (hi - lo)).astype(np.int64)
            start, size = pi[puzzles], pi[puzzles + 1] - pi[puzzles]
            # concatenated example ranges [start, start + size) of the chosen puzzles, in order
            first = np.repeat(np.cumsum(size) - size, size)
            ex = np.repeat(start, size) + np.arange(size.sum()) - first
            self._cache = {epoch: ex}
        return self._cache[epoch]

    def __iter__(self):
        return self

    def __next__(self):
        parts, need = [], self.B
        while need:
            ex = self.epoch_examples(self.epoch)
            take = ex[self.offset:self.offset + need]
            parts.append(take)
            need -= len(take)
            self.offset += len(take)
            if self.offset >= len(ex):
                self.epoch, self.offset = self.epoch + 1, 0
        idx = np.concatenate(parts)
        local = self.B // self.world
        return make_batch(self.a, idx[self.rank * local:(self.rank + 1) * local])

    def state_dict(self):
        return dict(epoch=self.epoch, offset=self.offset)

    def load_state_dict(self, s):
        self.epoch, self.offset = s["epoch"], s["offset"]


def test_batches(arrays, batch_size, rank=0, world_size=1):
    """All examples in order; yields (local batch, indices of its real examples). Each rank takes
    ceil(batch_size / world_size) of every batch, padded, so every example is scored once and every
    rank runs the same shapes."""
    n, local = len(arrays["inputs"]), -(-batch_size // world_size)
    for start in range(0, n, local * world_size):
        idx = np.arange(start + rank * local, min(start + (rank + 1) * local, n))
        yield make_batch(arrays, idx, pad_to=local), idx


def hms(seconds):
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Where a long loop is, with its rate and ETA: on a terminal one line rewritten at most every
    2 s; where output is piped, nothing unless show=True, then a plain line every 10%."""
    def __init__(self, total, what, show=None):
        self.total, self.what, self.t0, self.last, self.shown = total, what, time.time(), 0.0, 0
        self.tty = sys.stderr.isatty()
        self.on = self.tty if show is None else show

    def update(self, done):
        now = time.time()
        due = now - self.last >= 2 or done >= self.total if self.tty else done * 10 >= (self.shown + 1) * self.total
        if not self.on or not due:
            return
        rate = done / max(now - self.t0, 1e-9)
        line = (f"{self.what}: {done:,}/{self.total:,} ({100 * done / self.total:.0f}%), {rate:,.1f}/s, "
                f"ETA {hms((self.total - done) / max(rate, 1e-9))}")
        print(("\r" + line + " " * 8 + ("\n" if done >= self.total else "")) if self.tty else line,
              end="" if self.tty else "\n", file=sys.stderr, flush=True)
        self.last, self.shown = now, done * 10 // self.total

# -----------------------------------------------------------------------------
# evaluation (train.py and sample.py)

def evaluate(model, arrays, batch_size, device, autocast, steps, samples=1, noise=0.0, select="q",
             act_halt=False, kind=None, ks=None, ignore_label_id=0, rank=0, world_size=1,
             keep_predictions=False, progress=None):
    """Score a split with model.think: `samples` trajectories per puzzle, one answer chosen per step
    (model.choose with `select`). Returns per-step curves of the chosen answer's exact and token
    accuracy (and, with a puzzle `kind`, of answers valid by the rules), q-halt accuracy and the
    supervision steps computed per puzzle (all trajectories); with samples > 1 whether any of the
    K final answers is exact (or valid). ks: also score the choice among the first k trajectories
    for each k (one run gives a samples x steps table); with keep_predictions, the chosen answers,
    their halting logits and puzzle identifiers (for ARC voting). Counts are summed over ranks."""
    import torch
    import torch.distributed as dist
    from model import IGNORE, choose
    from puzzles import problems
    ks = sorted(set(ks or ()) | {samples})
    sums = torch.zeros(len(ks), steps, 2, dtype=torch.float64, device=device)  # exact, token per k and step
    valid = np.zeros((len(ks), steps))
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # puzzles, q-halt right, steps, any exact, any valid
    kept, bar, done = [], Progress(len(arrays["inputs"]), "scoring", progress if rank == 0 else False), 0
    model.eval()
    for batch, idx in test_batches(arrays, batch_size, rank, world_size):
        b = to_device(batch, device, ignore_label_id)
        labels, real = b["labels"], (b["labels"] != IGNORE).any(-1)
        counts = (labels != IGNORE).sum(-1).clamp_min(1)
        with autocast:
            for s, (answers, q, used) in enumerate(model.think(b["inputs"], b["puzzle_identifiers"], steps,
                                                               samples, noise, act_halt)):
                for i, k in enumerate(ks):
                    pred, q_k, _ = choose(answers[:, :k], q[:, :k], select)
                    right = (pred == labels) & (labels != IGNORE)
                    exact = (right.sum(-1) == counts) & real
                    sums[i, s] += torch.stack([exact.sum(), (right.sum(-1) / counts * real).sum()])
                    if kind:
                        valid[i, s] += (problems(kind, batch["inputs"][:len(idx)], pred[:len(idx)].cpu().numpy()) == 0).sum()
        any_right = (((answers == labels[:, None]) | (labels[:, None] == IGNORE)).all(-1)).any(1) & real
        any_valid = 0
        if kind:
            n = len(idx)
            codes = problems(kind, np.repeat(batch["inputs"][:n], samples, 0), answers[:n].flatten(0, 1).cpu().numpy())
            any_valid = (codes.reshape(n, samples) == 0).any(1).sum()
        totals += torch.stack([real.sum(), (((q_k >= 0) == exact) & real).sum(), (used.sum(1) * real).sum(),
                               any_right.sum(), torch.tensor(any_valid, device=device)]).double()
        if keep_predictions:
            n = len(idx)
            kept.append((pred[:n].to(torch.uint8).cpu().numpy(), q_k[:n].float().cpu().numpy(),
                         batch["puzzle_identifiers"][:n], idx))
        done += len(idx) * world_size
        bar.update(min(done, len(arrays["inputs"])))
    valid = torch.from_numpy(valid).to(device)
    if world_size > 1 and dist.is_initialized():
        for t in (sums, valid, totals):
            dist.all_reduce(t)
    n = max(1.0, float(totals[0]))
    curves = {k: dict(exact=(sums[i, :, 0] / n).tolist(), token=(sums[i, :, 1] / n).tolist(),
                      valid=(valid[i] / n).tolist() if kind else None) for i, k in enumerate(ks)}
    last = curves[samples]
    result = dict(count=int(totals[0]), q_halt_accuracy=float(totals[1]) / n, steps=float(totals[2]) / n,
                  any_exact=float(totals[3]) / n, any_valid=float(totals[4]) / n if kind else None,
                  exact_curve=last["exact"], token_curve=last["token"], valid_curve=last["valid"],
                  exact_accuracy=last["exact"][-1], accuracy=last["token"][-1], curves=curves)
    if keep_predictions:
        cat = lambda i: np.concatenate([k[i] for k in kept]) if kept else np.zeros(0)
        result["predictions"] = dict(preds=cat(0), q_halt=cat(1), puzzle_identifiers=cat(2), example=cat(3))
    return result
