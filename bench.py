"""
Time a TRM on random puzzles: training steps (forward + backward + optimizer, with the ACT carry,
as train.py runs them) and inference (all halt_max_steps supervision steps, then with act_halt);
print samples/s, matmul TFLOP/s, on CUDA the MFU, and the peak memory beside estimate_memory().

    python bench.py                                     # Sudoku MLP model, batch 8, default device
    python bench.py --config=sudoku_att --device=cpu --threads=2
    python bench.py --config=small_mlp --compile=True   # torch.compile the recursion (time printed)
    python bench.py --config=arc --infer_runs=0         # ARC size (a 1.7 GiB puzzle table), training only
    python bench.py --compile=True --dtype=bfloat16     # the fastest setting on a CPU with AMX
    python bench.py --config=quickstart                 # the model of config/sudoku6_cpu.py
    python bench.py --profile=True                      # where one training step spends its time
    python bench.py --config=small_mlp --memory=True    # CPU: the measured peak memory of a training step
    python bench.py --config=paper                      # a GPU: the four paper configs at the paper batch, one table

Configs: the rows of the authors' CPU baseline (sudoku, sudoku_att, small_att, small_mlp, arc),
maze, quickstart, or the path of a train.py config file whose dataset is prepared; --config=paper
runs sudoku, sudoku_att, maze and arc at the paper's batch per GPU (768 on one GPU; maze 768 on 4
GPUs, ARC 768 on 8) eager, then compiled. Prints medians after warm-up, with device
synchronisation; on a CPU also the process CPU time per step (on a shared machine it moves much
less than wall time: compare two settings with it).
"""
import ctypes
import os
import statistics
import time
from dataclasses import fields

import torch

from checkpoint import checkpoint_weights, load_state, read_checkpoint
from configurator import configure, pick_device, read_config_file
from model import TRM, TRMConfig
from optim import AdamATan2, sign_sgd_

# -----------------------------------------------------------------------------
config = "sudoku"       # a name below, 'quickstart', 'paper', or a train.py config file
batch_size = 0          # 0: the config's batch
device = ""             # '' picks cuda, then mps, then cpu
dtype = ""              # '' picks bfloat16 on cuda, float32 elsewhere
compile = None          # torch.compile the recursion, as train.py; None: on with CUDA
threads = 0             # CPU threads; 0: torch's default (one per core)
warmup = 2              # untimed training steps (and one untimed inference of each kind) first
train_steps = 6         # timed training steps
infer_runs = 2          # timed inferences of each kind; 0: no inference
init_from = ""          # one of our checkpoints: time a trained model (act_halt then stops samples)
profile = False         # print torch.profiler's table for one training step
memory = False          # CPU: measure the peak memory of one training step (Linux; slows allocation)
seed = 0
# -----------------------------------------------------------------------------
configure(globals(), dict(batch_size="[0, inf)", dtype=("", "float32", "bfloat16"), compile=(None, True, False),
                          threads="[0, 1024]", warmup="[0, inf)", train_steps="[1, inf)", infer_runs="[0, inf)",
                          seed="[0, 4294967295]"))

# TRMConfig fields, the batch of the authors' CPU baseline and the paper's batch per GPU; the rest
# of each model is TRMConfig's default (hidden 512, 8 heads, 2 layers, 16 prefix positions).
CONFIGS = {
    "sudoku": dict(batch=8, paper=768, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                   H_cycles=3, L_cycles=6, mlp_t=True, pos_encodings="none"),
    "sudoku_att": dict(batch=8, paper=768, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                       H_cycles=3, L_cycles=6, mlp_t=False, pos_encodings="rope"),
    "small_att": dict(batch=64, seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=128,
                      num_heads=4, puzzle_emb_ndim=128, H_cycles=2, L_cycles=2, mlp_t=False, pos_encodings="rope"),
    "small_mlp": dict(batch=64, seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=128,
                      num_heads=4, puzzle_emb_ndim=128, H_cycles=2, L_cycles=2, mlp_t=True, pos_encodings="none"),
    "maze": dict(batch=1, paper=192, seq_len=900, vocab_size=6, num_puzzle_identifiers=1,
                 H_cycles=3, L_cycles=4, mlp_t=False, pos_encodings="rope"),
    "arc": dict(batch=1, paper=96, seq_len=900, vocab_size=12, num_puzzle_identifiers=876_406,
                H_cycles=3, L_cycles=4, mlp_t=False, pos_encodings="rope"),
}
# dense bf16 tensor-core peaks (no sparsity), FLOP/s; the first name found in the device's name wins
BF16_PEAK = [("H200", 989e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12),
             ("A100", 312e12), ("L40S", 362e12)]


def resolve(name):
    """A named config, or the model and batch of a train.py config file (data shape from its
    dataset.json; the quick start falls back to 6x6 Sudoku, 36 cells and 8 tokens)."""
    if name in CONFIGS:
        return dict(CONFIGS[name])
    path = "config/sudoku6_cpu.py" if name == "quickstart" else name
    if not os.path.exists(path):
        raise SystemExit(f"unknown config '{name}': use one of {', '.join(CONFIGS)}, quickstart, paper, "
                         f"or a config file ({path} does not exist)")
    scope = read_config_file(path)
    c = {f.name: scope[f.name] for f in fields(TRMConfig) if f.name in scope}
    c["batch"] = scope.get("global_batch_size", 768)
    c["system"] = {k: scope[k] for k in ("device", "dtype", "compile") if k in scope}  # unless given here
    meta = os.path.join(scope.get("data_dir", ""), "train", "dataset.json")
    if os.path.exists(meta):
        from puzzle_data import load_split
        m = load_split(os.path.dirname(os.path.dirname(meta)), "train")[0]
        c.update({k: m[k] for k in ("seq_len", "vocab_size", "num_puzzle_identifiers")})
    elif name == "quickstart":
        c.update(seq_len=36, vocab_size=8, num_puzzle_identifiers=1)
    else:
        raise SystemExit(f"{meta} not found: prepare the dataset of {path} first (its shape is needed)")
    return c


def inner_size(d, expansion):
    return -(-round(expansion * d * 2 / 3) // 256) * 256


def flops_per_sample(cfg):
    """Matmul FLOPs (2 per multiply-add) of one supervision step for one sample: (forward, training).
    Norms, activations, rope and the loss are left out (they are not matmuls).
      SwiGLU of width d, inner size I, on one vector: 2*d*2I + 2*I*d = 6*d*I
      attention block:  P * (8*H*H  +  4*P*H  +  6*H*I_H)     q,k,v,o projections; scores and
                                                             weighted sum over P keys; SwiGLU
      mlp_t block:      H * 6*P*I_P  +  P * 6*H*I_H           SwiGLU across positions on each of
                                                             the H columns; SwiGLU on each position
      forward  = H_cycles*(L_cycles+1)*L_layers blocks + lm_head 2*H*V*seq_len  (q_head: negligible)
      training = forward + backward of the (L_cycles+1)*L_layers blocks with gradients and of the
                 lm_head, at twice their forward FLOPs (gradients of inputs and of weights)"""
    P, H = cfg.positions, cfg.hidden_size
    mlp = P * 6 * H * inner_size(H, cfg.expansion)
    mix = H * 6 * P * inner_size(P, cfg.expansion) if cfg.mlp_t else P * (8 * H * H + 4 * P * H)
    block, head = mix + mlp, 2 * H * cfg.vocab_size * cfg.seq_len
    grad_blocks = (cfg.L_cycles + 1) * cfg.L_layers
    forward = cfg.H_cycles * grad_blocks * block + head
    return forward, forward + 2 * (grad_blocks * block + head)


def estimate_memory(cfg, B, dtype, dense_params):
    """Bytes held at the peak of one eager training step on one rank, by part (README, efficiency
    notes). Only the last H cycle back-propagates, so its (L_cycles + 1) * L_layers block
    applications keep their activations; per position per block (bytes, from the tensors autograd
    saves, counted with saved_tensors_hooks): float32 attention 42H + 16I, mlp_t 18H + 16I +
    16*H*I_P/P; bfloat16 autocast about half (the residual stream stays float32): attention
    22H + 9I, mlp_t 13H + 8I + 8*H*I_P/P. The backward adds about one block's worth of gradients."""
    P, H, bf16 = cfg.positions, cfg.hidden_size, dtype != "float32"
    I, IP = inner_size(H, cfg.expansion), inner_size(P, cfg.expansion)
    if cfg.mlp_t:
        per = (13 * H + 8 * I + 8 * H * IP / P) if bf16 else (18 * H + 16 * I + 16 * H * IP / P)
    else:
        per = (22 * H + 9 * I) if bf16 else (42 * H + 16 * I)
    blocks = (cfg.L_cycles + 1) * cfg.L_layers
    parts = dict(
        weights=4 * dense_params + (2 * dense_params if bf16 else 0),  # + their bfloat16 copies
        gradients=4 * dense_params, adam_state=8 * dense_params, ema=4 * dense_params,
        puzzle_table=4 * cfg.num_puzzle_identifiers * cfg.puzzle_emb_ndim,
        carry=2 * 2 * 4 * B * P * H,                                     # y and z, old and new
        activations=(blocks + 1) * B * P * per,
        logits_and_loss=4 * 4 * B * cfg.seq_len * cfg.vocab_size)
    parts["total"] = sum(parts.values())
    return parts


def sync(device_type):
    if device_type == "cuda":
        torch.cuda.synchronize()
    elif device_type == "mps":
        torch.mps.synchronize()


def timed(fn, n, device_type):
    """Median wall and process CPU seconds of n calls, each between two device synchronisations."""
    wall, cpu, out = [], [], None
    for _ in range(n):
        sync(device_type)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync(device_type)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def setup(c, B, dev, use_compile):
    """Model, optimizer, EMA, a random batch and train.py's step on it, for a config dict."""
    cfg = TRMConfig(**c)
    model = TRM(cfg, verbose=False).to(dev)
    g = torch.Generator().manual_seed(seed)
    batch = dict(  # random puzzles: in training every sample runs all halt_max_steps steps
        inputs=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
        labels=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
        puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g, dtype=torch.int32))
    batch = {k: v.to(dev) for k, v in batch.items()}
    if use_compile:
        model.compile_recursion()
    dense = [p for _, p in model.dense_parameters()]
    optimizer = AdamATan2(dense, lr=1e-4, betas=(0.9, 0.95), weight_decay=1.0)
    ema = [p.detach().clone() for p in dense]
    state = dict(carry=model.initial_carry(batch))

    def train_step():
        """train.py's step on one process: forward with the carry, backward, AdamATan2, sign-SGD
        on the puzzle-embedding rows, EMA; the metrics stay on the device."""
        with autocast:
            state["carry"], loss, metrics, _ = model(state["carry"], batch)
        (loss / B).backward()
        optimizer.step()
        if cfg.puzzle_emb_ndim > 0:
            sign_sgd_(model.puzzle_emb.weight, model.puzzle_emb.weight.grad, 1e-4, 1.0)
        model.zero_grad(set_to_none=True)
        torch._foreach_lerp_(ema, [p.detach() for p in dense], 1 - 0.999)
        return torch.stack([loss.detach()] + [metrics[k] for k in ("count", "accuracy", "steps")]).float()
    return cfg, model, batch, train_step


def train_figures(cfg, model, B, train_step, steps):
    """Warm up, time `steps` training steps: (ms, samples/s, TFLOP/s, MFU or None, peak bytes or None)."""
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        train_step()
    wall, cpu, _ = timed(train_step, steps, device_type)
    peak_flops = next((p for n, p in BF16_PEAK if n in torch.cuda.get_device_name()), None) if device_type == "cuda" else None
    tflops = B * flops_per_sample(cfg)[1] / wall / 1e12
    return dict(ms=wall * 1e3, cpu_ms=cpu * 1e3, samples=B / wall, tflops=tflops,
                mfu=tflops * 1e12 / peak_flops if peak_flops else None,
                peak=torch.cuda.max_memory_allocated() if device_type == "cuda" else None)


def gib(x):
    return f"{x / 2**30:.2f} GiB"

# -----------------------------------------------------------------------------
if threads:
    torch.set_num_threads(threads)
if memory:  # every tensor of 64 KiB or more comes from, and goes back to, the OS: RSS follows them
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 1 << 16)   # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 16)   # M_TRIM_THRESHOLD
    base = rss()
asked_compile = compile
c = {} if config == "paper" else resolve(config)
system = c.pop("system", {})
device, device_type, dtype, autocast = pick_device(device or system.get("device", ""), dtype or system.get("dtype", ""))
compile = (device_type == "cuda" if system.get("compile") is None else system["compile"]) if compile is None else compile
torch.manual_seed(seed)
print(f"device {device} ({torch.cuda.get_device_name() if device_type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
      f"{dtype}, torch {torch.__version__}")

if config == "paper":  # one table: eager, then compiled, at the paper's batch per GPU
    rows = []
    for name in ("sudoku", "sudoku_att", "maze", "arc"):
        c = {k: v for k, v in CONFIGS[name].items() if k != "batch"}
        B = batch_size or c["paper"]
        c.pop("paper")
        figures = []
        for use_compile in (False, True) if asked_compile is not False else (False,):
            torch._dynamo.reset()
            cfg, model, batch, train_step = setup(c, B, device, use_compile)
            t0 = time.perf_counter()
            figures.append(train_figures(cfg, model, B, train_step, 3 if not use_compile else train_steps))
            f = figures[-1]
            print(f"{name} batch {B} compile {use_compile}: {f['ms']:.1f} ms/step, {f['samples']:.1f} samples/s, "
                  f"{f['tflops']:.1f} TFLOP/s" + (f", MFU {f['mfu']:.1%}" if f["mfu"] else "")
                  + (f", peak {gib(f['peak'])}" if f["peak"] is not None else "")
                  + f" ({time.perf_counter() - t0:.0f} s with warm-up)", flush=True)
            est = estimate_memory(cfg, B, dtype, model.num_params())["total"]
            del model, batch, train_step
            if device_type == "cuda":
                torch.cuda.empty_cache()
        rows.append((name, B, figures, est))
    print(f"\n{'config':<11} {'batch':>5} {'eager ms':>9} {'compiled ms':>11} {'samples/s':>9} {'TFLOP/s':>8} "
          f"{'MFU':>6} {'peak eager':>11} {'peak compiled':>13} {'estimate':>9}")
    for name, B, figures, est in rows:
        e, k = figures[0], figures[-1]
        mfu = f"{k['mfu']:.1%}" if k["mfu"] is not None else "-"
        peaks = [gib(f["peak"]) if f["peak"] is not None else "-" for f in (e, k)]
        print(f"{name:<11} {B:>5} {e['ms']:>9.1f} {k['ms']:>11.1f} {k['samples']:>9.1f} {k['tflops']:>8.1f} "
              f"{mfu:>6} {peaks[0]:>11} {peaks[1]:>13} {gib(est):>9}")
    raise SystemExit(0)

B = batch_size or c.pop("batch")
c.pop("paper", None)
if init_from:  # a trained model (its architecture, EMA weights) on the first test puzzles of its data
    ckpt = read_checkpoint(init_from)
    c = ckpt["model_args"]
cfg, model, batch, train_step = setup(c, B, device, compile)
if init_from:
    load_state(model, checkpoint_weights(ckpt))
    data_dir = ckpt.get("config", {}).get("data_dir", "")
    if os.path.exists(os.path.join(data_dir, "test", "dataset.json")):
        from puzzle_data import load_split, make_batch, to_device
        meta, arrays = load_split(data_dir, "test")
        idx = list(range(min(B, len(arrays["inputs"]))))
        batch.update(to_device(make_batch(arrays, idx, B), device, meta.get("ignore_label_id", 0)))
        print(f"{len(idx)} test puzzles of {data_dir}")
trained = {k: v.clone() for k, v in model.state_dict().items()} if init_from else None
fwd, train_flops = flops_per_sample(cfg)
print(f"config {config}: batch {B}, compile {compile}, {cfg}")
print(f"matmul FLOPs per sample: {fwd / 1e9:.2f} G per supervision step, {train_flops / 1e9:.2f} G per training step")

model.train()
if memory:  # one measured step, after the warm-up created the optimizer state
    for _ in range(max(1, warmup)):
        train_step()
    before = rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size to the current one
    train_step()
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    est = estimate_memory(cfg, B, dtype, model.num_params())
    print(f"memory: measured {gib(hwm - base)} ({gib(before - base)} between steps, {gib(hwm - before)} more "
          f"during one), estimate {gib(est['total'])}: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in est.items()))
    raise SystemExit(0)
if profile:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    for _ in range(warmup):
        train_step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        train_step()
        sync(device_type)
    print(prof.key_averages().table(sort_by=f"self_{'device' if device_type == 'cuda' else 'cpu'}_time_total", row_limit=20))
t0 = time.perf_counter()
f = train_figures(cfg, model, B, train_step, train_steps)
est = estimate_memory(cfg, B, dtype, model.num_params())["total"]
print(f"train step      {f['ms']:9.1f} ms" + (f" (CPU {f['cpu_ms']:.0f} ms)" if device_type == "cpu" else "")
      + f"  {f['samples']:8.2f} samples/s  {f['tflops']:.3f} TFLOP/s" + (f" = {f['mfu']:.1%} of bf16 peak" if f["mfu"] else "")
      + (f"  peak {gib(f['peak'])} (estimate {gib(est)})" if f["peak"] is not None else "")
      + f"  ({time.perf_counter() - t0:.1f} s with {warmup} warm-up steps)")

if infer_runs:
    model.eval()
    if trained:  # time inference of the trained weights, not of the ones the timed steps moved
        model.load_state_dict(trained)
    S = cfg.halt_max_steps
    for act in (False, True):
        def infer():
            with autocast:
                return model.solve(batch["inputs"], batch["puzzle_identifiers"], act_halt=act)[2]
        t0 = time.perf_counter()
        infer()  # warm-up (compiles the no-grad graph, and for each smaller batch with act_halt)
        sync(device_type)
        warm = time.perf_counter() - t0
        wall, cpu, used = timed(infer, infer_runs, device_type)
        steps = used.sum().item() / B  # supervision steps per sample actually computed
        note = f"  ({warm:.1f} s warm-up)" if compile else ""
        if act and steps == S:
            note += "  no sample halted early (random weights; --init_from=ckpt.pt for a trained model)"
        print(f"{'act_halt' if act else 'inference'} {steps:4.1f}     {wall * 1e3:9.1f} ms"
              + (f" (CPU {cpu * 1e3:.0f} ms)" if device_type == "cpu" else "")
              + f"  {B / wall:8.2f} samples/s  {B * steps * fwd / wall / 1e12:.3f} TFLOP/s{note}")
    print(f"(inference: all {S} supervision steps, then stopping each sample at q_halt > 0 with act_halt; "
          f"the number is the mean steps computed per sample)")
