"""``Categorical`` built for the hot path of enumeration.

It is ``torch.distributions.Categorical`` (same attributes, same sampling
stream, same validation) with two differences that matter when a model builds
one afresh at every step, as an HMM does at every time step:

* The parameter is kept as given and normalised only when something reads it
  (``probs``, ``logits``, ``log_prob``, ``sample``, ``entropy``...). An
  enumerated site never needs its own normalised parameter: inference
  normalises the parameters of all the steps of a ``markov`` chain at once
  (:mod:`probpl.infer.enum_log_prob`), one autograd node instead of two per
  step. (So an in-place change to the given tensor before the first read is
  seen, where torch would have normalised the old values.)
* ``expand`` is lazy: the parameter keeps its own shape, so plate broadcasting
  adds no ``expand`` op and no autograd node; ``probs``/``logits`` read at the
  expanded shape.

The parameter as given is kept as ``_param`` (``_param_is_logits`` says which
one it is), at its own shape: torch reads ``_param`` for its dtype and device
only, and ``param_shape`` is the expanded shape. Normalised at its own shape it
is cached as ``_sprobs``/``_slogits``.
"""

import torch
from torch.distributions import Categorical as _TorchCategorical
from torch.distributions import Distribution
from torch.distributions.utils import lazy_property, probs_to_logits

from .torch_distribution import TorchDistributionMixin
from .util import check_expand as _check_expand
from .util import expanded as _expanded

_EMPTY = torch.Size()


class Categorical(_TorchCategorical, TorchDistributionMixin):
    """``torch.distributions.Categorical`` with probpl's ``expand``, ``to_event``,
    ``mask`` and ``__call__``, normalising its parameter only when it is read.

    :param torch.Tensor probs: event probabilities, non-negative with a positive
        sum along the last dim (normalised to sum to one).
    :param torch.Tensor logits: unnormalised event log-probabilities.
    :param bool validate_args: check arguments and sample supports.

    Example::

        >>> import torch
        >>> from probpl.distributions import Categorical
        >>> d = Categorical(torch.tensor([1.0, 3.0])).expand([2])
        >>> d.probs
        tensor([[0.2500, 0.7500],
                [0.2500, 0.7500]])
        >>> d.log_prob(torch.tensor([0, 1]))
        tensor([-1.3863, -0.2877])
    """

    # The parameter normalised at its own shape, once computed.
    _sprobs = None
    _slogits = None

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if probs is not None:
            if probs.dim() < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self._param, self._param_is_logits = probs, False
        else:
            if logits.dim() < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self._param, self._param_is_logits = logits, True
        if not torch.is_grad_enabled() and self._param.requires_grad:
            # torch normalises at once, so a distribution built without
            # gradients has none: keep it that way when normalising later.
            self._param = self._param.detach()
        shape = self._param.shape
        self._num_events = shape[-1]
        self._batch_shape = shape[:-1]
        self._event_shape = _EMPTY
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            # As torch does: check the given parameter, normalised (reading it
            # caches it, and the other one stays unchecked).
            self.logits if self._param_is_logits else self.probs
            Distribution.__init__(self, self._batch_shape, validate_args=validate_args)

    # The normalised parameters, computed once at the given parameter's shape
    # (with gradients, as torch's lazy properties are, whatever the grad mode).

    def _small_probs(self):
        p = self._sprobs
        if p is None:
            with torch.enable_grad():
                if self._param_is_logits:
                    p = torch.softmax(self._small_logits(), -1)
                else:
                    raw = self._param
                    p = raw / raw.sum(-1, keepdim=True)
            self._sprobs = p
        return p

    def _small_logits(self):
        logits = self._slogits
        if logits is None:
            with torch.enable_grad():
                if self._param_is_logits:
                    raw = self._param
                    logits = raw - raw.logsumexp(-1, keepdim=True)
                else:
                    logits = probs_to_logits(self._small_probs())
            self._slogits = logits
        return logits

    @lazy_property
    def probs(self):
        return _expanded(self._small_probs(), self.param_shape)

    @lazy_property
    def logits(self):
        return _expanded(self._small_logits(), self.param_shape)

    @property
    def param_shape(self):
        return self._batch_shape + (self._num_events,)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Categorical, _instance)
        if type(batch_shape) is not torch.Size:
            batch_shape = torch.Size(batch_shape)
        _check_expand(self._batch_shape, batch_shape)
        d = new.__dict__
        d["_param"], d["_param_is_logits"] = self._param, self._param_is_logits
        if self._sprobs is not None:
            d["_sprobs"] = self._sprobs
        if self._slogits is not None:
            d["_slogits"] = self._slogits
        d["_num_events"] = self._num_events
        d["_batch_shape"] = batch_shape
        d["_event_shape"] = _EMPTY
        d["_validate_args"] = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        # torch's gather, from the logits at their own shape; the result is then
        # broadcast to the shape torch's expanded logits would have given.
        logits = self._small_logits()
        index = value.long().unsqueeze(-1)
        index, logits = torch.broadcast_tensors(index, logits)
        log_prob = logits.gather(-1, index[..., :1]).squeeze(-1)
        shape, batch_shape = log_prob.shape, self._batch_shape
        if shape == batch_shape:
            return log_prob
        target = torch.broadcast_shapes(shape, batch_shape)
        return log_prob if shape == target else log_prob.expand(target)

    def entropy(self):
        logits = self._small_logits()
        logits = torch.clamp(logits, min=torch.finfo(logits.dtype).min)
        return _expanded(-(logits * self._small_probs()).sum(-1), self._batch_shape)

    def enumerate_support(self, expand=True):
        values = torch.arange(self._num_events, dtype=torch.long, device=self._param.device)
        values = values.view((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + self._batch_shape)
        return values

    def __repr__(self):
        # torch names the parameters held in ``__dict__``: the given one, at least.
        self.logits if self._param_is_logits else self.probs
        return Distribution.__repr__(self)
