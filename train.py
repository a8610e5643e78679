"""
Train a Tiny Recursive Model. One script for a CPU, one GPU, or many GPUs and nodes.

    python train.py config/sudoku6_cpu.py                         # a laptop CPU, minutes
    python train.py config/sudoku.py                              # one GPU (paper: 1 L40S)
    python train.py config/sudoku.py --lr=3e-4 --device=cpu       # overrides after the config file
    torchrun --nproc_per_node=8 train.py config/arc.py            # 8 GPUs on one node
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=HOST --master_port=29500 \\
        train.py config/arc.py                                    # two nodes (node_rank 1 on the other)

Defaults below are the paper's Sudoku-Extreme MLP run; a config file overrides them.
"""
import json
import math
import os
import time
from dataclasses import asdict, fields

import numpy as np
import torch
import torch.distributed as dist

from checkpoint import checkpoint_weights, load_state, read_checkpoint
from configurator import configure, pick_device
from model import TRM, TRMConfig
from optim import AdamATan2, sign_sgd_
from puzzle_data import TrainBatches, evaluate, hms, load_split, to_device
from puzzles import load_scoring, score

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
progress = False             # evaluation progress also where output is piped (a line every 10%; always on a terminal)
always_save_checkpoint = True
wandb_log = False
wandb_project = "trm"
wandb_run_name = "trm"
# system
device = ""                  # '' picks cuda, then mps, then cpu
dtype = ""                   # '' picks bfloat16 on cuda, float32 elsewhere (float16 would need a gradient scaler)
compile = None               # None: on with CUDA, where it pays; off on a CPU unless set True (a minute of compiling)
seed = 0
# -----------------------------------------------------------------------------
config = configure(globals(), dict(
    hidden_size="[1, 65536]", num_heads="[1, inf)", expansion="(0, inf)", L_layers="[1, inf)",
    H_cycles="[1, inf)", L_cycles="[1, inf)", pos_encodings=("rope", "learned", "none"),
    puzzle_emb_ndim="[0, inf)", puzzle_emb_len="[0, inf)", halt_max_steps="[1, inf)",
    halt_exploration_prob="[0, 1]", loss_type=("stablemax", "softmax"), global_batch_size="[1, 1048576]",
    epochs="[1, 1000000000]", max_steps="[0, inf)", max_time="[0, inf)", lr="(0, 1]", lr_min_ratio="[0, 1]",
    lr_warmup_steps="[0, inf)", weight_decay="[0, inf)", beta1="[0, 1)", beta2="[0, 1)", grad_clip="[0, inf)",
    puzzle_emb_lr="[0, inf)", puzzle_emb_weight_decay="[0, inf)", ema_rate="[0, 1)", eval_interval="[0, inf)",
    eval_batch_size="[0, 1048576]", log_interval="[1, inf)", seed="[0, 4294967295]",
    dtype=("", "float32", "bfloat16"), compile=(None, True, False)))
if lr * weight_decay >= 1 or puzzle_emb_lr * puzzle_emb_weight_decay >= 1:
    raise SystemExit("lr * weight_decay (and puzzle_emb_lr * puzzle_emb_weight_decay) must be below 1: "
                     "each step multiplies the weights by 1 - lr * weight_decay")

# distributed: torchrun sets RANK; every rank runs this script and takes its slice of each batch
ddp = "RANK" in os.environ
rank, world_size, local_rank = 0, 1, 0
device, device_type, dtype, autocast = pick_device(device, dtype)
if ddp:
    rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if global_batch_size % world_size:
        raise SystemExit(f"global_batch_size={global_batch_size} is not divisible by the {world_size} ranks")
    if device_type == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
master = rank == 0
compile = device_type == "cuda" if compile is None else compile
torch.manual_seed(seed)  # the same initial parameters on every rank


all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13


def agree(ok, why):
    """One decision for all ranks: stop every rank, with the reason, when any rank is not ok."""
    flags = torch.tensor([float(ok)] * world_size, device=device)
    if world_size > 1:
        all_gather_single(flags, torch.tensor([float(ok)], device=device))
    if not flags.all():
        bad = [r for r in range(world_size) if not flags[r]]
        raise SystemExit(why + (f" (ranks {bad})" if world_size > 1 else ""))


if freeze_weights and puzzle_emb_ndim == 0:
    raise SystemExit("freeze_weights=True trains only the puzzle embedding, and puzzle_emb_ndim=0 has none")
if wandb_log:
    try:
        import wandb
    except ImportError:
        raise SystemExit("wandb_log=True needs the wandb package: pip install wandb") from None
ckpt_path = os.path.join(out_dir, "ckpt.pt")
# the output folder: writable, and never someone else's file under our checkpoint's name
if master:
    try:  # a probe file, in folders made for it and removed again: nothing is left if we stop here
        made, d = [], os.path.abspath(out_dir)
        while not os.path.exists(d):
            made.append(d)
            d = os.path.dirname(d)
        os.makedirs(out_dir, exist_ok=True)
        open(ckpt_path + f".probe-{os.getpid()}", "w").close()
        os.remove(ckpt_path + f".probe-{os.getpid()}")
        for d in made:
            os.rmdir(d)
        writable = True
    except OSError as e:
        writable, why = False, f"out_dir={out_dir!r}: cannot write checkpoints there ({e.strerror})"
    if writable and init_from != "resume" and os.path.exists(ckpt_path):  # ours only, read lazily (memory-mapped)
        old = read_checkpoint(ckpt_path)
        writable, why = isinstance(old, dict) and "model_args" in old, f"{ckpt_path} exists and is not a train.py checkpoint: choose another out_dir"
        if writable:
            print(f"{ckpt_path} is an earlier run's: it will be replaced at the first save (init_from='resume' continues it)")
agree(writable if master else True, why if master and not writable else "rank 0 cannot write to out_dir")
# data
meta, train_arrays = load_split(data_dir, "train")
has_test = os.path.exists(os.path.join(data_dir, "test", "dataset.json"))
test_arrays = load_split(data_dir, "test")[1] if has_test and eval_interval else None
arc = os.path.exists(os.path.join(data_dir, "test_puzzles.json")) and test_arrays is not None
batches = TrainBatches(train_arrays, global_batch_size, rank, world_size, seed)
examples_per_epoch = meta["total_groups"] * meta["mean_puzzle_examples"]
total_steps = max(1, int(epochs * examples_per_epoch / global_batch_size))  # spans the lr schedule
stop_step = min(total_steps, max_steps) if max_steps else total_steps
# evaluations every eval_interval epochs, the last one on the schedule's last step (rounded, not truncated)
eval_steps = {min(total_steps, round(k * eval_interval * examples_per_epoch / global_batch_size))
              for k in range(1, epochs // eval_interval + 1)} if eval_interval else set()

# model
try:
    cfg = TRMConfig(**{f.name: (meta[f.name] if f.name in meta else config[f.name])
                       for f in fields(TRMConfig) if f.name in config or f.name in meta})
except ValueError as e:
    raise SystemExit(f"model settings: {e}")
model = TRM(cfg, verbose=master).to(device)
ckpt = None
if init_from == "resume":
    agree(os.path.exists(ckpt_path), f"init_from='resume' but {ckpt_path} does not exist on every node: train "
          f"without it first, or copy the checkpoint to each node's out_dir")
    ckpt = read_checkpoint(ckpt_path)  # memory-mapped on the CPU: copied into the model, then dropped
    missing = [k for k in ("model", "optimizer", "step", "data", "carry", "rng", "config", "model_args")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise SystemExit(f"{ckpt_path} is not a complete train.py checkpoint (no {missing[0]!r})")
    if ckpt["config"]["global_batch_size"] != global_batch_size or ckpt["model_args"] != asdict(cfg):
        raise SystemExit(f"{ckpt_path} was trained with global_batch_size={ckpt['config']['global_batch_size']} "
                         f"and its own model settings: resume with the same (or start anew with --init_from={ckpt_path})")
    weights = ckpt["model"]
elif init_from != "scratch":  # fine-tune from a checkpoint file, ours or the authors'
    weights = checkpoint_weights(read_checkpoint(init_from))
    table = next((v for k, v in weights.items() if k.endswith(("puzzle_emb.weight", "puzzle_emb.weights"))), None)
    if table is not None and cfg.puzzle_emb_ndim and table.shape[0] != cfg.num_puzzle_identifiers:
        # a new set of puzzles: start every row at the mean of the old ones, as the authors do
        mean = table.float().mean(0, keepdim=True).expand(cfg.num_puzzle_identifiers, -1)
        weights = {k: (mean.clone() if v is table else v) for k, v in weights.items()}
if init_from != "scratch":
    try:
        load_state(model, weights)
    except ValueError as e:
        raise SystemExit(f"{ckpt_path if ckpt else init_from}: {e}")

# optimisation: AdamATan2 for dense weights, sign-SGD on the used rows of the puzzle embedding
names, dense = zip(*model.dense_parameters())
if freeze_weights:
    for p in dense:
        p.requires_grad_(False)
else:  # the gradients live in one flat buffer: all ranks sum it in one all-reduce, no copies
    flat_grads = torch.zeros(sum(p.numel() for p in dense), device=device)
    for p, g in zip(dense, flat_grads.split([p.numel() for p in dense])):
        p.grad = g.view_as(p)


def lr_at(step, base):
    """Linear warm-up, then cosine from base down to base * lr_min_ratio."""
    if step < lr_warmup_steps:
        return base * step / max(1, lr_warmup_steps)
    done = (step - lr_warmup_steps) / max(1, total_steps - lr_warmup_steps)
    return base * (lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))


optimizer = AdamATan2(dense, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
ema_weights = [p.detach().clone() for p in dense] if ema else None
step, carry = 0, None
if ckpt is not None:
    optimizer.load_state_dict(ckpt["optimizer"])
    if ema and ckpt.get("ema"):
        for e, n in zip(ema_weights, names):
            e.copy_(ckpt["ema"][n])
    step = ckpt["step"]
    batches.load_state_dict(ckpt["data"])
    local = global_batch_size // world_size  # the saved carry is the global batch's: take this rank's rows
    carry = {k: v[rank * local:(rank + 1) * local].to(device) for k, v in ckpt["carry"].items()}
    r = min(rank, len(ckpt["rng"]["torch"]) - 1)
    torch.set_rng_state(ckpt["rng"]["torch"][r])
    if device_type == "cuda" and ckpt["rng"]["cuda"][r] is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"][r])
    if master:
        print(f"resumed from step {step} of {total_steps}")
    del ckpt, weights  # nothing of the checkpoint stays in memory
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


def gather(tensor):
    """Every rank's tensor stacked along dim 0 on every rank (fixed size: no host sync)."""
    out = torch.empty((world_size * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    all_gather_single(out, tensor.contiguous())
    return out


def all_reduce_grads():
    """Sum the dense gradients over ranks: one all-reduce of the flat buffer they all live in.
    Explicit rather than DDP: the ACT carry and the sparse puzzle-embedding gradient fit DDP poorly."""
    dist.all_reduce(flat_grads)


def all_gather_rows(grad):
    """The puzzle-embedding gradient rows of every rank as one sparse gradient, so all ranks apply
    the same sign-SGD update. Each rank's holds exactly one row per local sample (uncoalesced)."""
    return torch.sparse_coo_tensor(gather(grad._indices()[0])[None], gather(grad._values()), grad.shape,
                                   check_invariants=False)


def check_ranks_agree():
    """Before each checkpoint: every rank must hold the same weights (one float32 sum per tensor,
    compared exactly); a difference stops the run rather than saving rank 0's copy."""
    sums = torch.stack([p.detach().float().sum() for p in model.parameters()])
    every = gather(sums[None])
    differ = [n for (n, _), same in zip(model.named_parameters(), (every == every[0]).all(0)) if not same]
    agree(not differ, f"step {step}: the ranks' weights differ ({', '.join(differ[:3])}); not saving")
    if master:
        print(f"weights identical on all {world_size} ranks: True")


def save_checkpoint():
    """One ckpt.pt, written atomically, only with finite weights. The ACT carry of the whole global
    batch and every rank's random state are gathered, so a resume continues exactly."""
    weights = list(model.parameters()) + (ema_weights or [])
    agree(all(torch.isfinite(w).all() for w in weights),
          f"step {step}: the weights are not finite (NaN or inf); not saving: the checkpoint in {out_dir} "
          f"is from an earlier step (try a lower lr or grad_clip)")
    rng = [torch.get_rng_state(), torch.cuda.get_rng_state() if device_type == "cuda" else torch.zeros(0, dtype=torch.uint8)]
    if world_size > 1:
        check_ranks_agree()
        rng_all = [None] * world_size
        dist.all_gather_object(rng_all, [r.cpu() for r in rng])
        carry_all = {k: gather(v).cpu() for k, v in carry.items()}
    else:
        rng_all, carry_all = [rng], {k: v.cpu() for k, v in carry.items()}
    if not master:
        return
    state = dict(model=model.state_dict(), ema=dict(zip(names, ema_weights)) if ema else None,
                 optimizer=optimizer.state_dict(), step=step, data=batches.state_dict(), carry=carry_all,
                 rng=dict(torch=[r[0] for r in rng_all], cuda=[r[1] if device_type == "cuda" else None for r in rng_all]),
                 config=config, model_args=asdict(cfg), dataset=meta)
    os.makedirs(out_dir, exist_ok=True)
    torch.save(state, ckpt_path + ".tmp")
    os.replace(ckpt_path + ".tmp", ckpt_path)  # an interrupted save never replaces the last good checkpoint


def run_eval():
    t0 = time.time()
    with swap_in_ema():
        res = evaluate(model, test_arrays, eval_batch_size or global_batch_size, device, autocast,
                       cfg.halt_max_steps, ignore_label_id=meta.get("ignore_label_id", 0), rank=rank,
                       world_size=world_size, keep_predictions=arc, progress=progress or None)
    model.train()
    if arc:  # rank 0 votes over the augmented versions of each task: pass@K
        preds = [res.pop("predictions")]
        if world_size > 1:
            mine, preds = preds[0], [None] * world_size if master else None
            dist.gather_object(mine, preds)
        if master:
            scores = score({k: np.concatenate([p[k] for p in preds]) for k in preds[0]}, *load_scoring(data_dir))
            res.update({k: v for k, v in scores.items() if k.startswith("pass@")})
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "submission.json.tmp"), "w") as f:
                f.write(json.dumps(scores["submission"]))
            os.replace(os.path.join(out_dir, "submission.json.tmp"), os.path.join(out_dir, "submission.json"))
    if master:
        print(f"eval @ step {step}: exact {res['exact_accuracy']:.4f} token {res['accuracy']:.4f} "
              f"q-halt {res['q_halt_accuracy']:.4f} steps {res['steps']:.2f} on {res['count']} "
              f"examples ({time.time() - t0:.1f}s)"
              + "".join(f" {k} {v:.4f}" for k, v in res.items() if k.startswith("pass@")))
    return res


if master:
    print("config:", config)
    print(f"data: {meta['total_groups']:,} groups, {len(train_arrays['inputs']):,} examples; a schedule of "
          f"{total_steps:,} steps of {global_batch_size}" + (f", stopping at step {stop_step:,}" if max_steps else "")
          + (f", or after {max_time:.0f} s of training" if max_time else "")
          + f"; {world_size} x {device} ({dtype}, compile {compile})")
    if wandb_log:
        wandb.init(project=wandb_project, name=wandb_run_name, config=config)

# -----------------------------------------------------------------------------
# the training loop: one supervision step per optimizer step, with the ACT carry
model.train()
sums, t_log, t_train, steps_logged = None, time.time(), 0.0, 0
while step < stop_step:
    t0 = time.time()
    batch = to_device(next(batches), device, meta.get("ignore_label_id", 0))
    if carry is None:
        carry = model.initial_carry(batch)
    with autocast:
        carry, loss, metrics, _ = model(carry, batch)
    (loss / global_batch_size).backward()
    if not freeze_weights:
        if world_size > 1:
            all_reduce_grads()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(dense, grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step + 1, lr)
        optimizer.step()
        flat_grads.zero_()
    if cfg.puzzle_emb_ndim > 0:
        g = model.puzzle_emb.weight.grad
        sign_sgd_(model.puzzle_emb.weight, all_gather_rows(g) if world_size > 1 else g,
                  lr_at(step + 1, puzzle_emb_lr), puzzle_emb_weight_decay)
        model.puzzle_emb.weight.grad = None
    if ema:
        torch._foreach_lerp_(ema_weights, [p.detach() for p in dense], 1 - ema_rate)
    step += 1
    t_train += time.time() - t0

    # metrics stay on the device; they are read (one host sync) at log, evaluation and final steps
    m = torch.stack([loss.detach()] + [metrics[k] for k in ("count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps")]).float()
    sums = m if sums is None else sums + m
    steps_logged += 1
    time_up = bool(max_time) and t_train >= max_time  # this rank's clock: one rank decides below
    if step % log_interval == 0 or step in eval_steps or step >= stop_step or (world_size == 1 and time_up):
        sums = torch.cat([sums, torch.tensor([float(time_up)], device=device)])
        if world_size > 1:
            dist.all_reduce(sums)  # the metrics summed over ranks, and whether any rank's time is up
        s = sums.tolist()
        last = step >= stop_step or s[-1] > 0
        if not math.isfinite(s[0]):
            raise SystemExit(f"step {step}: loss is {s[0]}; stopping. The checkpoint in {out_dir} is from an "
                             f"earlier step (try a lower lr or grad_clip)")
        n, dt = max(1.0, s[1]), (time.time() - t_log) / steps_logged
        if master:
            eta = min((stop_step - step) * dt, max_time - t_train if max_time else math.inf)
            print(f"step {step}/{stop_step} epoch {batches.epoch}: loss {s[0] / steps_logged / global_batch_size:.4f} "
                  f"acc {s[2] / n:.4f} exact {s[3] / n:.4f} q-halt {s[4] / n:.4f} steps {s[5] / n:.2f} "
                  f"lr {lr_at(step, lr):.2e} {dt * 1000:.0f} ms/step {global_batch_size / dt:.0f} samples/s "
                  f"ETA {hms(max(eta, 0))}")
            if wandb_log:
                wandb.log(dict(loss=s[0] / steps_logged / global_batch_size, accuracy=s[2] / n,
                               exact_accuracy=s[3] / n, steps=s[5] / n, lr=lr_at(step, lr)), step=step)
        sums, t_log, steps_logged = None, time.time(), 0
        if step in eval_steps or last:
            res = run_eval() if test_arrays is not None else {}
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
