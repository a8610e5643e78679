"""
Train a Tiny Recursive Model. One script for a CPU, one GPU, or many GPUs and nodes.

    python train.py config/sudoku6_cpu.py                         # a laptop CPU, minutes
    python train.py config/sudoku.py                              # one GPU (paper: 1 L40S)
    python train.py config/sudoku.py --lr=3e-4 --device=cpu      # overrides after the config file
    torchrun --nproc_per_node=8 train.py config/arc.py            # 8 GPUs on one node
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 \\
        train.py config/arc.py                                    # two nodes (node_rank 1 on the other)

Defaults below are the paper's Sudoku-Extreme MLP run; a config file overrides them.
"""
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, fields

import numpy as np
import torch
import torch.distributed as dist

from configurator import configure
from model import TRM, AdamATan2, TRMConfig, from_authors, sign_sgd_
from puzzle_data import TrainBatches, evaluate, load_split

# -----------------------------------------------------------------------------
# data and output
data_dir = "data/sudoku-extreme-1k-aug-1000"
out_dir = "out"
init_from = "scratch"        # 'scratch', 'resume' (out_dir/ckpt.pt) or a checkpoint path (ours or the authors')
freeze_weights = False       # train only the puzzle embeddings (e.g. new ARC tasks on a trained model)
# model (TRMConfig fields; the data-dependent ones come from dataset.json)
hidden_size = 512
num_heads = 8
expansion = 4.0
L_layers = 2
H_cycles = 3
L_cycles = 6
mlp_t = True
pos_encodings = "none"
puzzle_emb_ndim = 512
puzzle_emb_len = 16
halt_max_steps = 16
halt_exploration_prob = 0.1
no_ACT_continue = True
loss_type = "stablemax"
# optimisation
global_batch_size = 768
epochs = 50000
max_steps = 0                # >0: stop after this many optimizer steps (the schedule still spans epochs)
max_time = 0.0               # >0: stop after this many seconds of training (evaluation not counted)
lr = 1e-4
lr_min_ratio = 1.0
lr_warmup_steps = 2000
weight_decay = 1.0
beta1 = 0.9
beta2 = 0.95
grad_clip = 0.0              # 0: off, as the authors
puzzle_emb_lr = 1e-4
puzzle_emb_weight_decay = 1.0
ema = True
ema_rate = 0.999
# evaluation, logging, checkpoints
eval_interval = 5000         # epochs between evaluations and checkpoints; 0: no evaluation (sample.py scores), one checkpoint at the end
eval_batch_size = 0          # 0: global_batch_size
log_interval = 100           # optimizer steps between progress lines
always_save_checkpoint = True
wandb_log = False
wandb_project = "trm"
wandb_run_name = "trm"
# system
device = ""                  # '' picks cuda, then mps, then cpu
dtype = ""                   # '' picks bfloat16 on cuda, float32 elsewhere
compile = False
seed = 0
# -----------------------------------------------------------------------------
config = configure(globals())

# distributed: torchrun sets RANK; every rank runs this script and takes its slice of each batch
ddp = "RANK" in os.environ
rank, world_size, local_rank = 0, 1, 0
if not device:
    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
if ddp:
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if global_batch_size % world_size:
        raise SystemExit(f"global_batch_size={global_batch_size} is not divisible by the {world_size} ranks")
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
master = rank == 0
device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
dtype = dtype or ("bfloat16" if device_type == "cuda" else "float32")
autocast = nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=getattr(torch, dtype))
torch.manual_seed(seed)  # the same initial parameters on every rank
if device_type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

# data
meta, train_arrays = load_split(data_dir, "train")
test_meta, test_arrays = load_split(data_dir, "test") if os.path.exists(os.path.join(data_dir, "test")) else (None, None)
batches = TrainBatches(train_arrays, global_batch_size, rank, world_size, seed, meta.get("ignore_label_id", 0))
examples_per_epoch = meta["total_groups"] * meta["mean_puzzle_examples"]
total_steps = max(1, int(epochs * examples_per_epoch / global_batch_size))  # spans the lr schedule
stop_step = min(total_steps, max_steps) if max_steps else total_steps
steps_per_eval = int(eval_interval * examples_per_epoch / global_batch_size) if eval_interval else 0

# model
cfg = TRMConfig(**{f.name: (meta[f.name] if f.name in meta else config[f.name])
                   for f in fields(TRMConfig) if f.name in config or f.name in meta})
model = TRM(cfg, verbose=master).to(device)
ckpt = None
if init_from == "resume":
    path = os.path.join(out_dir, "ckpt.pt")
    if not os.path.exists(path):
        raise SystemExit(f"init_from='resume' but {path} does not exist: train without it first")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(ckpt["model"])
elif init_from != "scratch":  # fine-tune from a checkpoint file, ours or the authors'
    sd = torch.load(init_from, map_location=device, weights_only=True)
    if "model" in sd and "ema" in sd:  # one of ours: take the EMA weights
        ema_sd = sd["ema"]
        sd = dict(sd["model"])
        if ema_sd is not None:
            names = [n for n, p in model.named_parameters() if not n.startswith("puzzle_emb")]
            sd.update(zip(names, ema_sd))
    table = next((v for k, v in sd.items() if k.endswith(("puzzle_emb.weight", "puzzle_emb.weights"))), None)
    if table is not None and cfg.puzzle_emb_ndim and table.shape[0] != cfg.num_puzzle_identifiers:
        # a new set of puzzles: start every row at the mean of the old ones, as the authors do
        mean = table.float().mean(0, keepdim=True).expand(cfg.num_puzzle_identifiers, -1)
        sd = {k: (mean.clone() if v is table else v) for k, v in sd.items()}
    if any(".inner." in k or k.startswith("inner.") for k in sd):
        from_authors(model, sd)
    else:
        model.load_state_dict(sd)

# optimisation: AdamATan2 for dense weights, sign-SGD on the used rows of the puzzle embedding
dense = [p for n, p in model.named_parameters() if not n.startswith("puzzle_emb")]
if freeze_weights:
    for p in dense:
        p.requires_grad_(False)


def lr_at(step, base):
    """Linear warm-up, then cosine from base down to base * lr_min_ratio."""
    if step < lr_warmup_steps:
        return base * step / max(1, lr_warmup_steps)
    progress = (step - lr_warmup_steps) / max(1, total_steps - lr_warmup_steps)
    return base * (lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


optimizer = AdamATan2(dense, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
ema_weights = [p.detach().clone() for p in dense] if ema else None
step, carry = 0, None
if ckpt is not None:
    optimizer.load_state_dict(ckpt["optimizer"])
    if ema and ckpt.get("ema") is not None:
        for e, w in zip(ema_weights, ckpt["ema"]):
            e.copy_(w)
    step = ckpt["step"]
    batches.load_state_dict(ckpt["data"])
    carry = ckpt.get("carry")
    r = min(rank, len(ckpt["rng"]["torch"]) - 1)
    torch.set_rng_state(ckpt["rng"]["torch"][r].cpu())
    if device_type == "cuda" and ckpt["rng"]["cuda"] and ckpt["rng"]["cuda"][r] is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"][r].cpu())
    if master:
        print(f"resumed from step {step} of {total_steps}")
else:
    torch.manual_seed(seed + rank)  # halting exploration differs per rank; parameters are set
if compile:  # the recursion only: the embedding's sparse gradient and the loss stay eager
    model.compile_recursion()


class swap_in_ema:
    """Evaluate and save with the EMA weights: swap them in, swap the live ones back after."""
    def __enter__(self):
        if ema:
            for p, e in zip(dense, ema_weights):
                p.data, e.data = e.data, p.data

    def __exit__(self, *exc):
        self.__enter__()


def save_checkpoint():
    rng = dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state() if device_type == "cuda" else None)
    if world_size > 1:  # each rank's generator, so a resumed run draws as if never stopped
        gathered = [None] * world_size
        dist.all_gather_object(gathered, {k: v for k, v in rng.items() if v is not None})
        rng = dict(torch=[g["torch"] for g in gathered], cuda=[g.get("cuda") for g in gathered])
    else:
        rng = {k: [v] for k, v in rng.items()}
    local_carry = {k: v.cpu() for k, v in carry.items()} if carry is not None and world_size == 1 else None
    if not master:
        return
    state = dict(model=model.state_dict(), ema=[e.cpu() for e in ema_weights] if ema else None,
                 optimizer=optimizer.state_dict(), step=step, data=batches.state_dict(),
                 carry=local_carry, rng=rng, config=config, model_args=asdict(cfg), dataset=meta)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "ckpt.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # an interrupted save never replaces the last good checkpoint


def check_ranks_agree():
    """A cheap guard before each checkpoint: every rank must hold the same weights."""
    checks = torch.stack([p.detach().double().sum() for p in model.parameters()])
    gathered = [torch.zeros_like(checks) for _ in range(world_size)]
    dist.all_gather(gathered, checks)
    if master:
        print(f"weights identical on all {world_size} ranks: {all(torch.equal(gathered[0], c) for c in gathered)}")


def run_eval():
    if test_arrays is None:
        return {}
    t0 = time.time()
    with swap_in_ema():
        arc = os.path.exists(os.path.join(data_dir, "test_puzzles.json"))
        res = evaluate(model, test_arrays, test_meta, eval_batch_size or global_batch_size, device,
                       autocast, rank=rank, world_size=world_size, keep_predictions=arc)
    model.train()
    if arc:  # vote over the augmented versions of each task, pass@K (prepare_arc.py)
        import prepare_arc
        mine = res.pop("predictions")
        preds = [mine]
        if world_size > 1:
            preds = [None] * world_size
            dist.all_gather_object(preds, mine)
        if master:
            merged = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
            scores = prepare_arc.score(merged, *prepare_arc.load_scoring(data_dir))
            res.update({k: v for k, v in scores.items() if k.startswith("pass@")})
            os.makedirs(out_dir, exist_ok=True)
            prepare_arc.write_submission(os.path.join(out_dir, "submission.json"), scores["submission"])
    if master:
        print(f"eval @ step {step}: exact {res['exact_accuracy']:.4f} token {res['accuracy']:.4f} "
              f"q-halt {res['q_halt_accuracy']:.4f} steps {res['steps']:.2f} on {res['count']} "
              f"examples ({time.time() - t0:.1f}s)"
              + "".join(f" {k} {v:.4f}" for k, v in res.items() if k.startswith("pass@")))
    return res


if master:
    print("config:", {k: v for k, v in config.items()})
    print(f"data: {meta['total_groups']:,} groups, {len(train_arrays['inputs']):,} examples; "
          f"{total_steps:,} steps of {global_batch_size} on {world_size} x {device} ({dtype})")
    if wandb_log:
        import wandb
        wandb.init(project=wandb_project, name=wandb_run_name, config=config)

# -----------------------------------------------------------------------------
# the training loop: one supervision step per optimizer step, with the ACT carry
model.train()
sums, t_log, t_train, steps_logged = None, time.time(), 0.0, 0
while step < stop_step:
    t0 = time.time()
    batch = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in next(batches).items()}
    if carry is None:
        carry = model.initial_carry(batch)
    with autocast:
        carry, loss, metrics, _ = model(carry, batch)
    (loss / global_batch_size).backward()
    grads = [p.grad for p in dense if p.grad is not None]
    if world_size > 1 and grads:
        # One all-reduce of all dense gradients (sum over ranks). Explicit rather than DDP: the
        # ACT carry and the sparse puzzle-embedding gradient fit DDP poorly, and 7M weights are cheap.
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        for g, f in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(f.view_as(g))
    if grad_clip > 0 and grads:
        torch.nn.utils.clip_grad_norm_(dense, grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step + 1, lr)
    optimizer.step()
    if cfg.puzzle_emb_ndim > 0:
        g = model.puzzle_emb.weight.grad
        if world_size > 1:  # every rank applies the same update from all ranks' rows
            g = g.coalesce()
            idx, val = g.indices()[0], g.values()
            n = torch.tensor([len(idx)], device=device)
            sizes = [torch.zeros_like(n) for _ in range(world_size)]
            dist.all_gather(sizes, n)
            m = int(max(s.item() for s in sizes))
            pad_idx = torch.zeros(m, dtype=idx.dtype, device=device)
            pad_val = torch.zeros(m, val.shape[1], dtype=val.dtype, device=device)
            pad_idx[:len(idx)], pad_val[:len(idx)] = idx, val
            all_idx, all_val = [torch.zeros_like(pad_idx) for _ in sizes], [torch.zeros_like(pad_val) for _ in sizes]
            dist.all_gather(all_idx, pad_idx)
            dist.all_gather(all_val, pad_val)
            g = torch.sparse_coo_tensor(torch.cat([a[:int(s)] for a, s in zip(all_idx, sizes)])[None],
                                        torch.cat([a[:int(s)] for a, s in zip(all_val, sizes)]),
                                        model.puzzle_emb.weight.shape)
        sign_sgd_(model.puzzle_emb.weight, g, lr_at(step + 1, puzzle_emb_lr), puzzle_emb_weight_decay)
    model.zero_grad(set_to_none=True)
    if ema:
        torch._foreach_lerp_(ema_weights, [p.detach() for p in dense], 1 - ema_rate)
    step += 1
    t_train += time.time() - t0

    # metrics stay on the device; they are read (one host sync) every log_interval steps
    m = torch.stack([loss.detach()] + [metrics[k] for k in ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps")]).float()
    sums = m if sums is None else sums + m
    steps_logged += 1
    last = step >= stop_step or (max_time and t_train >= max_time)
    eval_now = last or (steps_per_eval and step % steps_per_eval == 0)
    if step % log_interval == 0 or eval_now:  # also before every checkpoint: never save a NaN
        if world_size > 1:
            dist.all_reduce(sums)
        s = sums.tolist()
        if not math.isfinite(s[0]):
            raise SystemExit(f"step {step}: loss is {s[0]}; stopping. The last good checkpoint in "
                             f"{out_dir} is untouched (try a lower lr or grad_clip)")
        n, dt = max(1.0, s[1]), (time.time() - t_log) / steps_logged
        if master:
            eta = (stop_step - step) * dt
            print(f"step {step}/{stop_step} epoch {batches.epoch}: loss {s[0] / steps_logged / global_batch_size:.4f} "
                  f"acc {s[2] / n:.4f} exact {s[3] / n:.4f} q-halt {s[4] / n:.4f} steps {s[5] / n:.2f} "
                  f"lr {lr_at(step, lr):.2e} {dt * 1000:.0f} ms/step {global_batch_size / dt:.0f} samples/s "
                  f"ETA {eta / 3600:.1f} h")
            if wandb_log:
                wandb.log(dict(loss=s[0] / steps_logged / global_batch_size, accuracy=s[2] / n,
                               exact_accuracy=s[3] / n, steps=s[5] / n, lr=lr_at(step, lr)), step=step)
        sums, t_log, steps_logged = None, time.time(), 0
    if eval_now:
        res = run_eval() if steps_per_eval else {}
        if world_size > 1:
            check_ranks_agree()
        if master and wandb_log and res:
            wandb.log({f"eval/{k}": v for k, v in res.items() if isinstance(v, float)}, step=step)
        if always_save_checkpoint or last:
            save_checkpoint()
        t_log = time.time()
    if last:
        break

if master:
    print(f"done: {step} steps, {t_train:.0f}s of training")
if ddp:
    dist.destroy_process_group()
