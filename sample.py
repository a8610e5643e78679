"""
Solve puzzles with a trained Tiny Recursive Model, watch it think, score it, and give it more (or
less) test-time compute.

    python sample.py                                       # test example 0 of the model's data (out/ckpt.pt)
    python sample.py --puzzle=.41.........32.. --show_steps=True     # a Sudoku: 16, 36 or 81 cells, '.' or '0' blank
    python sample.py --puzzle=sudoku.txt --html=steps.html           # a grid in a text file; every step as a web page
    python sample.py --out_dir=out-maze --puzzle=maze.txt            # a maze drawn with '#', ' ', 'S', 'G'
    python sample.py --out_dir=out-arc --puzzle=task.json            # an ARC task: two attempts, scored if solved
    python sample.py --split=test                                    # the refinement curve over the test split
    python sample.py --split=test --halt_max_steps=64 --act_halt=True  # more steps; stop each sample once it is sure
    python sample.py --split=test --device=cpu --max_examples=200      # a quick look on a CPU
    python sample.py --init_from=trm_sudoku.pt --config=config/sudoku.py --data_dir=data/sudoku-extreme-1k-aug-1000
                                                                     # an authors' checkpoint

The weights are the EMA weights of out_dir/ckpt.pt, as train.py writes it, loaded with
torch.load(weights_only=True) so that a checkpoint file cannot run code. The kind of puzzle follows
from the data's vocab and seq_len. Every input becomes (input tokens, puzzle identifier) ->
model.solve -> one prediction and one halting logit per supervision step -> a renderer for Sudoku,
maze or ARC. Colours only on a terminal (--color=always or never overrides).
"""
import glob
import json
import math
import os
import re
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import fields
from html import escape

import numpy as np
import torch

import prepare_arc as arc
from configurator import configure, read_config_file
from model import TRM, TRMConfig, from_authors
from prepare_maze import CHARSET, check_maze
from prepare_sudoku import BOXES, geometry
from puzzle_data import evaluate, load_split

# -----------------------------------------------------------------------------
out_dir = "out"          # the checkpoint is out_dir/ckpt.pt
init_from = ""           # or a checkpoint file: ours, or the authors' (then also --config and --data_dir)
config = ""              # for the authors' checkpoints: a config file with the architecture
data_dir = ""            # '': the data the checkpoint was trained on
puzzle = ""              # Sudoku: cells or a text file; maze: a text file; ARC: a task .json file
task = ""                # ARC: the task's name in training (default: the file name)
index = 0                # without --puzzle or --split: solve this test example (ARC: this test task)
split = ""               # 'test': score the whole split
max_examples = 0         # >0: score only the first examples of the split
show_steps = False       # print the answer after every supervision step
html = ""                # write every step to this self-contained HTML page
halt_max_steps = 0       # supervision steps (0: as in training); more steps, more test-time compute
act_halt = False         # stop each sample as soon as q_halt > 0
batch_size = 256
device = ""              # '': cuda if available, else cpu
dtype = ""               # '': bfloat16 on cuda, float32 elsewhere
color = "auto"           # ANSI colours: 'auto' (on a terminal), 'always' or 'never'
# -----------------------------------------------------------------------------
configure(globals())

device = device or ("cuda" if torch.cuda.is_available() else "cpu")
device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
dtype = dtype or ("bfloat16" if device_type == "cuda" else "float32")
autocast = nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=getattr(torch, dtype))
if color not in ("auto", "always", "never"):
    raise SystemExit(f"--color must be auto, always or never, not {color!r}")
ansi = color == "always" or (color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
if puzzle and split:
    raise SystemExit("give --puzzle (one puzzle) or --split (a whole split), not both")
DATA_KEYS = ("seq_len", "vocab_size", "num_puzzle_identifiers")

# -----------------------------------------------------------------------------
# loading: our checkpoints (train.py), or the authors' with a config file and the prepared data

def load_model():
    path = init_from or os.path.join(out_dir, "ckpt.pt")
    if not os.path.exists(path):  # name the config file that trains into out_dir, if one does
        configs = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config", "*.py")))
        mine = rf"^out_dir = [\"']{re.escape(out_dir)}[\"']"
        cmd = next((f"config/{os.path.basename(c)}" for c in configs if re.search(mine, open(c).read(), re.M)),
                   f"config/sudoku.py --out_dir={out_dir}")
        raise SystemExit(f"no checkpoint at {path}: train one with `python train.py {cmd}` (config/ has a "
                         f"file per task), or point --out_dir or --init_from at a checkpoint")
    try:  # weights only: unpickling someone else's file must not run their code
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code, RuntimeError for a broken file, ...
        why = re.search(r"Unsupported [^.\n]*", str(e)) or re.search(r"[^\n]*", str(e).strip())
        raise SystemExit(f"{path}: refused, not a plain weights file ({why.group(0)[:160]})")
    if isinstance(ckpt, dict) and "model_args" in ckpt:  # ours
        model, state = TRM(TRMConfig(**ckpt["model_args"]), verbose=False), dict(ckpt["model"])
        if ckpt.get("ema") is not None:  # the dense weights in named_parameters order, no puzzle table
            names = [n for n, _ in model.named_parameters() if not n.startswith("puzzle_emb")]
            if len(names) != len(ckpt["ema"]):
                raise SystemExit(f"{path}: {len(ckpt['ema'])} EMA tensors for {len(names)} weights")
            state.update(zip(names, ckpt["ema"]))
        model.load_state_dict(state)
        ddir = data_dir or ckpt.get("config", {}).get("data_dir", "")
        what = "EMA weights" if ckpt.get("ema") is not None else "weights"
        return model, ckpt.get("dataset") or {}, ddir, f"{path} ({what})"
    # the authors': a flat state dict; the architecture from a config file, the sizes from the data
    if not isinstance(ckpt, dict) or not config:
        raise SystemExit(f"{path} is not a train.py checkpoint; for an authors' checkpoint give its "
                         f"architecture (--config=config/<task>.py) and data (--data_dir=data/...)")
    arch = read_config_file(config)  # plain assignments, as train.py reads them
    ddir = data_dir or arch.get("data_dir", "")
    meta_path = os.path.join(ddir, "train", "dataset.json")
    if not ddir or not os.path.exists(meta_path):
        raise SystemExit(f"an authors' checkpoint needs --data_dir=data/... (a prepared dataset; "
                         f"{meta_path} not found)")
    with open(meta_path) as f:
        meta = json.load(f)
    names = {f.name for f in fields(TRMConfig)} - set(DATA_KEYS)
    cfg = TRMConfig(**{k: v for k, v in arch.items() if k in names}, **{k: meta[k] for k in DATA_KEYS})
    for suffix, n, what in (("embed_tokens.embedding_weight", cfg.vocab_size, "vocab"),
                            ("puzzle_emb.weights", cfg.num_puzzle_identifiers, "puzzle identifiers")):
        t = next((v for k, v in ckpt.items() if k.endswith(suffix)), None)
        if t is not None and t.shape[0] != n:
            raise SystemExit(f"{path} was trained on other data than {ddir}: "
                             f"{what} {t.shape[0]} in the checkpoint, {n} in the data")
    model = TRM(cfg, verbose=False)
    try:
        from_authors(model, ckpt)
    except ValueError as e:
        raise SystemExit(f"{path} does not fit {config}: {' '.join(str(e).split())[:300]}...")
    return model, meta, ddir, f"{path} (the authors' weights)"

def puzzle_kind(cfg, meta):
    V, L, n = cfg.vocab_size, cfg.seq_len, math.isqrt(cfg.seq_len)
    if meta.get("kind"):
        return meta["kind"]
    if V == 12 and L == 900:
        return "arc"
    if n * n == L and V == n + 2 and n in BOXES:  # before mazes: a 4x4 Sudoku has vocab 6 too
        return "sudoku"
    if n * n == L and V == 6 and n >= 5:
        return "maze"
    raise SystemExit(f"cannot tell the puzzle kind from vocab {V} and seq_len {L} "
                     f"(Sudoku: vocab size+2; maze: vocab 6; ARC: vocab 12, seq_len 900)")

def check_data(m, where):
    got, want = [m[k] for k in DATA_KEYS], [getattr(cfg, k) for k in DATA_KEYS]
    if got != want:
        raise SystemExit(f"{where} does not fit this checkpoint: seq_len {got[0]}, vocab {got[1]}, "
                         f"{got[2]} puzzle identifiers, the model has {want[0]}, {want[1]}, {want[2]} "
                         f"(use the --data_dir it was trained on)")

def solve(inputs, ids):
    """Token rows (N, seq_len) and puzzle identifiers (N,) -> per-step predictions (S, N, seq_len),
    halting logits (S, N) and steps used (N,), as numpy arrays (tokens as uint8: vocab <= 256)."""
    parts = []
    for i in range(0, len(inputs), batch_size):
        x = torch.as_tensor(np.asarray(inputs[i:i + batch_size], np.int64), device=device)
        p = torch.as_tensor(np.asarray(ids[i:i + batch_size], np.int64), device=device)
        with autocast:
            preds, q, used = model.solve(x, p, steps, act_halt)
        parts.append((preds.to(torch.uint8).cpu(), q.cpu(), used.cpu()))
    return [torch.cat([part[k] for part in parts], 1 if k < 2 else 0).numpy() for k in range(3)]

def sigmoid(v):
    return 0.5 * (1 + math.tanh(float(v) / 2))  # no overflow for large |v|

# -----------------------------------------------------------------------------
# rendering: a grid of tokens -> rows of (character, classes) -> terminal text or an HTML table

CHARS = dict(sudoku="?.123456789", maze="?" + CHARSET, arc=".+0123456789")
CLASSES = dict(sudoku=["bad", "blank"] + ["digit"] * 9, maze=["bad", "wall", "open", "start", "goal", "path"],
               arc=["pad", "marker"] + [f"a{c}" for c in range(10)])
ARC_RGB = [(0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0), (170, 170, 170),
           (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37)]
ANSI = dict(given="1", filled="36", changed="30;43", bad="31", blank="2", wall="100", start="30;42",
            goal="30;41", path="30;43", marker="100",
            **{f"a{c}": f"{97 if r + g + b < 300 else 30};48;2;{r};{g};{b}" for c, (r, g, b) in enumerate(ARC_RGB)})
CSS = ("body{font-family:sans-serif;margin:1.5em}.frames{display:flex;flex-wrap:wrap;gap:1.2em}"
       "figure{margin:0}figcaption{font-size:.8em;margin-bottom:.3em}table{border-collapse:collapse}"
       "td{width:1.4em;height:1.4em;padding:0;text-align:center;font:bold .9em monospace;border:1px solid #ddd}"
       ".filled{color:#1565c0}.bad{color:#c62828}.blank{color:#bbb}.sudoku .changed{background:#ffe082}"
       ".wall{background:#444}.start{background:#43a047}.goal{background:#e53935}.path{background:#ffb300}"
       ".marker{background:#999}.changed{outline:2px solid #d500f9;outline-offset:-2px}"
       ".bl{border-left:2px solid #000}.bt{border-top:2px solid #000}"
       + "".join(f".a{c}{{background:#{r:02x}{g:02x}{b:02x}}}" for c, (r, g, b) in enumerate(ARC_RGB)))

def cells(grid, prev=None, given=None):
    """2-D tokens -> rows of (character, classes); 'changed' marks the cells that differ from prev."""
    rows = []
    for r, line in enumerate(grid):
        row = []
        for c, t in enumerate(int(t) for t in line):
            cls = CLASSES[kind][t] if t < len(CLASSES[kind]) else "bad"
            if cls == "digit":
                cls = "given" if given is not None and given[r][c] else "filled"
            changed = int(prev is not None and prev[r][c] != t)
            row.append((CHARS[kind][t] if t < len(CHARS[kind]) else "?", [cls] + ["changed"] * changed))
        rows.append(row)
    return rows

def paint(ch, cls):
    if not ansi:
        return ch
    if kind == "sudoku":
        code, text = ANSI["changed" if "changed" in cls else cls[0]], ch
    else:  # a coloured block two columns wide
        code, text = ANSI.get(cls[0], ""), "* " if "changed" in cls else (ch if ch in "SG?" else " ") + " "
    return f"\x1b[{code}m{text}\x1b[0m" if code else text

def to_text(rows):
    lines = []
    for r, row in enumerate(rows):
        parts = [paint(ch, cls) for ch, cls in row]
        if kind == "sudoku":  # with box lines
            br, bc = BOXES[len(rows)]
            if r and r % br == 0:
                lines.append("-+-".join(["-" * (2 * bc - 1)] * (len(rows) // bc)))
            lines.append(" | ".join(" ".join(parts[i:i + bc]) for i in range(0, len(parts), bc)))
        else:
            lines.append(("" if ansi or kind == "maze" else " ").join(parts))
    return lines

def width(s):
    return len(re.sub(r"\x1b\[[0-9;]*m", "", s))

def show(panels, gap=4):
    """Print (title, lines) panels side by side, as many to a row as the terminal holds."""
    cols, i = shutil.get_terminal_size().columns, 0
    while i < len(panels):
        row, used = [], 0
        for title, lines in panels[i:]:
            w = max(width(s) for s in [title] + lines)
            if row and used + gap + w > cols:
                break
            used += w + gap * bool(row)
            row.append((w, [title] + lines))
        i += len(row)
        for k in range(max(len(b) for _, b in row)):
            parts = [b[k] if k < len(b) else "" for _, b in row]
            print((" " * gap).join([p + " " * (w - width(p)) for p, (w, _) in zip(parts, row)][:-1] + parts[-1:]))
        print()

def html_table(rows):
    box, out = BOXES.get(len(rows)) if kind == "sudoku" else None, []
    for r, row in enumerate(rows):
        tds = []
        for c, (ch, cls) in enumerate(row):
            cls = cls + ["bt"] * bool(box and r and r % box[0] == 0) + ["bl"] * bool(box and c and c % box[1] == 0)
            tds.append(f'<td class="{" ".join(cls)}">{"" if kind == "arc" else escape(ch)}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="{kind}">' + "".join(out) + "</table>"

def write_html(path, title, note, sections):
    """One page, no external assets: sections of (heading, [(caption, cells)])."""
    body = [f"<h1>{escape(title)}</h1>\n<p>{escape(note)}</p>"]
    for heading, frames in sections:
        body.append(f'<h2>{escape(heading)}</h2>\n<div class="frames">')
        body += [f"<figure><figcaption>{escape(c)}</figcaption>{html_table(rows)}</figure>" for c, rows in frames]
        body.append("</div>")
    with open(path, "w") as f:
        f.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/><title>{escape(title)}</title>'
                f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    print(f"wrote {path}")

def step_frames(job, preds, q, used, r):
    """(caption, cells) of sample r's input and of its answer after every supervision step it ran."""
    x = job["inputs"][r]
    if kind == "arc":  # the part of the canvas that any step wrote to
        seen = np.stack([x, *preds[:used[r], r]]).reshape(-1, 30, 30) > 0
        h, w = (int(np.flatnonzero(seen.any(axis=a)).max()) + 1 for a in ((0, 2), (0, 1)))
        view = lambda t: t.reshape(30, 30)[:h, :w]
    else:
        view = lambda t: t.reshape(math.isqrt(cfg.seq_len), -1)
    given = view(x) > 1 if kind == "sudoku" else None
    frames, prev = [("input", cells(view(x), given=given))], None if kind == "arc" else view(x)
    for s in range(used[r]):
        g = view(preds[s, r])
        changed = "" if prev is None else f", {int((g != prev).sum())} changed"
        frames.append((f"step {s + 1}/{steps}: q {sigmoid(q[s, r]):.2f}{changed}", cells(g, prev, given)))
        prev = g
    return frames

# -----------------------------------------------------------------------------
# one puzzle: every input form becomes a job, dict(inputs (N, seq_len), ids (N,), watch: rows to show)

def read_text():
    if os.path.isfile(puzzle):
        with open(puzzle) as f:
            return f.read().replace("\r", "")
    if kind != "sudoku" or os.sep in puzzle or puzzle.endswith((".txt", ".json")):
        raise SystemExit(f"{puzzle}: file not found (a {'maze' if kind == 'maze' else 'task'} is given as a file)")
    return puzzle

def sudoku_tokens(text):
    digits, m = re.sub(r"[\s|+-]", "", text), math.isqrt(cfg.seq_len)
    if len(digits) not in (16, 36, 81):
        raise SystemExit(f"a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got {len(digits)}")
    if (n := math.isqrt(len(digits))) != m:
        raise SystemExit(f"this model solves {m}x{m} Sudoku, the puzzle is {n}x{n}")
    if bad := [c for c in digits if c not in ".0123456789"[:n + 2]]:
        raise SystemExit(f"unknown character {bad[0]!r} in the puzzle: use digits 1-{n}, and '.' or '0' for a blank")
    return np.array([[1 if c in ".0" else int(c) + 1 for c in digits]])

def maze_tokens(text):
    rows, n = text.rstrip("\n").split("\n"), math.isqrt(cfg.seq_len)
    h, w = len(rows), max(map(len, rows))
    if h > 30 or w > 30:
        raise SystemExit(f"{puzzle}: the maze is {h}x{w}, larger than 30x30")
    for r, row in enumerate(rows):
        if bad := [c for c in row if c not in CHARSET]:
            raise SystemExit(f"{puzzle}: unknown character {bad[0]!r} in row {r + 1} "
                             f"(a maze is '#' wall, ' ' open, 'S' start, 'G' goal, 'o' path)")
        if len(row) != w:
            raise SystemExit(f"{puzzle}: row {r + 1} has {len(row)} characters, not {w} (keep trailing spaces)")
    if (h, w) != (n, n):
        raise SystemExit(f"{puzzle}: the maze is {h}x{w}, this model solves {n}x{n} mazes")
    grid = "".join(rows).replace("o", " ")  # a solved maze is read as its question
    for ch, name in (("S", "start"), ("G", "goal")):
        if grid.count(ch) != 1:
            raise SystemExit(f"{puzzle}: a maze needs one {name} {ch!r}, found {grid.count(ch)}")
    return np.array([[CHARSET.index(c) + 1 for c in grid]])

def arc_job(name, task_json, where):
    """Every version (augmentation) of the task the model was trained on, each with every test
    input; a task unseen in training gets the blank identifier."""
    if not isinstance(task_json, dict) or "test" not in task_json:
        raise SystemExit(f'{where}: expected one task, {{"train": [...], "test": [...]}}')
    try:
        _, tests = arc.check_task(name, task_json, need_outputs=False)
    except ValueError as e:
        raise SystemExit(f"{where}: {e}")
    path, identifiers = os.path.join(ddir, "identifiers.json"), []
    if ddir and os.path.exists(path):
        with open(path) as f:
            identifiers = json.load(f)
    if identifiers and len(identifiers) != cfg.num_puzzle_identifiers:
        raise SystemExit(f"{path} has {len(identifiers)} identifiers, the model {cfg.num_puzzle_identifiers}: "
                         f"use the --data_dir it was trained on")
    versions = [(i, s) for i, s in enumerate(identifiers) if s == name or s.startswith(name + arc.SEP)]
    if not versions:
        print(f"task {name!r} was not in training, so it has no puzzle embedding: using the blank "
              f"identifier (expect a poor answer, the embedding carries the task)")
        versions = [(0, name)]
    inputs = [arc.encode_grid(arc.augment(inp, *arc.parse_name(v)[1:])) for _, v in versions for inp, _ in tests]
    return dict(inputs=np.stack(inputs), ids=np.repeat([i for i, _ in versions], len(tests)),
                watch=range(len(tests)), name=name, task=task_json, tests=tests, versions=versions)

def read_job():
    if puzzle and kind == "arc":
        try:
            task_json = json.loads(read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"{puzzle}: not valid JSON ({e})")
        return arc_job(task or os.path.splitext(os.path.basename(puzzle))[0], task_json, puzzle)
    if puzzle:
        tokens = (sudoku_tokens if kind == "sudoku" else maze_tokens)(read_text())
        return dict(inputs=tokens, ids=np.zeros(1, np.int64), watch=[0])
    if not ddir or not os.path.exists(os.path.join(ddir, "test", "dataset.json")):
        raise SystemExit(f"give a puzzle: --puzzle=... (no test split in {ddir or 'the checkpoint'} to take one from)")
    if kind == "arc":
        names = list(arc.load_scoring(ddir)[1].items())
        if not 0 <= index < len(names):
            raise SystemExit(f"--index={index}: {ddir} has {len(names)} test tasks")
        print(f"no --puzzle: solving test task {names[index][0]} of {ddir}")
        return arc_job(*names[index], ddir)
    smeta, arrays = load_split(ddir, "test")
    check_data(smeta, os.path.join(ddir, "test"))
    if not 0 <= index < len(arrays["inputs"]):
        raise SystemExit(f"--index={index}: {ddir}/test has {len(arrays['inputs'])} examples")
    print(f"no --puzzle: solving test example {index} of {ddir} (--puzzle=... for yours, --split=test for all)")
    return dict(inputs=arrays["inputs"][index:index + 1], ids=np.zeros(1, np.int64), watch=[0],
                label=np.asarray(arrays["labels"][index]))

def sudoku_problem(x, y, n):
    """Why the answer y is not a solution of the puzzle x (token rows), or None."""
    d = y.astype(np.int64) - 1
    if (d < 1).any():
        return f"{int((d < 1).sum())} cells are not filled"
    if ((x > 1) & (x != y)).any():
        return "it changes a given"
    for u, unit in enumerate(geometry(n)[0]):  # rows, columns, boxes
        if len(set(d[unit].tolist())) < n:
            rep = next(v for v in d[unit] if (d[unit] == v).sum() > 1)
            return f"{['row', 'column', 'box'][u // n]} {u % n + 1} repeats {rep}"
    return None

def report_grid(job, preds):
    x, y, n = job["inputs"][0], preds[-1, 0], math.isqrt(cfg.seq_len)
    given = (x > 1).reshape(n, n) if kind == "sudoku" else None
    panels = [(t, cells(g.reshape(n, n), given=given))
              for t, g in ([("puzzle", x), ("answer", y)] if kind == "sudoku" else [("answer", y)])]
    show([(t, to_text(c)) for t, c in panels])
    if kind == "sudoku":
        problem, what = sudoku_problem(x, y, n), "a valid solution"
    else:
        problem, what = check_maze(x.reshape(n, n), y.reshape(n, n)), "a valid shortest path"
        what += f" ({int((y == CHARSET.index('o') + 1).sum()) + 1} moves)" if problem is None else ""
    print(what if problem is None else f"not {what}: {problem}")
    if job.get("label") is not None:
        same = ((y == job["label"]) | (job["label"] == 0)).all()  # label 0: ignored
        print("the dataset's answer" if same else "not the dataset's answer")
    return panels

def report_arc(job, preds, q):
    name, T, panels = job["name"], len(job["tests"]), []
    local_ids = ["<blank>"] + [v for _, v in job["versions"]]  # score() maps each version back
    res = arc.score([(1 + r // T, r % T, preds[-1, r], q[-1, r]) for r in range(preds.shape[1])],
                    local_ids, {name: job["task"]}, ks=(1, 2))
    for j, (inp, _) in enumerate(job["tests"]):
        pair, answer = job["task"]["test"][j], res["submission"][name][j]
        a1, a2 = (np.array(answer[k], np.uint8) for k in ("attempt_1", "attempt_2"))
        want = np.array(pair["output"], np.uint8) if "output" in pair else None
        mark = lambda g: "" if want is None else " (right)" if arc.grid_key(g) == arc.grid_key(want) else " (wrong)"
        grids = [(f"test input {j + 1}", inp), (f"attempt 1{mark(a1)}", a1)]
        grids += [(f"attempt 2{mark(a2)}", a2)] if arc.grid_key(a1) != arc.grid_key(a2) else []
        grids += [("expected", want)] if want is not None else []
        panels += [(t, cells(g + 2)) for t, g in grids]
        show([(t, to_text(c)) for t, c in panels[-len(grids):]])
        if arc.grid_key(a1) == arc.grid_key(a2):
            print(f"test input {j + 1}: one candidate grid, so attempt 2 is attempt 1\n")
    print(f"voted over {len(job['versions'])} version(s) of the task; "
          f"{res['invalid']} predictions were not a well-formed grid")
    if res["tasks"]:
        print(f"pass@1 {res['pass@1']:.2f}, pass@2 {res['pass@2']:.2f}")
    return panels

def solve_one():
    job = read_job()
    t0 = time.time()
    preds, q, used = solve(job["inputs"], job["ids"])
    dt, mean = time.time() - t0, float(used.mean())
    panels = report_arc(job, preds, q) if kind == "arc" else report_grid(job, preds)
    print((f"act_halt: {mean:.2f} of {steps} steps ({steps / mean:.1f}x less compute than always {steps})"
           if act_halt else f"{steps} supervision steps")
          + f", q = sigmoid(q_halt) {sigmoid(q[used[0] - 1, 0]):.2f}"
          + (f", {len(used)} samples" if len(used) > 1 else "") + f", {dt:.2f} s on {device}")
    watch = [(r, step_frames(job, preds, q, used, r)) for r in job["watch"]] if show_steps or html else []
    note = "q = sigmoid(q_halt), how sure the model is that its answer is right (act_halt stops at q > 0.5)"
    if show_steps:
        print(f"\n{note}; changed cells are {'highlighted' if ansi else 'counted'}\n")
        for _, frames in watch:
            show([(c, to_text(rows)) for c, rows in frames])
    if html:
        title = f"TRM on {puzzle or f'test example {index}'}: {steps} supervision steps"
        heading = lambda r: "steps" if len(watch) == 1 else f"steps, test input {r + 1}"
        write_html(html, title, note + "; changed cells are outlined",
                   [(heading(r), f) for r, f in watch] + [("answer", panels)])

# -----------------------------------------------------------------------------
# a whole split: the refinement curve, the ACT speed-up, ARC pass@K

def score_split():
    if not ddir:
        raise SystemExit("--split needs --data_dir=... (the checkpoint does not name its data)")
    smeta, arrays = load_split(ddir, split)
    check_data(smeta, os.path.join(ddir, split))
    if max_examples:
        arrays = {k: v[:max_examples] if k in ("inputs", "labels", "example_puzzle") else v for k, v in arrays.items()}
    is_arc, bs = kind == "arc" and split == "test", min(batch_size, len(arrays["inputs"]))
    print(f"scoring {len(arrays['inputs']):,} examples of {os.path.join(ddir, split)}")
    solve(np.ones((bs, cfg.seq_len)), np.zeros(bs))  # warm-up: the timed runs pay no start-up costs
    runs = {}
    for halt in (False, True) if act_halt else (False,):
        t0 = time.time()
        res = evaluate(model, arrays, smeta, bs, device, autocast, steps, halt, keep_predictions=is_arc)
        runs[halt] = (res, time.time() - t0)
    (full, t_full), (last, t_last) = runs[False], runs[act_halt]
    print("step   exact   token" + ("   act_halt: exact   token" if act_halt else ""))
    for s in range(steps):
        print(f"{s + 1:4d}  {full['exact_curve'][s]:.4f}  {full['token_curve'][s]:.4f}"
              + (f"             {last['exact_curve'][s]:.4f}  {last['token_curve'][s]:.4f}" if act_halt else ""))
    print(f"{full['count']:,} examples: exact {full['exact_accuracy']:.4f}, token {full['accuracy']:.4f}, "
          f"q-halt accuracy {full['q_halt_accuracy']:.4f}, ACT steps {full['steps']:.2f} of {steps}, {t_full:.1f} s")
    if act_halt:
        saving = steps / max(last["steps"], 1)
        print(f"act_halt: ACT steps {last['steps']:.2f} of {steps} ({saving:.2f}x less compute), "
              f"{t_last:.1f} s vs {t_full:.1f} s ({t_full / max(t_last, 1e-9):.2f}x faster), "
              f"exact {last['exact_accuracy']:.4f} vs {full['exact_accuracy']:.4f}")
    if is_arc:
        sc = arc.score(last["predictions"], *arc.load_scoring(ddir))
        ks = [k for k in sc if k.startswith("pass@")]
        print("  ".join(f"{k:>9}" for k in ks) + "\n" + "  ".join(f"{sc[k]:9.4f}" for k in ks))
        print(f"{sc['tasks']} tasks, {sc['predictions']:,} predictions, {sc['invalid']:,} not a well-formed grid")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "submission.json")
        arc.write_submission(path, sc["submission"])
        print(f"wrote {path}")

# -----------------------------------------------------------------------------

model, meta, ddir, source = load_model()
model, cfg = model.to(device).eval(), model.cfg
kind = puzzle_kind(cfg, meta)
steps = halt_max_steps or cfg.halt_max_steps
if steps < 1:
    raise SystemExit(f"--halt_max_steps must be positive, not {halt_max_steps}")
n = math.isqrt(cfg.seq_len)
what = dict(sudoku=f"{n}x{n} Sudoku", maze=f"{n}x{n} maze").get(kind, kind.upper())
print(f"{source}: {what} model, {model.num_params():,} parameters, {steps} supervision steps"
      f"{' with act_halt' if act_halt else ''}, {device} {dtype}")
try:
    score_split() if split else solve_one()
except BrokenPipeError:  # piped into head: stop quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
