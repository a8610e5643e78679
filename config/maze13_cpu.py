# 13x13 mazes on a laptop CPU: the second quick-start demo (results in README.md).
#   python prepare_maze.py --source=generate --size=13 --num_train=4000 --num_test=1000 --aug --output_dir=data/maze13
#   python train.py config/maze13_cpu.py
#   python sample.py --out_dir=out-maze13 --split=test
data_dir = "data/maze13"
out_dir = "out-maze13"
device = "cpu"
dtype = "float32"
mlp_t = False                # attention: a path is found by comparing distant cells
pos_encodings = "rope"
puzzle_emb_ndim = 0
hidden_size = 128
num_heads = 2
H_cycles = 2
L_cycles = 2
halt_max_steps = 8
global_batch_size = 64
epochs = 10000
max_time = 480.0             # seconds of training, then save
lr = 1e-3
lr_warmup_steps = 100
weight_decay = 1.0
ema = True
ema_rate = 0.99
eval_interval = 0            # sample.py scores the test split
log_interval = 50
