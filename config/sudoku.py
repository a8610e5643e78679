# Sudoku-Extreme, the paper's best model: MLP across positions (mlp_t), no position encoding.
# Paper: 87.4% exact on the 423k test puzzles; trained on 1 L40S in under 36 hours.
#   python prepare_sudoku.py          # 1000 puzzles x 1001 versions -> data/sudoku-extreme-1k-aug-1000
#   python train.py config/sudoku.py  # one GPU
#   torchrun --nproc_per_node=4 train.py config/sudoku.py   # same global batch, split over 4 GPUs
data_dir = "data/sudoku-extreme-1k-aug-1000"
out_dir = "out-sudoku"
mlp_t = True
pos_encodings = "none"
L_layers = 2
H_cycles = 3
L_cycles = 6
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
