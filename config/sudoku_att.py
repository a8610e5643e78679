# Sudoku-Extreme with self-attention instead of the MLP mixer (the paper's ablation: 74.7% exact,
# against 87.4% for config/sudoku.py). Same data, same schedule; 1 L40S in under 36 hours.
#   python prepare_sudoku.py
#   python train.py config/sudoku_att.py
data_dir = "data/sudoku-extreme-1k-aug-1000"
out_dir = "out-sudoku-att"
mlp_t = False
pos_encodings = "rope"
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
