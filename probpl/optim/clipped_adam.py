"""``ClippedAdam``: Adam with element-wise gradient clipping and a learning
rate that decays geometrically every step, a robust default for SVI."""

import math

import torch


class ClippedAdam(torch.optim.Optimizer):
    """Adam whose gradients are clamped to ``[-clip_norm, clip_norm]`` element-wise
    and whose learning rate is multiplied by ``lrd`` at every step.

    :param params: parameters or parameter groups.
    :param float lr: learning rate.
    :param tuple betas: decay rates of the first and second moment averages.
    :param float eps: added to the denominator for numerical stability.
    :param float weight_decay: L2 penalty.
    :param float clip_norm: bound on each gradient element's magnitude.
    :param float lrd: learning-rate decay factor per step.
    :param bool centered_variance: track the variance of the gradient about its
        running mean instead of its raw second moment.

    References:

    1. Kingma, Ba. *Adam: A Method for Stochastic Optimization* (2015).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=10.0, lrd=1.0, centered_variance=False):
        if lr < 0 or eps < 0 or clip_norm <= 0 or not 0 < lrd <= 1:
            raise ValueError(
                f"ClippedAdam: need lr >= 0, eps >= 0, clip_norm > 0 and 0 < lrd <= 1; got "
                f"lr={lr}, eps={eps}, clip_norm={clip_norm}, lrd={lrd}"
            )
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        clip_norm=clip_norm, lrd=lrd, centered_variance=centered_variance)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One update; ``closure`` (optional) re-evaluates the loss and returns it."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["lr"] *= group["lrd"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.clamp(-group["clip_norm"], group["clip_norm"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                if group["weight_decay"] != 0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                dev = grad - exp_avg if group["centered_variance"] else grad
                exp_avg_sq.mul_(beta2).addcmul_(dev, dev, value=1 - beta2)
                correction1 = 1 - beta1 ** state["step"]
                correction2 = 1 - beta2 ** state["step"]
                step_size = group["lr"] * math.sqrt(correction2) / correction1
                p.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size)
        return loss
