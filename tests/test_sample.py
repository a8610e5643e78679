"""sample.py end to end on tiny checkpoints the tests make: a 4x4 Sudoku model trained by train.py,
and untrained 7x7 maze and ARC models saved in train.py's checkpoint format.

    python -m pytest -q tests/test_sample.py

sample.py runs in this process (runpy, so torch is imported once); one run is a subprocess, as a
user would run it, to check the exit code and that errors print no traceback.
"""
import json
import os
import re
import runpy
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import puzzles as P  # noqa: E402
from checkpoint import to_authors  # noqa: E402
from model import TRM, TRMConfig  # noqa: E402

ARCH = dict(hidden_size=32, num_heads=1, H_cycles=1, L_cycles=1, L_layers=1, mlp_t=False,
            pos_encodings="rope", puzzle_emb_ndim=32, puzzle_emb_len=1, halt_max_steps=4)


def sample(capsys, *args):
    """Run sample.py with these arguments: (exit code, stdout followed by the error line)."""
    old, code, message = sys.argv, 0, ""
    sys.argv = ["sample.py", *args]
    try:
        runpy.run_path(os.path.join(ROOT, "sample.py"), run_name="__main__")
    except SystemExit as e:
        code, message = (e.code or 0, "") if isinstance(e.code, (int, type(None))) else (1, str(e.code))
    finally:
        sys.argv = old
    return code, capsys.readouterr().out + message


def save_ckpt(out_dir, data_dir, halt_bias=None, seed=0):
    """An untrained model for data_dir, saved as train.py saves one (EMA weights in a list)."""
    with open(os.path.join(data_dir, "train", "dataset.json")) as f:
        meta = json.load(f)
    torch.manual_seed(seed)
    model = TRM(TRMConfig(**ARCH, **{k: meta[k] for k in ("seq_len", "vocab_size", "num_puzzle_identifiers")}),
                verbose=False)
    if halt_bias is not None:
        with torch.no_grad():
            model.q_head.bias[0] = halt_bias
    ema = {n: p.detach().clone() for n, p in model.dense_parameters()}
    os.makedirs(out_dir, exist_ok=True)
    torch.save(dict(model=model.state_dict(), ema=ema, optimizer={}, step=0, data={}, carry=None, rng={},
                    config=dict(data_dir=data_dir), model_args=asdict(model.cfg), dataset=meta),
               os.path.join(out_dir, "ckpt.pt"))
    return out_dir


def build(script, *args):
    """Run a dataset builder as a user would (the builders are scripts, not libraries)."""
    r = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]


def first_test_example(data):
    return (np.load(os.path.join(data, "test", f"all__{k}.npy"))[0] for k in ("inputs", "labels"))


@pytest.fixture(scope="module")
def sudoku(tmp_path_factory):
    """4x4 Sudoku data and a model trained on it for 30 steps by train.py."""
    root = tmp_path_factory.mktemp("sudoku")
    data, out = str(root / "sudoku4"), str(root / "out")
    build("prepare_sudoku.py", "--source=generate", "--size=4", "--num_train=64", "--num_test=8", "--num_aug=0",
          f"--output_dir={data}")
    cmd = [sys.executable, "train.py", f"--data_dir={data}", f"--out_dir={out}",
           *[f"--{k}={v}" for k, v in ARCH.items()], "--global_batch_size=16", "--max_steps=30",
           "--eval_interval=0", "--lr=3e-3", "--lr_warmup_steps=5", "--device=cpu"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]
    x, y = first_test_example(data)
    return SimpleNamespace(root=root, data=data, out=out,
                           puzzle="".join(str(v - 1) if v > 1 else "." for v in x), answer=y - 1)


@pytest.fixture(scope="module")
def maze(tmp_path_factory):
    """7x7 mazes; an untrained model whose halting logit is positive, so act_halt stops at step 1."""
    root = tmp_path_factory.mktemp("maze")
    data = str(root / "maze7")
    build("prepare_maze.py", "--source=generate", "--size=7", "--num_train=4", "--num_test=3", f"--output_dir={data}")
    x, _ = first_test_example(data)
    text = "\n".join("".join(P.CHARSET[t - 1] for t in row) for row in x.reshape(7, 7)) + "\n"
    (root / "maze.txt").write_text(text)
    return SimpleNamespace(root=root, data=data, out=save_ckpt(str(root / "out"), data, halt_bias=5.0),
                           file=str(root / "maze.txt"), text=text)


def flip_task(rng, tests=1, size=(3, 4)):
    grids = [rng.integers(0, 10, size) for _ in range(2 + tests)]
    pairs = [dict(input=g.tolist(), output=np.fliplr(g).tolist()) for g in grids]
    return dict(train=pairs[:2], test=pairs[2:])


def write_kaggle(prefix, tasks):
    with open(f"{prefix}_challenges.json", "w") as f:
        json.dump({n: dict(train=t["train"], test=[dict(input=p["input"]) for p in t["test"]]) for n, t in tasks.items()}, f)
    with open(f"{prefix}_solutions.json", "w") as f:
        json.dump({n: [p["output"] for p in t["test"]] for n, t in tasks.items()}, f)


@pytest.fixture(scope="module")
def arcdata(tmp_path_factory):
    """Two extra training tasks and one evaluation task 'ev' (two test inputs), 3 augmentations
    each (the builder adds the ARC-AGI-1 tasks to training)."""
    root = tmp_path_factory.mktemp("arc")
    data, rng = str(root / "arc"), np.random.default_rng(0)
    evals = {"ev": flip_task(rng, tests=2)}
    write_kaggle(root / "tr", {"ta": flip_task(rng), "tb": flip_task(rng)})
    write_kaggle(root / "ev", evals)
    build("prepare_arc.py", f"--test_kaggle={root / 'ev'}", f"--extra_kaggle={root / 'tr'}", "--num_aug=3",
          "--no_conceptarc", "--seed=0", f"--output_dir={data}")
    (root / "ev.json").write_text(json.dumps(evals["ev"]))
    (root / "new.json").write_text(json.dumps(flip_task(rng)))
    return SimpleNamespace(root=root, data=data, out=save_ckpt(str(root / "out"), data), task=evals["ev"])


def curve(out):
    """The refinement curve table: [(step, exact, token), ...]."""
    return [(int(s), float(e), float(t)) for s, e, t in re.findall(r"^ *(\d+) +([0-9.]+) +([0-9.]+)", out, re.M)]

# -----------------------------------------------------------------------------
# loading and solving one puzzle


def test_sudoku_as_cells_as_a_file_and_from_the_test_split(sudoku, capsys):
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.puzzle}")
    assert code == 0, out
    assert "(EMA weights): 4x4 Sudoku model" in out and "puzzle" in out and "answer" in out
    assert re.search(r"^(a valid solution|not a valid solution: .+)$", out, re.M)
    grid = out[out.index("\npuzzle "):out.index("solution")]
    # the same puzzle as a text file with box lines and '0' blanks
    rows = [sudoku.puzzle[i:i + 4].replace(".", "0") for i in range(0, 16, 4)]
    (sudoku.root / "p.txt").write_text("\n".join(f"{r[:2]} | {r[2:]}" for r in rows) + "\n")
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.root / 'p.txt'}")
    assert code == 0 and out[out.index("\npuzzle "):out.index("solution")] == grid
    # no puzzle: test example 0, which is the same puzzle, checked against the dataset's answer
    code, out = sample(capsys, f"--out_dir={sudoku.out}")
    assert code == 0 and "solving test example 0" in out and "the dataset's answer" in out
    assert out[out.index("\npuzzle "):out.index("solution")] == grid


def test_ema_weights_are_used_and_live_weights_are_the_fallback(sudoku, capsys, tmp_path):
    ckpt = torch.load(os.path.join(sudoku.out, "ckpt.pt"), weights_only=True)
    _, reference = sample(capsys, f"--out_dir={sudoku.out}", "--split=test")
    ckpt["model"] = {k: torch.zeros_like(v) if k.startswith("layers") else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    code, out = sample(capsys, f"--out_dir={tmp_path}", "--split=test")
    assert code == 0 and curve(out) == curve(reference)
    ckpt["ema"] = None
    torch.save(ckpt, tmp_path / "ckpt.pt")
    code, out = sample(capsys, f"--init_from={tmp_path / 'ckpt.pt'}", "--split=test")
    assert code == 0 and "(weights)" in out


def test_maze_file_path_printed_on_the_maze(maze, capsys):
    code, out = sample(capsys, f"--out_dir={maze.out}", f"--puzzle={maze.file}")
    assert code == 0, out
    assert "7x7 maze model" in out and "answer" in out
    assert re.search(r"^(a valid shortest path \(\d+ moves\)|not a valid shortest path: .+)$", out, re.M)
    answer = out.split("answer\n")[1].split("\n")[:7]
    assert all(len(row) == 7 and set(row) <= set(P.CHARSET + "?") for row in answer)
    # a labelled maze (with its 'o' path) is read as the question
    labelled = maze.text.replace(" ", "o", 1)
    (maze.root / "o.txt").write_text(labelled)
    code, out2 = sample(capsys, f"--out_dir={maze.out}", f"--puzzle={maze.root / 'o.txt'}")
    assert code == 0 and out2.split("answer\n")[1].split("\n")[:7] == answer


def test_arc_task_votes_over_its_versions_and_is_scored(arcdata, capsys):
    code, out = sample(capsys, f"--out_dir={arcdata.out}", f"--puzzle={arcdata.root / 'ev.json'}")
    assert code == 0, out
    assert "voted over 4 version(s)" in out and "blank identifier" not in out
    assert "test input 1" in out and "test input 2" in out and "attempt 1" in out and "expected" in out
    assert re.search(r"^pass@1 [01]\.\d\d, pass@2 [01]\.\d\d$", out, re.M)
    # an unseen task: the blank identifier, said so; no outputs: no score
    task = json.loads((arcdata.root / "new.json").read_text())
    for pair in task["test"]:
        del pair["output"]
    (arcdata.root / "new.json").write_text(json.dumps(task))
    code, out = sample(capsys, f"--out_dir={arcdata.out}", f"--puzzle={arcdata.root / 'new.json'}")
    assert code == 0 and "blank identifier" in out and "voted over 1 version(s)" in out
    assert "pass@" not in out and "expected" not in out

def oracle(answers, steps_used=None):
    """A TRM.think that answers from a table {input bytes: label tokens} (zeros when unknown),
    with a positive halting logit: the renderers and checkers see known answers."""
    def think(self, inputs, puzzle_ids, steps, samples=1, noise=0.0, act_halt=False):
        x = inputs.cpu().numpy().astype(np.uint8)
        preds = torch.tensor(np.stack([answers.get(row.tobytes(), np.zeros_like(row)) for row in x]), dtype=torch.long)
        for s in range(steps):
            used = torch.full((len(x), samples), min(s + 1, steps_used or steps), dtype=torch.int32)
            yield preds[:, None].expand(-1, samples, -1), torch.full((len(x), samples), 5.0), used
    return think


def test_right_answers_are_recognised(sudoku, maze, arcdata, capsys, monkeypatch):
    for data in (sudoku.data, maze.data):
        x, y = (np.load(os.path.join(data, "test", f"all__{k}.npy")) for k in ("inputs", "labels"))
        monkeypatch.setattr(TRM, "think", oracle({a.tobytes(): b for a, b in zip(x, y)}))
        code, out = sample(capsys, f"--out_dir={sudoku.out if data == sudoku.data else maze.out}")
        assert code == 0 and "\nthe dataset's answer" in out, out
        assert re.search(r"^a valid (solution|shortest path \(\d+ moves\))$", out, re.M), out
    # a wrong Sudoku answer (two cells of a row swapped) is caught
    y = np.load(os.path.join(sudoku.data, "test", "all__labels.npy"))[0].copy()
    y[[0, 1]] = y[[1, 0]]
    x = np.array([1 if c == "." else int(c) + 1 for c in sudoku.puzzle], np.uint8)
    monkeypatch.setattr(TRM, "think", oracle({x.tobytes(): y}))
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.puzzle}")
    assert code == 0 and re.search(r"^not a valid solution: (it changes a given|column 1 repeats \d)$", out, re.M)
    # ARC: every version answers in its own frame; mapped back, all vote for the right grid
    identifiers, _ = P.load_scoring(arcdata.data)
    answers = {}
    for name in identifiers[1:]:
        task, k, mapping = P.parse_name(name)
        if task == "ev":
            for pair in arcdata.task["test"]:
                grids = [P.augment(np.array(pair[io], np.uint8), k, mapping) for io in ("input", "output")]
                answers[P.encode_grid(grids[0]).tobytes()] = P.encode_grid(grids[1])
    monkeypatch.setattr(TRM, "think", oracle(answers, steps_used=2))
    code, out = sample(capsys, f"--out_dir={arcdata.out}", f"--puzzle={arcdata.root / 'ev.json'}", "--act_halt=True")
    assert code == 0 and "pass@1 1.00, pass@2 1.00" in out and out.count("attempt 1 (right)") == 2, out
    assert "act_halt: 2.00 of 4 steps (2.0x less compute than always 4)" in out

# -----------------------------------------------------------------------------
# watching it think


def test_show_steps_prints_every_step_plain_when_piped(sudoku, capsys):
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.puzzle}", "--show_steps=True",
                       "--halt_max_steps=6")
    assert code == 0 and "\x1b" not in out
    assert [int(s) for s in re.findall(r"step (\d+)/6: q 0\.\d\d, \d+ changed", out)] == [1, 2, 3, 4, 5, 6]
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.puzzle}", "--show_steps=True",
                       "--color=always")
    assert code == 0 and "\x1b[30;43m" in out and "\x1b[1m" in out  # changed cells, givens


def steps_shown(root):
    """The supervision steps of an HTML page's frames: [(first, last), ...] ('step 3/5' or 'steps 2-5/5')."""
    return [(int(m.group(1)), int(m.group(2) or m.group(1))) for c in root.iter("figcaption")
            if (m := re.match(r"steps? (\d+)(?:-(\d+))?/\d+", c.text))]


def test_html_shows_a_stable_answer_once(sudoku, capsys, tmp_path, monkeypatch):
    x, y = first_test_example(sudoku.data)
    monkeypatch.setattr(TRM, "think", oracle({x.tobytes(): y}))  # the same answer at every step
    page = tmp_path / "stable.html"
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--html={page}", "--halt_max_steps=6")
    root = ET.fromstring(page.read_text())
    assert code == 0 and steps_shown(root) == [(1, 6)]
    assert any(c.text.startswith("steps 1-6/6: q 0.99-0.99, unchanged") for c in root.iter("figcaption"))
    (tmp_path / "notes.html").write_text("<p>my notes</p>")  # a page sample.py did not write: kept
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--html={tmp_path / 'notes.html'}")
    assert code == 1 and "was not written by sample.py" in out and (tmp_path / "notes.html").read_text() == "<p>my notes</p>"


def test_html_is_well_formed_self_contained_and_has_every_step(sudoku, arcdata, capsys, tmp_path):
    page = tmp_path / "steps.html"
    code, out = sample(capsys, f"--out_dir={sudoku.out}", f"--puzzle={sudoku.puzzle}", f"--html={page}",
                       "--halt_max_steps=5")
    assert code == 0, out
    text = page.read_text()
    root = ET.fromstring(text)  # parses as XML: every tag closed, text escaped
    frames = steps_shown(root)
    assert [s for a, b in frames for s in range(a, b + 1)] == [1, 2, 3, 4, 5]  # every step, once
    assert len(root.findall(".//figure/table/tr")) == 4 * (1 + len(frames) + 2)  # input, steps, puzzle and answer
    assert not re.search(r"https?:|src=|<link|<script", text)
    code, out = sample(capsys, f"--out_dir={arcdata.out}", f"--puzzle={arcdata.root / 'ev.json'}", f"--html={page}")
    root = ET.fromstring(page.read_text())
    assert code == 0 and ".a3{background:#2ecc40}" in page.read_text()
    assert any(td.get("class").startswith("a") for td in root.iter("td"))

# -----------------------------------------------------------------------------
# scoring a split, test-time compute


def test_refinement_curve_has_one_value_per_step(sudoku, capsys):
    code, out = sample(capsys, f"--out_dir={sudoku.out}", "--split=test")
    rows = curve(out)
    assert code == 0 and [s for s, _, _ in rows] == [1, 2, 3, 4]
    assert f"exact {rows[-1][1]:.4f}, token {rows[-1][2]:.4f}" in out
    assert re.search(r"^8 examples: .*ACT steps 4\.00 of 4", out, re.M)
    code, out = sample(capsys, f"--out_dir={sudoku.out}", "--split=test", "--halt_max_steps=7")
    assert code == 0 and [s for s, _, _ in curve(out)] == list(range(1, 8))
    assert curve(out)[:4] == rows  # the first steps do not depend on how many follow


def test_act_halt_stops_early_and_never_runs_past_the_maximum(maze, sudoku, capsys):
    code, out = sample(capsys, f"--out_dir={maze.out}", "--split=test", "--act_halt=True")
    assert code == 0, out
    assert re.search(r"^act_halt: ACT steps 1\.00 of 4 \(4\.00x less compute\), [0-9.]+ s vs [0-9.]+ s", out, re.M)
    code, out = sample(capsys, f"--out_dir={maze.out}", f"--puzzle={maze.file}", "--act_halt=True", "--show_steps=True")
    assert code == 0 and "act_halt: 1.00 of 4 steps" in out and re.findall(r"step (\d+)/4", out) == ["1"]
    # a model that never halts runs the maximum, however many steps that is
    for n in (2, 5):
        code, out = sample(capsys, f"--out_dir={sudoku.out}", "--split=test", "--act_halt=True",
                           f"--halt_max_steps={n}")
        used = float(re.search(r"^act_halt: ACT steps ([0-9.]+) of (\d+)", out, re.M).group(1))
        assert code == 0 and used <= n and len(curve(out)) == n


def test_arc_split_pass_at_k_and_submission(arcdata, capsys):
    code, out = sample(capsys, f"--out_dir={arcdata.out}", "--split=test")
    assert code == 0, out
    assert re.search(r"pass@1 +pass@2 +pass@5", out) and "1 tasks" in out
    with open(os.path.join(arcdata.out, "submission.json")) as f:
        submission = json.load(f)
    assert list(submission) == ["ev"] and len(submission["ev"]) == 2
    assert set(submission["ev"][0]) == {"attempt_1", "attempt_2"}


def test_authors_checkpoint_with_a_config_file(sudoku, capsys, tmp_path):
    ckpt = torch.load(os.path.join(sudoku.out, "ckpt.pt"), weights_only=True)
    model = TRM(TRMConfig(**ckpt["model_args"]), verbose=False)
    model.load_state_dict({**ckpt["model"], **ckpt["ema"]})  # the EMA weights, as sample.py evaluates
    torch.save(to_authors(model.state_dict()), tmp_path / "authors.pt")
    (tmp_path / "cfg.py").write_text("".join(f"{k} = {v!r}\n" for k, v in ARCH.items()) + "lr = 1e-4\n")
    _, ours = sample(capsys, f"--out_dir={sudoku.out}", "--split=test")
    code, out = sample(capsys, f"--init_from={tmp_path / 'authors.pt'}", f"--config={tmp_path / 'cfg.py'}",
                       f"--data_dir={sudoku.data}", "--split=test")
    assert code == 0 and "the authors' weights" in out and curve(out) == curve(ours)

# -----------------------------------------------------------------------------
# bad input: one clear line, a non-zero exit code


class Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_bad_inputs_give_one_clear_line(sudoku, maze, arcdata, capsys, tmp_path):
    (tmp_path / "big.txt").write_text("\n".join(["#" * 31] * 31))
    (tmp_path / "odd.txt").write_text(maze.text.replace("#", "x", 1))
    big = dict(train=[dict(input=[[0] * 31], output=[[0]])], test=[dict(input=[[1]], output=[[1]])])
    (tmp_path / "big.json").write_text(json.dumps(big))
    torch.save({"weights": Exploit()}, tmp_path / "evil.pt")
    torch.save(to_authors(TRM(TRMConfig(**ARCH, seq_len=81, vocab_size=11), verbose=False).state_dict()),
               tmp_path / "authors9.pt")
    (tmp_path / "cfg.py").write_text("".join(f"{k} = {v!r}\n" for k, v in ARCH.items()))
    S, M, A = f"--out_dir={sudoku.out}", f"--out_dir={maze.out}", f"--out_dir={arcdata.out}"
    cases = [
        ([S, "--puzzle=1.3"], "a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got 3"),
        ([S, "--puzzle=x" + "." * 15], "unknown character 'x' in the puzzle: use digits 1-4"),
        ([S, "--puzzle=5" + "." * 15], "unknown character '5'"),
        ([S, "--puzzle=" + "." * 81], "this model solves 4x4 Sudoku, the puzzle is 9x9"),
        ([M, f"--puzzle={tmp_path / 'big.txt'}"], "the maze is 31x31, larger than 30x30"),
        ([M, f"--puzzle={tmp_path / 'odd.txt'}"], "unknown character 'x' in row 1"),
        ([M, "--puzzle=missing.txt"], "missing.txt: file not found"),
        ([A, f"--puzzle={tmp_path / 'big.json'}"], "1x31 is larger than 30x30"),
        ([S, f"--data_dir={maze.data}", "--split=test"], "does not fit this checkpoint: seq_len 49, vocab 6"),
        ([f"--out_dir={tmp_path / 'none'}"], "/ckpt.pt: train one with `python train.py config/"),
        ([f"--init_from={tmp_path / 'evil.pt'}"], "refused, not a plain weights file"),
        ([S, "--puzzle=....", "--split=test"], "not both"),
        ([f"--init_from={tmp_path / 'authors9.pt'}"], "--config=config/<task>.py"),
        ([f"--init_from={tmp_path / 'authors9.pt'}", f"--config={tmp_path / 'cfg.py'}", f"--data_dir={sudoku.data}"],
         "was trained on other data than"),
        ([S, "--colour=never"], "unknown config key 'colour'"),
        ([S, "--split=test", "--samples=0"], "samples=0 is out of range: samples must be in [1, 4096]"),
        ([S, "--split=test", "--noise=-0.5"], "noise=-0.5 is out of range: noise must be in [0, 100]"),
        ([S, "--split=test", "--select=best"], "select='best' is not one of 'q', 'vote'"),
        ([S, "--scaling=x.svg"], "--scaling scores a split: add --split=test"),
    ]
    for args, message in cases:
        code, out = sample(capsys, *args)
        last = out.strip().splitlines()[-1]  # the error: one line
        assert code == 1 and message in last and len(last) < 400, (args, out)
        assert "code ran" not in out


def test_cli_exit_code_and_no_traceback(sudoku):
    r = subprocess.run([sys.executable, "sample.py", f"--out_dir={sudoku.out}", "--puzzle=12"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got 2"


def test_samples_noise_and_the_scaling_chart(sudoku, maze, capsys, tmp_path):
    code, out = sample(capsys, f"--out_dir={sudoku.out}", "--split=test", "--samples=4", "--noise=0.3", "--select=vote")
    assert code == 0 and "4 samples (noise 0.3, select vote)" in out, out
    assert "compute: 4.00x the default (4 steps x 1 sample)" in out
    assert re.search(r"any of the 4 answers .*: exact [0-9.]+, valid [0-9.]+", out)
    rows = re.findall(r"^ +\d+ +([0-9.]+) +[0-9.]+ +([0-9.]+)$", out, re.M)  # step, exact, token, valid
    assert len(rows) == 4 and all(float(v) >= float(e) for e, v in rows)  # an exact answer is valid
    chart = tmp_path / "scaling.svg"
    code, out = sample(capsys, f"--out_dir={maze.out}", "--split=test", "--noise=0.2", f"--scaling={chart}")
    assert code == 0, out
    table = re.findall(r"^ +(\d+) +(\d+) +(\d+)x +([0-9.]+) +([0-9.]+)$", out, re.M)
    assert [(int(s), int(k)) for s, k, *_ in table] == [(s, k) for k in (1, 4, 16, 64) for s in (4, 8, 16, 32)]
    assert all(int(c) == int(s) * int(k) // 4 for s, k, c, *_ in table)
    svg = ET.fromstring(chart.read_text())
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 4
    code, out = sample(capsys, f"--out_dir={maze.out}", "--puzzle=" + maze.file, "--samples=3", "--noise=0.5")
    assert code == 0 and re.search(r"^\d of the 3 trajectories end in a valid answer", out, re.M)
