"""
The checks that need a CUDA GPU (skipped without one). With the paper configs' timing, the one
call that checks a GPU machine (README, "On a GPU"):

    python -m pytest -q -rs tests/test_gpu.py && python bench.py --config=paper

Only torch, numpy and pytest are needed (no network, any torch >= 2.4): one float32 supervision
step on CUDA against the CPU with the same weights, training steps without host synchronisation,
bit-identical sign-SGD on CUDA (what keeps the ranks' puzzle tables equal), and a small model
trained a few hundred steps by train.py in bfloat16 with torch.compile, whose loss must fall.
"""
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import model as M  # noqa: E402
from optim import AdamATan2, sign_sgd_  # noqa: E402

from test_model import make_batch, randomise_, tiny_model  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("mlp_t", [False, True], ids=["attention", "mlp_t"])
def test_float32_step_on_cuda_matches_the_cpu(mlp_t):
    m = randomise_(tiny_model(mlp_t=mlp_t, pos_encodings="none" if mlp_t else "rope"), scale=0.2)
    b = make_batch(m.cfg, 6)
    P, H = m.cfg.positions, m.cfg.hidden_size
    y, z = m.y_init.expand(6, P, H).clone(), m.z_init.expand(6, P, H).clone()
    with torch.no_grad():
        ref = m.step(b["inputs"], b["puzzle_identifiers"], y, z)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # the same float32 products as the CPU
        try:
            out = m.cuda().step(b["inputs"].cuda(), b["puzzle_identifiers"].cuda(), y.cuda(), z.cuda())
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    for name, a, r in zip(("y", "z", "logits", "q_halt", "q_continue"), out, ref):
        torch.testing.assert_close(a.cpu(), r, atol=1e-4, rtol=1e-4, msg=lambda s: f"{name}: {s}")


def test_training_step_does_not_synchronise():
    m = tiny_model().cuda()
    dense = [p for _, p in m.dense_parameters()]
    opt = AdamATan2(dense, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    batch = {k: v.cuda() for k, v in make_batch(m.cfg, 4).items()}
    carry = m.initial_carry(batch)
    for i in range(3):
        torch.cuda.set_sync_debug_mode("error" if i else "default")  # step 0 creates optimizer state
        try:
            carry, loss, metrics, _ = m(carry, batch)
            loss.backward()
            opt.step()
            sign_sgd_(m.puzzle_emb.weight, m.puzzle_emb.weight.grad, 1e-3, 0.1)
            m.zero_grad(set_to_none=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_sign_sgd_is_bit_identical_on_cuda():
    """Many duplicate rows whose gradients nearly cancel: every run (every rank) must compute the
    same table, and the CPU the same signs."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 50, (4096,), generator=g)
    vals = torch.randn(4096, 64, generator=g) * 1e-3
    grad = torch.sparse_coo_tensor(rows[None], vals, (50, 64), check_invariants=False)
    weight = torch.randn(50, 64, generator=g)
    runs = []
    for _ in range(3):
        w = weight.cuda()
        sign_sgd_(w, grad.cuda(), 0.1, 0.5)
        runs.append(w.cpu())
    assert all(torch.equal(r, runs[0]) for r in runs)
    cpu = weight.clone()
    sign_sgd_(cpu, grad, 0.1, 0.5)
    assert (runs[0] != cpu).float().mean() < 0.01  # sums within rounding of each other


def test_train_py_bf16_compiled_loss_falls(tmp_path):
    data, out = tmp_path / "sudoku4", tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="4")
    r = subprocess.run([sys.executable, "prepare_sudoku.py", "--source=generate", "--size=4", "--num_train=256",
                        "--num_test=32", "--num_aug=4", f"--output_dir={data}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "train.py", f"--data_dir={data}", f"--out_dir={out}", "--hidden_size=64",
                        "--num_heads=1", "--H_cycles=2", "--L_cycles=2", "--puzzle_emb_ndim=0", "--halt_max_steps=4",
                        "--global_batch_size=64", "--max_steps=300", "--log_interval=50", "--lr=1e-3",
                        "--lr_warmup_steps=20", "--ema_rate=0.99", "--eval_interval=0", "--device=cuda"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "bfloat16, compile True" in r.stdout and "torch.compile failed" not in r.stdout, r.stdout[:2000]
    losses = [float(v) for v in re.findall(r"^step \d+/\d+ .*?: loss ([0-9.]+)", r.stdout, re.M)]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses
    r = subprocess.run([sys.executable, "sample.py", f"--out_dir={out}", "--split=test", "--device=cuda"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "32 examples: exact" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
