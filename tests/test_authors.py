"""
Tests of the authors' checkpoint format: checkpoint.to_authors / checkpoint.load_state, and one
supervision step with loaded weights against an independent re-implementation of the authors'
forward pass (written here from the paper's description of the layers and the authors' key layout,
not from model.py).

    python -m pytest -q tests/test_authors.py

The key listings of the authors' four checkpoints (key and shape of every tensor, as printed from
their code) are kept below; with TRM_AUTHORS_KEYS=DIR pointing at a folder of such listings
(state_dict_keys_<name>.txt), test_embedded_listings_match_the_files checks the copy against them.
"""
import dataclasses
import json
import math
import os
import re
import sys

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from checkpoint import load_state, to_authors  # noqa: E402
from model import TRM, TRMConfig  # noqa: E402

LISTING_DIR = os.environ.get("TRM_AUTHORS_KEYS") or None
NAMES = ["sudoku-mlp", "sudoku-att", "maze", "arc"]


# key and shape columns of the listings state_dict_keys_<name>.txt
EMBEDDED = {
    "sudoku-mlp": """
# config: {"batch_size": 768, "puzzle_emb_ndim": 512, "hidden_size": 512, "num_heads": 8, "expansion": 4, "H_layers": 0, "L_layers": 2, "halt_max_steps": 16, "halt_exploration_prob": 0.1, "forward_dtype": "float32", "puzzle_emb_len": 16, "no_ACT_continue": true, "seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1, "H_cycles": 3, "L_cycles": 6, "mlp_t": true, "pos_encodings": "none"}
model.inner.H_init (512,)
model.inner.L_init (512,)
model.inner.embed_tokens.embedding_weight (11,512)
model.inner.lm_head.weight (11,512)
model.inner.q_head.weight (2,512)
model.inner.q_head.bias (2,)
model.inner.puzzle_emb.weights (1,512)
model.inner.L_level.layers.0.mlp_t.gate_up_proj.weight (1024,97)
model.inner.L_level.layers.0.mlp_t.down_proj.weight (97,512)
model.inner.L_level.layers.0.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.0.mlp.down_proj.weight (512,1536)
model.inner.L_level.layers.1.mlp_t.gate_up_proj.weight (1024,97)
model.inner.L_level.layers.1.mlp_t.down_proj.weight (97,512)
model.inner.L_level.layers.1.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.1.mlp.down_proj.weight (512,1536)
""",
    "sudoku-att": """
# config: {"batch_size": 768, "puzzle_emb_ndim": 512, "hidden_size": 512, "num_heads": 8, "expansion": 4, "H_layers": 0, "L_layers": 2, "halt_max_steps": 16, "halt_exploration_prob": 0.1, "forward_dtype": "float32", "puzzle_emb_len": 16, "no_ACT_continue": true, "seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1, "H_cycles": 3, "L_cycles": 6, "mlp_t": false, "pos_encodings": "rope"}
model.inner.H_init (512,)
model.inner.L_init (512,)
model.inner.embed_tokens.embedding_weight (11,512)
model.inner.lm_head.weight (11,512)
model.inner.q_head.weight (2,512)
model.inner.q_head.bias (2,)
model.inner.puzzle_emb.weights (1,512)
model.inner.L_level.layers.0.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.0.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.0.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.0.mlp.down_proj.weight (512,1536)
model.inner.L_level.layers.1.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.1.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.1.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.1.mlp.down_proj.weight (512,1536)
""",
    "maze": """
# config: {"batch_size": 768, "puzzle_emb_ndim": 512, "hidden_size": 512, "num_heads": 8, "expansion": 4, "H_layers": 0, "L_layers": 2, "halt_max_steps": 16, "halt_exploration_prob": 0.1, "forward_dtype": "float32", "puzzle_emb_len": 16, "no_ACT_continue": true, "seq_len": 900, "vocab_size": 6, "num_puzzle_identifiers": 1, "H_cycles": 3, "L_cycles": 4, "mlp_t": false, "pos_encodings": "rope"}
model.inner.H_init (512,)
model.inner.L_init (512,)
model.inner.embed_tokens.embedding_weight (6,512)
model.inner.lm_head.weight (6,512)
model.inner.q_head.weight (2,512)
model.inner.q_head.bias (2,)
model.inner.puzzle_emb.weights (1,512)
model.inner.L_level.layers.0.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.0.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.0.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.0.mlp.down_proj.weight (512,1536)
model.inner.L_level.layers.1.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.1.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.1.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.1.mlp.down_proj.weight (512,1536)
""",
    "arc": """
# config: {"batch_size": 768, "puzzle_emb_ndim": 512, "hidden_size": 512, "num_heads": 8, "expansion": 4, "H_layers": 0, "L_layers": 2, "halt_max_steps": 16, "halt_exploration_prob": 0.1, "forward_dtype": "float32", "puzzle_emb_len": 16, "no_ACT_continue": true, "seq_len": 900, "vocab_size": 12, "num_puzzle_identifiers": 876406, "H_cycles": 3, "L_cycles": 4, "mlp_t": false, "pos_encodings": "rope"}
model.inner.H_init (512,)
model.inner.L_init (512,)
model.inner.embed_tokens.embedding_weight (12,512)
model.inner.lm_head.weight (12,512)
model.inner.q_head.weight (2,512)
model.inner.q_head.bias (2,)
model.inner.puzzle_emb.weights (876406,512)
model.inner.L_level.layers.0.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.0.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.0.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.0.mlp.down_proj.weight (512,1536)
model.inner.L_level.layers.1.self_attn.qkv_proj.weight (1536,512)
model.inner.L_level.layers.1.self_attn.o_proj.weight (512,512)
model.inner.L_level.layers.1.mlp.gate_up_proj.weight (3072,512)
model.inner.L_level.layers.1.mlp.down_proj.weight (512,1536)
""",
}


def parse_listing(text):
    """-> (config dict, {key: shape}) from a listing: a '# config: {json}' line, then lines that
    start with 'model.inner.<key>' followed by the shape '(a, b)'."""
    config, shapes = None, {}
    for line in text.splitlines():
        if line.startswith("# config:"):
            config = json.loads(line[len("# config:"):])
        m = re.match(r"(model\.inner\.\S+)\s+\(([\d,\s]*)\)", line)
        if m:
            shapes[m.group(1)] = tuple(int(n) for n in m.group(2).replace(",", " ").split())
    assert config is not None and shapes, "not a key listing"
    return config, shapes


def listing(name):
    if LISTING_DIR:
        with open(os.path.join(LISTING_DIR, f"state_dict_keys_{name}.txt")) as f:
            return parse_listing(f.read())
    return parse_listing(EMBEDDED[name])


def build_empty(cfg):
    """A full-size model without drawing its 5-7M initial weights (seconds on a busy CPU): built
    on the meta device, then allocated. Only for loading: from_authors fills every saved tensor."""
    with torch.device("meta"):
        m = TRM(cfg, verbose=False)
    return m.to_empty(device="cpu")


def trm_config(authors_config, **override):
    names = {f.name for f in dataclasses.fields(TRMConfig)}
    kw = {k: v for k, v in authors_config.items() if k in names}
    kw.update(override)
    return TRMConfig(**kw)

# -----------------------------------------------------------------------------
# the authors' layout, from the spec: shapes, random weights, the forward pass


def prefix_len(c):
    if c["puzzle_emb_ndim"] == 0:
        return 0
    return c["puzzle_emb_len"] or math.ceil(c["puzzle_emb_ndim"] / c["hidden_size"])


def authors_shapes(c):
    """{authors' key: shape} for an authors' config dict (keys without the 'model.inner.' prefix)."""
    H, V, P = c["hidden_size"], c["vocab_size"], c["seq_len"] + prefix_len(c)
    inner = lambda d: math.ceil(round(c["expansion"] * d * 2 / 3) / 256) * 256  # noqa: E731
    shapes = {"H_init": (H,), "L_init": (H,), "embed_tokens.embedding_weight": (V, H),
              "lm_head.weight": (V, H), "q_head.weight": (2, H), "q_head.bias": (2,)}
    if c["puzzle_emb_ndim"] > 0:
        shapes["puzzle_emb.weights"] = (c["num_puzzle_identifiers"], c["puzzle_emb_ndim"])
    if c["pos_encodings"] == "learned":
        shapes["embed_pos.embedding_weight"] = (P, H)
    for i in range(c["L_layers"]):
        p = f"L_level.layers.{i}."
        if c["mlp_t"]:
            shapes[p + "mlp_t.gate_up_proj.weight"] = (2 * inner(P), P)
            shapes[p + "mlp_t.down_proj.weight"] = (P, inner(P))
        else:
            shapes[p + "self_attn.qkv_proj.weight"] = (3 * H, H)
            shapes[p + "self_attn.o_proj.weight"] = (H, H)
        shapes[p + "mlp.gate_up_proj.weight"] = (2 * inner(H), H)
        shapes[p + "mlp.down_proj.weight"] = (H, inner(H))
    return shapes


def random_authors_weights(c, seed=0):
    """Random non-zero weights for every key (q_head and puzzle embedding included)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in authors_shapes(c).items():
        std = 1 / math.sqrt(shape[-1]) if k.endswith("proj.weight") or k.startswith(("lm_head", "q_head.w")) else 1.0
        sd[k] = std * torch.randn(shape, generator=g)
    return sd


def ref_rms_norm(x, eps):  # over the last axis
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)


def ref_swiglu(x, gate_up, down):
    inner = gate_up.shape[0] // 2
    h = x @ gate_up.T
    return (F.silu(h[..., :inner]) * h[..., inner:]) @ down.T


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def ref_attention(x, qkv_w, o_w, nh, cos_sin):
    B, S, C = x.shape
    hd = C // nh
    qkv = (x @ qkv_w.T).view(B, S, 3 * nh, hd)
    q, k, v = qkv[:, :, :nh], qkv[:, :, nh:2 * nh], qkv[:, :, 2 * nh:]
    if cos_sin is not None:
        cos, sin = cos_sin  # (S, hd)
        q = q * cos[:, None] + rotate_half(q) * sin[:, None]
        k = k * cos[:, None] + rotate_half(k) * sin[:, None]
    q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # B nh S hd
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)  # non-causal
    return (att @ v).permute(0, 2, 1, 3).reshape(B, S, C) @ o_w.T


def ref_step(sd, c, inputs, puzzle_ids, z_H, z_L):
    """One supervision step of the authors' inner model, from the state (z_H, z_L)."""
    H, eps, plen = c["hidden_size"], c.get("rms_norm_eps", 1e-5), prefix_len(c)
    B, P = inputs.shape[0], c["seq_len"] + plen
    emb = sd["embed_tokens.embedding_weight"][inputs]
    if c["puzzle_emb_ndim"] > 0:
        pe = sd["puzzle_emb.weights"][puzzle_ids]
        pe = F.pad(pe, (0, plen * H - c["puzzle_emb_ndim"]))
        emb = torch.cat((pe.view(B, plen, H), emb), dim=1)
    if c["pos_encodings"] == "learned":
        emb = 0.707106781 * (emb + sd["embed_pos.embedding_weight"])
    x = math.sqrt(H) * emb
    cos_sin = None
    if c["pos_encodings"] == "rope":
        hd = H // c["num_heads"]
        inv_freq = 1.0 / 10000 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        freqs = torch.outer(torch.arange(P, dtype=torch.float64), inv_freq)
        emb_f = torch.cat((freqs, freqs), dim=-1)
        cos_sin = emb_f.cos().to(x.dtype), emb_f.sin().to(x.dtype)

    def block(i, h):
        p = f"L_level.layers.{i}."
        if c["mlp_t"]:
            t = h.transpose(1, 2)  # (B, H, P)
            t = ref_rms_norm(t + ref_swiglu(t, sd[p + "mlp_t.gate_up_proj.weight"], sd[p + "mlp_t.down_proj.weight"]), eps)
            h = t.transpose(1, 2)
        else:
            a = ref_attention(h, sd[p + "self_attn.qkv_proj.weight"], sd[p + "self_attn.o_proj.weight"], c["num_heads"], cos_sin)
            h = ref_rms_norm(h + a, eps)
        return ref_rms_norm(h + ref_swiglu(h, sd[p + "mlp.gate_up_proj.weight"], sd[p + "mlp.down_proj.weight"]), eps)

    def L_level(h, injection):
        h = h + injection
        for i in range(c["L_layers"]):
            h = block(i, h)
        return h

    for _ in range(c["H_cycles"]):
        for _ in range(c["L_cycles"]):
            z_L = L_level(z_L, z_H + x)
        z_H = L_level(z_H, z_L)
    logits = (z_H @ sd["lm_head.weight"].T)[:, plen:]
    q = z_H[:, 0] @ sd["q_head.weight"].T + sd["q_head.bias"]
    return z_H, z_L, logits, q[:, 0], q[:, 1]


def test_shape_formulas_reproduce_the_official_listings():
    """The test's own reading of the layout (authors_shapes) gives every listing exactly."""
    for name in NAMES:
        config, shapes = listing(name)
        expected = {k[len("model.inner."):]: v for k, v in shapes.items()}
        assert authors_shapes(config) == expected, name


def test_embedded_listings_match_the_files():
    if LISTING_DIR is None:
        pytest.skip("set TRM_AUTHORS_KEYS to a folder of the authors' key listings")
    for name in NAMES:
        assert listing(name) == parse_listing(EMBEDDED[name]), name

# -----------------------------------------------------------------------------
# to_authors / from_authors


TINY = dict(seq_len=9, vocab_size=6, num_puzzle_identifiers=5, hidden_size=32, num_heads=2,
            expansion=4, L_layers=2, H_cycles=2, L_cycles=2, puzzle_emb_ndim=48, puzzle_emb_len=0,
            rms_norm_eps=1e-5)
VARIANTS = {  # puzzle_emb_ndim 48 over hidden 32: a 2-position prefix, the second half zero-padded
    "attention-rope": dict(TINY, mlp_t=False, pos_encodings="rope"),
    "mlp_t": dict(TINY, mlp_t=True, pos_encodings="none", puzzle_emb_ndim=32, puzzle_emb_len=3),
    "attention-learned": dict(TINY, mlp_t=False, pos_encodings="learned", puzzle_emb_ndim=0),
}


def tiny_batch(c, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, c["vocab_size"], (B, c["seq_len"]), generator=g)
    ids = torch.randint(0, c["num_puzzle_identifiers"], (B,), generator=g)
    return inputs, ids


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_through_the_authors_format(variant):
    c = VARIANTS[variant]
    torch.manual_seed(0)
    m1 = TRM(trm_config(c), verbose=False)
    load_state(m1, random_authors_weights(c, seed=1))  # non-trivial q_head, puzzle embedding
    torch.manual_seed(1)
    inputs, ids = tiny_batch(c)
    P = c["seq_len"] + prefix_len(c)
    y, z = torch.randn(3, P, 32), torch.randn(3, P, 32)
    with torch.no_grad():
        ref = m1.step(inputs, ids, y, z)
    for prefix in ("_orig_mod.model.inner.", "model.inner."):
        sd = to_authors(m1.state_dict(), prefix=prefix)
        assert all(k.startswith(prefix) for k in sd)
        assert {k[len(prefix):]: tuple(v.shape) for k, v in sd.items()} == authors_shapes(c)
        torch.manual_seed(2)
        m2 = TRM(trm_config(c), verbose=False)
        assert not torch.equal(m2.y_init, m1.y_init)
        load_state(m2, sd)
        assert torch.equal(m2.y_init, m1.y_init) and torch.equal(m2.z_init, m1.z_init)
        with torch.no_grad():
            out = m2.step(inputs, ids, y, z)
        for a, b in zip(out, ref):
            assert torch.equal(a, b)
    assert list(to_authors(m1.state_dict()))[0].startswith("_orig_mod.model.inner.")  # the default


@pytest.mark.parametrize("name", NAMES)
def test_official_listing_loads_into_the_matching_config(name):
    config, shapes = listing(name)
    if name == "arc":  # the real table is 876,406 x 512 (1.7 GiB): keep its keys, shrink its rows
        config = dict(config, num_puzzle_identifiers=7)
        shapes = dict(shapes, **{"model.inner.puzzle_emb.weights": (7, 512)})
    g = torch.Generator().manual_seed(0)
    sd = {"_orig_mod." + k: torch.randn(s, generator=g) for k, s in shapes.items()}
    m = build_empty(trm_config(config))
    dense = sum(math.prod(s) for k, s in shapes.items()
                if not k.endswith(("H_init", "L_init", "puzzle_emb.weights")))
    assert m.num_params() == dense
    load_state(m, sd)
    back = to_authors(m.state_dict(), prefix="_orig_mod.model.inner.")
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    assert torch.equal(m.q_head.bias, sd["_orig_mod.model.inner.q_head.bias"])
    assert torch.equal(m.y_init, sd["_orig_mod.model.inner.H_init"])
    assert torch.equal(m.z_init, sd["_orig_mod.model.inner.L_init"])


def test_bad_checkpoints_raise_a_value_error_listing_the_keys():
    config, shapes = listing("sudoku-mlp")
    sd = {k: torch.randn(s) for k, s in shapes.items()}
    m = load_state(build_empty(trm_config(config)), sd)
    before = {k: v.clone() for k, v in m.state_dict().items()}

    bad = dict(sd)
    del bad["model.inner.L_level.layers.1.mlp_t.down_proj.weight"]
    with pytest.raises(ValueError, match=r"missing.*layers\.1\.mlp_t\.down_proj\.weight"):
        load_state(m, bad)

    bad = dict(sd, **{"model.inner.puzzle_emb.weights": torch.randn(2, 512)})
    with pytest.raises(ValueError, match=r"mis-shaped.*puzzle_emb.*\(2, 512\).*\(1, 512\)"):
        load_state(m, bad)

    bad = dict(sd, **{"model.inner.extra_head.weight": torch.randn(3)})
    with pytest.raises(ValueError, match=r"unexpected.*extra_head\.weight"):
        load_state(m, bad)

    bad = dict(sd, **{"model.inner.extra_head.weight": torch.randn(3),
                      "model.inner.lm_head.weight": torch.randn(12, 512)})
    del bad["model.inner.H_init"]
    with pytest.raises(ValueError) as e:
        load_state(m, bad)
    msg = str(e.value)
    assert "missing" in msg and "unexpected" in msg and "mis-shaped" in msg
    assert "extra_head.weight" in msg and "lm_head.weight" in msg and "(12, 512)" in msg
    assert "H_init" in msg or "y_init" in msg

    # an attention checkpoint does not fit the MLP model
    att = {k: torch.randn(s) for k, s in listing("sudoku-att")[1].items()}
    with pytest.raises(ValueError, match=r"(?s)missing.*mlp_t.*unexpected.*self_attn"):
        load_state(m, att)
    # nothing was loaded by the failed attempts
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k

# -----------------------------------------------------------------------------
# one supervision step against the independent re-implementation


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_step_matches_an_independent_reimplementation(variant):
    c = VARIANTS[variant]
    sd = random_authors_weights(c, seed=3)
    assert (sd["q_head.weight"] != 0).all() and (sd.get("puzzle_emb.weights", torch.ones(1)) != 0).all()
    torch.manual_seed(0)
    m = TRM(trm_config(c), verbose=False)
    load_state(m, {"_orig_mod.model.inner." + k: v for k, v in sd.items()})
    inputs, ids = tiny_batch(c, B=3, seed=4)
    P, H = c["seq_len"] + prefix_len(c), c["hidden_size"]
    g = torch.Generator().manual_seed(5)
    z_H, z_L = torch.randn(3, P, H, generator=g), torch.randn(3, P, H, generator=g)  # a non-initial carry
    with torch.no_grad():
        out = m.step(inputs, ids, z_H, z_L)
    sd64 = {k: v.double() for k, v in sd.items()}
    ref = ref_step(sd64, c, inputs, ids, z_H.double(), z_L.double())
    for name, a, b in zip(["y", "z", "logits", "q_halt", "q_continue"], out, ref):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a.double(), b, atol=2e-4, rtol=2e-4, msg=lambda s: f"{name}: {s}")
    # and the reference is sensitive to what it tests: the state, the puzzle ids, the weights
    assert (ref_step(sd64, c, inputs, ids, z_H.double(), 0 * z_L.double())[2] - ref[2]).abs().max() > 1e-3
    if c["puzzle_emb_ndim"]:
        assert (ref_step(sd64, c, inputs, (ids + 1) % 5, z_H.double(), z_L.double())[2] - ref[2]).abs().max() > 1e-3


def test_initial_states_come_from_H_init_and_L_init():
    """A fresh carry starts from H_init (y) and L_init (z), broadcast over positions."""
    c = VARIANTS["attention-rope"]
    sd = random_authors_weights(c, seed=6)
    m = TRM(trm_config(c), verbose=False)
    load_state(m, {"model.inner." + k: v for k, v in sd.items()})
    inputs, ids = tiny_batch(c)
    batch = dict(inputs=inputs, labels=inputs, puzzle_identifiers=ids)
    carry = m.initial_carry(batch)
    m.eval()
    with torch.no_grad():
        new_carry, _, _, out = m(carry, batch)
    P = c["seq_len"] + prefix_len(c)
    z_H, z_L = sd["H_init"].expand(3, P, 32).double(), sd["L_init"].expand(3, P, 32).double()
    ref = ref_step({k: v.double() for k, v in sd.items()}, c, inputs, ids, z_H, z_L)
    torch.testing.assert_close(new_carry["y"].double(), ref[0], atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(out["logits"].double(), ref[2], atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(out["q_halt"].double(), ref[3], atol=2e-4, rtol=2e-4)
