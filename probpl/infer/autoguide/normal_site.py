"""The distribution an :class:`~probpl.infer.autoguide.AutoNormal` site draws from:
a Normal in unconstrained space pushed onto the site's support.

It is one sample site per latent (no auxiliary site), built without argument
checks or broadcasting (location and scale already share a shape), and it
remembers the unconstrained draw behind its last sample so the density of that
sample needs no inverse transform. Any other value is inverted as usual.
"""

import math

import torch

from probpl.distributions import TorchDistribution
from probpl.distributions.score_parts import ScoreParts
from probpl.distributions.util import sum_rightmost

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


_CONSTANTS = {}  # (dtype, device) -> -log(sqrt(2 pi)) as a 0-dim tensor; never modified


def _half_log_two_pi(like):
    """``-log(sqrt(2 pi))`` as a 0-dim tensor of ``like``'s dtype and device, made
    once: it is an operand of every log-density."""
    key = (like.dtype, like.device)
    const = _CONSTANTS.get(key)
    if const is None:
        const = torch.full((), -_HALF_LOG_TWO_PI, dtype=like.dtype, device=like.device)
        # Keep only a plain tensor (not one made in inference mode, which
        # autograd could not use later, nor a tracer's fake or proxy tensor).
        if type(const) is torch.Tensor and not const.is_inference() and len(_CONSTANTS) < 64:
            _CONSTANTS[key] = const
    return const


class NormalSite(TorchDistribution):
    """``transform(Normal(loc, scale))`` with the ``event_dim`` rightmost dims of
    ``loc`` forming the (unconstrained) event.

    :param torch.Tensor loc: unconstrained location.
    :param torch.Tensor scale: unconstrained scale, positive, same shape as ``loc``.
    :param transform: bijection onto the support, or None for the identity.
    :param int event_dim: event dims of the unconstrained value.
    :param support: the constrained support (the model site's).
    :param torch.Size event_shape: the constrained event shape, when known.
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, loc, scale, transform, event_dim, support, event_shape=None):
        self.loc = loc
        self.scale = scale
        self.transform = transform
        self._event_dim_u = event_dim
        self._support = support
        self._last = None
        shape = loc.shape
        batch_shape = shape[: len(shape) - event_dim] if event_dim else shape
        if event_shape is None:
            if transform is not None:
                shape = transform.forward_shape(shape)
            event_shape = shape[len(batch_shape):]
        # What Distribution.__init__ does without validation (it runs per step).
        self._batch_shape = batch_shape
        self._event_shape = event_shape
        self._validate_args = False

    @property
    def support(self):
        return self._support

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + self.loc.shape[len(self.batch_shape):]
        return NormalSite(self.loc.expand(shape), self.scale.expand(shape), self.transform,
                          self._event_dim_u, self._support, self.event_shape)

    def rsample(self, sample_shape=torch.Size()):
        loc = self.loc
        if sample_shape:
            shape = torch.Size(sample_shape) + loc.shape
            eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        else:
            eps = torch.randn_like(loc)  # the same draw, with less argument parsing
        z = torch.addcmul(loc, self.scale, eps)  # loc + scale * eps, one autograd node
        y = z if self.transform is None else self.transform(z)
        self._last = (y, z, eps)
        return y

    __call__ = rsample  # a site's draw: always reparameterised

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape).detach()

    def score_parts(self, value):
        log_prob = self.log_prob(value)
        return ScoreParts(log_prob, 0, log_prob)  # reparameterised

    def log_prob(self, value):
        last = self._last
        if last is not None and value is last[0]:
            _, z, eps = last
        else:
            z = value if self.transform is None else self.transform.inv(value)
            eps = (z - self.loc) / self.scale
        # The draw's own term first (one fused op, needing no gradient when eps is
        # a fresh draw), then the scale's.
        noise = torch.addcmul(_half_log_two_pi(eps), eps, eps, value=-0.5)
        log_prob = noise - self.scale.log()
        if self._event_dim_u:
            log_prob = sum_rightmost(log_prob, self._event_dim_u)
        if self.transform is None:
            return log_prob
        ladj = self.transform.log_abs_det_jacobian(z, value)
        return log_prob - sum_rightmost(ladj, ladj.dim() - log_prob.dim())

    @property
    def mean(self):
        if self.transform is None:
            return self.loc
        raise NotImplementedError("NormalSite has no closed-form mean on a constrained support")

    @property
    def variance(self):
        if self.transform is None:
            return self.scale.pow(2)
        raise NotImplementedError(
            "NormalSite has no closed-form variance on a constrained support"
        )
