# ARC-AGI-2 (+ ConceptARC as extra training tasks). Paper: 7.8% pass@2 on the 120 evaluation
# tasks; 4 H100 for about 3 days. The per-task puzzle embedding carries the task: it learns fast
# (puzzle_emb_lr 1e-2) with light decay.
#   python prepare_arc.py --version=2                     # ARC-AGI-2 + ConceptARC -> data/arc2concept-aug-1000
#   torchrun --nproc_per_node=8 train.py config/arc2.py    # 8 GPUs: same global batch, ~half the time of 4
#   python train.py config/arc2.py                          # one GPU: weeks, not days
data_dir = "data/arc2concept-aug-1000"
out_dir = "out-arc2"
mlp_t = False
pos_encodings = "rope"
L_layers = 2
H_cycles = 3
L_cycles = 4
global_batch_size = 768
epochs = 100000
eval_interval = 10000
lr = 1e-4
puzzle_emb_lr = 1e-2
weight_decay = 0.1
puzzle_emb_weight_decay = 0.1
ema = True
dtype = "bfloat16"           # the paper's precision (autocast; the default on CUDA)
compile = True               # torch.compile the recursion, as the authors do (the default on CUDA)
