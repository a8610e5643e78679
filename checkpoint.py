"""
Checkpoint files: train.py's own, and the authors' (the same function under other key names).

    from checkpoint import read_checkpoint, checkpoint_weights, load_state
    ckpt = read_checkpoint("out/ckpt.pt")        # weights only: a file cannot run code
    model = TRM(TRMConfig(**ckpt["model_args"]))
    load_state(model, checkpoint_weights(ckpt))  # the EMA weights

train.py saves ckpt.pt as a dict: model (live weights), ema (EMA of the dense weights, by name),
optimizer, step, data (position in the data stream), carry (the ACT carry of the global batch),
rng (one generator state per rank), config, model_args (TRMConfig), dataset (dataset.json).
The authors' training script saves torch.compile(model).state_dict(), every key starting with
'_orig_mod.model.inner.' ('model.inner.' uncompiled); model layout and row orders are ours.
"""
import os
import pickle
import re

import torch


_RENAMES = [  # (ours, theirs): module layout and q/k/v, gate/up row orders are identical
    ("y_init", "H_init"), ("z_init", "L_init"),
    ("embed_tokens.weight", "embed_tokens.embedding_weight"),
    ("embed_pos.weight", "embed_pos.embedding_weight"),
    ("puzzle_emb.weight", "puzzle_emb.weights"),
    ("layers.", "L_level.layers."),
]


def to_authors(state_dict, prefix="_orig_mod.model.inner."):
    """Our state dict -> the authors' key names (as their training script saves them)."""
    out = {}
    for k, v in state_dict.items():
        for ours, theirs in _RENAMES:
            if k.startswith(ours):
                k = theirs + k[len(ours):]
                break
        out[prefix + k] = v
    return out


def read_checkpoint(path):
    """torch.load on the CPU with weights_only=True (a file that would run code when loaded is
    refused) and memory-mapped (a 1.8 GB checkpoint is read as needed, never held twice). It must
    hold a train.py checkpoint or a state dict (a dict of tensors). A missing, foreign, broken,
    refused or other file is one line (SystemExit) naming it."""
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: " + ("not a file" if os.path.exists(path) else "no such checkpoint file"))
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (a pickle before torch 1.6)
        raise SystemExit(f"{path}: not a checkpoint file (torch.save writes a zip archive; this starts with {head!r})")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # a file in torch's legacy format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses anything that is not plain data
        why = re.search(r"Unsupported [^.\n]*", str(e))
        raise SystemExit(f"{path}: refused, not a plain weights file: loading it could run code"
                         + (f" ({why.group(0)[:160]})" if why else ""))
    except Exception as e:  # a truncated or damaged archive
        why = re.split(r"\.\s", str(e).strip())[0][:160]
        raise SystemExit(f"{path}: cannot read it, the file is truncated or damaged ({why})")
    if isinstance(ckpt, dict) and "model_args" in ckpt:  # train.py's
        if not (isinstance(ckpt.get("model"), dict) and isinstance(ckpt["model_args"], dict)):
            raise SystemExit(f"{path}: a damaged train.py checkpoint ('model' and 'model_args' must be dicts)")
        from model import TRMConfig
        try:
            TRMConfig(**ckpt["model_args"])
        except (TypeError, ValueError) as e:
            raise SystemExit(f"{path}: its model_args do not fit this code's TRMConfig ({e})")
    elif not (isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())):
        raise SystemExit(f"{path}: holds a {type(ckpt).__name__}, not a train.py checkpoint or a state dict "
                         f"(a dict of tensors)")
    return ckpt


def checkpoint_weights(ckpt):
    """The weights to evaluate: a train.py checkpoint's EMA weights (its live ones where it kept
    no EMA); an authors' file is a flat state dict already."""
    if isinstance(ckpt, dict) and "model_args" in ckpt:
        return {**ckpt["model"], **(ckpt.get("ema") or {})}
    return ckpt


def load_state(model, state_dict):
    """Load a state dict with our key names or the authors' ('_orig_mod.model.inner.*' or
    'model.inner.*') into `model`. ValueError, one line, for missing, unexpected, mis-shaped or
    non-finite tensors."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError("not a state dict (a dict of tensors)")
    state = {}
    for k, v in state_dict.items():  # the authors' names become ours; ours never match theirs
        for p in ("_orig_mod.", "model.", "inner."):
            k = k[len(p):] if k.startswith(p) else k
        state[next((ours + k[len(theirs):] for ours, theirs in _RENAMES if k.startswith(theirs)), k)] = v
    expected = model.state_dict()
    some = lambda keys: f"{len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"  # a line, not a page
    problems = [f"{what} {some(keys)}" for what, keys in [
        ("missing", sorted(set(expected) - set(state))), ("unexpected", sorted(set(state) - set(expected))),
        ("mis-shaped", sorted(f"{k} {tuple(state[k].shape)} (model {tuple(expected[k].shape)})"
                              for k in set(expected) & set(state) if state[k].shape != expected[k].shape))] if keys]
    if problems:
        raise ValueError("the weights do not fit the model: " + "; ".join(problems))
    if bad := sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()):
        raise ValueError(f"non-finite values (NaN or inf) in {len(bad)} tensors, e.g. {bad[0]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model
