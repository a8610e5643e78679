# 9x9 mazes on a laptop CPU: the second quick-start demo (README.md). Each maze has a unique shortest
# path of at least 10 moves (median 11) and a few loops, so dead-end filling does not solve it; the
# 1000 test mazes never occur in training, in any of their 8 symmetries.
#   python prepare_maze.py --source=generate --size=9 --num_train=8000 --num_test=1000 --aug --output_dir=data/maze9
#   python train.py config/maze9_cpu.py
#   python sample.py --out_dir=out-maze9 --split=test --dtype=bfloat16
# Tried on a 2-core Xeon, 420 s of training, exact accuracy on the 1000 test mazes:
#   13x13, attention, hidden 128, float32, 480 s:        186 steps, 0.0% (85.7% tokens: the maze copied)
#   11x11, mlp_t, hidden 128, bfloat16:                  276 steps, 0.0%
#   9x9, mlp_t, hidden 128, 8 steps, bfloat16:           882 steps, 68.8%
#   the same with 16 supervision steps, 20000 mazes:     799 steps, 48.9%
#   the same as 68.8% with compile = True:              1072 steps, 85.0%   <- this file
data_dir = "data/maze9"
out_dir = "out-maze9"
device = "cpu"
dtype = "bfloat16"           # AMX on recent Xeons: ~2x float32. Most laptops lack it: --dtype=float32
compile = True               # 1.2-1.4x more steps in 420 s; --compile=False without a C++ compiler
mlp_t = True                 # an MLP across the 81 cells, as in the paper's Sudoku model
pos_encodings = "none"
puzzle_emb_ndim = 0          # one kind of puzzle: no per-puzzle embedding
hidden_size = 128
num_heads = 2
H_cycles = 2
L_cycles = 2
halt_max_steps = 8
global_batch_size = 128
epochs = 10000
max_time = 420.0             # seconds of training, then one checkpoint
lr = 1e-3
lr_warmup_steps = 100
weight_decay = 1.0
ema = True
ema_rate = 0.99
eval_interval = 0            # sample.py scores the test split
log_interval = 50
