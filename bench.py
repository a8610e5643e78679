"""
Time a TRM on random puzzles: training steps (forward + backward + optimizer, with the ACT carry,
as train.py runs them) and inference (all halt_max_steps supervision steps, then with act_halt).

    python bench.py                                     # Sudoku MLP model, batch 8, default device
    python bench.py --config=sudoku_att --device=cpu --threads=2
    python bench.py --config=small_mlp --compile=True   # torch.compile the recursion (time printed)
    python bench.py --config=arc --infer_runs=0         # ARC size (a 1.7 GiB puzzle table), training only
    python bench.py --dtype=bfloat16                    # bf16 autocast: default on CUDA, AMX on recent Xeons
    python bench.py --compile=True --dtype=bfloat16     # the fastest setting on a CPU with AMX
    python bench.py --config=quickstart                 # the model of config/sudoku6_cpu.py
    python bench.py --profile=True                      # where one training step spends its time

Configs: the rows of the authors' baseline table (sudoku, sudoku_att, small_att, small_mlp, arc),
maze, quickstart, or the path of a train.py config file whose dataset is prepared. Prints medians
after warm-up, with device synchronisation: ms per step, samples/s, peak memory, achieved TFLOP/s
(matmul FLOPs, counted in flops_per_sample) and, on CUDA, its fraction of the device's bf16 peak.
On a CPU it also prints the CPU time of the process per step: on a shared machine that number moves
much less than wall time, so compare two settings with it, run after run.
"""
import json
import os
import resource
import statistics
import time
from dataclasses import fields

import torch

from checkpoint import checkpoint_weights, load_state, read_checkpoint
from configurator import configure, pick_device, read_config_file
from model import TRM, AdamATan2, TRMConfig, sign_sgd_

# -----------------------------------------------------------------------------
config = "sudoku"       # a name below, 'quickstart', or a train.py config file
batch_size = 0          # 0: the config's batch
device = ""             # '' picks cuda, then mps, then cpu
dtype = ""              # '' picks bfloat16 on cuda, float32 elsewhere
compile = False         # TRM.compile_recursion, as train.py --compile=True
threads = 0             # CPU threads; 0: torch's default (one per core)
warmup = 2              # untimed training steps (and one untimed inference of each kind) first
train_steps = 6         # timed training steps
infer_runs = 2          # timed inferences of each kind; 0: no inference
init_from = ""          # one of our checkpoints: time a trained model (act_halt then stops samples)
profile = False         # print torch.profiler's table for one training step
seed = 0
# -----------------------------------------------------------------------------
configure(globals(), dict(batch_size="[0, inf)", dtype=("", "float32", "bfloat16"), threads="[0, 1024]",
                          warmup="[0, inf)", train_steps="[1, inf)", infer_runs="[0, inf)", seed="[0, 4294967295]"))

# TRMConfig fields and the batch. The first five are the rows of shared/AUTHORS_BASELINES.md;
# the rest of each model is TRMConfig's default (hidden 512, 8 heads, 2 layers, 16 prefix positions).
CONFIGS = {
    "sudoku": dict(batch=8, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                   H_cycles=3, L_cycles=6, mlp_t=True, pos_encodings="none"),
    "sudoku_att": dict(batch=8, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                       H_cycles=3, L_cycles=6, mlp_t=False, pos_encodings="rope"),
    "small_att": dict(batch=64, seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=128,
                      num_heads=4, puzzle_emb_ndim=128, H_cycles=2, L_cycles=2, mlp_t=False, pos_encodings="rope"),
    "small_mlp": dict(batch=64, seq_len=36, vocab_size=8, num_puzzle_identifiers=1, hidden_size=128,
                      num_heads=4, puzzle_emb_ndim=128, H_cycles=2, L_cycles=2, mlp_t=True, pos_encodings="none"),
    "arc": dict(batch=1, seq_len=900, vocab_size=12, num_puzzle_identifiers=876_406,
                H_cycles=3, L_cycles=4, mlp_t=False, pos_encodings="rope"),
    "maze": dict(batch=1, seq_len=900, vocab_size=6, num_puzzle_identifiers=1,
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
        raise SystemExit(f"unknown config '{name}': use one of {', '.join(CONFIGS)}, quickstart, "
                         f"or a config file ({path} does not exist)")
    scope = read_config_file(path)
    c = {f.name: scope[f.name] for f in fields(TRMConfig) if f.name in scope}
    c["batch"] = scope.get("global_batch_size", 768)
    c["system"] = {k: scope[k] for k in ("device", "dtype") if k in scope}  # unless given here
    meta = os.path.join(scope.get("data_dir", ""), "train", "dataset.json")
    if os.path.exists(meta):
        with open(meta) as f:
            m = json.load(f)
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


# -----------------------------------------------------------------------------
c = resolve(config)
system, B = c.pop("system", {}), c.pop("batch")
B = batch_size or B
device, dtype = device or system.get("device", ""), dtype or system.get("dtype", "")
if threads:
    torch.set_num_threads(threads)
device, device_type, dtype, autocast = pick_device(device, dtype)
torch.manual_seed(seed)

if init_from:  # a trained model (its architecture, EMA weights) on the first test puzzles of its data
    ckpt = read_checkpoint(init_from)
    c = ckpt["model_args"]
cfg = TRMConfig(**c)
model = TRM(cfg).to(device)
g = torch.Generator().manual_seed(seed)
batch = dict(  # random puzzles: in training every sample runs all halt_max_steps steps
    inputs=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
    labels=torch.randint(1, cfg.vocab_size, (B, cfg.seq_len), generator=g),
    puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (B,), generator=g, dtype=torch.int32))
if init_from:
    load_state(model, checkpoint_weights(ckpt))
    data_dir = ckpt.get("config", {}).get("data_dir", "")
    if os.path.exists(os.path.join(data_dir, "test", "dataset.json")):
        from puzzle_data import load_split, make_batch, to_device
        meta, arrays = load_split(data_dir, "test")
        idx = list(range(min(B, len(arrays["inputs"]))))
        batch = to_device(make_batch(arrays, idx, B), "cpu", meta.get("ignore_label_id", 0))
        print(f"{len(idx)} test puzzles of {data_dir}")
batch = {k: v.to(device) for k, v in batch.items()}
trained = {k: v.clone() for k, v in model.state_dict().items()} if init_from else None
if compile:
    model.compile_recursion()
dense = [p for _, p in model.dense_parameters()]
optimizer = AdamATan2(dense, lr=1e-4, betas=(0.9, 0.95), weight_decay=1.0)
ema = [p.detach().clone() for p in dense]
carry = model.initial_carry(batch)


def train_step():
    """train.py's step on one process: forward with the carry, backward, AdamATan2, sign-SGD on
    the puzzle-embedding rows, EMA; the metrics stay on the device."""
    global carry
    with autocast:
        carry, loss, metrics, _ = model(carry, batch)
    (loss / B).backward()
    optimizer.step()
    if cfg.puzzle_emb_ndim > 0:
        sign_sgd_(model.puzzle_emb.weight, model.puzzle_emb.weight.grad, 1e-4, 1.0)
    model.zero_grad(set_to_none=True)
    torch._foreach_lerp_(ema, [p.detach() for p in dense], 1 - 0.999)
    return torch.stack([loss.detach()] + [metrics[k] for k in ("count", "accuracy", "steps")]).float()


def sync():
    if device_type == "cuda":
        torch.cuda.synchronize()
    elif device_type == "mps":
        torch.mps.synchronize()


def timed(fn, n):
    """Median wall and process CPU seconds of n calls, each between two device synchronisations."""
    wall, cpu, out = [], [], None
    for _ in range(n):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def peak_memory():
    if device_type == "cuda":
        return f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated"
    if device_type == "mps":
        return f"{torch.mps.driver_allocated_memory() / 2**30:.2f} GiB allocated"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"  # KiB on Linux


def report(what, wall, cpu, samples, flops, note=""):
    peak = next((p for name, p in BF16_PEAK if name in torch.cuda.get_device_name()), None) \
        if device_type == "cuda" else None
    print(f"{what:<15} {wall * 1e3:9.1f} ms" + (f" (CPU {cpu * 1e3:.0f} ms)" if device_type == "cpu" else "")
          + f"  {samples / wall:8.2f} samples/s  {flops / wall / 1e12:.3f} TFLOP/s"
          + (f" = {flops / wall / peak:.1%} of bf16 peak" if peak else "") + f"  {peak_memory()}{note}")


fwd, train_flops = flops_per_sample(cfg)
print(f"config {config}: batch {B}, {cfg}")
print(f"device {device} ({torch.cuda.get_device_name() if device_type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
      f"{dtype}, compile {compile}, torch {torch.__version__}")
print(f"matmul FLOPs per sample: {fwd / 1e9:.2f} G per supervision step, {train_flops / 1e9:.2f} G per training step")

model.train()
if device_type == "cuda":
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for _ in range(warmup):
    train_step()
sync()
print(f"warm-up: {warmup} training steps, {time.perf_counter() - t0:.1f} s" + (" with compilation" if compile else ""))
if profile:
    from torch.profiler import ProfilerActivity, profile as torch_profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        train_step()
        sync()
    print(prof.key_averages().table(sort_by=f"self_{'device' if device_type == 'cuda' else 'cpu'}_time_total", row_limit=20))
wall, cpu, _ = timed(train_step, train_steps)
report("train step", wall, cpu, B, B * train_flops)

if infer_runs:
    model.eval()
    if trained:  # time inference of the trained weights, not of the ones the timed steps moved
        model.load_state_dict(trained)
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    S = cfg.halt_max_steps
    for act in (False, True):
        def infer():
            with autocast:
                return model.solve(batch["inputs"], batch["puzzle_identifiers"], act_halt=act)[2]
        t0 = time.perf_counter()
        infer()  # warm-up (compiles the no-grad graph, and for each smaller batch with act_halt)
        sync()
        warm = time.perf_counter() - t0
        wall, cpu, used = timed(infer, infer_runs)
        steps = used.sum().item() / B  # supervision steps per sample actually computed
        note = f"  ({warm:.1f} s warm-up)" if compile else ""
        if act and steps == S:
            note += "  no sample halted early (random weights; --init_from=ckpt.pt for a trained model)"
        report(f"{'act_halt' if act else 'inference'} {steps:4.1f}", wall, cpu, B, B * steps * fwd, note)
print(f"(inference: all {S} supervision steps, then stopping each sample at q_halt > 0 with act_halt; "
      f"the number is the mean steps computed per sample)" if infer_runs else "")
