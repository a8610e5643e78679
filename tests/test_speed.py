"""
Correctness of the speed work (no timings here; bench.py times): the positions-mixing SwiGLU as
one matrix product, torch.compile of the recursion, the float32 stablemax, the foreach AdamATan2,
sign-SGD without coalesce(), bf16 autocast and inference that drops halted samples from the
batch. The checks that need a GPU are in test_gpu.py.

    python -m pytest -q tests/test_speed.py
    TRM_TEST_COMPILE=1 python -m pytest -q tests/test_speed.py   # also inductor's generated code
"""
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402
from model import IGNORE  # noqa: E402
from optim import AdamATan2, sign_sgd_  # noqa: E402

from test_model import tiny_model as tiny  # noqa: E402  (hidden 32, rope, 2-position prefix)


def batch_for(cfg, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
                labels=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
                puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g))


def train_step(m, batch, carry=None):
    """One training step's forward and backward (from a fresh carry by default): its outputs, new
    state and loss, and the gradients."""
    carry, loss, metrics, out = m(carry or m.initial_carry(batch), batch)
    loss.backward()
    grads = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone()
             for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    return dict(loss=loss.detach(), logits=out["logits"].detach(), q=out["q_halt"].detach(),
                y=carry["y"], z=carry["z"], carry=carry), grads


# -----------------------------------------------------------------------------
# the mlp_t mixer: one (P x P-inner) matrix product over all batch * hidden columns

@pytest.mark.parametrize("B,P,H", [(3, 11, 16), (1, 40, 8)])
def test_swiglu_across_is_swiglu_on_the_transpose(B, P, H):
    torch.manual_seed(0)
    mix = M.SwiGLU(P, 4.0)
    x = torch.randn(B, P, H, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    a = mix.across(x)
    b = mix(x2.transpose(1, 2)).transpose(1, 2)  # the definition: a SwiGLU across positions
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(a)
    ga = torch.autograd.grad((a * w).sum(), [x] + list(mix.parameters()))
    gb = torch.autograd.grad((b * w).sum(), [x2] + list(mix.parameters()))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


# -----------------------------------------------------------------------------
# torch.compile of the recursion: same outputs and gradients as eager

VARIANTS = [dict(mlp_t=True, pos_encodings="none"), dict(mlp_t=False, pos_encodings="rope")]
BACKENDS = ["aot_eager"] + (["inductor"] if os.environ.get("TRM_TEST_COMPILE") else [])


@pytest.mark.parametrize("backend", BACKENDS)  # inductor (generated C++, ~1 min cold): TRM_TEST_COMPILE=1
@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_recursion_matches_eager(variant, backend):
    torch._dynamo.reset()
    small = dict(L_layers=1, L_cycles=1, **variant)  # small graphs, quick to trace and compile
    eager, compiled = tiny(**small), tiny(**small).compile_recursion(backend=backend)
    batch = batch_for(eager.cfg, 5)
    ca = cb = None
    for _ in range(2):  # a fresh carry, then the carried state
        (a, ga), (b, gb) = train_step(eager, batch, ca), train_step(compiled, batch, cb)
        ca, cb = a["carry"], b["carry"]
        for k in ("loss", "logits", "q", "y", "z"):
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4, msg=k)
        assert ga.keys() == gb.keys() and "puzzle_emb.weight" in ga
        for k in ga:
            torch.testing.assert_close(gb[k], ga[k], rtol=1e-3, atol=1e-5, msg=k)
    # the no-grad graph at evaluation, also after the batch shrinks (act_halt drops samples)
    eager.eval(), compiled.eval()
    for rows in (5, 3):
        pa, qa, _ = eager.solve(batch["inputs"][:rows], batch["puzzle_identifiers"][:rows])
        pb, qb, _ = compiled.solve(batch["inputs"][:rows], batch["puzzle_identifiers"][:rows])
        assert torch.equal(pa, pb)
        torch.testing.assert_close(qb, qa, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


# -----------------------------------------------------------------------------
# stablemax in float32 (the authors compute it in float64)

def log_stablemax_f64(logits):
    """The authors' formula, in float64."""
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    return torch.log(s / s.sum(-1, keepdim=True))


@pytest.mark.parametrize("scale", [0.1, 3.0, 100.0, 1e4])
def test_stablemax_float32_matches_float64(scale):
    """Why float32 is enough: s(v) > 0 always (no cancellation), a sum of at most vocab_size
    positive terms has relative error <= vocab_size * 2^-24, and log turns relative error into
    absolute error. So log p is off by a few 1e-6 at most, whatever the logits' scale."""
    g = torch.Generator().manual_seed(0)
    logits = scale * torch.randn(64, 30, 12, generator=g)
    logits[0, 0] = torch.tensor([-1e6, 1e6] + [0.0] * 10)  # extremes
    ref = log_stablemax_f64(logits)
    ours = M.log_stablemax(logits)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=2e-5 * max(1.0, math.log1p(scale)))
    # the loss and its gradient, as training uses them
    labels = torch.randint(0, 12, (64, 30), generator=g)
    labels[:3, :5] = IGNORE
    l32 = logits.clone().requires_grad_()
    l64 = logits.double().requires_grad_()
    ce32 = M.cross_entropy(l32, labels)
    valid = labels != IGNORE
    ce64 = -torch.where(valid, log_stablemax_f64(l64).gather(-1, torch.where(valid, labels, 0)[..., None])[..., 0], 0)
    torch.testing.assert_close(ce32.double(), ce64, rtol=1e-5, atol=1e-5)
    ce32.sum().backward()
    ce64.sum().backward()
    torch.testing.assert_close(l32.grad.double(), l64.grad, rtol=1e-4, atol=1e-6)


# -----------------------------------------------------------------------------
# AdamATan2 with multi-tensor ops against the formula, one parameter at a time, in float64

def test_adam_atan2_foreach_matches_formula():
    torch.manual_seed(0)
    params = [torch.randn(7, 5, requires_grad=True), torch.randn(3, requires_grad=True)]
    ref = [p.detach().double().clone() for p in params]
    m, v = [torch.zeros_like(r) for r in ref], [torch.zeros_like(r) for r in ref]
    lr, (b1, b2), wd = 1e-2, (0.9, 0.95), 0.1
    opt = AdamATan2(params, lr=lr, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 6):
        grads = [torch.randn_like(p) for p in params]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
        for i, gr in enumerate(grads):  # the formula, in float64
            gr = gr.double()
            ref[i] *= 1 - lr * wd
            m[i] = m[i] + (1 - b1) * (gr - m[i])
            v[i] = v[i] + (1 - b2) * (gr * gr - v[i])
            ref[i] -= lr / (1 - b1 ** t) * torch.atan2(m[i], v[i].sqrt() / math.sqrt(1 - b2 ** t))
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)
    assert opt.state[params[0]]["step"] == 5


def test_sign_sgd_without_coalesce_matches_coalesced_update():
    """Duplicate rows summed without coalesce() (which makes the host wait for the device)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(50, 6, generator=g)
    before = weight.clone()
    rows = torch.tensor([3, 1, 3, 7, 1, 3, 49, 0])
    vals = torch.randint(-3, 4, (8, 6), generator=g).float()  # integers: exact sums, signs incl. 0
    grad = torch.sparse_coo_tensor(rows[None], vals, weight.shape)
    sign_sgd_(weight, grad, lr=0.1, wd=0.5)
    c = grad.coalesce()
    expected = before.clone()
    r = c.indices()[0]
    expected[r] = before[r] * (1 - 0.1 * 0.5) - 0.1 * torch.sign(c.values())
    assert torch.equal(weight, expected)
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(weight[untouched], before[untouched])  # no decay on rows not in the batch


# -----------------------------------------------------------------------------
# bf16 autocast (the default on CUDA; AMX on recent CPUs): close to float32, carry stays float32

def test_bf16_autocast_close_to_float32():
    m = tiny()
    batch = batch_for(m.cfg, 4)
    a, _ = train_step(m, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        carry, loss, _, out = m(m.initial_carry(batch), batch)
    loss.backward()
    assert carry["y"].dtype == carry["z"].dtype == torch.float32
    assert all(torch.isfinite(p.grad.to_dense() if p.grad.is_sparse else p.grad).all()
               for p in m.parameters() if p.grad is not None)
    torch.testing.assert_close(loss.float(), a["loss"], rtol=5e-2, atol=0)
    torch.testing.assert_close(out["logits"].float(), a["logits"], rtol=0, atol=0.25)


# -----------------------------------------------------------------------------
# inference that stops a sample at q_halt > 0 and drops it from the batch

@pytest.mark.parametrize("mlp_t", [False, True])
def test_act_halt_same_predictions_as_full_inference(mlp_t):
    m = tiny(mlp_t=mlp_t, pos_encodings="none" if mlp_t else "rope", halt_max_steps=6)
    m.eval()
    batch = batch_for(m.cfg, 16, seed=1)
    S = m.cfg.halt_max_steps
    with torch.no_grad():  # a halting head that fires, at some step, for about half the samples
        m.q_head.weight.normal_(0, 0.5)
        m.q_head.bias.zero_()
        q0 = m.solve(batch["inputs"], batch["puzzle_identifiers"])[1]
        peaks = q0[:-1].max(0).values.sort().values
        m.q_head.bias[0] = -(peaks[7] + peaks[8]) / 2  # between two samples: no q_halt near 0
    full, q_full, used_full = m.solve(batch["inputs"], batch["puzzle_identifiers"])
    preds, q, used = m.solve(batch["inputs"], batch["puzzle_identifiers"], act_halt=True)
    assert (used_full == S).all()
    stops = (q_full > 0).float()
    stops[-1] = 1  # the last step ends every sample
    expected_used = stops.argmax(0) + 1  # the first step whose q_halt > 0
    assert torch.equal(used.long(), expected_used)
    assert 0 < (used < S).sum() < 16, "the test needs samples that stop early and samples that run on"
    for b in range(16):
        u = int(used[b])
        assert torch.equal(preds[:u, b], full[:u, b])          # same answers while it ran
        assert (preds[u:, b] == full[u - 1, b]).all()          # then its final answer is kept
        torch.testing.assert_close(q[:u, b], q_full[:u, b], rtol=1e-5, atol=1e-5)
    ran = used == S
    assert torch.equal(preds[:, ran], full[:, ran])            # samples that ran to the end


# -----------------------------------------------------------------------------
# bench.py's memory estimate against the measured peak of a training step (CPU, Linux)

@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="measures resident memory through /proc")
@pytest.mark.parametrize("config, dtype", [("small_mlp", "float32"), ("small_att", "bfloat16")])
def test_memory_estimate_is_within_25_percent_of_the_measured_peak(config, dtype):
    import re
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "bench.py", f"--config={config}", f"--dtype={dtype}", "--memory=True",
                        "--threads=1", "--warmup=1"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    measured, estimate = map(float, re.search(r"measured ([0-9.]+) GiB .* estimate ([0-9.]+) GiB", r.stdout).groups())
    assert measured > 0.1 and abs(estimate / measured - 1) < 0.25, r.stdout[-500:]


def test_a_failing_compiler_falls_back_to_eager(capsys):
    """No working C++ compiler (or Triton on a GPU): one line, then the eager model's answers."""
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()
    m = tiny(L_layers=1, L_cycles=1)
    x, ids = batch_for(m.cfg, 3)["inputs"], torch.zeros(3, dtype=torch.long)
    ref = m.solve(x, ids, steps=2)
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        m.compile_recursion()
        out = m.solve(x, ids, steps=2)
    torch._dynamo.reset()
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    lines = [line for line in capsys.readouterr().out.splitlines() if "torch.compile failed" in line]
    assert len(lines) == 1 and "running eagerly" in lines[0]
