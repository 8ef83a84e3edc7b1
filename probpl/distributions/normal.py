"""``Normal`` and ``LogNormal`` built for the hot path of inference.

They are ``torch.distributions.Normal``/``LogNormal`` (same attributes, same
sampling streams, same validation) with three differences that matter when a
model builds them afresh at every step:

* Python-number parameters stay numbers: no ``torch.tensor`` per argument, and
  ``log_prob`` folds them into constants (``Normal(0., 1.).log_prob(x)`` is one
  fused ``addcmul``). ``loc``/``scale`` still read as tensors, made on demand.
* ``expand`` is lazy: parameters keep their own shapes and broadcast inside
  ``log_prob``/``rsample``, so plate broadcasting adds no ``expand`` ops and no
  autograd nodes; ``loc``/``scale`` read at the expanded shape.
* ``log_prob`` is ``-0.5 z**2 - (log scale + log sqrt(2 pi))`` with
  ``z = (x - loc) / scale``: five tensor ops (torch's formula takes nine).
"""

import math
from numbers import Number

import torch
from torch.distributions import Distribution, TransformedDistribution
from torch.distributions import LogNormal as _TorchLogNormal
from torch.distributions import Normal as _TorchNormal
from torch.distributions.transforms import ExpTransform
from torch.distributions.utils import _standard_normal

from .torch_distribution import TorchDistributionMixin
from .util import check_expand as _check_expand
from .util import expanded as _expanded

_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)
_EMPTY = torch.Size()


def _as_param(value, dtype, device, shape):
    """A Python-number parameter as a tensor of ``shape`` (a broadcast view)."""
    t = torch.tensor(value, dtype=dtype, device=device)
    return t if shape == _EMPTY else t.expand(shape)


def _broadcast_params(loc, scale):
    """``(loc, scale, batch_shape, dtype, device)`` with numbers left as numbers;
    ``dtype``/``device`` are those a number would take as a tensor."""
    loc_t, scale_t = isinstance(loc, torch.Tensor), isinstance(scale, torch.Tensor)
    if loc_t and scale_t:
        if loc.shape != scale.shape:
            loc, scale = torch.broadcast_tensors(loc, scale)
        return loc, scale, loc.shape, loc.dtype, loc.device
    if loc_t or scale_t:
        t = loc if loc_t else scale
        other = scale if loc_t else loc
        if not isinstance(other, Number):
            raise ValueError("Normal: loc and scale must be numbers or tensors")
        if loc_t:
            scale = float(scale)
        else:
            loc = float(loc)
        return loc, scale, t.shape, t.dtype, t.device
    if not (isinstance(loc, Number) and isinstance(scale, Number)):
        raise ValueError("Normal: loc and scale must be numbers or tensors")
    return float(loc), float(scale), _EMPTY, torch.get_default_dtype(), None


class Normal(_TorchNormal, TorchDistributionMixin):
    """``torch.distributions.Normal`` with probpl's ``expand``, ``to_event``,
    ``mask`` and ``__call__``, and a lean construction and ``log_prob``.

    :param loc: mean (number or tensor).
    :param scale: standard deviation, positive (number or tensor).
    :param bool validate_args: check arguments and sample supports.

    Example::

        >>> import torch
        >>> from probpl.distributions import Normal
        >>> d = Normal(0., 1.).expand([3])
        >>> d.loc
        tensor([0., 0., 0.])
        >>> d.log_prob(torch.zeros(3))
        tensor([-0.9189, -0.9189, -0.9189])
    """

    def __init__(self, loc, scale, validate_args=None):
        loc, scale, batch_shape, dtype, device = _broadcast_params(loc, scale)
        self._loc, self._scale = loc, scale
        self._num_dtype, self._num_device = dtype, device
        self._same_dtype = not (isinstance(loc, torch.Tensor) and isinstance(scale, torch.Tensor)
                                and loc.dtype != scale.dtype)
        self._batch_shape = batch_shape
        self._event_shape = _EMPTY
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            Distribution.__init__(self, batch_shape, validate_args=validate_args)

    # Parameters read as tensors of the batch shape, whatever was stored.

    @property
    def loc(self):
        loc = self._loc
        if isinstance(loc, torch.Tensor):
            return _expanded(loc, self._batch_shape)
        return _as_param(loc, self._num_dtype, self._num_device, self._batch_shape)

    @loc.setter
    def loc(self, value):
        self._loc = value

    @property
    def scale(self):
        scale = self._scale
        if isinstance(scale, torch.Tensor):
            return _expanded(scale, self._batch_shape)
        return _as_param(scale, self._num_dtype, self._num_device, self._batch_shape)

    @scale.setter
    def scale(self, value):
        self._scale = value

    def __repr__(self):
        return _repr(self)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Normal, _instance)
        batch_shape = torch.Size(batch_shape)
        _check_expand(self._batch_shape, batch_shape)
        new._loc, new._scale = self._loc, self._scale
        new._num_dtype, new._num_device = self._num_dtype, self._num_device
        new._same_dtype = self._same_dtype
        new._batch_shape = batch_shape
        new._event_shape = _EMPTY
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=_EMPTY):
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self._num_dtype, device=self._param_device())
        loc, scale = self._loc, self._scale
        # torch's ``loc + eps * scale``: one fused op (one autograd node) for
        # tensor parameters, and no op at all for the identities 0 and 1.
        if isinstance(loc, torch.Tensor) and isinstance(scale, torch.Tensor):
            return torch.addcmul(loc, eps, scale)
        x = eps if (isinstance(scale, Number) and scale == 1.0) else eps * scale
        return x if (isinstance(loc, Number) and loc == 0.0) else loc + x

    def _param_device(self):
        loc = self._loc
        if isinstance(loc, torch.Tensor):
            return loc.device
        scale = self._scale
        return scale.device if isinstance(scale, torch.Tensor) else self._num_device

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=self._num_dtype, device=self._param_device())
        if value.dtype != self._num_dtype or not self._same_dtype:
            # Mixed dtypes: torch's own (expanded tensor) parameters, so that type
            # promotion gives the dtype torch would, and its order of operations.
            loc, scale = self.loc, self.scale
            z = (value - loc) / scale
            noise = torch.addcmul(z.new_full((), -_HALF_LOG_TWO_PI), z, z, value=-0.5)
            return noise - scale.log()
        loc, scale = self._loc, self._scale
        z = value if (isinstance(loc, Number) and loc == 0.0) else value - loc
        if isinstance(scale, Number):
            if scale != 1.0:
                z = z / scale
            const = z.new_full((), -math.log(scale) - _HALF_LOG_TWO_PI)
        else:
            z = z / scale
            const = torch.rsub(scale.log(), -_HALF_LOG_TWO_PI)
        log_prob = torch.addcmul(const, z, z, value=-0.5)
        return _to_batch(log_prob, value, self._batch_shape, self._event_shape)


def _repr(d):
    # torch's format: a one-element parameter as its value, others by size.
    args = ", ".join(
        f"{k}: {v.item() if v.numel() == 1 else v.size()}"
        for k, v in (("loc", d.loc), ("scale", d.scale))
    )
    return f"{type(d).__name__}({args})"


def _to_batch(log_prob, value, batch_shape, event_shape):
    """``log_prob`` broadcast to ``broadcast(value batch shape, batch_shape)``, the
    shape torch's expanded parameters would have given it."""
    shape = log_prob.shape
    if shape == batch_shape:
        return log_prob
    value_batch = value.shape[: value.dim() - len(event_shape)]
    target = torch.broadcast_shapes(value_batch, batch_shape)
    return log_prob if shape == target else log_prob.expand(target)


_EXP = ExpTransform()  # stateless (no cache), so one instance serves every LogNormal


class LogNormal(_TorchLogNormal, TorchDistributionMixin):
    """``torch.distributions.LogNormal``: ``exp`` of a :class:`Normal`, with a
    lean construction and ``log_prob``.

    :param loc: mean of the log (number or tensor).
    :param scale: standard deviation of the log, positive.
    :param bool validate_args: check arguments and sample supports.

    Example::

        >>> import torch
        >>> from probpl.distributions import LogNormal
        >>> LogNormal(0., 1.).log_prob(torch.tensor(1.))
        tensor(-0.9189)
    """

    def __init__(self, loc, scale, validate_args=None):
        base = Normal(loc, scale, validate_args=validate_args)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            TransformedDistribution.__init__(self, base, _EXP, validate_args=validate_args)
            return
        self.base_dist = base
        self.transforms = [_EXP]
        self._batch_shape = base._batch_shape
        self._event_shape = _EMPTY

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogNormal, _instance)
        new.base_dist = self.base_dist.expand(batch_shape)
        new.transforms = self.transforms
        new._batch_shape = new.base_dist._batch_shape
        new._event_shape = _EMPTY
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        y = value.log()
        return self.base_dist.log_prob(y) - y

    def __repr__(self):
        return _repr(self)
