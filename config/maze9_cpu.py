# 9x9 mazes on a laptop CPU: the second quick-start demo (README.md). Each maze has a unique shortest
# path of at least 10 moves (median 11) and a few loops, so dead-end filling does not solve it; the
# 1000 test mazes never occur in training, in any of their 8 symmetries.
#   python prepare_maze.py --source=generate --size=9 --num_train=8000 --num_test=1000 --aug --output_dir=data/maze9
#   python train.py config/maze9_cpu.py
#   python sample.py --out_dir=out-maze9 --split=test --dtype=bfloat16
data_dir = "data/maze9"
out_dir = "out-maze9"
device = "cpu"
dtype = "bfloat16"           # AMX on recent Xeons: ~2x float32. Most laptops lack it: --dtype=float32
compile = True               # more steps in the same time (README); --compile=False without a C++ compiler
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
