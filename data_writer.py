"""
Writing datasets in the layout puzzle_data.py describes, for the prepare_*.py builders: a
folder built under a temporary name and moved into place (OutputDir), splits written whole or
streamed (write_split, NpyWriter), and a resumable download. Standard library and numpy only.
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


def download_csvs(url, cache_dir, names=("train.csv", "test.csv")):
    """Download (or find in the cache) the CSV files of a Hugging Face dataset; without a network,
    stop at once (one line) and say what works offline. Never switches source by itself."""
    paths = []
    for name in names:
        src, path = f"{url.rstrip('/')}/{name}", os.path.join(cache_dir, name)
        if not os.path.exists(path):
            print(f"downloading {src} -> {path}")
        try:
            paths.append(download(src, path))
        except ConnectionError as e:
            raise SystemExit(f"{e}. No network? Build offline instead: --source=csv --train_csv=PATH "
                             f"--test_csv=PATH (the same CSV files, copied here), or --source=generate") from None
    return paths
