"""Residual flows without closed-form inverses: ``Planar`` and ``Radial``.

References: Rezende and Mohamed, "Variational Inference with Normalizing Flows" (2015).
"""

import math

import torch
import torch.nn.functional as F

from .. import constraints
from .torch_transform import TransformModule


class Planar(TransformModule):
    """``y = x + u_hat * tanh(w . x + b)``, with ``u`` adjusted to ``u_hat`` so
    that ``w . u_hat >= -1`` and the map stays invertible.

    :param int input_dim: event size.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim):
        super().__init__(cache_size=1)
        bound = 1 / math.sqrt(input_dim)
        self.bias = torch.nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        self.u = torch.nn.Parameter(torch.empty(input_dim).uniform_(-bound, bound))
        self.w = torch.nn.Parameter(torch.empty(input_dim).uniform_(-bound, bound))

    def _u_hat(self):
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / self.w.pow(2).sum()

    def _call(self, x):
        return x + self._u_hat() * torch.tanh(x @ self.w + self.bias[0]).unsqueeze(-1)

    def _inverse(self, y):
        raise NotImplementedError("Planar has no closed-form inverse")

    def log_abs_det_jacobian(self, x, y):
        act = torch.tanh(x @ self.w + self.bias[0])
        psi_u = (1 - act.pow(2)) * (self.w @ self._u_hat())
        return torch.log(torch.abs(1 + psi_u))


class Radial(TransformModule):
    """``y = x + beta * h(r) * (x - x0)`` with ``r = |x - x0|`` and
    ``h(r) = 1 / (alpha + r)``; ``alpha > 0`` and ``beta >= -alpha`` keep it invertible.

    :param int input_dim: event size.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim):
        super().__init__(cache_size=1)
        bound = 1 / math.sqrt(input_dim)
        self.x0 = torch.nn.Parameter(torch.empty(input_dim).uniform_(-bound, bound))
        self.alpha_prime = torch.nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        self.beta_prime = torch.nn.Parameter(torch.empty(1).uniform_(-bound, bound))
        self.input_dim = input_dim

    def _terms(self, x):
        alpha = F.softplus(self.alpha_prime)
        beta = F.softplus(self.beta_prime) - alpha
        diff = x - self.x0
        r = diff.norm(dim=-1, keepdim=True)
        h = 1 / (alpha + r)
        return diff, r, h, alpha, beta

    def _call(self, x):
        diff, _, h, _, beta = self._terms(x)
        return x + beta * h * diff

    def _inverse(self, y):
        raise NotImplementedError("Radial has no closed-form inverse")

    def log_abs_det_jacobian(self, x, y):
        _, r, h, _, beta = self._terms(x)
        bh = beta * h
        # d h / d r = -h^2, so 1 + beta h + beta h' r = 1 + beta h - beta h^2 r.
        log_det = (self.input_dim - 1) * torch.log1p(bh) + torch.log1p(bh - beta * h * h * r)
        return log_det.squeeze(-1)
