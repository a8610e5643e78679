"""train.py end to end on a tiny dataset the test writes: learning, two-rank gloo, exact resume,
configuration and error messages. Each run is a subprocess, as a user would run it."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configurator import configure  # noqa: E402
from data_writer import OutputDir, write_json, write_split  # noqa: E402
from puzzle_data import Progress, TrainBatches, hms, load_split  # noqa: E402

TINY = ["--hidden_size=32", "--num_heads=1", "--H_cycles=2", "--L_cycles=1", "--mlp_t=False",
        "--pos_encodings=rope", "--puzzle_emb_ndim=32", "--puzzle_emb_len=1", "--global_batch_size=32",
        "--lr=3e-3", "--lr_warmup_steps=5", "--halt_max_steps=3", "--eval_interval=0",
        "--device=cpu", "--puzzle_emb_lr=1e-2", "--weight_decay=0.1", "--puzzle_emb_weight_decay=0.1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """7 'tasks' (puzzle identifiers 1-7); the label depends on the input and the task's parity:
    x % 3 + 1 + 3 * (task % 2), so both the dense weights and the puzzle embedding have work.
    Groups hold 2 puzzles of 3 examples each, so group sampling has something to choose."""
    root = str(tmp_path_factory.mktemp("data") / "toy")
    rng = np.random.default_rng(0)
    with OutputDir(root) as d:
        for split, groups in (("train", 64), ("test", 8)):
            n = groups * 2 * 3
            x = rng.integers(1, 7, size=(n, 10))
            ids = np.repeat(np.arange(groups * 2) % 7 + 1, 3)
            y = x % 3 + 1 + 3 * (ids[:, None] % 2)
            write_split(d, split, x, y, np.arange(groups * 2) % 7 + 1, np.arange(0, n + 1, 3),
                        np.arange(0, groups * 2 + 1, 2), vocab_size=8, num_puzzle_identifiers=8)
        write_json(os.path.join(d, "identifiers.json"), ["<blank>"] + [f"t{i}" for i in range(1, 8)])
    return root


def train(*args, nproc=1, check=True):
    cmd = [sys.executable, "train.py", *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_port=29517", "train.py", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def log_values(stdout, key):
    return [float(v) for v in re.findall(rf"^step \d+/\d+ .*? {key} ([0-9.]+)", stdout, re.M)]


def test_training_lowers_loss_and_raises_accuracy(data, tmp_path):
    r = train(*TINY, f"--data_dir={data}", f"--out_dir={tmp_path}", "--max_steps=120", "--log_interval=20")
    loss, acc = log_values(r.stdout, "loss"), log_values(r.stdout, "acc")
    assert len(loss) == 6
    assert loss[-1] < 0.8 * loss[0], (loss, acc)
    assert acc[-1] > acc[0] + 0.25, (loss, acc)
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 120 and ckpt["config"]["max_steps"] == 120
    assert ckpt["dataset"]["num_puzzle_identifiers"] == 8 and ckpt["model_args"]["hidden_size"] == 32
    # the puzzle embedding learned: rows of the tasks moved, the blank row 0 (never used) did not
    table = ckpt["model"]["puzzle_emb.weight"]
    assert table[0].abs().max() == 0 and table[1:].abs().min(dim=1).values.gt(0).all()


def test_two_ranks_match_one(data, tmp_path):
    # no exploration: its draws are per rank by design, so halting would differ from one process
    args = [*TINY, f"--data_dir={data}", "--max_steps=12", "--log_interval=4", "--halt_exploration_prob=0.0"]
    two = train(*args, f"--out_dir={tmp_path / 'two'}", nproc=2)
    assert "weights identical on all 2 ranks: True" in two.stdout
    train(*args, f"--out_dir={tmp_path / 'one'}")
    a = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=2e-5, rtol=1e-4, msg=k)
    assert a["model"]["puzzle_emb.weight"].abs().sum() > 0  # the embedding rows were trained


def test_resume_continues_exactly(data, tmp_path):
    # a cosine schedule (lr_min_ratio < 1) so the schedule position matters
    args = [*TINY, f"--data_dir={data}", "--epochs=20", "--lr_min_ratio=0.1", "--log_interval=5"]
    train(*args, f"--out_dir={tmp_path / 'straight'}", "--max_steps=16")
    train(*args, f"--out_dir={tmp_path / 'split'}", "--max_steps=8")
    r = train(*args, f"--out_dir={tmp_path / 'split'}", "--max_steps=16", "--init_from=resume")
    assert "resumed from step 8" in r.stdout
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 16 and a["data"] == b["data"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5, msg=k)
    assert a["ema"].keys() == b["ema"].keys()
    for k in a["ema"]:
        torch.testing.assert_close(a["ema"][k], b["ema"][k], atol=1e-6, rtol=1e-5, msg=k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(sa[i]["step"] == sb[i]["step"] == 16 for i in sa)
    for i in sa:
        torch.testing.assert_close(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"], atol=1e-9, rtol=1e-5)


def test_clear_errors(data, tmp_path):
    r = train(f"--data_dir={tmp_path / 'nope'}", "--device=cpu", check=False)
    assert r.returncode != 0 and "dataset.json not found" in r.stderr and "prepare" in r.stderr
    r = train(*TINY, f"--data_dir={data}", f"--out_dir={tmp_path / 'empty'}", "--init_from=resume", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = train("--lrr=1", check=False)
    assert r.returncode != 0 and "unknown config key 'lrr'" in r.stderr and "lr" in r.stderr
    env = dict(os.environ, RANK="0", WORLD_SIZE="3", LOCAL_RANK="0")
    r = subprocess.run([sys.executable, "train.py", *TINY, f"--data_dir={data}"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0 and "not divisible by the 3 ranks" in r.stderr
    assert "Traceback" not in r.stderr


def test_configurator(tmp_path):
    ns = dict(lr=1e-4, epochs=10, device="", compile=False, _private=1)
    rules = dict(lr="(0, 1]", epochs="[1, inf)")
    cfg_file = tmp_path / "c.py"
    cfg_file.write_text("lr = 3e-4\nepochs = 20\nimport math\n_x = 5\n")
    out = configure(ns, rules, [str(cfg_file), "--epochs=30", "--device=cuda:1", "--compile=True"])
    assert out == dict(lr=3e-4, epochs=30, device="cuda:1", compile=True)  # file, then overrides
    assert configure(dict(lr=1e-4), rules, ["--lr=1"])["lr"] == 1.0 and configure(dict(s="a"), {}, ["--s=123"])["s"] == "123"
    with pytest.raises(SystemExit, match="'epochs' must be int"):
        configure(dict(epochs=10), rules, ["--epochs=1.5"])
    with pytest.raises(SystemExit, match="must be bool"):
        configure(dict(compile=False), {}, ["--compile=1"])
    with pytest.raises(SystemExit, match="unknown config key 'epoch'; did you mean epochs"):
        configure(dict(epochs=10), rules, ["--epoch=3"])
    bad = tmp_path / "bad.py"
    bad.write_text("learning_rate = 1\n")
    with pytest.raises(SystemExit, match="bad.py: unknown config key 'learning_rate'"):
        configure(dict(lr=1e-4), rules, [str(bad)])
    with pytest.raises(AssertionError, match="settings without a range: \\['epochs'\\]"):
        configure(dict(lr=1e-4, epochs=10), dict(lr="(0, 1]"), [])  # every number needs a rule


def test_group_sampling_and_rank_slices(data):
    _, arrays = load_split(data, "train")
    one = TrainBatches(arrays, 32, seed=3)
    ranks = [TrainBatches(arrays, 32, rank=r, world_size=2, seed=3) for r in range(2)]
    for _ in range(15):  # crosses epochs (an epoch is 64 groups x 3 examples = 192 examples)
        b = next(one)
        halves = [next(t) for t in ranks]
        for k in b:  # the two ranks' slices are exactly the single process's batch
            np.testing.assert_array_equal(b[k], np.concatenate([h[k] for h in halves]))
    ex = one.epoch_examples(0)
    assert len(ex) == 192  # one puzzle of 3 examples per group
    groups = np.searchsorted(arrays["group_indices"], arrays["example_puzzle"][ex], side="right") - 1
    assert sorted(set(groups.tolist())) == list(range(64)) and len(set(ex.tolist())) == 192
    assert (ex != TrainBatches(arrays, 32, seed=4).epoch_examples(0)).any()  # the seed matters


def test_eta_counts_the_time_limit_and_the_step_limit(data, tmp_path):
    r = train(*TINY, f"--data_dir={data}", f"--out_dir={tmp_path}", "--epochs=100000", "--max_time=3",
              "--log_interval=5")
    eta = [int(m) * 60 + int(s) for m, s in re.findall(r" ETA (\d+)m(\d\d)s$", r.stdout, re.M)]
    assert eta and max(eta) <= 3 and "or after 3 s of training" in r.stdout  # not the 100000 epochs' hours
    r = train(*TINY, f"--data_dir={data}", f"--out_dir={tmp_path}", "--epochs=100000", "--max_steps=40",
              "--log_interval=10")
    lines = re.findall(r"^step (\d+)/40 .* (\d+) ms/step .* ETA (\d+)m(\d\d)s$", r.stdout, re.M)
    assert [int(s) for s, *_ in lines] == [10, 20, 30, 40]
    for step, ms, m, s in lines:  # the steps left at the last interval's speed
        assert abs(int(m) * 60 + int(s) - (40 - int(step)) * int(ms) / 1000) <= 1


def test_float16_is_refused(data, tmp_path):
    r = train(*TINY, f"--data_dir={data}", f"--out_dir={tmp_path}", "--dtype=float16", check=False)
    assert r.returncode != 0 and "dtype='float16' is not one of" in r.stderr and "Traceback" not in r.stderr


def test_progress_is_quiet_when_piped_unless_asked(monkeypatch, capsys):
    import io
    for show, lines in ((None, 0), (False, 0), (True, 10)):
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
        bar = Progress(1000, "scoring", show)
        for done in range(0, 1001, 10):
            bar.update(done)
        out = sys.stderr.getvalue().splitlines()
        assert len(out) == lines, (show, out)  # a plain line every 10%
    assert out[-1].startswith("scoring: 1,000/1,000 (100%)") and " ETA 0m00s" in out[-1]
    assert hms(59) == "0m59s" and hms(3599) == "59m59s" and hms(7322) == "2h02m"
