"""
The on-disk puzzle dataset format shared by every prepare_*.py, train.py and sample.py.

It is the layout the authors' builders write (TRM.md section 8), so data prepared by either
code base works with the other:

    data/NAME/identifiers.json              index -> puzzle identifier name ("<blank>" at 0)
    data/NAME/{train,test}/dataset.json     metadata
    data/NAME/{train,test}/all__inputs.npy  (examples, seq_len) small ints, 0 = pad
    data/NAME/{train,test}/all__labels.npy  (examples, seq_len) small ints, 0 = ignore
    data/NAME/{train,test}/all__puzzle_identifiers.npy   (puzzles,)   int32
    data/NAME/{train,test}/all__puzzle_indices.npy       (puzzles+1,) int32 example offsets
    data/NAME/{train,test}/all__group_indices.npy        (groups+1,)  int32 puzzle offsets

A *group* is one original puzzle with all its augmented versions, a *puzzle* is one version
(one identifier), an *example* is one input/label pair.

This file also holds the small download helper the prepare scripts share (standard library only).
"""
import glob
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

import numpy as np

# -----------------------------------------------------------------------------
# writing

MARK = ".trm-dataset"  # written first into every dataset a builder makes: the proof it may replace it
DATASET_FILES = {MARK, "identifiers.json", "test_puzzles.json", "train", "test"}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def not_ours(path):
    """Why the folder `path` is not a dataset a builder of this project made (None if it is):
    it must hold the MARK file and nothing but dataset files, so replacing it destroys nothing else."""
    names = os.listdir(path)
    if MARK not in names:
        return f"it has no {MARK} file, so it was not built by this project"
    for name in names:
        sub = os.path.join(path, name)
        if name not in DATASET_FILES or (name in ("train", "test")) != os.path.isdir(sub):
            return f"it holds {name!r}, which is not part of a dataset"
        if name in ("train", "test"):
            extra = [f for f in os.listdir(sub) if not (f == "dataset.json" or
                     (f.startswith("all__") and f.endswith(".npy")))]
            if extra:
                return f"it holds {os.path.join(name, extra[0])!r}, which is not part of a dataset"
    return None


class OutputDir:
    """Build a dataset folder under a temporary name and move it into place when complete.

        out = OutputDir("data/sudoku")   # checks the target at once, before any work
        ...
        with out as tmp:
            write_split(tmp, "train", ...)

    Nothing a user made is ever deleted: an existing target is replaced only when it is a dataset
    built here (it holds the MARK file and nothing but dataset files), or when it is empty. The
    swap is atomic: the old dataset is moved aside, the new one moved in, then the old one
    deleted, so a kill leaves either dataset whole. An interrupted run leaves only
    `NAME.tmp-<pid>`; the next build of NAME removes such folders of processes that are gone.
    Errors are one line (SystemExit) naming the folder.
    """
    def __init__(self, path):
        if not str(path).strip():
            raise SystemExit("the output folder is empty: give --output_dir=data/NAME")
        self.path = os.path.normpath(str(path))
        self.tmp = f"{self.path}.tmp-{os.getpid()}"
        self.check()
        for stale in glob.glob(glob.escape(self.path) + ".tmp-*") + glob.glob(glob.escape(self.path) + ".old-*"):
            pid = stale.rsplit("-", 1)[1]
            gone = pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid)))
            if gone and os.path.exists(os.path.join(stale, MARK)):
                print(f"removing {stale}, left by an interrupted build")
                shutil.rmtree(stale, ignore_errors=True)
        try:  # can we write there? (create and remove the temporary folder once, before any work)
            os.makedirs(self.tmp)
            os.rmdir(self.tmp)
        except OSError as e:
            raise SystemExit(f"{self.path}: cannot write a dataset there ({e.strerror}: {e.filename})")

    def check(self):
        here, target = os.path.realpath(os.getcwd()), os.path.realpath(self.path)
        if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
            raise SystemExit(f"{self.path}: refusing to build a dataset over the current folder "
                             f"or one that contains it: give --output_dir=data/NAME")
        if os.path.lexists(self.path):
            if not os.path.isdir(self.path) or os.path.islink(self.path):
                raise SystemExit(f"{self.path} exists and is not a folder: choose another --output_dir")
            try:
                why = os.listdir(self.path) and not_ours(self.path)
            except OSError as e:
                raise SystemExit(f"{self.path}: cannot read it ({e.strerror})")
            if why:
                raise SystemExit(f"{self.path} exists and {why}: choose another --output_dir, "
                                 f"or move it away yourself")

    def __enter__(self):
        try:
            os.makedirs(self.tmp)
            write_json(os.path.join(self.tmp, MARK), dict(built_by=os.path.basename(sys.argv[0]), args=sys.argv[1:]))
        except OSError as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise SystemExit(f"{self.path}: cannot write a dataset there ({e.strerror}: {e.filename})")
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        try:
            self.check()  # again: the target may have changed while we built
        except SystemExit as e:
            raise SystemExit(f"{e} (the new dataset is in {self.tmp})") from None
        if not os.path.exists(self.path):
            os.replace(self.tmp, self.path)
        elif not os.listdir(self.path):
            os.rmdir(self.path)
            os.replace(self.tmp, self.path)
        else:
            old = f"{self.path}.old-{os.getpid()}"
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old)
        return False


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(obj))  # json.dump(obj, f) would use the slow pure-Python encoder
    os.replace(path + ".tmp", path)


def write_split(root, split, inputs, labels, puzzle_identifiers, puzzle_indices, group_indices,
                vocab_size, num_puzzle_identifiers, **extra_metadata):
    """Write one split ('train' or 'test') in the authors' layout; returns its metadata dict.

    `inputs` and `labels` may both be None when the caller has already streamed them to
    `root/split/all__{inputs,labels}.npy` with NpyWriter; they are then checked, not rewritten.
    """
    d = os.path.join(root, split)
    streamed = inputs is None and labels is None
    if streamed:
        inputs, labels = (np.load(os.path.join(d, f"all__{name}.npy"), mmap_mode="r")
                          for name in ("inputs", "labels"))
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    assert inputs.shape == labels.shape and inputs.ndim == 2, (inputs.shape, labels.shape)
    assert vocab_size <= 256, "token arrays are stored as uint8"
    puzzle_indices = np.asarray(puzzle_indices, dtype=np.int32)
    group_indices = np.asarray(group_indices, dtype=np.int32)
    assert puzzle_indices[0] == 0 and puzzle_indices[-1] == len(inputs)
    assert group_indices[0] == 0 and group_indices[-1] == len(puzzle_indices) - 1
    meta = dict(
        pad_id=0, ignore_label_id=0, blank_identifier_id=0,
        vocab_size=int(vocab_size), seq_len=int(inputs.shape[1]),
        num_puzzle_identifiers=int(num_puzzle_identifiers),
        total_groups=int(len(group_indices) - 1),
        mean_puzzle_examples=float(len(inputs) / max(1, len(puzzle_indices) - 1)),
        total_puzzles=int(len(puzzle_indices) - 1),
        sets=["all"],
        **extra_metadata,
    )
    os.makedirs(d, exist_ok=True)
    arrays = dict(puzzle_identifiers=np.asarray(puzzle_identifiers, dtype=np.int32),
                  puzzle_indices=puzzle_indices, group_indices=group_indices)
    if not streamed:
        arrays.update(inputs=inputs.astype(np.uint8), labels=labels.astype(np.uint8))
    for name, arr in arrays.items():
        np.save(os.path.join(d, f"all__{name}.npy"), arr)
    write_json(os.path.join(d, "dataset.json"), meta)
    return meta


class NpyWriter:
    """Write a .npy file of known shape in pieces, so an array bigger than memory never sits in it.

        with NpyWriter(path, (rows, 900), np.uint8) as f:
            for chunk in chunks:
                f.write(chunk)
    """
    def __init__(self, path, shape, dtype):
        self.shape, self.dtype, self.rows = tuple(int(n) for n in shape), np.dtype(dtype), 0
        self.file = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.file, dict(
            descr=np.lib.format.dtype_to_descr(self.dtype), fortran_order=False, shape=self.shape))

    def write(self, chunk):
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        assert chunk.shape[1:] == self.shape[1:], (chunk.shape, self.shape)
        self.file.write(chunk.data)
        self.rows += len(chunk)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        if exc_type is None:
            assert self.rows == self.shape[0], f"wrote {self.rows} rows, promised {self.shape[0]}"
        return False

# -----------------------------------------------------------------------------
# reading and batching

def load_split(data_dir, split):
    """Metadata and memory-mapped arrays of one split. Clear errors for a missing or broken dir."""
    d = os.path.join(data_dir, split)
    meta_path = os.path.join(d, "dataset.json")
    if not os.path.exists(meta_path):
        raise SystemExit(f"{meta_path} not found: prepare the dataset first "
                         f"(python prepare_sudoku.py, prepare_maze.py or prepare_arc.py "
                         f"with --output_dir={data_dir})")
    with open(meta_path) as f:
        meta = json.load(f)
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        if key not in meta:
            raise SystemExit(f"{meta_path}: missing key '{key}'")
    arrays = {}
    for name in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        p = os.path.join(d, f"all__{name}.npy")
        if not os.path.exists(p):
            raise SystemExit(f"{p} not found: the dataset in {data_dir} is incomplete")
        arrays[name] = np.load(p, mmap_mode="r")
    if arrays["inputs"].shape != arrays["labels"].shape or arrays["inputs"].shape[1] != meta["seq_len"]:
        raise SystemExit(f"{d}: inputs {arrays['inputs'].shape} and labels {arrays['labels'].shape} "
                         f"do not match seq_len {meta['seq_len']}")
    # the puzzle each example belongs to, for its identifier
    sizes = np.diff(arrays["puzzle_indices"])
    arrays["example_puzzle"] = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return meta, arrays


def make_batch(arrays, idx, ignore_label_id=0, pad_to=None):
    """Examples `idx` as a dict of int64 numpy arrays; the ignore label becomes -100. With pad_to,
    the batch is padded with pad inputs, ignored labels and the blank identifier."""
    inputs = np.asarray(arrays["inputs"][idx], dtype=np.int64)
    labels = np.asarray(arrays["labels"][idx], dtype=np.int64)
    labels[labels == ignore_label_id] = -100
    ids = np.asarray(arrays["puzzle_identifiers"], dtype=np.int64)[arrays["example_puzzle"][idx]]
    if pad_to is not None and len(idx) < pad_to:
        n = pad_to - len(idx)
        inputs = np.concatenate([inputs, np.zeros((n, inputs.shape[1]), np.int64)])
        labels = np.concatenate([labels, np.full((n, labels.shape[1]), -100, np.int64)])
        ids = np.concatenate([ids, np.zeros(n, np.int64)])
    return dict(inputs=inputs, labels=labels, puzzle_identifiers=ids)


class TrainBatches:
    """Endless training batches by group sampling. Each epoch shuffles the groups and, for each
    group, takes the examples of one of its puzzles picked at random; the epochs form one stream
    that is cut into global batches (a batch may span two epochs, so nothing is dropped and an
    epoch is total_groups * mean_puzzle_examples examples). Every rank computes the same stream
    from (seed, epoch) and takes its own slice, so the position (epoch, offset) is the whole state."""

    def __init__(self, arrays, global_batch_size, rank=0, world_size=1, seed=0, ignore_label_id=0):
        self.a, self.B, self.rank, self.world = arrays, global_batch_size, rank, world_size
        self.seed, self.ignore = seed, ignore_label_id
        self.epoch, self.offset = 0, 0
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
        return make_batch(self.a, idx[self.rank * local:(self.rank + 1) * local], self.ignore)

    def state_dict(self):
        return dict(epoch=self.epoch, offset=self.offset)

    def load_state_dict(self, s):
        self.epoch, self.offset = s["epoch"], s["offset"]


def test_batches(arrays, global_batch_size, rank=0, world_size=1, ignore_label_id=0):
    """All examples in order; yields (local batch, indices of its real examples). The last batch
    is padded so every rank runs the same shapes."""
    n, local = len(arrays["inputs"]), global_batch_size // world_size
    for start in range(0, n, global_batch_size):
        idx = np.arange(start + rank * local, min(start + (rank + 1) * local, n))
        yield make_batch(arrays, idx, ignore_label_id, pad_to=local), idx

# -----------------------------------------------------------------------------
# downloading (standard library only)

def download(url, path, timeout=30, retries=3, progress=True):
    """Download url to path, atomically: bytes go to path + '.part' and are renamed when complete.

    A partial file left by an interrupted run is resumed with an HTTP Range request when the
    server supports it, else restarted. A file already at `path` is taken as complete.
    Raises ConnectionError with a clear message when the server cannot be reached.
    """
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    for attempt in range(retries):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        req = urllib.request.Request(url, headers={"User-Agent": "trm-prepare"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                if have and r.status != 206:  # server ignored the range: start over
                    have = 0
                total = r.headers.get("Content-Length")
                total = int(total) + have if total is not None else None
                done, t0, last = have, time.time(), 0.0
                with open(part, "ab" if have else "wb") as f:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        if progress and time.time() - last > 0.5:
                            last = time.time()
                            pct = f"{100 * done / total:5.1f}% " if total else ""
                            mb_s = (done - have) / 1e6 / max(1e-9, last - t0)
                            print(f"\r  {os.path.basename(path)}: {pct}{done / 1e6:.1f} MB "
                                  f"({mb_s:.1f} MB/s)", end="", file=sys.stderr, flush=True)
                if total is not None and done != total:
                    raise urllib.error.ContentTooShortError(
                        f"got {done} of {total} bytes", None)
            if progress:
                print(file=sys.stderr)
            os.replace(part, path)
            return path
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # range not satisfiable: the part file is bad, restart
                os.remove(part)
                continue
            raise ConnectionError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            # HTTPException: a chunked transfer cut midway raises IncompleteRead, not OSError
            if attempt == retries - 1:
                reason = getattr(e, "reason", e)
                raise ConnectionError(f"cannot download {url}: {reason}") from None
            time.sleep(min(2 ** attempt, 4) * 0.25)
    raise ConnectionError(f"cannot download {url}")

# -----------------------------------------------------------------------------
# evaluation (train.py and sample.py)

def evaluate(model, arrays, meta, batch_size, device, autocast, steps=None, act_halt=False,
             rank=0, world_size=1, keep_predictions=False):
    """Score a split with model.solve. Returns accuracy after every supervision step (the
    refinement curve), q-halt accuracy and mean steps after the last; with keep_predictions, the
    last step's predictions, halting logits and puzzle identifiers (for ARC voting).
    Counts are summed over ranks when torch.distributed is initialised."""
    import torch
    import torch.distributed as dist
    steps = steps or model.cfg.halt_max_steps
    sums = torch.zeros(4 + 2 * steps, dtype=torch.float64, device=device)
    kept = []
    model.eval()
    for batch, idx in test_batches(arrays, batch_size, rank, world_size, meta.get("ignore_label_id", 0)):
        b = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
        with autocast:
            preds, q_halt, used = model.solve(b["inputs"], b["puzzle_identifiers"], steps, act_halt)
        labels = b["labels"]
        valid = labels != -100
        counts = valid.sum(-1)
        real = counts > 0  # padding rows have no valid label
        correct = (preds == labels) & valid                       # (S, B, L)
        exact = (correct.sum(-1) == counts) & real                # (S, B)
        token = torch.where(real, correct.sum(-1) / counts.clamp_min(1), 0)
        q_ok = ((q_halt[-1] >= 0) == exact[-1]) & real
        sums += torch.cat([torch.stack([real.sum(), q_ok.sum(), (used * real).sum(), real.sum()]).double(),
                           exact.sum(-1).double(), token.sum(-1).double()])
        if keep_predictions:
            n = len(idx)
            kept.append((preds[-1, :n].to(torch.uint8).cpu().numpy(), q_halt[-1, :n].float().cpu().numpy(),
                         batch["puzzle_identifiers"][:n], idx))
    if world_size > 1 and dist.is_initialized():
        dist.all_reduce(sums)
    s = sums.tolist()
    n = max(1.0, s[0])
    result = dict(count=int(s[0]), q_halt_accuracy=s[1] / n, steps=s[2] / n,
                  exact_curve=[v / n for v in s[4:4 + steps]], token_curve=[v / n for v in s[4 + steps:]])
    result.update(exact_accuracy=result["exact_curve"][-1], accuracy=result["token_curve"][-1])
    if keep_predictions:
        cat = lambda i: np.concatenate([k[i] for k in kept]) if kept else np.zeros(0)
        result["predictions"] = dict(preds=cat(0), q_halt=cat(1), puzzle_identifiers=cat(2), example=cat(3))
    return result
