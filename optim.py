"""
The optimizers TRM trains with (train.py; bench.py times them): AdamATan2 for the dense weights,
sparse sign-SGD for the rows of the puzzle-embedding table a batch used. Plain torch, any device.

    from optim import AdamATan2, sign_sgd_
    opt = AdamATan2(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=1.0)
"""
import math

import torch



class AdamATan2(torch.optim.Optimizer):
    """Adam with atan2 in place of division (no epsilon), decoupled weight decay:
    p *= 1 - lr*wd; m = lerp(m, g, 1-b1); v = lerp(v, g*g, 1-b2)
    p -= lr / (1 - b1^t) * atan2(m, sqrt(v) / sqrt(1 - b2^t))
    All parameters of a group move in a few multi-tensor (foreach) kernels."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            for p in ps:
                if not self.state[p]:
                    self.state[p] = dict(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            states = [self.state[p] for p in ps]
            grads, m, v = [p.grad for p in ps], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            (b1, b2), lr, t = group["betas"], group["lr"], states[0]["step"] + 1
            for s in states:
                s["step"] = t
            torch._foreach_mul_(ps, 1 - lr * group["weight_decay"])
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            upd = torch._foreach_sqrt(v)                          # one scratch list, reused below
            torch._foreach_div_(upd, math.sqrt(1 - b2 ** t))
            for mi, ui in zip(m, upd):
                torch.atan2(mi, ui, out=ui)                       # no foreach atan2 in torch
            torch._foreach_add_(ps, upd, alpha=-lr / (1 - b1 ** t))


@torch.no_grad()
def sign_sgd_(weight, grad, lr, wd):
    """Sparse sign-SGD with decoupled weight decay on the rows present in `grad` (a sparse COO
    gradient, gathered from all ranks): duplicates are summed, other rows are not touched.
    The sums come from one product with the (N, N) same-row matrix, which is deterministic on
    every device (index_add_ is not on CUDA), so every rank computes bit-identical rows; and no
    coalesce(), whose data-dependent size would make the host wait for the device."""
    rows, g = grad._indices()[0], grad._values()                   # (N,), (N, D); rows may repeat
    total = (rows[:, None] == rows[None, :]).to(g.dtype) @ g       # (N, D): each entry's row sum
    weight[rows] = weight[rows] * (1 - lr * wd) - lr * torch.sign(total)
