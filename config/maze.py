# Maze-Hard (30x30, shortest path > 110 steps). Paper: 85.3% exact; 4 L40S in under 24 hours.
#   python prepare_maze.py                                   # -> data/maze-30x30-hard-1k
#   torchrun --nproc_per_node=4 train.py config/maze.py
#   python train.py config/maze.py                           # one GPU: same result, ~4x longer
data_dir = "data/maze-30x30-hard-1k"
out_dir = "out-maze"
mlp_t = False
pos_encodings = "rope"
L_layers = 2
H_cycles = 3
L_cycles = 4
global_batch_size = 768
epochs = 50000
eval_interval = 5000
lr = 1e-4
puzzle_emb_lr = 1e-4
weight_decay = 1.0
puzzle_emb_weight_decay = 1.0
ema = True
dtype = "bfloat16"           # the paper's precision (autocast; the default on CUDA)
compile = True               # torch.compile the recursion, as the authors do (the default on CUDA)
