# 9x9 Sudoku on a laptop CPU: a test bed for test-time compute (README, "Test-time compute").
# Generated puzzles with a unique solution, blanked down to 23 givens (minimal ones have 20-29);
# the 1000 test grids never occur in training. 20 minutes of training leave the model part-way,
# so more steps and more samples at test time have room to help.
#   python prepare_sudoku.py --source=generate --size=9 --num_train=20000 --num_test=1000 --num_aug=8 --min_givens=23 --output_dir=data/sudoku9
#   python train.py config/sudoku9_cpu.py
#   python sample.py --out_dir=out-sudoku9 --split=test --dtype=bfloat16
data_dir = "data/sudoku9"
out_dir = "out-sudoku9"
device = "cpu"
dtype = "bfloat16"           # AMX on recent Xeons: ~2x float32. Most laptops lack it: --dtype=float32
compile = True               # more steps in the same time; --compile=False without a C++ compiler
mlp_t = True                 # the paper's Sudoku mixer: an MLP across the 81 cells
pos_encodings = "none"
puzzle_emb_ndim = 0          # one kind of puzzle: no per-puzzle embedding
hidden_size = 128
num_heads = 2
H_cycles = 2
L_cycles = 2
halt_max_steps = 16
global_batch_size = 128
epochs = 10000
max_time = 1170.0            # seconds of training (the first, compiling step included), then one checkpoint
lr = 1e-3
lr_warmup_steps = 100
weight_decay = 1.0
ema = True
ema_rate = 0.99              # a short run: average over the last ~100 steps
eval_interval = 0            # sample.py scores the test split
log_interval = 50
