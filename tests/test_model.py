"""
Tests of model.py: the network, one supervision step, adaptive computation, the losses.

    python -m pytest -q tests/test_model.py

Tiny configurations (hidden 32, 9 puzzle positions, a few cycles) so everything runs on a CPU
in seconds; only the parameter counts build the paper's full-size models (no forward pass).
"""
import copy
import math
import os
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402
from model import IGNORE, TRM, TRMConfig  # noqa: E402
from optim import AdamATan2, sign_sgd_  # noqa: E402


def tiny_cfg(**kw):
    """hidden 32, 2 heads, 9 puzzle positions + a 2-position puzzle-embedding prefix."""
    base = dict(seq_len=9, vocab_size=6, num_puzzle_identifiers=4, hidden_size=32, num_heads=2,
                L_layers=2, H_cycles=2, L_cycles=2, mlp_t=False, pos_encodings="rope",
                puzzle_emb_ndim=32, puzzle_emb_len=2, halt_max_steps=4, halt_exploration_prob=0.0)
    base.update(kw)
    return TRMConfig(**base)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    return TRM(tiny_cfg(**kw), verbose=False)


def make_batch(cfg, B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g),
                labels=torch.randint(0, cfg.vocab_size, (B, cfg.seq_len), generator=g),
                puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g))


def init_state(m, B):
    P, H = m.cfg.positions, m.cfg.hidden_size
    return m.y_init.expand(B, P, H).clone(), m.z_init.expand(B, P, H).clone()


def randomise_(m, seed=1, scale=0.5):
    """Non-zero q_head and puzzle embedding (both start at constants), everything else perturbed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * p.std().nan_to_num(0).clamp_min(0.05) * torch.randn(p.shape, generator=g))
    return m

# -----------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("kw, expected", [
    (dict(), 5_028_866),                                                          # Sudoku MLP
    (dict(mlp_t=False, pos_encodings="rope"), 6_828_034),                         # Sudoku attention
    (dict(mlp_t=False, pos_encodings="rope", seq_len=900, vocab_size=6, L_cycles=4), 6_822_914),  # Maze
    (dict(mlp_t=False, pos_encodings="rope", seq_len=900, vocab_size=12, L_cycles=4,
          num_puzzle_identifiers=7), 6_829_058),                                  # ARC
], ids=["sudoku-mlp", "sudoku-att", "maze", "arc"])
def test_param_counts_match_the_authors(kw, expected):
    with torch.device("meta"):  # shapes only: drawing 5-7M initial weights takes seconds
        m = TRM(TRMConfig(**kw), verbose=False)
    assert m.num_params() == expected
    # the puzzle-embedding table is counted apart: its size does not change the count
    assert m.puzzle_emb.weight.shape == (m.cfg.num_puzzle_identifiers, 512)
    assert sum(p.numel() for p in m.parameters()) == expected + m.puzzle_emb.weight.numel()


def test_config_positions():
    assert TRMConfig().puzzle_emb_len == 16 and TRMConfig().positions == 81 + 16
    cfg = TRMConfig(puzzle_emb_ndim=512, puzzle_emb_len=0, hidden_size=256)
    assert cfg.puzzle_emb_len == 2 and cfg.positions == 83
    cfg = TRMConfig(puzzle_emb_ndim=40, puzzle_emb_len=0, hidden_size=32)  # ceil(40 / 32)
    assert cfg.puzzle_emb_len == 2
    cfg = TRMConfig(puzzle_emb_ndim=0, puzzle_emb_len=16)
    assert cfg.puzzle_emb_len == 0 and cfg.positions == 81


def test_trunc_normal_has_the_requested_std_and_cuts_at_2_sigma():
    torch.manual_seed(0)
    std = 0.02
    t = M.trunc_normal_(torch.empty(1_000_000), std)
    assert abs(t.std().item() / std - 1) < 0.01
    assert abs(t.mean().item()) < 0.01 * std
    # JAX/Flax: a standard normal cut to [-2, 2], then scaled by std / 0.8796 (the std of that
    # truncated normal), so the cut lies at 2 std of the untruncated normal = 2.27 std of the result
    cut = 2 * std / 0.87962566103423978
    assert t.abs().max().item() <= cut * (1 + 1e-6)
    assert t.abs().max().item() > 0.99 * cut
    # the layers use it: Linear weights have std 1/sqrt(fan_in), token embeddings 1/sqrt(hidden)
    lin = M.Linear(400, 500)
    assert abs(lin.weight.std().item() * math.sqrt(400) - 1) < 0.02


def test_initial_values():
    m = tiny_model()
    assert (m.q_head.weight == 0).all() and (m.q_head.bias == -5).all()  # halting starts off
    assert (m.puzzle_emb.weight == 0).all()
    # y_init, z_init: fixed vectors, saved with the model but not trained
    params, state = dict(m.named_parameters()), m.state_dict()
    for k in ("y_init", "z_init"):
        assert k not in params and k in state and state[k].shape == (32,)
    assert not torch.equal(m.y_init, m.z_init)


# -----------------------------------------------------------------------------
# one supervision step


@pytest.mark.parametrize("mlp_t", [False, True], ids=["attention", "mlp_t"])
def test_block_applications_per_step_and_gradients(mlp_t):
    m = tiny_model(H_cycles=3, L_cycles=2, L_layers=2, mlp_t=mlp_t,
                   pos_encodings="none" if mlp_t else "rope")
    calls = []
    for i, block in enumerate(m.layers):
        block.register_forward_hook(lambda mod, args, out, i=i: calls.append((i, torch.is_grad_enabled())))
    b = make_batch(m.cfg, 3)
    y, z, logits, q_halt, q_cont = m.step(b["inputs"], b["puzzle_identifiers"], *init_state(m, 3))
    H, L, n = 3, 2, 2  # H_cycles, L_cycles, L_layers
    assert len(calls) == H * (L + 1) * n == 18
    assert [i for i, _ in calls] == [0, 1] * (H * (L + 1))
    no_grad = (H - 1) * (L + 1) * n
    assert [g for _, g in calls] == [False] * no_grad + [True] * ((L + 1) * n)
    # the carried state is detached, the outputs are not
    assert not y.requires_grad and not z.requires_grad
    assert logits.shape == (3, m.cfg.seq_len, m.cfg.vocab_size)
    assert q_halt.shape == q_cont.shape == (3,) and q_halt.dtype == torch.float32
    (logits.square().mean() + q_halt.sum() + q_cont.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        g = p.grad.to_dense() if p.grad.is_sparse else p.grad
        assert g.abs().sum() > 0, name


def test_step_reads_lm_head_after_the_prefix_and_q_head_at_position_0():
    m = randomise_(tiny_model(puzzle_emb_len=3, puzzle_emb_ndim=64))
    b = make_batch(m.cfg, 2)
    y, z, logits, q_halt, q_cont = m.step(b["inputs"], b["puzzle_identifiers"], *init_state(m, 2))
    assert y.shape == z.shape == (2, 12, 32)
    assert logits.shape == (2, 9, 6)
    torch.testing.assert_close(logits, m.lm_head(y)[:, 3:])
    q = m.q_head(y[:, 0])
    torch.testing.assert_close(q_halt, q[:, 0])
    torch.testing.assert_close(q_cont, q[:, 1])


def test_puzzle_embedding_prefix_is_padded_and_prepended():
    m = tiny_model(puzzle_emb_ndim=40, puzzle_emb_len=0)  # ceil(40 / 32) = 2 positions, 24 zeros
    cfg = m.cfg
    assert cfg.puzzle_emb_len == 2 and (m.puzzle_emb.weight == 0).all()
    with torch.no_grad():
        m.puzzle_emb.weight.normal_()
    b = make_batch(cfg, 3)
    x = m.embed(b["inputs"], b["puzzle_identifiers"])
    assert x.shape == (3, 11, 32)
    s = math.sqrt(32)
    prefix = torch.cat((m.puzzle_emb.weight[b["puzzle_identifiers"]], torch.zeros(3, 24)), dim=1)
    torch.testing.assert_close(x[:, :2].reshape(3, 64), s * prefix)
    torch.testing.assert_close(x[:, 2:], s * m.embed_tokens.weight[b["inputs"]])
    _, _, logits, _, _ = m.step(b["inputs"], b["puzzle_identifiers"], *init_state(m, 3))
    assert logits.shape == (3, cfg.seq_len, cfg.vocab_size)
    # without a puzzle embedding there is no prefix
    m0 = tiny_model(puzzle_emb_ndim=0)
    assert not hasattr(m0, "puzzle_emb") and m0.cfg.positions == 9
    assert m0.embed(b["inputs"], b["puzzle_identifiers"]).shape == (3, 9, 32)


def test_learned_positions_are_added_and_scaled():
    m = tiny_model(pos_encodings="learned")
    b = make_batch(m.cfg, 2)
    x = m.embed(b["inputs"], b["puzzle_identifiers"])
    tok = torch.cat((torch.zeros(2, 2, 32), m.embed_tokens.weight[b["inputs"]]), dim=1)  # zero prefix
    torch.testing.assert_close(x, math.sqrt(32) * (tok + m.embed_pos.weight) / math.sqrt(2))


def test_puzzle_embedding_gradient_is_sparse_one_row_per_sample():
    m = tiny_model()
    b = make_batch(m.cfg, 3)
    ids = torch.tensor([3, 1, 3])
    _, _, logits, q_halt, _ = m.step(b["inputs"], ids, *init_state(m, 3))
    (logits.square().sum() + q_halt.sum()).backward()
    g = m.puzzle_emb.weight.grad
    assert g.is_sparse
    assert g._indices().shape == (1, 3) and g._values().shape == (3, m.cfg.puzzle_emb_ndim)
    dense = g.to_dense()
    assert (dense[[0, 2]] == 0).all()
    assert (dense[[1, 3]].abs().sum(-1) > 0).all()


def test_mlp_t_mixes_and_normalises_over_positions():
    m = randomise_(tiny_model(mlp_t=True, pos_encodings="none"))
    block, P, eps = m.layers[0], m.cfg.positions, m.cfg.rms_norm_eps
    assert block.mlp_t.gate_up_proj.weight.shape == (512, P)  # a SwiGLU of width P
    torch.manual_seed(0)
    h = 3 * torch.randn(2, P, 32) + 1
    # across(x) is the SwiGLU applied along the positions
    torch.testing.assert_close(block.mlp_t.across(h), block.mlp_t(h.transpose(1, 2)).transpose(1, 2))
    # the token-mixing half is normalised over positions: unit RMS along axis 1
    g = M.rms_norm(h + block.mlp_t.across(h), eps, dim=1)
    torch.testing.assert_close(g.square().mean(1), torch.ones(2, 32), atol=1e-4, rtol=0)
    assert (g.square().mean(2) - 1).abs().max() > 0.1  # and not over the hidden axis
    # the whole block, written out: transpose, SwiGLU, add, RMSNorm, transpose; then the channel MLP
    t = h.transpose(1, 2)  # (B, hidden, P)
    t = t + block.mlp_t(t)
    t = t / torch.sqrt(t.square().mean(-1, keepdim=True) + eps)
    g = t.transpose(1, 2)
    g = g + block.mlp(g)
    expected = g / torch.sqrt(g.square().mean(-1, keepdim=True) + eps)
    torch.testing.assert_close(block(h, None), expected, atol=1e-5, rtol=1e-5)


def test_rms_norm_runs_in_float32_and_keeps_dtype():
    x = (torch.randn(4, 64) * 100).bfloat16()
    out = M.rms_norm(x, 1e-5)
    assert out.dtype == torch.bfloat16
    ref = x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, ref.bfloat16())


def test_attention_without_positions_is_permutation_equivariant():
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    diffs = {}
    for pos in ("none", "rope"):
        m = randomise_(tiny_model(pos_encodings=pos, puzzle_emb_ndim=0))
        b = make_batch(m.cfg, 2)
        ids = b["puzzle_identifiers"]
        _, _, logits, _, _ = m.step(b["inputs"], ids, *init_state(m, 2))
        _, _, logits_p, _, _ = m.step(b["inputs"][:, perm], ids, *init_state(m, 2))
        diffs[pos] = (logits_p - logits[:, perm]).abs().max().item()
    assert diffs["none"] < 1e-4
    assert diffs["rope"] > 1e-2


# -----------------------------------------------------------------------------
# adaptive computation: the carry across optimizer steps


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_fresh_model_runs_exactly_halt_max_steps(train):
    m = tiny_model(halt_max_steps=3, halt_exploration_prob=0.0).train(train)
    B, N = 5, 3
    b = make_batch(m.cfg, B)
    carry = m.initial_carry(b)
    assert carry["halted"].all()
    with torch.no_grad():
        for k in range(2 * N):
            carry, loss, metrics, out = m(carry, b)
            step = k % N + 1
            assert (out["q_halt"] == -5).all()  # q_head: weight 0, bias -5
            assert (carry["steps"] == step).all()
            assert (carry["halted"] == (step == N)).all()
            assert metrics["count"].item() == (B if step == N else 0)
            assert torch.isfinite(loss)


def test_forward_resets_halted_samples_and_keeps_the_others():
    m = randomise_(tiny_model(halt_max_steps=5)).eval()
    cfg, B, P, H = m.cfg, 4, m.cfg.positions, m.cfg.hidden_size
    old, new = make_batch(cfg, B, seed=1), make_batch(cfg, B, seed=2)
    old["puzzle_identifiers"], new["puzzle_identifiers"] = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])
    torch.manual_seed(3)
    carry = dict(old, y=torch.randn(B, P, H), z=torch.randn(B, P, H),
                 steps=torch.tensor([3, 1, 4, 4], dtype=torch.int32),
                 halted=torch.tensor([True, False, True, False]))
    with torch.no_grad():
        new_carry, loss, metrics, out = m(carry, new)
    halted = carry["halted"]
    for k in ("inputs", "labels", "puzzle_identifiers"):
        for i in range(B):
            assert torch.equal(new_carry[k][i], (new if halted[i] else old)[k][i]), (k, i)
    assert new_carry["steps"].tolist() == [1, 2, 1, 5]
    assert new_carry["halted"].tolist() == [False, False, False, True]  # eval: only at halt_max_steps
    for i in range(B):
        src = new if halted[i] else old
        y0 = m.y_init.expand(1, P, H) if halted[i] else carry["y"][i:i + 1]
        z0 = m.z_init.expand(1, P, H) if halted[i] else carry["z"][i:i + 1]
        with torch.no_grad():
            y, z, logits, q_halt, _ = m.step(src["inputs"][i:i + 1], src["puzzle_identifiers"][i:i + 1], y0, z0)
        torch.testing.assert_close(new_carry["y"][i], y[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(new_carry["z"][i], z[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["logits"][i], logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["q_halt"][i], q_halt[0], atol=1e-5, rtol=1e-5)
    assert metrics["count"].item() == 1 and metrics["steps"].item() == 5


def test_exploration_delays_halting_to_at_least_step_2():
    m = tiny_model(halt_max_steps=6, halt_exploration_prob=1.0).train()
    with torch.no_grad():
        m.q_head.bias.fill_(5.0)  # q_halt = 5 > 0: halt at once unless exploring
    B = 64
    b = make_batch(m.cfg, B)
    carry = m.initial_carry(b)
    first_halt = torch.zeros(B, dtype=torch.long)
    torch.manual_seed(0)
    with torch.no_grad():
        for k in range(1, 7):
            carry, _, _, _ = m(carry, b)
            if k == 1:
                assert not carry["halted"].any()
            first_halt[carry["halted"] & (first_halt == 0)] = k
    # the minimum step count is uniform in [2, 6]: every value shows up among 64 samples
    assert sorted(first_halt.unique().tolist()) == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_positive_halt_logit_halts_after_one_step_in_training_only(train):
    m = tiny_model(halt_max_steps=4, halt_exploration_prob=0.0).train(train)
    with torch.no_grad():
        m.q_head.bias.fill_(5.0)
    b = make_batch(m.cfg, 6)
    with torch.no_grad():
        carry, _, metrics, _ = m(m.initial_carry(b), b)
    assert (carry["steps"] == 1).all()
    assert (carry["halted"] == train).all()
    assert metrics["count"].item() == (6 if train else 0)


@pytest.mark.parametrize("bias, halts", [((2.0, 1.0), True), ((1.0, 2.0), False)])
def test_act_continue_variant(bias, halts):
    """no_ACT_continue=False: halt when q_halt > q_continue; q_continue is trained against the
    sigmoid of the best logit one step later (q_head weight 0: the logits are the bias)."""
    m = tiny_model(halt_max_steps=4, no_ACT_continue=False).train()
    with torch.no_grad():
        m.q_head.bias.copy_(torch.tensor(bias))
    b = make_batch(m.cfg, 3)
    carry, loss, metrics, out = m(m.initial_carry(b), b)
    assert (carry["halted"] == halts).all()
    target = torch.sigmoid(torch.tensor(max(bias)))
    torch.testing.assert_close(out["target_q_continue"], target.expand(3))
    q_cont_loss = F.binary_cross_entropy_with_logits(torch.full((3,), bias[1]), target.expand(3), reduction="sum")
    torch.testing.assert_close(loss, metrics["lm_loss"] + 0.5 * (metrics["q_halt_loss"] + q_cont_loss))


# -----------------------------------------------------------------------------
# losses and metrics


def ref_log_stablemax(v):  # float64, straight from the definition
    v = v.double()
    s = torch.where(v < 0, 1 / (1 - v), v + 1)
    return torch.log(s / s.sum(-1, keepdim=True))


def test_stablemax_by_hand():
    logits = torch.tensor([[[0.0, 1.0, -1.0]]])  # s = [1, 2, 0.5], sum 3.5
    expected = torch.tensor([math.log(1 / 3.5), math.log(2 / 3.5), math.log(0.5 / 3.5)])
    torch.testing.assert_close(M.log_stablemax(logits)[0, 0], expected)
    ce = M.cross_entropy(logits, torch.tensor([[1]]))
    torch.testing.assert_close(ce, torch.tensor([[-math.log(2 / 3.5)]]))
    logits = torch.tensor([[[0.0, 1.0, -1.0], [3.0, -3.0, 0.5]]])  # second row: s = [4, 0.25, 1.5]
    ce = M.cross_entropy(logits, torch.tensor([[2, 0]]))
    torch.testing.assert_close(ce, torch.tensor([[-math.log(0.5 / 3.5), -math.log(4 / 5.75)]]))
    ce = M.cross_entropy(logits, torch.tensor([[2, IGNORE]]))
    torch.testing.assert_close(ce, torch.tensor([[-math.log(0.5 / 3.5), 0.0]]))


def test_log_stablemax_float32_matches_float64_over_a_wide_range():
    g = torch.Generator().manual_seed(0)
    mag = 10 ** (torch.rand(4000, 11, generator=g) * 7 - 3)  # 1e-3 .. 1e4
    sign = torch.where(torch.rand(4000, 11, generator=g) < 0.5, -1.0, 1.0)
    logits = (sign * mag).float()
    logits[0], logits[1] = 1e4, -1e4
    logits[2], logits[3] = 1e-3 * sign[2], -1e-3
    logits[4, 0], logits[5, :5] = 1e4, -1e4
    got = M.log_stablemax(logits)
    assert got.dtype == torch.float32
    ref = ref_log_stablemax(logits)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=2e-6)
    got = M.log_stablemax(logits.bfloat16())  # bf16 logits are promoted, not computed in bf16
    torch.testing.assert_close(got.double(), ref_log_stablemax(logits.bfloat16()), rtol=1e-5, atol=2e-6)


def test_stablemax_gradient_against_the_formula_and_finite_at_1():
    """d(-log p_label)/dv_i = s'(v_i) * (1/S - [i == label] / s(v_i)), s' = 1 (v >= 0) or
    1/(1 - v)^2 (v < 0). Logits of exactly 1 (common in bfloat16) must not give NaN: 1/(1 - v),
    the branch torch.where does not select there, is infinite."""
    v = torch.tensor([[[1.0, 0.0, -1.0, 2.0, -3.5], [1.0, 1.0, 0.5, -1.0, 1.0]]], requires_grad=True)
    labels = torch.tensor([[2, 0]])
    M.cross_entropy(v, labels).sum().backward()
    w = v.detach().double()
    s = torch.where(w < 0, 1 / (1 - w.clamp(max=0)), w + 1)
    ds = torch.where(w < 0, 1 / (1 - w.clamp(max=0)) ** 2, torch.ones_like(w))
    onehot = F.one_hot(labels, 5).double()
    expected = ds * (1 / s.sum(-1, keepdim=True) - onehot / s)
    assert torch.isfinite(v.grad).all()
    torch.testing.assert_close(v.grad.double(), expected, rtol=1e-5, atol=1e-7)


def test_softmax_option_matches_torch_cross_entropy():
    torch.manual_seed(0)
    logits = 3 * torch.randn(3, 7, 5)
    labels = torch.randint(0, 5, (3, 7))
    labels[0, 2] = labels[2, :] = IGNORE
    got = M.cross_entropy(logits, labels, "softmax")
    ref = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(got, ref)
    assert (got[2] == 0).all() and got[0, 2] == 0


@pytest.mark.parametrize("loss_type", ["stablemax", "softmax"])
def test_compute_loss_against_a_loop(loss_type):
    cfg = tiny_cfg(loss_type=loss_type)
    torch.manual_seed(0)
    B, L, V = 5, 6, 4
    logits = (2 * torch.randn(B, L, V)).requires_grad_()
    labels = torch.randint(0, V, (B, L))
    with torch.no_grad():
        pred = logits.argmax(-1)
    labels[0, [1, 3]] = IGNORE
    labels[0, 0] = (pred[0, 0] + 1) % V  # sample 0: at least one wrong token
    labels[1] = pred[1]                  # sample 1: all correct
    labels[1, 4] = IGNORE
    labels[2] = IGNORE                   # sample 2: padding, nothing to score
    labels[4] = pred[4]                  # sample 4: correct, but not halted
    q_halt = torch.tensor([-1.3, 0.0, 0.7, 2.0, -0.4], requires_grad=True)  # scored ones: both right
    halted = torch.tensor([True, True, True, False, False])
    steps = torch.tensor([3, 2, 5, 1, 7], dtype=torch.int32)
    loss, metrics = M.compute_loss(cfg, dict(logits=logits, q_halt=q_halt), labels, halted, steps)

    lm = qh = 0.0
    count = acc = exact = q_acc = n_steps = 0
    for b in range(B):
        valid = labels[b] != IGNORE
        n = int(valid.sum())
        lg, lb = logits[b][valid].double(), labels[b][valid]
        logp = ref_log_stablemax(lg) if loss_type == "stablemax" else F.log_softmax(lg, -1)
        if n:
            lm += -logp[torch.arange(n), lb].mean()
        right = (lg.argmax(-1) == lb)
        seq_correct = bool(right.all())
        p = torch.sigmoid(q_halt[b].double())
        qh += -(torch.log(p) if seq_correct else torch.log(1 - p))
        if halted[b] and n:
            count += 1
            acc += right.double().mean().item()
            exact += seq_correct
            q_acc += (q_halt[b].item() >= 0) == seq_correct
            n_steps += int(steps[b])
    torch.testing.assert_close(metrics["lm_loss"].double(), lm.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["q_halt_loss"].double(), qh.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.double(), (lm + 0.5 * qh).detach(), rtol=1e-5, atol=1e-6)
    assert metrics["count"].item() == count == 2
    assert metrics["accuracy"].item() == pytest.approx(acc, abs=1e-6)
    assert metrics["exact_accuracy"].item() == exact == 1
    assert metrics["q_halt_accuracy"].item() == q_acc == 2
    assert metrics["steps"].item() == n_steps == 5
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[2] == 0).all()
    assert torch.isfinite(q_halt.grad).all()


def test_padded_sample_contributes_no_loss_and_no_nan():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    logits = (1e3 * torch.randn(2, 4, 3)).requires_grad_()  # large logits too
    labels = torch.tensor([[0, 1, 2, IGNORE], [IGNORE] * 4])
    q_halt = torch.zeros(2, requires_grad=True)
    halted = torch.tensor([True, True])
    steps = torch.ones(2, dtype=torch.int32)
    for loss_type in ("stablemax", "softmax"):
        cfg.loss_type = loss_type
        loss, metrics = M.compute_loss(cfg, dict(logits=logits, q_halt=q_halt), labels, halted, steps)
        _, metrics1 = M.compute_loss(cfg, dict(logits=logits[:1], q_halt=q_halt[:1]), labels[:1], halted[:1], steps[:1])
        assert metrics["lm_loss"] == metrics1["lm_loss"] > 0  # the padded sample adds exactly 0
        assert metrics["count"].item() == 1
        logits.grad = q_halt.grad = None
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and torch.isfinite(q_halt.grad).all()
        assert (logits.grad[1] == 0).all()


# -----------------------------------------------------------------------------
# inference


def test_solve_steps_and_act_halt():
    m = randomise_(tiny_model(halt_max_steps=5), seed=2)
    cfg, B = m.cfg, 16
    b = make_batch(cfg, B, seed=4)
    x, ids = b["inputs"], b["puzzle_identifiers"]
    # q_halt depends on the input (non-zero q_head weight); shift its bias so that half of the
    # samples cross 0 at some step and the others never do
    preds, q_halts, used = m.solve(x, ids)
    with torch.no_grad():
        top = q_halts.max(0).values.sort().values
        m.q_head.bias[0] -= (top[B // 2 - 1] + top[B // 2]) / 2
    preds, q_halts, used = m.solve(x, ids)
    assert preds.shape == (5, B, cfg.seq_len) and q_halts.shape == (5, B)
    assert (used == 5).all()
    # the steps argument sets the number of steps; the first ones are the same computation
    p3, q3, u3 = m.solve(x, ids, steps=3)
    assert p3.shape == (3, B, cfg.seq_len) and (u3 == 3).all()
    assert torch.equal(p3, preds[:3])
    # predictions equal a hand-run of step() from the initial state
    y, z = init_state(m, B)
    with torch.no_grad():
        for s in range(5):
            y, z, logits, q_halt, _ = m.step(x, ids, y, z)
            assert torch.equal(preds[s], logits.argmax(-1))
            torch.testing.assert_close(q_halts[s], q_halt)

    pa, qa, ua = m.solve(x, ids, act_halt=True)
    crossed = (q_halts > 0).float()
    first = torch.where(crossed.any(0), crossed.argmax(0) + 1, 5)  # first step with q_halt > 0
    assert (ua <= 5).all() and (ua >= 1).all()
    assert torch.equal(ua, first.to(ua.dtype))
    assert (ua < 5).any() and (ua == 5).any()  # the test covers both kinds of samples
    for i in range(B):
        u = int(ua[i])
        assert torch.equal(pa[:u, i], preds[:u, i]), i        # same answers while running
        assert (pa[u:, i] == pa[u - 1, i]).all(), i           # then the last answer is kept
        torch.testing.assert_close(qa[:u, i], q_halts[:u, i])
    ran = ua == 5
    assert torch.equal(pa[:, ran], preds[:, ran])
    # fewer steps: a sample can stop at the step before the last one (3 steps: those crossing at 2)
    assert (first == 2).any() and (first > 3).any()
    for S in (2, 3):
        pS, _, uS = m.solve(x, ids, steps=S, act_halt=True)
        assert pS.shape == (S, B, cfg.seq_len)
        assert torch.equal(uS, first.clamp_max(S).to(uS.dtype))
        assert torch.equal(pS, pa[:S])


# -----------------------------------------------------------------------------
# compiled and mixed-precision paths


def _have_cxx():
    return any(shutil.which(c) for c in ("g++", "c++", "clang++", os.environ.get("CXX", "")) if c)


def _have_dynamo():
    try:
        import torch._dynamo
        return torch._dynamo.is_dynamo_supported()
    except Exception:
        return False


@pytest.mark.skipif(not _have_dynamo(), reason="torch.compile is not supported here")
def test_compiled_graphs_leave_the_sparse_puzzle_embedding_to_eager():
    """A user may wrap the whole model in torch.compile. Inductor (torch 2.13) cannot lower the
    sparse gradient of nn.Embedding(sparse=True) ("Cannot access storage of SparseTensorImpl"),
    so the table lookup must run eagerly, outside the captured graphs. A recording backend shows
    what dynamo captures without compiling anything (a few seconds); the real inductor run is
    test_torch_compile_matches_eager."""
    m = tiny_model(H_cycles=2, L_cycles=1, L_layers=1).train()
    b = make_batch(m.cfg, 4)
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    _, loss, _, _ = torch.compile(m, backend=record)(m.initial_carry(b), b)
    loss.backward()
    torch._dynamo.reset()
    assert graphs and m.puzzle_emb.weight.grad.is_sparse
    for gm in graphs:
        for node in gm.graph.nodes:
            if node.op == "call_function" and node.target in (F.embedding, torch.embedding):
                sparse = node.args[6] if len(node.args) > 6 else node.kwargs.get("sparse", False)
                assert not sparse, f"a sparse embedding inside a compiled graph: {node.format_node()}"


@pytest.mark.skipif(not _have_dynamo(), reason="torch.compile is not supported here")
def test_compile_recursion_matches_eager():
    """compile_recursion traced by dynamo and AOT autograd (forward and backward graphs, run
    without code generation: a few seconds) gives the eager loss and gradients."""
    ref = randomise_(tiny_model(H_cycles=2, L_cycles=1, L_layers=1)).train()
    m = randomise_(tiny_model(H_cycles=2, L_cycles=1, L_layers=1)).train()
    b = make_batch(m.cfg, 4)
    torch._dynamo.reset()
    m.compile_recursion(backend="aot_eager")
    results = []
    for model in (ref, m):
        _, loss, _, out = model(model.initial_carry(b), b)
        loss.backward()
        results.append((loss.detach(), out["logits"].detach(),
                        {n: p.grad.to_dense() if p.grad.is_sparse else p.grad for n, p in model.named_parameters()}))
    torch._dynamo.reset()
    (ref_loss, ref_logits, ref_grads), (loss, logits, grads) = results
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=lambda s: f"{n}: {s}")


@pytest.mark.skipif(not os.environ.get("TRM_TEST_COMPILE"), reason="slow: set TRM_TEST_COMPILE=1 to run")
@pytest.mark.skipif(not _have_cxx() or not _have_dynamo(), reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("what", ["model", "recursion"])
def test_torch_compile_matches_eager(what):
    """Inductor: torch.compile(model), or model.compile_recursion() (train.py, bench.py), forward
    in training (carry reset, step, halting, loss) and backward, give the eager numbers, sparse
    puzzle-embedding gradient included. Opt-in: a cold compile takes about 1-2 min on two CPU
    cores (~20 s with inductor's cache warm)."""
    import torch._inductor.config as inductor_config
    m = randomise_(tiny_model(H_cycles=2, L_cycles=1, L_layers=1)).train()  # exploration 0
    b = make_batch(m.cfg, 4)
    carry = m.initial_carry(b)
    carry["halted"][1] = False  # a carry with a mix of halted and running samples
    results = []
    torch._dynamo.reset()
    twin = m if what == "model" else copy.deepcopy(m)
    compiled = torch.compile(m) if what == "model" else twin.compile_recursion()
    for fn, net in ((m, m), (compiled, twin)):
        net.zero_grad(set_to_none=True)
        with inductor_config.patch(compile_threads=1):  # no pool of compile workers
            new_carry, loss, _, out = fn(carry, b)
            loss.backward()
        grads = {n: p.grad.to_dense() if p.grad.is_sparse else p.grad for n, p in net.named_parameters()}
        results.append((new_carry, loss.detach(), out, grads))
    (ref_carry, ref_loss, ref_out, ref_grads), (new_carry, loss, out, grads) = results
    close = dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(new_carry["y"], ref_carry["y"], **close)
    torch.testing.assert_close(new_carry["z"], ref_carry["z"], **close)
    torch.testing.assert_close(out["logits"], ref_out["logits"], **close)
    torch.testing.assert_close(out["q_halt"], ref_out["q_halt"], **close)
    torch.testing.assert_close(loss, ref_loss, **close)
    assert torch.equal(new_carry["halted"], ref_carry["halted"])
    assert torch.equal(new_carry["steps"], ref_carry["steps"])
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-5, rtol=1e-3, msg=lambda s: f"{n}: {s}")


@pytest.mark.parametrize("mlp_t", [False, True], ids=["attention", "mlp_t"])
def test_bf16_autocast_is_close_to_float32(mlp_t):
    m = randomise_(tiny_model(mlp_t=mlp_t, pos_encodings="none" if mlp_t else "rope"), scale=0.2)
    b = make_batch(m.cfg, 4)
    with torch.no_grad():
        _, _, ref, ref_q, _ = m.step(b["inputs"], b["puzzle_identifiers"], *init_state(m, 4))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, _, logits, q_halt, _ = m.step(b["inputs"], b["puzzle_identifiers"], *init_state(m, 4))
    assert logits.dtype == torch.bfloat16 and q_halt.dtype == torch.float32
    assert torch.isfinite(logits.float()).all()
    err = (logits.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.1, err
    assert (logits.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
    assert (q_halt - ref_q).abs().max() < 0.1 * ref_q.abs().max() + 0.05


# -----------------------------------------------------------------------------
# optimisation


def test_adam_atan2_against_the_formula():
    torch.manual_seed(0)
    params = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True),
              torch.randn(2, requires_grad=True)]  # the last one never gets a gradient
    lr, (b1, b2), wd = 0.01, (0.9, 0.95), 0.1
    opt = AdamATan2(params, lr=lr, betas=(b1, b2), weight_decay=wd)
    ref = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(r) for r in ref]
    v = [torch.zeros_like(r) for r in ref]
    untouched = params[2].detach().clone()
    for t in range(1, 4):
        grads = [torch.randn(p.shape) * 10 ** (t - 2) for p in params[:2]]
        for p, g in zip(params[:2], grads):
            p.grad = g
        opt.step()
        for i, g in enumerate(grads):
            g = g.double()
            ref[i] *= 1 - lr * wd
            m[i] = m[i] + (1 - b1) * (g - m[i])
            v[i] = v[i] + (1 - b2) * (g * g - v[i])
            ref[i] -= lr / (1 - b1 ** t) * torch.atan2(m[i], v[i].sqrt() / math.sqrt(1 - b2 ** t))
        for p, r in zip(params[:2], ref):
            torch.testing.assert_close(p.detach().double(), r, rtol=1e-6, atol=1e-7)
    assert torch.equal(params[2].detach(), untouched)  # no gradient: no step, no decay


def test_sign_sgd_sums_duplicate_rows_and_leaves_other_rows_alone():
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    before = w.clone()
    # rows 1 (twice: the gradients add up to [-2, -1, 0]) and 3
    grad = torch.sparse_coo_tensor(torch.tensor([[1, 3, 1]]),
                                   torch.tensor([[1.0, -2.0, 0.5], [0.2, -0.1, 3.0], [-3.0, 1.0, -0.5]]), (5, 3),
                                   check_invariants=True)
    lr, wd = 0.1, 0.5
    sign_sgd_(w, grad, lr, wd)
    expected = before.clone()
    expected[1] = before[1] * (1 - lr * wd) - lr * torch.tensor([-1.0, -1.0, 0.0])
    expected[3] = before[3] * (1 - lr * wd) - lr * torch.tensor([1.0, -1.0, 1.0])
    torch.testing.assert_close(w, expected)
    assert torch.equal(w[[0, 2, 4]], before[[0, 2, 4]])


# -----------------------------------------------------------------------------
# test-time scaling: K trajectories per puzzle, noise in the latent, choosing an answer


def test_think_with_one_sample_and_no_noise_is_plain_inference():
    m = randomise_(tiny_model(halt_max_steps=4), seed=3)
    b = make_batch(m.cfg, 5, seed=2)
    x, ids = b["inputs"], b["puzzle_identifiers"]
    y, z = init_state(m, 5)
    steps = [(a.clone(), q.clone(), u.clone()) for a, q, u in m.think(x, ids, 4)]  # think reuses its buffers
    with torch.no_grad():
        for s, (answers, q, used) in enumerate(steps):  # a hand-run of step() from the initial state
            y, z, logits, q_halt, _ = m.step(x, ids, y, z)
            assert answers.shape == (5, 1, m.cfg.seq_len) and torch.equal(answers[:, 0], logits.argmax(-1))
            assert torch.equal(q[:, 0], q_halt) and (used == s + 1).all()
    # K trajectories without noise are K copies; solve() chooses among them and counts their steps
    for answers, q, _ in m.think(x, ids, 4, samples=3):
        assert all(torch.equal(answers[:, k], answers[:, 0]) and torch.equal(q[:, k], q[:, 0]) for k in range(3))
    preds, qs, used = m.solve(x, ids, samples=3)
    ref, ref_q, ref_used = m.solve(x, ids)
    assert torch.equal(preds, ref) and torch.equal(qs, ref_q) and torch.equal(used, 3 * ref_used)


def test_noise_is_seeded_and_changes_the_trajectories():
    m = randomise_(tiny_model(halt_max_steps=3), seed=4)
    b = make_batch(m.cfg, 4, seed=5)
    x, ids = b["inputs"], b["puzzle_identifiers"]

    def run(seed, noise):
        torch.manual_seed(seed)
        return [(a.clone(), q.clone()) for a, q, _ in m.think(x, ids, 3, samples=6, noise=noise)]
    a, again, other = run(0, 0.5), run(0, 0.5), run(1, 0.5)
    assert all(torch.equal(s[0], t[0]) and torch.equal(s[1], t[1]) for s, t in zip(a, again))  # reproducible
    assert not torch.equal(a[-1][1], other[-1][1])                                              # seed matters
    q = a[-1][1]
    assert (q.std(1) > 0).all()  # the 6 trajectories of each puzzle went their own ways
    with torch.autocast("cpu", dtype=torch.bfloat16):  # also under autocast
        answers, q, _ = list(m.think(x, ids, 2, samples=2, noise=0.5))[-1]
    assert q.dtype == torch.float32 and torch.isfinite(q).all()


def test_noise_goes_on_z_once_at_the_start_of_each_step():
    m = randomise_(tiny_model(halt_max_steps=3), seed=6)
    b = make_batch(m.cfg, 3, seed=7)
    x, ids = b["inputs"], b["puzzle_identifiers"]
    torch.manual_seed(11)
    got = [(a.clone(), q.clone()) for a, q, _ in m.think(x, ids, 3, noise=0.4)]
    torch.manual_seed(11)
    y, z = init_state(m, 3)
    with torch.no_grad():
        for answers, q in got:  # by hand: z + 0.4 N(0, 1), then the plain step; y untouched
            y, z, logits, q_halt, _ = m.step(x, ids, y, z + 0.4 * torch.randn(z.shape))
            assert torch.equal(answers[:, 0], logits.argmax(-1)) and torch.equal(q[:, 0], q_halt)


def test_act_halt_with_samples_stops_each_trajectory_on_its_own():
    m = randomise_(tiny_model(halt_max_steps=6), seed=2)
    b = make_batch(m.cfg, 8, seed=1)
    with torch.no_grad():  # a halting head for which some trajectories cross q_halt > 0 early, some never
        m.q_head.weight.normal_(0, 0.5)
        m.q_head.bias[0] = -2.0
    torch.manual_seed(0)
    steps = [(a.clone(), q.clone(), u.clone()) for a, q, u in m.think(b["inputs"], b["puzzle_identifiers"], 6,
                                                                     samples=4, noise=1.0, act_halt=True)]
    used = steps[-1][2]
    assert 0 < (used < 6).sum() < used.numel()
    for s in range(6):  # a stopped trajectory keeps its answer and q, and its step count
        answers, q, u = steps[s]
        done = used <= s
        prev = steps[max(s - 1, 0)]
        if s:
            assert torch.equal(answers[done], prev[0][done]) and torch.equal(q[done], prev[1][done])
        assert torch.equal(u, torch.minimum(used, torch.tensor(s + 1)))


def test_choose_q_takes_the_surest_trajectory_and_vote_counts():
    answers = torch.tensor([[[1, 2], [3, 4], [1, 2], [5, 6]],     # puzzle 0: [1, 2] twice
                            [[7, 7], [8, 8], [9, 9], [8, 8]]])    # puzzle 1: [8, 8] twice
    q = torch.tensor([[-1.0, 3.0, -2.0, 0.0],
                      [5.0, -3.0, 0.0, -4.0]])
    pred, qc, k = M.choose(answers, q, "q")
    assert k.tolist() == [1, 0] and pred.tolist() == [[3, 4], [7, 7]] and qc.tolist() == [3.0, 5.0]
    pred, qc, k = M.choose(answers, q, "vote")
    assert pred.tolist() == [[1, 2], [8, 8]]  # two votes beat one, however sure the one is
    # a tie in votes goes to the answer with the higher mean sigmoid(q_halt)
    tie = torch.tensor([[[1, 1], [2, 2], [2, 2], [1, 1]]])
    for qs, winner in (([2.0, -1.0, -1.0, 2.0], [1, 1]), ([-2.0, 1.0, 1.0, -2.0], [2, 2])):
        assert M.choose(tie, torch.tensor([qs]), "vote")[0].tolist() == [winner]
