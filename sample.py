"""
Solve puzzles with a trained Tiny Recursive Model, watch it think, score it, and give it more (or
less) test-time compute: more supervision steps, several noisy trajectories per puzzle, or fewer.

    python sample.py                                       # test example 0 of the model's data (out/ckpt.pt)
    python sample.py --puzzle=.41.........32.. --show_steps=True     # a Sudoku: 16, 36 or 81 cells, '.' or '0' blank
    python sample.py --puzzle=sudoku.txt --html=steps.html           # a grid in a text file; every step as a web page
    python sample.py --out_dir=out-maze --puzzle=maze.txt            # a maze drawn with '#', ' ', 'S', 'G'
    python sample.py --out_dir=out-arc --puzzle=task.json            # an ARC task: two attempts, scored if solved
    python sample.py --split=test                                    # the refinement curve over the test split
    python sample.py --split=test --halt_max_steps=64 --act_halt=True  # more steps; stop each puzzle once it is sure
    python sample.py --split=test --samples=16 --noise=0.3             # 16 noisy trajectories; the surest answer wins
    python sample.py --split=test --scaling=scaling.svg                # accuracy against compute, as a chart
    python sample.py --init_from=PATH --config=config/sudoku.py --data_dir=DIR  # an authors' checkpoint

The weights are the EMA weights of out_dir/ckpt.pt, read with weights only (a checkpoint cannot run code); the
kind of puzzle follows from the data's vocab and seq_len. "Valid" answers keep the puzzle's rules (Sudoku: every
unit a permutation, givens kept; maze: a shortest path from S to G), whether or not they are the dataset's answer.
"""
import glob
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch

from checkpoint import checkpoint_weights, load_state, read_checkpoint
from configurator import configure, pick_device, read_config_file
from model import TRM, TRMConfig, choose
from puzzle_data import evaluate, load_split
from puzzles import (SEP, augment, check_maze, check_task, encode_grid, grid_key, kind_of, load_scoring, maze_tokens,
                     parse_name, problems, score, sudoku_problem, sudoku_tokens)
from render import GENERATOR, cells, check_writable, show, step_frames, to_text, write_file, write_html, write_svg

# -----------------------------------------------------------------------------
out_dir = "out"          # the checkpoint is out_dir/ckpt.pt
init_from = ""           # or a checkpoint file: ours, or the authors' (then also --config and --data_dir)
config = ""              # for the authors' checkpoints: a config file with the architecture
data_dir = ""            # '': the data the checkpoint was trained on
puzzle = ""              # Sudoku: cells or a text file; maze: a text file; ARC: a task .json file
task = ""                # ARC: the task's name in training (default: the file name)
index = 0                # without --puzzle or --split: solve this test example (ARC: this test task)
split = ""               # 'test' (or 'train'): score the whole split
max_examples = 0         # >0: score only the first examples of the split
show_steps = False       # print the answer after every supervision step
html = ""                # write every step to this self-contained HTML page
halt_max_steps = 0       # supervision steps (0: as in training); more steps, more test-time compute
act_halt = False         # stop each trajectory as soon as q_halt > 0
samples = 1              # trajectories per puzzle, run side by side (with noise > 0 each explores its own way)
noise = 0.0              # std of the Gaussian noise added to the latent z at the start of every step
select = "q"             # 'q': the trajectory the halting head is surest of; 'vote': the most frequent answer
scaling = ""             # write accuracy against test-time compute (steps x1-x8, samples 1-64) to this .svg
seed = 0                 # for the noise
batch_size = 256         # rows through the network at once: puzzles x samples (at least one puzzle)
progress = False         # scoring progress also where output is piped (a line every 10%; always on a terminal)
device = ""              # '': cuda, then mps, then cpu
dtype = ""               # '': bfloat16 on cuda, float32 elsewhere
color = "auto"           # ANSI colours: 'auto' (on a terminal), 'always' or 'never'
# -----------------------------------------------------------------------------
configure(globals(), dict(index="[0, inf)", split=("", "train", "test"), max_examples="[0, inf)",
                          halt_max_steps="[0, 100000]", samples="[1, 4096]", noise="[0, 100]", select=("q", "vote"),
                          seed="[0, 4294967295]", batch_size="[1, inf)", dtype=("", "float32", "bfloat16", "float16"),
                          color=("auto", "always", "never")))
if puzzle and split:
    raise SystemExit("give --puzzle (one puzzle) or --split (a whole split), not both")
if scaling and not split:
    raise SystemExit("--scaling scores a split: add --split=test")
for out_file, mark in ((html, GENERATOR), (scaling, "<!-- trm sample.py -->")):
    if out_file:
        check_writable(out_file, mark)  # before any work: never someone else's file
device, device_type, dtype, autocast = pick_device(device, dtype)
per_batch = max(1, batch_size // samples)  # puzzles per batch, each with all its samples
ansi = color == "always" or (color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
torch.manual_seed(seed)

# -----------------------------------------------------------------------------
# the model: a train.py checkpoint (its EMA weights), or the authors' with --config and --data_dir
path = init_from or os.path.join(out_dir, "ckpt.pt")
if not os.path.exists(path):  # name the config file that trains into out_dir, if one does
    configs = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config", "*.py")))
    mine = rf"^out_dir = [\"']{re.escape(out_dir)}[\"']"
    cmd = next((f"config/{os.path.basename(c)}" for c in configs if re.search(mine, open(c).read(), re.M)),
               f"config/sudoku.py --out_dir={out_dir}")
    raise SystemExit(f"no checkpoint at {path}: train one with `python train.py {cmd}` (config/ has a "
                     f"file per task), or point --out_dir or --init_from at a checkpoint")
ckpt = read_checkpoint(path)
if isinstance(ckpt, dict) and "model_args" in ckpt:  # ours
    cfg, meta = TRMConfig(**ckpt["model_args"]), ckpt.get("dataset") or {}
    ddir = data_dir or ckpt.get("config", {}).get("data_dir", "")
    source = f"{path} ({'EMA weights' if ckpt.get('ema') else 'weights'})"
else:  # the authors': a flat state dict; the architecture from a config file, the sizes from the data
    if not isinstance(ckpt, dict) or not config:
        raise SystemExit(f"{path} is not a train.py checkpoint; for an authors' checkpoint give its "
                         f"architecture (--config=config/<task>.py) and data (--data_dir=data/...)")
    arch = read_config_file(config)
    ddir = data_dir or arch.get("data_dir", "")
    meta = load_split(ddir, "train")[0]
    sizes = {k: meta[k] for k in ("seq_len", "vocab_size", "num_puzzle_identifiers")}
    try:
        cfg = TRMConfig(**{k: v for k, v in arch.items() if k in TRMConfig.__dataclass_fields__ and k not in sizes}, **sizes)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"{config}: {e}")
    for suffix, n, what in (("embed_tokens.embedding_weight", cfg.vocab_size, "vocab"),
                            ("puzzle_emb.weights", cfg.num_puzzle_identifiers, "puzzle identifiers")):
        t = next((v for k, v in ckpt.items() if k.endswith(suffix)), None)
        if t is not None and t.shape[0] != n:
            raise SystemExit(f"{path} was trained on other data than {ddir}: {what} {t.shape[0]} in the "
                             f"checkpoint, {n} in the data")
    source = f"{path} (the authors' weights)"
model = TRM(cfg, verbose=False)
try:
    load_state(model, checkpoint_weights(ckpt))
except ValueError as e:
    raise SystemExit(f"{path}: {e}")
model = model.to(device).eval()
del ckpt
try:
    kind = kind_of(cfg.vocab_size, cfg.seq_len)
except ValueError as e:
    raise SystemExit(str(e))
steps, n = halt_max_steps or cfg.halt_max_steps, math.isqrt(cfg.seq_len)
what = dict(sudoku=f"{n}x{n} Sudoku", maze=f"{n}x{n} maze").get(kind, kind.upper())
print(f"{source}: {what} model, {model.num_params():,} parameters, {steps} supervision steps"
      + (f", {samples} samples (noise {noise}, select {select})" if samples > 1 else "")
      + f"{' with act_halt' if act_halt else ''}, {device} {dtype}")


def fits(split_meta, where):
    """The data must have the model's sizes."""
    got = [split_meta[k] for k in ("seq_len", "vocab_size", "num_puzzle_identifiers")]
    if got != [cfg.seq_len, cfg.vocab_size, cfg.num_puzzle_identifiers]:
        raise SystemExit(f"{where} does not fit this checkpoint: seq_len {got[0]}, vocab {got[1]}, {got[2]} puzzle "
                         f"identifiers, the model has {cfg.seq_len}, {cfg.vocab_size}, {cfg.num_puzzle_identifiers} "
                         f"(use the --data_dir it was trained on)")


def run(inputs, ids):
    """Every step of every trajectory, on the CPU: answers (S, N, K, L) uint8, halting logits (S, N, K), steps used (N, K)."""
    parts = []
    for i in range(0, len(inputs), per_batch):
        x = torch.as_tensor(np.asarray(inputs[i:i + per_batch], np.int64), device=device)
        p = torch.as_tensor(np.asarray(ids[i:i + per_batch], np.int64), device=device)
        with autocast:
            out = [(a.to("cpu", torch.uint8, copy=True), q.to("cpu", copy=True), u.to("cpu", copy=True)) for a, q, u in
                   model.think(x, p, steps, samples, noise, act_halt)]
        parts.append((torch.stack([a for a, _, _ in out]), torch.stack([q for _, q, _ in out]), out[-1][2]))
    return [torch.cat([part[k] for part in parts], 1 if k < 2 else 0).numpy() for k in range(3)]


def arc_job(name, task_json, where):
    """Every version (augmentation) of the task the model was trained on, each with every test
    input; a task unseen in training gets the blank identifier."""
    try:
        _, tests = check_task(name, task_json, need_outputs=False)
    except ValueError as e:
        raise SystemExit(f"{where}: {e}")
    identifiers = load_scoring(ddir)[0] if ddir and os.path.exists(os.path.join(ddir, "identifiers.json")) else []
    if identifiers and len(identifiers) != cfg.num_puzzle_identifiers:
        raise SystemExit(f"{ddir}/identifiers.json has {len(identifiers)} identifiers, the model "
                         f"{cfg.num_puzzle_identifiers}: use the --data_dir it was trained on")
    versions = [(i, s) for i, s in enumerate(identifiers) if s == name or s.startswith(name + SEP)]
    if not versions:
        print(f"task {name!r} was not in training, so it has no puzzle embedding: using the blank "
              f"identifier (expect a poor answer, the embedding carries the task)")
        versions = [(0, name)]
    inputs = [encode_grid(augment(inp, *parse_name(v)[1:])) for _, v in versions for inp, _ in tests]
    return dict(inputs=np.stack(inputs), ids=np.repeat([i for i, _ in versions], len(tests)),
                watch=range(len(tests)), name=name, task=task_json, tests=tests, versions=versions)


def read_job():
    """One puzzle from --puzzle (cells, or a file) or the test split: inputs (N, seq_len), ids (N,),
    the rows to watch, and the dataset's answer where there is one."""
    if puzzle:
        if os.path.isfile(puzzle):
            try:
                text = open(puzzle, encoding="utf-8-sig").read()
            except (OSError, UnicodeDecodeError) as e:
                raise SystemExit(f"{puzzle}: cannot read it ({getattr(e, 'strerror', None) or e})")
        elif kind != "sudoku" or os.sep in puzzle or puzzle.endswith((".txt", ".json")):
            raise SystemExit(f"{puzzle}: file not found (a {'maze' if kind == 'maze' else 'task'} is given as a file)")
        else:
            text = puzzle
        try:
            if kind == "arc":
                return arc_job(task or os.path.splitext(os.path.basename(puzzle))[0], json.loads(text), puzzle)
            tokens = sudoku_tokens(text, n) if kind == "sudoku" else maze_tokens(text, n)
        except ValueError as e:  # json.JSONDecodeError included
            raise SystemExit(f"{puzzle}: {e}" if os.path.isfile(puzzle) else str(e))
        return dict(inputs=tokens[None], ids=np.zeros(1, np.int64), watch=[0])
    if not ddir or not os.path.exists(os.path.join(ddir, "test", "dataset.json")):
        raise SystemExit(f"give a puzzle: --puzzle=... (no test split in {ddir or 'the checkpoint'} to take one from)")
    if kind == "arc":
        names = list(load_scoring(ddir)[1].items())
        if index >= len(names):
            raise SystemExit(f"--index={index}: {ddir} has {len(names)} test tasks")
        print(f"no --puzzle: solving test task {names[index][0]} of {ddir}")
        return arc_job(*names[index], ddir)
    smeta, arrays = load_split(ddir, "test")
    fits(smeta, os.path.join(ddir, "test"))
    if index >= len(arrays["inputs"]):
        raise SystemExit(f"--index={index}: {ddir}/test has {len(arrays['inputs'])} examples")
    print(f"no --puzzle: solving test example {index} of {ddir} (--puzzle=... for yours, --split=test for all)")
    return dict(inputs=arrays["inputs"][index:index + 1], ids=np.zeros(1, np.int64), watch=[0],
                label=np.asarray(arrays["labels"][index]))


def report_grid(job, answer, finals):
    x, given = job["inputs"][0], (job["inputs"][0] > 1).reshape(n, n) if kind == "sudoku" else None
    panels = [(t, cells(kind, g.reshape(n, n), given=given))
              for t, g in ([("puzzle", x), ("answer", answer)] if kind == "sudoku" else [("answer", answer)])]
    show([(t, to_text(kind, c, ansi)) for t, c in panels])
    if kind == "sudoku":
        problem, what = sudoku_problem(x, answer), "a valid solution"
    else:
        problem, what = check_maze(x.reshape(n, n), answer.reshape(n, n)), "a valid shortest path"
        what += f" ({int((answer == 5).sum()) + 1} moves)" if problem is None else ""
    print(what if problem is None else f"not {what}: {problem}")
    if samples > 1:
        valid = (problems(kind, np.repeat(x[None], samples, 0), finals[0]) == 0).sum()
        print(f"{valid} of the {samples} trajectories end in a valid answer, {len({a.tobytes() for a in finals[0]})} distinct")
    if job.get("label") is not None:
        same = ((answer == job["label"]) | (job["label"] == 0)).all()  # label 0: ignored
        print("the dataset's answer" if same else "not the dataset's answer")
    return panels


def report_arc(job, answers, q):
    name, T, panels = job["name"], len(job["tests"]), []
    local_ids = ["<blank>"] + [v for _, v in job["versions"]]  # score() maps each version back
    res = score([(1 + r // T, r % T, answers[r], q[r]) for r in range(len(answers))], local_ids,
                {name: job["task"]}, ks=(1, 2))
    for j, (inp, _) in enumerate(job["tests"]):
        pair, attempts = job["task"]["test"][j], res["submission"][name][j]
        a1, a2 = (np.array(attempts[k], np.uint8) for k in ("attempt_1", "attempt_2"))
        want = np.array(pair["output"], np.uint8) if "output" in pair else None
        mark = lambda g: "" if want is None else " (right)" if grid_key(g) == grid_key(want) else " (wrong)"
        grids = [(f"test input {j + 1}", inp), (f"attempt 1{mark(a1)}", a1)]
        grids += [(f"attempt 2{mark(a2)}", a2)] if grid_key(a1) != grid_key(a2) else []
        grids += [("expected", want)] if want is not None else []
        panels += [(t, cells(kind, g + 2)) for t, g in grids]
        show([(t, to_text(kind, c, ansi)) for t, c in panels[-len(grids):]])
        if grid_key(a1) == grid_key(a2):
            print(f"test input {j + 1}: one candidate grid, so attempt 2 is attempt 1\n")
    print(f"voted over {len(job['versions'])} version(s) of the task; "
          f"{res['invalid']} predictions were not a well-formed grid")
    if res["tasks"]:
        print(f"pass@1 {res['pass@1']:.2f}, pass@2 {res['pass@2']:.2f}")
    return panels


def write_submission(predictions):
    sc = score(predictions, *load_scoring(ddir))
    ks = [k for k in sc if k.startswith("pass@")]
    print("  ".join(f"{k:>9}" for k in ks) + "\n" + "  ".join(f"{sc[k]:9.4f}" for k in ks))
    print(f"{sc['tasks']} tasks, {sc['predictions']:,} predictions, {sc['invalid']:,} not a well-formed grid")
    os.makedirs(out_dir, exist_ok=True)
    write_file(os.path.join(out_dir, "submission.json"), json.dumps(sc["submission"]))

# -----------------------------------------------------------------------------
# a whole split: the refinement curve, the act_halt speed-up, accuracy against compute, ARC pass@K

if split:
    if not ddir:
        raise SystemExit("--split needs --data_dir=... (the checkpoint does not name its data)")
    smeta, arrays = load_split(ddir, split)
    fits(smeta, os.path.join(ddir, split))
    if max_examples:
        arrays = {k: v[:max_examples] if k in ("inputs", "labels", "example_puzzle") else v for k, v in arrays.items()}
    rules = kind if kind != "arc" else None
    kw = dict(ignore_label_id=smeta.get("ignore_label_id", 0), kind=rules, progress=progress or None)
    print(f"scoring {len(arrays['inputs']):,} examples of {os.path.join(ddir, split)}")
    if scaling:  # one run of 64 trajectories x 8x the steps holds every smaller setting
        S0, ks = cfg.halt_max_steps, (1, 4, 16, 64)
        t0 = time.time()
        res = evaluate(model, arrays, max(1, batch_size // 64), device, autocast, 8 * S0, 64, noise, select, ks=ks, **kw)
        print(f"{time.time() - t0:.1f} s; noise {noise}, select {select}" + ("; with noise 0 all samples are alike" if not noise else ""))
        print("steps  samples  compute   exact" + ("   valid" if rules else ""))
        for k in ks:
            for s in (S0, 2 * S0, 4 * S0, 8 * S0):
                c = res["curves"][k]
                print(f"{s:5d}  {k:7d}  {s * k / S0:6.0f}x  {c['exact'][s - 1]:.4f}" + (f"  {c['valid'][s - 1]:.4f}" if rules else ""))
        write_svg(scaling, f"{what}: {res['count']} {split} puzzles, noise {noise}, select {select}",
                  [(f"{k} sample{'s' * (k > 1)}", [(s * k / S0, res["curves"][k]["exact"][s - 1]) for s in (S0, 2 * S0, 4 * S0, 8 * S0)])
                   for k in ks], f"compute per puzzle (1x = {S0} steps, 1 sample)", "exact accuracy")
        sys.exit(0)
    bs, runs = min(per_batch, len(arrays["inputs"])), {}
    list(model.think(torch.ones(bs, cfg.seq_len, dtype=torch.long, device=device), torch.zeros(bs, dtype=torch.long, device=device), 1))  # warm-up
    for halt in (False, True) if act_halt else (False,):
        t0 = time.time()
        runs[halt] = (evaluate(model, arrays, bs, device, autocast, steps, samples, noise, select, halt,
                               keep_predictions=kind == "arc" and split == "test", **kw), time.time() - t0)
    (full, t_full), (last, t_last) = runs[False], runs[act_halt]
    print("step   exact   token" + ("   valid" if rules else "") + ("   act_halt: exact   token" if act_halt else ""))
    for s in range(steps):
        print(f"{s + 1:4d}  {full['exact_curve'][s]:.4f}  {full['token_curve'][s]:.4f}"
              + (f"  {full['valid_curve'][s]:.4f}" if rules else "")
              + (f"             {last['exact_curve'][s]:.4f}  {last['token_curve'][s]:.4f}" if act_halt else ""))
    print(f"{full['count']:,} examples: exact {full['exact_accuracy']:.4f}, token {full['accuracy']:.4f}, "
          + (f"valid {full['valid_curve'][-1]:.4f}, " if rules else "")
          + f"q-halt accuracy {full['q_halt_accuracy']:.4f}, ACT steps {full['steps'] / samples:.2f} of {steps}, {t_full:.1f} s")
    print(f"compute: {full['steps'] / cfg.halt_max_steps:.2f}x the default ({cfg.halt_max_steps} steps x 1 sample)")
    if samples > 1:
        print(f"any of the {samples} answers (a diagnostic: it checks against the label, and the rules): exact "
              f"{full['any_exact']:.4f}" + (f", valid {full['any_valid']:.4f}" if rules else ""))
    if act_halt:
        saving = steps * samples / max(last["steps"], 1)
        print(f"act_halt: ACT steps {last['steps'] / samples:.2f} of {steps} ({saving:.2f}x less compute), "
              f"{t_last:.1f} s vs {t_full:.1f} s ({t_full / max(t_last, 1e-9):.2f}x faster), "
              f"exact {last['exact_accuracy']:.4f} vs {full['exact_accuracy']:.4f}")
    if "predictions" in last:
        write_submission(last["predictions"])
    sys.exit(0)

# -----------------------------------------------------------------------------
# one puzzle: solve it, show the answer and how it got there

job = read_job()
t0 = time.time()
answers, q, used = run(job["inputs"], job["ids"])                   # (S, N, K, L), (S, N, K), (N, K)
chosen = [choose(torch.from_numpy(answers[s]), torch.from_numpy(q[s]), select) for s in range(steps)]
preds, qc = np.stack([c[0].numpy() for c in chosen]), np.stack([c[1].numpy() for c in chosen])  # (S, N, L), (S, N)
rows_used = used[np.arange(len(used)), chosen[-1][2].numpy()]         # steps run by each chosen trajectory
dt, mean = time.time() - t0, float(used.sum(1).mean())
try:
    panels = report_arc(job, preds[-1], qc[-1]) if kind == "arc" else report_grid(job, preds[-1, 0], answers[-1])
    sure = 0.5 * (1 + math.tanh(float(qc[-1, 0]) / 2))
    print((f"act_halt: {mean / samples:.2f} of {steps} steps ({steps * samples / mean:.1f}x less compute than always {steps})"
           if act_halt else f"{steps} supervision steps") + (f" x {samples} samples" if samples > 1 else "")
          + f", q = sigmoid(q_halt) {sure:.2f}" + (f", {len(used)} puzzles" if len(used) > 1 else "") + f", {dt:.2f} s on {device}")
    watch = [(r, step_frames(kind, job["inputs"][r], preds[:, r], qc[:, r], rows_used[r], steps, compact=bool(html)))
             for r in job["watch"]] if show_steps or html else []
    note = "q = sigmoid(q_halt), how sure the model is that its answer is right (act_halt stops at q > 0.5)"
    if show_steps:
        print(f"\n{note}; changed cells are {'highlighted' if ansi else 'counted'}\n")
        for r in job["watch"]:
            show([(c, to_text(kind, rows, ansi)) for c, rows in step_frames(kind, job["inputs"][r], preds[:, r], qc[:, r],
                                                                            rows_used[r], steps)])
    if html:
        heading = lambda r: "steps" if len(watch) == 1 else f"steps, test input {r + 1}"
        write_html(html, kind, f"TRM on {puzzle or f'test example {index}'}: {steps} supervision steps",
                   note + "; changed cells are outlined; steps that change nothing are shown once",
                   [(heading(r), f) for r, f in watch] + [("answer", panels)])
except BrokenPipeError:  # piped into head: stop quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
