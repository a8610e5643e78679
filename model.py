"""
The Tiny Recursive Model (TRM): one tiny network, applied over and over to its own answer.

    from model import TRM, TRMConfig
    model = TRM(TRMConfig(seq_len=81, vocab_size=11, num_puzzle_identifiers=1))   # runs on a CPU

Paper names (Jolicoeur-Martineau 2025, "Less is More") and the names used in this file:

    paper   here               authors' code   meaning
    x       x                  input_embeddings  embedded question (+ puzzle-embedding prefix)
    y       y                  z_H             the current answer, (B, P, hidden)
    z       z                  z_L             the latent scratchpad, (B, P, hidden)
    n       L_cycles           L_cycles        latent updates per answer update
    T       H_cycles           H_cycles        recursions per supervision step (T-1 without grad)
    N_sup   halt_max_steps     halt_max_steps  supervision steps per puzzle
    net     layers             L_level         the L_layers blocks, shared by both updates

One supervision step: T times { n times z = net(z, y + x); y = net(y, z) }, only the last of the
T repetitions with gradients; the answer is decoded by lm_head and a halting logit is read by
q_head from position 0. Training carries (y, z) across optimizer steps (deep supervision) and
replaces samples that halted (adaptive computation time, ACT).
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -100  # label value that does not count (dataset files store it as 0)

@dataclass
class TRMConfig:
    # data-dependent fields, read from the dataset's dataset.json
    seq_len: int = 81
    vocab_size: int = 11
    num_puzzle_identifiers: int = 1
    # architecture: defaults are the paper's Sudoku-Extreme MLP model
    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0
    L_layers: int = 2
    H_cycles: int = 3
    L_cycles: int = 6
    mlp_t: bool = True               # mix across positions with an MLP instead of attention
    pos_encodings: str = "none"      # 'rope', 'learned' or 'none'
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    puzzle_emb_ndim: int = 512       # 0: no puzzle embedding, no prefix
    puzzle_emb_len: int = 16         # prefix positions; 0: ceil(puzzle_emb_ndim / hidden_size)
    # adaptive computation time
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    no_ACT_continue: bool = True     # False: also train q_continue against a bootstrapped target
    loss_type: str = "stablemax"     # or 'softmax'

    def __post_init__(self):
        if self.puzzle_emb_ndim == 0:
            self.puzzle_emb_len = 0
        elif self.puzzle_emb_len == 0:
            self.puzzle_emb_len = -(-self.puzzle_emb_ndim // self.hidden_size)
        problem = next((why for bad, why in [
            (self.pos_encodings not in ("rope", "learned", "none"), f"pos_encodings={self.pos_encodings!r}: rope, learned or none"),
            (self.loss_type not in ("stablemax", "softmax"), f"loss_type={self.loss_type!r}: stablemax or softmax"),
            (min(self.seq_len, self.vocab_size, self.num_puzzle_identifiers, self.hidden_size, self.num_heads,
                 self.L_layers, self.H_cycles, self.L_cycles, self.halt_max_steps) < 1, "sizes and counts must be >= 1"),
            (not self.mlp_t and self.hidden_size % (2 * self.num_heads), f"hidden_size={self.hidden_size} does "
             f"not split into num_heads={self.num_heads} attention heads of even size"),
            (self.puzzle_emb_ndim > self.puzzle_emb_len * self.hidden_size, f"puzzle_emb_ndim={self.puzzle_emb_ndim} "
             f"does not fit in puzzle_emb_len={self.puzzle_emb_len} tokens of hidden_size={self.hidden_size}")] if bad), None)
        if problem:
            raise ValueError(problem)

    @property
    def positions(self):  # P: the prefix, then the puzzle
        return self.seq_len + self.puzzle_emb_len

# -----------------------------------------------------------------------------
# small layers

def trunc_normal_(t, std):
    """Normal cut at 2 std, scaled so the *result* has standard deviation `std` (as JAX/Flax do).
    torch's trunc_normal_ keeps the std of the untruncated normal, which is 12% smaller."""
    # variance of a standard normal truncated to [-2, 2]
    a = 2.0
    z = math.erf(a / math.sqrt(2))
    var = 1 - 2 * a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi) / z
    with torch.no_grad():
        return nn.init.trunc_normal_(t, std=1.0, a=-a, b=a).mul_(std / math.sqrt(var))

def Linear(fan_in, fan_out, bias=False):
    lin = nn.Linear(fan_in, fan_out, bias=bias)
    trunc_normal_(lin.weight, 1 / math.sqrt(fan_in))
    if bias:
        nn.init.zeros_(lin.bias)
    return lin

def rms_norm(x, eps, dim=-1):
    """Parameter-free RMSNorm, computed in float32 whatever the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.square().mean(dim, keepdim=True) + eps)
    return h.to(x.dtype)

def rotary_tables(head_dim, positions, theta):
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)  # (P, hs)
    return angles.cos(), angles.sin()

def apply_rotary(x, cos, sin):
    # x: (B, P, nh, hs); rotate_half swaps the two halves of each head and negates the first
    h = x.float()
    x1, x2 = h.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (h * cos[:, None] + rotated * sin[:, None]).to(x.dtype)

class SwiGLU(nn.Module):
    """down(silu(gate) * up) with gate and up from one fused projection; width d -> d."""
    def __init__(self, d, expansion):
        super().__init__()
        inner = -(-round(expansion * d * 2 / 3) // 256) * 256  # rounded up to a multiple of 256
        self.gate_up_proj = Linear(d, 2 * inner)
        self.down_proj = Linear(inner, d)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)

    def across(self, x):
        """The same SwiGLU applied along axis 1 (positions) of x: (B, P, hidden) -> (B, P, hidden),
        i.e. forward(x.transpose(1, 2)).transpose(1, 2), as one matrix product over all B*hidden
        columns (a batched product with a broadcast weight is 1.5-2x slower on a CPU)."""
        B, P, H = x.shape
        cols = x.transpose(0, 1).reshape(P, B * H)                       # (P, B*hidden)
        gate, up = (self.gate_up_proj.weight @ cols).chunk(2, dim=0)     # (inner, B*hidden) each
        out = self.down_proj.weight @ (F.silu(gate) * up)                # (P, B*hidden)
        return out.view(P, B, H).transpose(0, 1)                         # (B, P, hidden)

class Attention(nn.Module):
    """Non-causal multi-head self-attention; q/k/v rows ordered all q heads, all k, all v."""
    def __init__(self, cfg):
        super().__init__()
        self.nh, self.hs = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        self.qkv_proj = Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.o_proj = Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, rope):
        B, P, C = x.shape
        q, k, v = self.qkv_proj(x).view(B, P, 3 * self.nh, self.hs).split(self.nh, dim=2)  # (B, P, nh, hs)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, P, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(y.transpose(1, 2).reshape(B, P, C))

# -----------------------------------------------------------------------------
# the block and the network

class Block(nn.Module):
    """Post-norm: h = norm(h + mix(h)); h = norm(h + mlp(h)). mix is attention or, with mlp_t,
    a SwiGLU across positions whose residual is normalised over positions."""
    def __init__(self, cfg):
        super().__init__()
        self.eps = cfg.rms_norm_eps
        if cfg.mlp_t:
            self.mlp_t = SwiGLU(cfg.positions, cfg.expansion)
        else:
            self.self_attn = Attention(cfg)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)

    def forward(self, h, rope):
        if hasattr(self, "mlp_t"):
            h = rms_norm(h + self.mlp_t.across(h), self.eps, dim=1)
        else:
            h = rms_norm(h + self.self_attn(h, rope), self.eps)
        return rms_norm(h + self.mlp(h), self.eps)

# -----------------------------------------------------------------------------
# the model

class TRM(nn.Module):
    def __init__(self, cfg: TRMConfig, verbose=True):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden_size
        self.embed_scale = math.sqrt(H)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, H)
        trunc_normal_(self.embed_tokens.weight, 1 / self.embed_scale)
        if cfg.puzzle_emb_ndim > 0:
            # Zero-initialised; trained by sign-SGD on the rows of the batch only (train.py), so
            # the gradient is sparse: one row per sample, never the whole (maybe 1.7 GiB) table.
            self.puzzle_emb = nn.Embedding(cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim, sparse=True)
            nn.init.zeros_(self.puzzle_emb.weight)
        if cfg.pos_encodings == "learned":
            self.embed_pos = nn.Embedding(cfg.positions, H)
            trunc_normal_(self.embed_pos.weight, 1 / self.embed_scale)
        if cfg.pos_encodings == "rope":
            cos, sin = rotary_tables(H // cfg.num_heads, cfg.positions, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.L_layers))
        self.lm_head = Linear(H, cfg.vocab_size)
        self.q_head = Linear(H, 2, bias=True)  # row 0: halt, row 1: continue
        with torch.no_grad():  # halting starts off: sigmoid(-5) < 1%
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5)
        # fixed initial states of y and z, saved with the model, never trained
        self.register_buffer("y_init", trunc_normal_(torch.empty(H), 1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(H), 1.0))
        if verbose:
            print(f"TRM: {self.num_params():,} dense parameters, puzzle-embedding table "
                  f"{cfg.num_puzzle_identifiers:,} x {cfg.puzzle_emb_ndim}")

    def dense_parameters(self):
        """(name, parameter) of the dense weights: all but the puzzle-embedding table, which
        sign-SGD trains and which AdamATan2, the EMA and the parameter count leave out."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("puzzle_emb")]

    def num_params(self):
        return sum(p.numel() for _, p in self.dense_parameters())

    # --- the recursion, in the order of the paper ---

    def net(self, h, injection):
        rope = (self.rope_cos, self.rope_sin) if self.cfg.pos_encodings == "rope" else None
        h = h + injection
        for block in self.layers:
            h = block(h, rope)
        return h

    def latent_recursion(self, x, y, z):
        for _ in range(self.cfg.L_cycles):
            z = self.net(z, y + x)   # refresh the scratchpad from question, answer and itself
        y = self.net(y, z)           # refresh the answer from the scratchpad
        return y, z

    def deep_recursion(self, x, y, z):
        with torch.no_grad():
            for _ in range(self.cfg.H_cycles - 1):
                y, z = self.latent_recursion(x, y, z)
        return self.latent_recursion(x, y, z)  # only the last repetition carries gradients

    def compile_recursion(self, **kwargs):
        """torch.compile deep_recursion in place, fusing the norms and activations of all its
        blocks: one graph in training (the no-grad cycles, the cycle with gradients and its
        backward), one under no_grad (solve, so evaluation too). The embedding, heads and loss
        stay eager: the table's sparse gradient must stay outside graphs (puzzle_rows). If the
        compiler fails (no C++ compiler, no Triton), say so in one line and stay eager."""
        eager, compiled = self.deep_recursion, torch.compile(self.deep_recursion, **kwargs)

        def deep_recursion(*args, **kw):
            try:
                return compiled(*args, **kw)
            except Exception as e:  # only the compiler's own errors: anything else is re-raised
                if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise
                print(f"torch.compile failed, running eagerly ({type(e).__name__}: "
                      f"{' '.join(str(e).split())[:150]})")
                self.deep_recursion = eager
                return eager(*args, **kw)
        self.deep_recursion = deep_recursion
        return self

    def embed(self, inputs, puzzle_ids):
        x = self.embed_tokens(inputs.long())  # (B, L, H)
        if self.cfg.puzzle_emb_ndim > 0:
            B, H, n = x.shape[0], self.cfg.hidden_size, self.cfg.puzzle_emb_len
            prefix = F.pad(self.puzzle_rows(puzzle_ids), (0, n * H - self.cfg.puzzle_emb_ndim))
            x = torch.cat((prefix.view(B, n, H).to(x.dtype), x), dim=1)  # (B, P, H)
        if self.cfg.pos_encodings == "learned":
            x = (x + self.embed_pos.weight) / math.sqrt(2)
        return self.embed_scale * x

    @torch.compiler.disable  # eager: inductor cannot build the table's sparse gradient
    def puzzle_rows(self, puzzle_ids):
        return self.puzzle_emb(puzzle_ids.long())  # (B, puzzle_emb_ndim)

    def step(self, inputs, puzzle_ids, y, z, noise=0.0):
        """One supervision step from the state (y, z). Returns the new (detached) state, the
        logits over the puzzle positions (B, seq_len, vocab) and the halt/continue logits (B,)."""
        x = self.embed(inputs, puzzle_ids)
        if noise:  # test-time exploration (think). z has unit RMS (each net ends in a norm), so the
            # noise is relative. Once per step, on z only: on the 9x9 Sudoku test bed this beat
            # noise after every latent update, on y, or on both (README, test-time compute)
            z = z + noise * torch.randn_like(z)
        y, z = self.deep_recursion(x, y, z)
        logits = self.lm_head(y)[:, self.cfg.puzzle_emb_len:]
        q = self.q_head(y[:, 0]).float()
        return y.detach(), z.detach(), logits, q[:, 0], q[:, 1]

    # --- adaptive computation time: the carry across optimizer steps ---

    def initial_carry(self, batch):
        """A carry whose samples are all 'halted', so the first forward loads the whole batch."""
        B, P, H = batch["inputs"].shape[0], self.cfg.positions, self.cfg.hidden_size
        dev = batch["inputs"].device
        carry = {k: torch.zeros_like(v) for k, v in batch.items()}
        carry["y"] = self.y_init.expand(B, P, H).clone()
        carry["z"] = self.z_init.expand(B, P, H).clone()
        carry["steps"] = torch.zeros(B, dtype=torch.int32, device=dev)
        carry["halted"] = torch.ones(B, dtype=torch.bool, device=dev)
        return carry

    def forward(self, carry, batch):
        """Reset halted samples (initial state, the new batch's data), run one supervision step,
        decide halting, compute the loss. Returns (new carry, loss, metrics, outputs)."""
        cfg, halted = self.cfg, carry["halted"]
        data = {k: torch.where(halted.view(-1, *[1] * (v.ndim - 1)), v, carry[k]) for k, v in batch.items()}
        y = torch.where(halted.view(-1, 1, 1), self.y_init, carry["y"])
        z = torch.where(halted.view(-1, 1, 1), self.z_init, carry["z"])
        steps = torch.where(halted, 0, carry["steps"]) + 1
        y, z, logits, q_halt, q_continue = self.step(data["inputs"], data["puzzle_identifiers"], y, z)
        out = dict(logits=logits, q_halt=q_halt, q_continue=q_continue)
        with torch.no_grad():
            last = steps >= cfg.halt_max_steps
            halted = last
            if self.training and cfg.halt_max_steps > 1:
                halted = halted | (q_halt > (0 if cfg.no_ACT_continue else q_continue))
                # exploration: some samples draw a minimum step count in [2, halt_max_steps]
                explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, 2, cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if not cfg.no_ACT_continue:  # bootstrapped target from one more step (HRM)
                    _, _, _, next_halt, next_cont = self.step(data["inputs"], data["puzzle_identifiers"], y, z)
                    out["target_q_continue"] = torch.sigmoid(
                        torch.where(last, next_halt, torch.maximum(next_halt, next_cont)))
        new_carry = dict(data, y=y, z=z, steps=steps, halted=halted)
        loss, metrics = compute_loss(cfg, out, data["labels"], halted, steps)
        return new_carry, loss, metrics, out

    @torch.no_grad()
    def think(self, inputs, puzzle_ids, steps, samples=1, noise=0.0, act_halt=False):
        """Inference as a generator: `samples` trajectories of every puzzle side by side (B*K rows
        through the network at once), all from the initial state, the noisy ones (noise > 0,
        drawn from torch's global generator: seed it) each exploring its own way. Yields after
        every supervision step: answers (B, K, seq_len), halting logits (B, K) and the steps each
        trajectory has run (B, K). With act_halt a trajectory stops as soon as q_halt > 0 (its
        answer and q stay as they were) and leaves the batch, so it stops costing compute."""
        B, K, P, H = inputs.shape[0], samples, self.cfg.positions, self.cfg.hidden_size
        inputs, puzzle_ids = inputs.repeat_interleave(K, 0), puzzle_ids.repeat_interleave(K, 0)
        y, z = self.y_init.expand(B * K, P, H), self.z_init.expand(B * K, P, H)
        active = torch.arange(B * K, device=inputs.device)  # rows still running
        answers = torch.zeros(B * K, inputs.shape[1], dtype=torch.long, device=inputs.device)
        q_halt = torch.zeros(B * K, device=inputs.device)
        used = torch.zeros(B * K, dtype=torch.int32, device=inputs.device)
        for s in range(steps):
            if len(active):
                y, z, logits, q, _ = self.step(inputs[active], puzzle_ids[active], y, z, noise)
                answers[active], q_halt[active], used[active] = logits.argmax(-1), q, s + 1
                if act_halt:
                    keep = q <= 0
                    active, y, z = active[keep], y[keep], z[keep]
            yield answers.view(B, K, -1), q_halt.view(B, K), used.view(B, K)

    def solve(self, inputs, puzzle_ids, steps=None, act_halt=False, samples=1, noise=0.0, select="q"):
        """Run think() and choose one answer per puzzle after every step (choose(): the most
        confident trajectory, or a vote). Returns predictions (S, B, seq_len), the chosen
        answers' halting logits (S, B) and the supervision steps computed per puzzle (B,), summed
        over its trajectories. samples=1, noise=0: plain TRM inference."""
        preds, qs = [], []
        for answers, q, used in self.think(inputs, puzzle_ids, steps or self.cfg.halt_max_steps,
                                           samples, noise, act_halt):
            pred, q, _ = choose(answers, q, select)
            preds.append(pred)
            qs.append(q)
        return torch.stack(preds), torch.stack(qs), used.sum(1)


def choose(answers, q_halt, rule="q"):
    """One answer per puzzle from its K trajectories: answers (B, K, L), halting logits (B, K) ->
    the chosen answers (B, L), their halting logits (B,) and which trajectory each is (B,).
    'q': the trajectory whose halting head is surest that it is right (argmax q_halt);
    'vote': the answer most trajectories reached, ties broken by their mean sigmoid(q_halt)."""
    if rule == "q":
        k = q_halt.argmax(1)
    else:
        K = answers.shape[1]
        same = torch.stack([(answers == answers[:, j:j + 1]).all(-1) for j in range(K)], -1)  # (B, K, K)
        votes = same.sum(-1)
        sure = (same * torch.sigmoid(q_halt)[:, None, :]).sum(-1) / votes  # in [0, 1]: below one vote
        k = (2 * votes + sure).argmax(1)
    rows = torch.arange(len(k), device=k.device)
    return answers[rows, k], q_halt[rows, k], k

# -----------------------------------------------------------------------------
# losses and metrics

def log_stablemax(logits, dim=-1):
    """log of s(v_i) / sum_j s(v_j) with s(v) = v + 1 for v >= 0 and 1 / (1 - v) below.
    Computed in float32: s > 0 and the sum of at most vocab_size terms (tests/test_model.py
    checks the float64 reference agrees)."""
    v = logits.float()
    # clamp: torch.where back-propagates through both branches, and 1/(1-v) at v == 1 would
    # turn a zero gradient into NaN (0 * inf); bfloat16 logits hit v == 1 exactly often enough
    s = torch.where(v < 0, 1 / (1 - v.clamp(max=0)), v + 1)
    return torch.log(s) - torch.log(s.sum(dim, keepdim=True))

def cross_entropy(logits, labels, loss_type="stablemax"):
    """Per-position cross-entropy (B, L); positions labelled IGNORE give 0."""
    valid = labels != IGNORE
    safe = torch.where(valid, labels, 0).long()
    if loss_type == "stablemax":
        logp = log_stablemax(logits).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    else:
        logp = -F.cross_entropy(logits.float().transpose(1, 2), safe, reduction="none")
    return torch.where(valid, -logp, 0)

def compute_loss(cfg, out, labels, halted, steps):
    """loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss), summed over the batch; metrics are
    device tensors summed over the samples that halted at this step (read them rarely)."""
    logits, q_halt = out["logits"], out["q_halt"]
    valid = labels != IGNORE
    counts = valid.sum(-1)
    lm_loss = (cross_entropy(logits, labels, cfg.loss_type) / counts.clamp_min(1)[:, None]).sum()
    with torch.no_grad():
        correct = valid & (logits.argmax(-1) == labels)
        seq_correct = correct.sum(-1) == counts
        m = halted & (counts > 0)  # samples scored now
        metrics = dict(
            count=m.sum(),
            accuracy=torch.where(m, correct.sum(-1) / counts.clamp_min(1), 0).sum(),
            exact_accuracy=(m & seq_correct).sum(),
            q_halt_accuracy=(m & ((q_halt >= 0) == seq_correct)).sum(),
            steps=torch.where(m, steps, 0).sum(),
        )
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, seq_correct.float(), reduction="sum")
    loss = lm_loss + 0.5 * q_halt_loss
    if "target_q_continue" in out:
        q_cont_loss = F.binary_cross_entropy_with_logits(out["q_continue"], out["target_q_continue"], reduction="sum")
        loss = loss + 0.5 * q_cont_loss
    metrics.update(lm_loss=lm_loss.detach(), q_halt_loss=q_halt_loss.detach())
    return loss, metrics
