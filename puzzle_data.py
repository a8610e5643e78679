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

class OutputDir:
    """Build a dataset directory under a temporary name and rename it into place on success.

    An interrupted prepare leaves only `NAME.tmp-<pid>`, never a `NAME` that looks complete.

        with OutputDir("data/sudoku") as tmp:
            write_split(tmp, "train", ...)
    """
    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.tmp = f"{self.path}.tmp-{os.getpid()}"

    def __enter__(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return False


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def write_split(root, split, inputs, labels, puzzle_identifiers, puzzle_indices, group_indices,
                vocab_size, num_puzzle_identifiers, **extra_metadata):
    """Write one split ('train' or 'test') in the authors' layout; returns its metadata dict."""
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
    d = os.path.join(root, split)
    os.makedirs(d, exist_ok=True)
    arrays = dict(inputs=inputs.astype(np.uint8), labels=labels.astype(np.uint8),
                  puzzle_identifiers=np.asarray(puzzle_identifiers, dtype=np.int32),
                  puzzle_indices=puzzle_indices, group_indices=group_indices)
    for name, arr in arrays.items():
        np.save(os.path.join(d, f"all__{name}.npy"), arr)
    write_json(os.path.join(d, "dataset.json"), meta)
    return meta

# -----------------------------------------------------------------------------
# reading

def load_split(data_dir, split):
    """Metadata and memory-mapped arrays of one split. Clear errors for a missing or broken dir."""
    d = os.path.join(data_dir, split)
    meta_path = os.path.join(d, "dataset.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{meta_path} not found: prepare the dataset first "
                                f"(e.g. python prepare_sudoku.py --output_dir={data_dir})")
    with open(meta_path) as f:
        meta = json.load(f)
    for key in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key '{key}'")
    arrays = {}
    for name in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        p = os.path.join(d, f"all__{name}.npy")
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: the dataset in {data_dir} is incomplete")
        arrays[name] = np.load(p, mmap_mode="r")
    if arrays["inputs"].shape != arrays["labels"].shape or arrays["inputs"].shape[1] != meta["seq_len"]:
        raise ValueError(f"{d}: inputs {arrays['inputs'].shape} and labels {arrays['labels'].shape} "
                         f"do not match seq_len {meta['seq_len']}")
    return meta, arrays

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
        except (urllib.error.URLError, OSError) as e:
            if attempt == retries - 1:
                reason = getattr(e, "reason", e)
                raise ConnectionError(f"cannot download {url}: {reason}") from None
            time.sleep(min(2 ** attempt, 4) * 0.25)
    raise ConnectionError(f"cannot download {url}")
