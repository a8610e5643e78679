# 6x6 Sudoku on a laptop CPU: the quick start (README.md). Minimal puzzles (8-13 givens: remove any
# one and the solution is no longer unique), held-out test grids never seen in training.
#   python prepare_sudoku.py --source=generate --size=6 --num_train=20000 --num_test=1000 --num_aug=8 --output_dir=data/sudoku6
#   python train.py config/sudoku6_cpu.py
#   python sample.py --out_dir=out-sudoku6 --split=test
data_dir = "data/sudoku6"
out_dir = "out-sudoku6"
device = "cpu"
dtype = "bfloat16"           # AMX on recent Xeons: ~2x float32. Most laptops lack it: --dtype=float32
mlp_t = True                 # the paper's Sudoku mixer: an MLP across the 36 cells
pos_encodings = "none"
puzzle_emb_ndim = 0          # one kind of puzzle: no per-puzzle embedding
hidden_size = 128
num_heads = 2
H_cycles = 2
L_cycles = 2
halt_max_steps = 16
global_batch_size = 128
epochs = 10000
max_time = 420.0             # seconds of training, then one checkpoint
lr = 1e-3
lr_warmup_steps = 100
weight_decay = 1.0
ema = True
ema_rate = 0.99              # a short run: average over the last ~100 steps, not ~1000
eval_interval = 0            # sample.py scores the test split
log_interval = 50
