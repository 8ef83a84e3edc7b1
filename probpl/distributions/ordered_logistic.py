"""``OrderedLogistic``: an ordinal-regression likelihood over ``K + 1`` ordered
categories separated by ``K`` cutpoints.
"""

import torch

from . import constraints
from .torch import Categorical


class OrderedLogistic(Categorical):
    """``P(y <= k) = sigmoid(cutpoints[k] - predictor)``; categories are ``0..K``.

    :param torch.Tensor predictor: the latent linear predictor, shape ``batch_shape``.
    :param torch.Tensor cutpoints: increasing cutpoints, shape ``batch_shape + (K,)``.
    """

    arg_constraints = {
        "predictor": constraints.real,
        "cutpoints": constraints.ordered_vector,
    }

    def __init__(self, predictor, cutpoints, validate_args=None):
        if not isinstance(predictor, torch.Tensor):
            predictor = cutpoints.new_tensor(predictor)
        if cutpoints.dim() < 1:
            raise ValueError("OrderedLogistic: cutpoints must have shape (..., K)")
        shape = torch.broadcast_shapes(predictor.shape, cutpoints.shape[:-1])
        self.predictor = predictor.expand(shape)
        self.cutpoints = cutpoints.expand(shape + cutpoints.shape[-1:])
        # log P(y <= k) and log P(y > k) in log space to keep tail categories finite.
        z = self.cutpoints - self.predictor.unsqueeze(-1)
        log_cdf = torch.nn.functional.logsigmoid(z)
        log_sf = torch.nn.functional.logsigmoid(-z)
        # P(y = k) = F(c_k) - F(c_{k-1}) = sigmoid(c_k - p) - sigmoid(c_{k-1} - p)
        log_mid = _log_sigmoid_diff(z[..., 1:], z[..., :-1])
        logits = torch.cat([log_cdf[..., :1], log_mid, log_sf[..., -1:]], dim=-1)
        super().__init__(logits=logits, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return OrderedLogistic(
            self.predictor.expand(batch_shape),
            self.cutpoints.expand(batch_shape + self.cutpoints.shape[-1:]),
            validate_args=False,
        )


def _log_sigmoid_diff(a, b):
    """``log(sigmoid(a) - sigmoid(b))`` for ``a > b``, via
    ``sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a))``.
    """
    logsig = torch.nn.functional.logsigmoid
    return logsig(a) + logsig(-b) + torch.log(-torch.expm1(b - a))
