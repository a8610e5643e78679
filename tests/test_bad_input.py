"""Nothing a user types may destroy their files, crash with a traceback, or train on garbage.

Every case is a command line a user could type, run in a folder of theirs (their notes.txt, a small
dataset data/s4, a trained model in run/): it must fail with exit code != 0 and exactly one line on
stderr naming the file, line or key and what was expected, no traceback, and leave the folder as it
was (nothing new, nothing changed, nothing removed). Bad numbers are given with no dataset at the
default data_dir and no checkpoint at the default out_dir, and bad output folders with a build that
would take minutes, so a check that came after loading, building or generating would fail the case.

The command lines run through tests/warm_run.py (a fork of a process that imported torch once, as
`python script args` would run them; test_warm_runs_are_real_runs compares the two).
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data_writer import OutputDir, write_json, write_split  # noqa: E402

TIMEOUT, MEMORY = 5, 2 << 30  # a run that is rejected takes well under a second and 1 GiB
BASE = {  # before each case's own arguments (a later --key=value wins)
    "prepare_sudoku.py": "--source=generate --size=4 --num_train=20 --num_test=5 --num_aug=1 --output_dir=data/new",
    "prepare_maze.py": "--source=generate --size=7 --num_train=5 --num_test=3 --output_dir=data/new",
    "prepare_arc.py": "--num_aug=0 --no_conceptarc --output_dir=data/new",
    "train.py": "--out_dir=new_out --device=cpu --max_steps=2 --hidden_size=16 --num_heads=1 --H_cycles=1 --L_cycles=1 "
                "--L_layers=1 --puzzle_emb_ndim=0 --puzzle_emb_len=0 --halt_max_steps=2 --global_batch_size=8 --eval_interval=0",
    "sample.py": "--device=cpu",
}
SLOW = "--size=9 --num_train=100000"  # minutes of generating: the output folder must be refused first

# -----------------------------------------------------------------------------
# the files a case may ask for, made in the user's folder

A = "1234341221434321"                                   # a solved 4x4 Sudoku
Q = "".join("." if i % 3 else c for i, c in enumerate(A))  # a question of it
HEAD = "source,question,answer,rating\n"
MAZE = ["#######", "#S    #", "##### #", "#     #", "# #####", "#    G#", "#######"]
PATH = ["#######", "#Soooo#", "#####o#", "#ooooo#", "#o#####", "#ooooG#", "#######"]
MQ, MA = "".join(MAZE), "".join(PATH)
FLIP = dict(train=[dict(input=[[1, 2]], output=[[2, 1]])], test=[dict(input=[[3, 4]], output=[[4, 3]])])


class Exploit:  # a pickle that runs code when loaded
    def __reduce__(self):
        return (print, ("code ran",))


def dataset(path, seq_len=16, vocab=6, split_sizes=None, edit=None):
    """A small valid dataset at path (train and test), then `edit(path)` to break it."""
    rng = np.random.default_rng(0)
    with OutputDir(path) as d:
        for split in ("train", "test"):
            n = (split_sizes or {}).get(split, seq_len)
            x = rng.integers(1, vocab, (8, n))
            write_split(d, split, x, x, np.zeros(8), np.arange(9), np.arange(9), vocab_size=vocab, num_puzzle_identifiers=1)
        write_json(os.path.join(d, "identifiers.json"), ["<blank>"])
    if edit:
        edit(path)


def drop_key(path, key):
    with open(path) as f:
        meta = json.load(f)
    del meta[key]
    with open(path, "w") as f:
        json.dump(meta, f)


def unknown_field(shared, path):  # a checkpoint whose model_args this code's TRMConfig does not have
    ckpt = torch.load(shared / "run" / "ckpt.pt", weights_only=True)
    torch.save(dict(ckpt, model_args=dict(ckpt["model_args"], colour=1)), path)


def files(shared):
    """name -> contents (str, bytes) or a function of the path that makes it."""
    sd = lambda: torch.load(shared / "run" / "ckpt.pt", weights_only=True)["model"]
    return {
        # Sudoku CSV
        "good.csv": HEAD + f"s,{Q},{A},0\n",
        "empty.csv": "",
        "header.csv": HEAD,
        "cr.csv": (HEAD + f"s,{Q},{A},0\n").replace("\n", "\r"),
        "five.csv": HEAD + f'"a, b",{Q},{A},0,extra\n',
        "latin.csv": (HEAD + f"s,{Q[:-1]}\xe9,{A},0\n").encode("latin-1"),
        "wrong.csv": HEAD + f"s,{Q},{A[:-2]}11,0\n",
        # maze CSV
        "mgood.csv": HEAD + f"s,{MQ},{MA},0\n",
        "mempty.csv": "",
        "mheader.csv": HEAD,
        "mfive.csv": HEAD + f"s,{MQ},{MA},0,extra\n",
        "mlatin.csv": (HEAD + f"s,{MQ[:-1]}\xe9,{MA},0\n").encode("latin-1"),
        "mbadpath.csv": HEAD + f"s,{MQ},{MQ.replace(' ', 'o', 3)},0\n",
        # ARC tasks
        "tasks3d": lambda p: (os.makedirs(p), write_json(f"{p}/a.json", dict(FLIP, train=[dict(input=[[[1]]], output=[[1]])]))),
        "badjson": lambda p: (os.makedirs(p), open(f"{p}/a.json", "w").write('{"train": [')),
        "big": lambda p: (os.makedirs(p), write_json(f"{p}/a.json", dict(FLIP, train=[dict(input=[[0] * 31], output=[[1]])]))),
        "ragged": lambda p: (os.makedirs(p), write_json(f"{p}/a.json", dict(FLIP, train=[dict(input=[[1], [1, 2]], output=[[1]])]))),
        "listtask_challenges.json": json.dumps({"a": [FLIP]}),
        "listtask_solutions.json": json.dumps({"a": [[[4, 3]]]}),
        "list_challenges.json": json.dumps([FLIP]),
        "sep_challenges.json": json.dumps({"x|||y": FLIP}),
        "sep_solutions.json": json.dumps({"x|||y": [[[4, 3]]]}),
        "nosol_challenges.json": json.dumps({"a": FLIP}),
        "allbad_challenges.json": json.dumps({"a": dict(FLIP, train=[])}),
        "t3d.json": json.dumps(dict(FLIP, train=[dict(input=[[[1]]], output=[[1]])])),
        "tlist.json": json.dumps([FLIP]),
        "a|||b.json": json.dumps(FLIP),
        # checkpoints
        "evil.pt": lambda p: torch.save({"w": Exploit()}, p),
        "trunc.pt": lambda p: open(p, "wb").write((shared / "run" / "ckpt.pt").read_bytes()[:1000]),
        "list.pt": lambda p: torch.save([torch.zeros(2)], p),
        "plain.pt": lambda p: torch.save(sd(), p),
        "badfield.pt": lambda p: unknown_field(shared, p),
        "mine/ckpt.pt": "my notes, not a checkpoint",
        # datasets
        "corrupt": lambda p: dataset(p, edit=lambda d: open(f"{d}/train/all__inputs.npy", "r+b").truncate(100)),
        "nometa": lambda p: dataset(p, edit=lambda d: drop_key(f"{d}/train/dataset.json", "total_groups")),
        "floatids": lambda p: dataset(p, edit=lambda d: np.save(f"{d}/train/all__puzzle_identifiers.npy", np.full(8, 0.5))),
        "mixed": lambda p: dataset(p, split_sizes=dict(test=9)),
        "other9": lambda p: dataset(p, seq_len=9),
        # config files
        "bad_syntax.py": "lr = 1e-3\nhidden_size = = 3\n",
        "bad_name.py": "lr = foo\n",
        "bad_key.py": "hidden_sise = 32\n",
        "bad_type.py": "hidden_size = 'big'\n",
        "bad_range.py": "lr = -3.0\n",
        "bad_choice.py": "dtype = 'float64'\n",
        "bad_enc.py": b"\xff\xfe lr = 1\n",
        "arch.py": "hidden_size = 16\nnum_heads = 1\n",
        # puzzles for sample.py
        "bom15.txt": ("\ufeff" + A[:15]).encode("utf-8"),
        "data/theirs/keep.txt": "a user's file in a folder named like a dataset",
        "adir": lambda p: os.makedirs(p),
    }


def make(root, name, content):
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if callable(content):
        content(path)
    else:
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)

# -----------------------------------------------------------------------------
# the cases: (script, arguments after BASE, files to make, what the one line of stderr must say)


CASES = [
    # prepare_sudoku.py
    ("prepare_sudoku.py", "--num_aug=-1", "", "argument --num_aug/--num-aug: -1 is out of range [0, 100000]"),
    ("prepare_sudoku.py", "--num_train=0", "", "argument --num_train: 0 is out of range [1, inf)"),
    ("prepare_sudoku.py", "--subsample_size=-5", "", "argument --subsample_size/--subsample-size: -5 is out of range"),
    ("prepare_sudoku.py", "--min_givens=100", "", "--min_givens=100: a 4x4 grid has 16 cells"),
    ("prepare_sudoku.py", "--size=9 --max_givens=16", "", "--max_givens=16: a 9x9 Sudoku with one solution has at least 17"),
    ("prepare_sudoku.py", "--seed=1.5", "", "argument --seed: '1.5' is not an int"),
    ("prepare_sudoku.py", f"{SLOW} --output_dir=notes.txt", "", "notes.txt exists and is not a folder"),
    ("prepare_sudoku.py", f"{SLOW} --output_dir=data/theirs", "data/theirs/keep.txt", "data/theirs exists and it has no .trm-dataset"),
    ("prepare_sudoku.py", f"{SLOW} --output_dir=notes.txt/new", "", "notes.txt/new: cannot write a dataset there"),
    ("prepare_sudoku.py", "--source=csv --train_csv=empty.csv --test_csv=good.csv", "empty.csv good.csv", "empty.csv: no train puzzles"),
    ("prepare_sudoku.py", "--source=csv --train_csv=header.csv --test_csv=good.csv", "header.csv good.csv", "header.csv: no train puzzles"),
    ("prepare_sudoku.py", "--source=csv --train_csv=good.csv --test_csv=cr.csv", "good.csv cr.csv", "cr.csv: lines end in a bare CR"),
    ("prepare_sudoku.py", "--source=csv --train_csv=five.csv --test_csv=good.csv", "five.csv good.csv",
     "five.csv:2: expected 4 columns source,question,answer,rating, got 5"),
    ("prepare_sudoku.py", "--source=csv --train_csv=latin.csv --test_csv=good.csv", "latin.csv good.csv", "latin.csv:2: question has"),
    ("prepare_sudoku.py", "--source=csv --train_csv=wrong.csv --test_csv=good.csv", "wrong.csv good.csv",
     "wrong.csv:2: answer is not a solved grid"),
    ("prepare_sudoku.py", "--source=csv --train_csv=good.csv --test_csv=good.csv --min_difficulty=5", "good.csv",
     "good.csv: no train puzzles rated >= 5"),
    ("prepare_sudoku.py", "--source=csv --train_csv=good.csv --test_csv=missing.csv", "good.csv", "missing.csv: no such file"),
    ("prepare_sudoku.py", "--source=csv --size=6 --train_csv=good.csv --test_csv=good.csv", "good.csv",
     "good.csv:2: question has 16 characters, expected 36"),
    # prepare_maze.py
    ("prepare_maze.py", "--loops=nan", "", "argument --loops: nan is out of range [0, 1000]"),
    ("prepare_maze.py", "--size=5", "", "argument --size: 5 is out of range [7, 200]"),
    ("prepare_maze.py", "--num_test=0", "", "argument --num_test: 0 is out of range [1, inf)"),
    ("prepare_maze.py", "--min_path_len=49", "", "--min_path_len=49: a 7x7 maze has 49 cells"),
    ("prepare_maze.py", "--size=200 --num_train=100000 --output_dir=notes.txt", "", "notes.txt exists and is not a folder"),
    ("prepare_maze.py", "--source=csv --train_csv=mgood.csv", "mgood.csv", "--source=csv needs --train_csv and --test_csv"),
    ("prepare_maze.py", "--source=csv --train_csv=mempty.csv --test_csv=mgood.csv", "mempty.csv mgood.csv",
     "mempty.csv:1: expected the header source,question,answer,rating"),
    ("prepare_maze.py", "--source=csv --train_csv=mheader.csv --test_csv=mgood.csv", "mheader.csv mgood.csv",
     "mheader.csv: no valid mazes"),
    ("prepare_maze.py", "--source=csv --train_csv=mfive.csv --test_csv=mgood.csv", "mfive.csv mgood.csv",
     "mfive.csv:2: 5 columns, expected 4"),
    ("prepare_maze.py", "--source=csv --train_csv=mlatin.csv --test_csv=mgood.csv", "mlatin.csv mgood.csv",
     "mlatin.csv:2: question holds bytes that are not UTF-8"),
    ("prepare_maze.py", "--source=csv --train_csv=mgood.csv --test_csv=mbadpath.csv", "mgood.csv mbadpath.csv",
     "mbadpath.csv:2: the 'o' cells are not a shortest path"),
    ("prepare_maze.py", "--source=csv --train_csv=mgood.csv --test_csv=mgood.csv --size=9", "mgood.csv",
     "mgood.csv:2: question has 49 characters, expected 81"),
    ("prepare_maze.py", "--source=csv --train_csv=missing.csv --test_csv=mgood.csv", "mgood.csv", "missing.csv: no such file"),
    # prepare_arc.py
    ("prepare_arc.py", "--num_aug=-1", "", "argument --num_aug: -1 is out of range [0, 100000]"),
    ("prepare_arc.py", "--output_dir=notes.txt", "", "notes.txt exists and is not a folder"),
    ("prepare_arc.py", "--extra_dir=tasks3d", "tasks3d", "tasks3d/a.json: task a train example 0 input: a cell holds a list"),
    ("prepare_arc.py", "--extra_dir=badjson", "badjson", "badjson/a.json: not valid JSON"),
    ("prepare_arc.py", "--extra_dir=big", "big", "big/a.json: task a train example 0 input: 1x31 is larger than 30x30"),
    ("prepare_arc.py", "--extra_dir=ragged", "ragged", "ragged/a.json: task a train example 0 input: not rectangular"),
    ("prepare_arc.py", "--extra_dir=nodir", "", "nodir: no such folder"),
    ("prepare_arc.py", "--extra_kaggle=listtask", "listtask_challenges.json listtask_solutions.json",
     'listtask_challenges.json: task a: expected {"train": [...], "test": [...]}, got a list'),
    ("prepare_arc.py", "--extra_kaggle=list", "list_challenges.json", "list_challenges.json: expected {task id: task}, got a list"),
    ("prepare_arc.py", "--extra_kaggle=sep", "sep_challenges.json sep_solutions.json",
     "sep_challenges.json: task x|||y: a task name may not contain '|||'"),
    ("prepare_arc.py", "--extra_kaggle=nosol", "nosol_challenges.json", "nosol_solutions.json not found"),
    ("prepare_arc.py", "--test_kaggle=missing", "", "missing_challenges.json: cannot read it (No such file or directory)"),
    ("prepare_arc.py", "--test_kaggle=allbad --skip_invalid", "allbad_challenges.json", "no evaluation tasks left"),
    # train.py: numbers and choices (no dataset at the default data_dir: they are refused before it is read)
    ("train.py", "--global_batch_size=-4", "", "global_batch_size=-4 is out of range: global_batch_size must be in [1, 1048576]"),
    ("train.py", "--global_batch_size=0", "", "global_batch_size=0 is out of range"),
    ("train.py", "--log_interval=0", "", "log_interval=0 is out of range: log_interval must be in [1, inf)"),
    ("train.py", "--num_heads=0", "", "num_heads=0 is out of range"),
    ("train.py", "--L_cycles=-1", "", "L_cycles=-1 is out of range"),
    ("train.py", "--max_steps=-5", "", "max_steps=-5 is out of range: max_steps must be in [0, inf)"),
    ("train.py", "--lr=-1", "", "lr=-1.0 is out of range: lr must be in (0, 1]"),
    ("train.py", "--ema_rate=2", "", "ema_rate=2.0 is out of range: ema_rate must be in [0, 1)"),
    ("train.py", "--lr=1e999", "", "lr=inf is out of range"),
    ("train.py", "--device=tpu", "", "device='tpu' is not a device: use cpu, cuda, cuda:N or mps"),
    ("train.py", "--dtype=float16", "", "dtype='float16' is not one of '', 'float32', 'bfloat16'"),
    ("train.py", "--loss_type=foo", "", "loss_type='foo' is not one of 'stablemax', 'softmax'"),
    ("train.py", "--data_dir=data/s4 --global_batch_size=1000000000000", "", "global_batch_size=1000000000000 is out of range"),
    ("train.py", "--data_dir=data/s4 --hidden_size=100000000", "", "hidden_size=100000000 is out of range"),
    ("train.py", "--data_dir=data/s4 --eval_interval=1 --eval_batch_size=1000000000000", "",
          "eval_batch_size=1000000000000 is out of range"),
    ("train.py", "--data_dir=data/s4 --freeze_weights=True", "", "freeze_weights=True trains only the puzzle embedding"),
    ("train.py", "--data_dir=data/s4 --wandb_log=True", "", "pip install wandb"),
    # train.py: files
    ("train.py", "--data_dir=notes.txt", "", "notes.txt/train/dataset.json not found: notes.txt is not a folder"),
    ("train.py", "--data_dir=corrupt", "corrupt", "corrupt/train/all__inputs.npy: cannot read it"),
    ("train.py", "--data_dir=nometa", "nometa", "nometa/train/dataset.json: 'total_groups' must be a positive whole number"),
    ("train.py", "--data_dir=floatids", "floatids", "floatids/train: puzzle_identifiers, puzzle_indices and group_indices must be integer"),
    ("train.py", "--data_dir=mixed --eval_interval=1", "mixed", "mixed/test/dataset.json: seq_len 9, vocab_size 6, num_puzzle_identifiers 1 "
     "differ from the train split's 16, 6, 1"),
    ("train.py", "--data_dir=data/s4 --init_from=evil.pt", "evil.pt", "evil.pt: refused, not a plain weights file: loading it could run code"),
    ("train.py", "--data_dir=data/s4 --init_from=trunc.pt", "trunc.pt", "trunc.pt: cannot read it, the file is truncated or damaged"),
    ("train.py", "--data_dir=data/s4 --init_from=notes.txt", "", "notes.txt: not a checkpoint file"),
    ("train.py", "--data_dir=data/s4 --init_from=list.pt", "list.pt", "list.pt: holds a list, not a train.py checkpoint or a state dict"),
    ("train.py", "--data_dir=data/s4 --init_from=run/ckpt.pt --hidden_size=32", "",
     "run/ckpt.pt: the weights do not fit the model: mis-shaped 7 (embed_tokens.weight (6, 16) (model (6, 32))"),
    ("train.py", "--data_dir=data/s4 --init_from=resume", "", "init_from='resume' but new_out/ckpt.pt does not exist"),
    ("train.py", "--data_dir=data/s4 --out_dir=notes.txt", "", "out_dir='notes.txt': cannot write checkpoints there"),
    ("train.py", "--data_dir=data/s4 --out_dir=mine", "mine/ckpt.pt", "mine/ckpt.pt: not a checkpoint file"),
    ("train.py", "--out_dir=notes.txt/new", "", "out_dir='notes.txt/new': cannot write checkpoints there"),
    # sample.py (no checkpoint at the default out_dir: numbers are refused before it is read)
    ("sample.py", "--batch_size=0", "", "batch_size=0 is out of range: batch_size must be in [1, inf)"),
    ("sample.py", "--max_examples=-1", "", "max_examples=-1 is out of range"),
    ("sample.py", "--split=nonexistent", "", "split='nonexistent' is not one of '', 'train', 'test'"),
    ("sample.py", "--samples=0", "", "samples=0 is out of range: samples must be in [1, 4096]"),
    ("sample.py", "--device=cuda", "", "device='cuda' is not available on this machine"),
    ("sample.py", "--out_dir=nowhere", "", "no checkpoint at nowhere/ckpt.pt: train one with `python train.py"),
    ("sample.py", "--init_from=evil.pt", "evil.pt", "evil.pt: refused, not a plain weights file"),
    ("sample.py", "--init_from=trunc.pt", "trunc.pt", "trunc.pt: cannot read it, the file is truncated or damaged"),
    ("sample.py", "--init_from=notes.txt", "", "notes.txt: not a checkpoint file"),
    ("sample.py", "--init_from=badfield.pt", "badfield.pt", "badfield.pt: its model_args do not fit this code's TRMConfig"),
    ("sample.py", "--out_dir=run --split=train --data_dir=corrupt", "corrupt", "corrupt/train/all__inputs.npy: cannot read it"),
    ("sample.py", "--out_dir=run --split=test --data_dir=notes.txt", "", "notes.txt is not a folder"),
    ("sample.py", "--out_dir=run --split=test --data_dir=other9", "other9", "other9/test does not fit this checkpoint: seq_len 9"),
    ("sample.py", "--out_dir=run --index=99", "", "--index=99: data/s4/test has 5 examples"),
    ("sample.py", "--out_dir=run --puzzle=12", "", "a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got 2"),
    ("sample.py", "--out_dir=run --puzzle=bom15.txt", "bom15.txt", "bom15.txt: a Sudoku has 16, 36 or 81 cells ('.' or '0' for a blank), got 15"),
    ("sample.py", "--out_dir=run --html=notes.txt", "", "notes.txt exists and was not written by sample.py"),
    ("sample.py", "--out_dir=arc --puzzle=t3d.json", "t3d.json", "t3d.json: task t3d train example 0 input: a cell holds a list"),
    ("sample.py", "--out_dir=arc --puzzle=tlist.json", "tlist.json", 'tlist.json: task tlist: expected {"train": [...], "test": [...]}'),
    ("sample.py", "--out_dir=arc --puzzle=a|||b.json", "a|||b.json", "a|||b.json: task a|||b: a task name may not contain '|||'"),
    # the configurator: config files and --key=value, through train.py and sample.py
    ("train.py", "bad_syntax.py", "bad_syntax.py", "bad_syntax.py:2: SyntaxError: invalid syntax"),
    ("train.py", "bad_name.py", "bad_name.py", "bad_name.py:1: NameError: name 'foo' is not defined"),
    ("train.py", "bad_key.py", "bad_key.py", "bad_key.py: unknown config key 'hidden_sise'; did you mean hidden_size?"),
    ("train.py", "bad_type.py", "bad_type.py", "bad_type.py: 'hidden_size' must be int like its default 512, got str 'big'"),
    ("train.py", "bad_range.py", "bad_range.py", "bad_range.py: lr=-3.0 is out of range: lr must be in (0, 1]"),
    ("train.py", "bad_choice.py", "bad_choice.py", "bad_choice.py: dtype='float64' is not one of"),
    ("train.py", "bad_enc.py", "bad_enc.py", "cannot read config file bad_enc.py: 'utf-8' codec can't decode"),
    ("train.py", "missing.py", "", "cannot read config file missing.py: No such file or directory"),
    ("train.py", "adir", "adir", "cannot read config file adir: Is a directory"),
    ("train.py", "--lr", "", "override '--lr' must look like --key=value"),
    ("train.py", "--hidden_size=1.5", "", "--hidden_size=1.5: 'hidden_size' must be int like its default 512, got float 1.5"),
    ("train.py", "--lr=nan", "", "lr=nan is out of range: lr must be in (0, 1]"),
    ("train.py", "--compile=maybe", "", "compile='maybe' is not one of None, True, False"),
    ("train.py", "--lrr=0.1", "", "--lrr=0.1: unknown config key 'lrr'; did you mean lr"),
    ("sample.py", "--colour=never", "", "--colour=never: unknown config key 'colour'; did you mean color?"),
    ("sample.py", "--show_steps=yes", "", "--show_steps=yes: 'show_steps' must be bool like its default False, got str 'yes'"),
    ("sample.py", "bad_range.py", "bad_range.py", "bad_range.py: unknown config key 'lr'"),
    ("sample.py", "--out_dir=run --init_from=plain.pt --config=bad_syntax.py --data_dir=data/s4", "plain.pt bad_syntax.py",
     "bad_syntax.py:2: SyntaxError: invalid syntax"),
]

# -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """run(cwd, script, args) -> (exit code, stdout, stderr), through tests/warm_run.py."""
    logs = tmp_path_factory.mktemp("logs")
    warm = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "warm_run.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))

    def run(cwd, script, args, timeout=TIMEOUT):
        out, err = logs / "stdout", logs / "stderr"
        job = dict(script=os.path.join(ROOT, script), args=args, cwd=str(cwd), stdout=str(out), stderr=str(err),
                   timeout=timeout, memory=MEMORY)
        warm.stdin.write(json.dumps(job) + "\n")
        warm.stdin.flush()
        code = int(warm.stdout.readline())
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")
    yield run
    warm.stdin.close()
    warm.wait(timeout=30)


@pytest.fixture(scope="module")
def shared(run, tmp_path_factory):
    """What a user's folder holds: data/s4 (prepare_sudoku.py), run/ckpt.pt (train.py on it), and
    arc/ckpt.pt (train.py on random ARC-sized data, for sample.py's task files)."""
    root = tmp_path_factory.mktemp("shared")
    code, out, err = run(root, "prepare_sudoku.py", shlex.split(BASE["prepare_sudoku.py"]) + ["--output_dir=data/s4"], 60)
    assert code == 0, err
    code, out, err = run(root, "train.py", shlex.split(BASE["train.py"]) + ["--data_dir=data/s4", "--out_dir=run"], 60)
    assert code == 0, err
    dataset(str(root / "arcdata"), seq_len=900, vocab=12)  # the ARC sizes: 30x30 canvas, 12 tokens
    code, out, err = run(root, "train.py", shlex.split(BASE["train.py"]) + ["--data_dir=arcdata", "--out_dir=arc", "--mlp_t=False"], 60)
    assert code == 0, err
    return root


@pytest.fixture
def home(shared, tmp_path):
    """A user's folder: their notes.txt, and copies of the shared dataset and models."""
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("data", "run", "arc"):
        shutil.copytree(shared / name, tmp_path / name)
    return tmp_path


def snapshot(root):
    """Every folder and file under root, with the files' bytes."""
    return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read() if n in fs else None
            for d, ds, fs in os.walk(root) for n in ds + fs}


@pytest.mark.parametrize("script, args, needs, expect", CASES)
def test_bad_input_is_one_line_and_harmless(run, shared, home, script, args, needs, expect):
    catalogue = files(shared)
    for name in needs.split():
        make(home, name, catalogue[name])
    before = snapshot(home)
    code, out, err = run(home, script, shlex.split(BASE[script]) + shlex.split(args))
    lines = err.strip().splitlines()
    assert code > 0, f"exit code {code} (-14: timed out)\n{out[-1000:]}{err[-2000:]}"
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert expect in lines[0], lines[0]
    assert "weights_only=False" not in err and "code ran" not in out + err
    after = snapshot(home)
    assert after == before, f"left, changed or removed: {sorted(k for k in {*after, *before} if after.get(k) != before.get(k))}"


def test_warm_runs_are_real_runs(run, home):
    """tests/warm_run.py gives what `python script args` gives: exit code, stderr, a traceback."""
    make(home, "five.csv", files(home)["five.csv"])
    for script, args in (("prepare_sudoku.py", ["--source=csv", "--train_csv=five.csv", "--test_csv=five.csv"]),
                         ("train.py", shlex.split(BASE["train.py"]) + ["--data_dir=data/s4", "--freeze_weights=True"])):
        real = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=home, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
        code, out, err = run(home, script, args)
        assert (code, err.splitlines()[-1]) == (real.returncode, real.stderr.splitlines()[-1]), (err, real.stderr)
