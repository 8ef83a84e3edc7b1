"""The Pyro-style behaviours every probpl distribution has.

:class:`TorchDistributionMixin` adds ``__call__`` (draw a sample), ``shape``,
``event_dim``, ``expand``, ``to_event``, ``mask`` and ``score_parts`` to any
``torch.distributions.Distribution``.  :class:`TorchDistribution` is the base
for distributions written here.  The wrappers :class:`Independent`,
:class:`ExpandedDistribution` and :class:`MaskedDistribution` implement
``to_event``, generic ``expand`` and ``mask`` respectively.
"""

import torch

from . import constraints
from .score_parts import ScoreParts
from .util import broadcast_shape, scale_and_mask

_EMPTY = torch.Size()


class TorchDistributionMixin:
    """Mixin giving a ``torch.distributions.Distribution`` Pyro's behaviours.

    Mix it in *after* the torch class (``class Normal(torch.distributions.Normal,
    TorchDistributionMixin)``) so torch's own ``expand`` and friends take
    precedence where they exist.
    """

    def __call__(self, sample_shape=_EMPTY):
        """Draw a sample, reparameterised when the distribution supports it.

        :param torch.Size sample_shape: leading iid shape.
        :returns: a tensor of shape ``self.shape(sample_shape)``.
        """
        if self.has_rsample:
            return self.rsample(sample_shape)
        return self.sample(sample_shape)

    @property
    def event_dim(self):
        """The number of event dims, ``len(self.event_shape)``."""
        return len(self.event_shape)

    def shape(self, sample_shape=_EMPTY):
        """The shape of a sample: ``sample_shape + batch_shape + event_shape``.

        :param torch.Size sample_shape: leading iid shape.
        :returns: a ``torch.Size``.
        """
        return torch.Size(sample_shape) + self.batch_shape + self.event_shape

    @classmethod
    def infer_shapes(cls, **arg_shapes):
        """Infer ``(batch_shape, event_shape)`` from the shapes of the parameters.

        The default treats the event shape as empty and each parameter's batch
        part as its shape less the constraint's ``event_dim``.

        :param arg_shapes: parameter name to shape.
        :returns: a pair of ``torch.Size``.
        """
        batch_shapes = []
        for name, shape in arg_shapes.items():
            constraint = cls.arg_constraints.get(name)
            event_dim = getattr(constraint, "event_dim", 0) if constraint is not None else 0
            batch_shapes.append(tuple(shape)[: len(shape) - event_dim])
        return torch.Size(broadcast_shape(*batch_shapes)), torch.Size()

    def expand(self, batch_shape, _instance=None):
        """Expand the batch shape, wrapping in an :class:`ExpandedDistribution`.

        :param batch_shape: the new batch shape; must broadcast from the current one.
        :returns: an expanded distribution.
        """
        return ExpandedDistribution(self, batch_shape)

    def expand_by(self, sample_shape):
        """Prepend ``sample_shape`` to the batch shape.

        :param torch.Size sample_shape: dims to add on the left.
        :returns: an expanded distribution.
        """
        new_shape = torch.Size(sample_shape) + self.batch_shape
        try:
            return self.expand(new_shape)
        except NotImplementedError:
            return ExpandedDistribution(self, new_shape)

    def to_event(self, reinterpreted_batch_ndims=None):
        """Reinterpret the rightmost batch dims as event dims.

        :param int reinterpreted_batch_ndims: how many batch dims to move; None
            moves them all; a negative number removes dims from an
            :class:`Independent`.
        :returns: an :class:`Independent` (or ``self`` when nothing changes).
        """
        if reinterpreted_batch_ndims is None:
            reinterpreted_batch_ndims = len(self.batch_shape)
        base = self
        # Nested Independents are flattened so event dims can also be removed.
        while isinstance(base, torch.distributions.Independent):
            reinterpreted_batch_ndims += base.reinterpreted_batch_ndims
            base = base.base_dist
        if reinterpreted_batch_ndims == 0:
            return base
        if reinterpreted_batch_ndims < 0:
            raise ValueError(
                f"to_event: cannot remove event dims from {type(self).__name__} "
                f"with event_shape {tuple(self.event_shape)}"
            )
        if reinterpreted_batch_ndims > len(base.batch_shape):
            raise ValueError(
                f"to_event({reinterpreted_batch_ndims}): {type(base).__name__} has only "
                f"{len(base.batch_shape)} batch dims (batch_shape {tuple(base.batch_shape)})"
            )
        return Independent(base, reinterpreted_batch_ndims)

    def has_rsample_(self, value):
        """Force reparameterised (``True``) or detached, score-function (``False``)
        sampling on this instance, e.g. to compare gradient estimators.

        :param bool value: whether samples should carry reparameterised gradients.
        :returns: ``self``.
        """
        if value is not True and value is not False:
            raise ValueError(f"has_rsample_ expects True or False, got {value!r}")
        if isinstance(getattr(type(self), "has_rsample", None), property):
            base = getattr(self, "base_dist", None)
            if base is None:
                raise NotImplementedError(
                    f"{type(self).__name__}.has_rsample is computed; cannot override it"
                )
            base.has_rsample_(value)
            return self
        if value and type(self).rsample is torch.distributions.Distribution.rsample:
            raise ValueError(f"{type(self).__name__} has no reparameterised sampler")
        self.has_rsample = value
        return self

    def mask(self, mask):
        """Mask the log density by a bool or bool tensor (True keeps).

        :param mask: a bool or a bool tensor broadcastable to ``batch_shape``.
        :returns: a :class:`MaskedDistribution`.
        """
        return MaskedDistribution(self, mask)

    def score_parts(self, value):
        """The pieces of this site's ELBO contribution at ``value``.

        :param torch.Tensor value: a sample.
        :returns: :class:`~probpl.distributions.score_parts.ScoreParts`.
        """
        log_prob = self.log_prob(value)
        if self.has_rsample:
            return ScoreParts(log_prob, 0, log_prob)
        return ScoreParts(log_prob, log_prob, 0)


class TorchDistribution(torch.distributions.Distribution, TorchDistributionMixin):
    """Base class for distributions implemented in probpl.

    Subclasses implement ``sample`` (or ``rsample`` with ``has_rsample = True``)
    and ``log_prob``, declare ``arg_constraints`` and ``support`` so validation
    works, and pass ``batch_shape`` and ``event_shape`` to ``__init__``.
    """

    # torch's base ``expand`` raises NotImplementedError; fall back to wrapping.
    expand = TorchDistributionMixin.expand


class Independent(torch.distributions.Independent, TorchDistributionMixin):
    """Reinterpret batch dims of a base distribution as event dims (see ``to_event``)."""

    @property
    def _validate_args(self):
        return self.base_dist._validate_args

    @_validate_args.setter
    def _validate_args(self, value):
        self.base_dist._validate_args = value

    def score_parts(self, value):
        log_prob, score_function, entropy_term = self.base_dist.score_parts(value)
        n = self.reinterpreted_batch_ndims
        if entropy_term is log_prob or score_function is log_prob:
            # Reparameterised (or score-function-only) sites: sum once and share it.
            summed = _sum_rightmost_maybe(log_prob, n)
            return ScoreParts(
                summed,
                summed if score_function is log_prob else score_function,
                summed if entropy_term is log_prob else entropy_term,
            )
        return ScoreParts(
            _sum_rightmost_maybe(log_prob, n),
            _sum_rightmost_maybe(score_function, n),
            _sum_rightmost_maybe(entropy_term, n),
        )


def _sum_rightmost_maybe(x, n):
    if isinstance(x, torch.Tensor):
        return x.sum(tuple(range(-n, 0))) if x.dim() >= n else x
    return x


class MaskedDistribution(TorchDistribution):
    """A distribution whose ``log_prob`` is zeroed where ``mask`` is False.

    With ``mask=False`` the base density is never evaluated.

    :param base_dist: the distribution to mask.
    :param mask: a bool or bool tensor broadcastable to ``base_dist.batch_shape``.
    """

    arg_constraints = {}

    def __init__(self, base_dist, mask):
        if isinstance(mask, bool):
            self._mask = mask
        elif isinstance(mask, torch.Tensor):
            try:
                batch_shape = torch.Size(broadcast_shape(mask.shape, base_dist.batch_shape))
            except ValueError:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not broadcast with the "
                    f"batch_shape {tuple(base_dist.batch_shape)} of {type(base_dist).__name__}"
                ) from None
            if mask.dtype != torch.bool:
                mask = mask.bool()
            if mask.shape != batch_shape:
                mask = mask.expand(batch_shape)
            if base_dist.batch_shape != batch_shape:
                base_dist = base_dist.expand(batch_shape)
            self._mask = mask
        else:
            raise TypeError(f"mask must be a bool or a bool tensor, got {type(mask).__name__}")
        self.base_dist = base_dist
        super().__init__(base_dist.batch_shape, base_dist.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        mask = self._mask
        if isinstance(mask, torch.Tensor):
            mask = mask.expand(batch_shape)
        return MaskedDistribution(self.base_dist.expand(batch_shape), mask)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return self.base_dist.has_enumerate_support

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    def sample(self, sample_shape=_EMPTY):
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=_EMPTY):
        return self.base_dist.rsample(sample_shape)

    def log_prob(self, value):
        if self._mask is False:
            shape = broadcast_shape(
                self.base_dist.batch_shape, value.shape[: value.dim() - self.event_dim]
            )
            dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
            return torch.zeros((), dtype=dtype, device=value.device).expand(shape)
        if self._mask is True:
            return self.base_dist.log_prob(value)
        return scale_and_mask(self.base_dist.log_prob(value), mask=self._mask)

    def score_parts(self, value):
        if isinstance(self._mask, bool):
            return TorchDistributionMixin.score_parts(self, value)
        return self.base_dist.score_parts(value).scale_and_mask(mask=self._mask)

    def enumerate_support(self, expand=True):
        return self.base_dist.enumerate_support(expand=expand)

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance

    def entropy(self):
        return scale_and_mask(self.base_dist.entropy(), mask=self._mask)


def _expansion_plan(old_shape, new_shape):
    """Where ``old_shape`` grows into ``new_shape``.

    :returns: ``(leading_sizes, interstitial)`` where ``leading_sizes`` are the
        new dims on the left and ``interstitial`` lists ``(dim, size)`` for
        size-1 dims of ``old_shape`` that grow (``dim`` negative, batch-relative).
    :raises ValueError: if ``old_shape`` cannot broadcast to ``new_shape``.
    """
    try:
        ok = len(new_shape) >= len(old_shape) and broadcast_shape(old_shape, new_shape) == tuple(
            new_shape
        )
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"cannot expand a distribution with batch_shape {tuple(old_shape)} "
            f"to batch_shape {tuple(new_shape)}"
        )
    n_lead = len(new_shape) - len(old_shape)
    interstitial = [
        (i - len(old_shape), new_shape[n_lead + i])
        for i, size in enumerate(old_shape)
        if size == 1 and new_shape[n_lead + i] != 1
    ]
    return tuple(new_shape[:n_lead]), interstitial


class ExpandedDistribution(TorchDistribution):
    """A base distribution with its batch shape broadcast to ``batch_shape``.

    Used for distributions that cannot expand their own parameters.  Samples
    are independent across the new batch entries.

    :param base_dist: the distribution to expand.
    :param batch_shape: the target batch shape.
    """

    arg_constraints = {}

    def __init__(self, base_dist, batch_shape=_EMPTY):
        batch_shape = torch.Size(batch_shape)
        self._leading, self._interstitial = _expansion_plan(base_dist.batch_shape, batch_shape)
        self.base_dist = base_dist
        super().__init__(batch_shape, base_dist.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        _expansion_plan(self.batch_shape, batch_shape)  # forbid un-expanding
        return ExpandedDistribution(self.base_dist, batch_shape)

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return self.base_dist.has_enumerate_support

    @constraints.dependent_property
    def support(self):
        return self.base_dist.support

    def _draw(self, draw, sample_shape):
        sample_shape = torch.Size(sample_shape)
        grown = tuple(size for _, size in self._interstitial)
        x = draw(sample_shape + self._leading + grown)
        # Each grown size was drawn as an extra leading dim; swap it into the
        # base's size-1 batch position it belongs to.
        first = len(sample_shape) + len(self._leading)
        for k, (dim, _) in enumerate(self._interstitial):
            x = x.transpose(first + k, dim - self.event_dim)
        return x.reshape(sample_shape + self.batch_shape + self.event_shape)

    def sample(self, sample_shape=_EMPTY):
        return self._draw(self.base_dist.sample, sample_shape)

    def rsample(self, sample_shape=_EMPTY):
        return self._draw(self.base_dist.rsample, sample_shape)

    def _out_shape(self, value):
        return broadcast_shape(self.batch_shape, value.shape[: value.dim() - self.event_dim])

    def log_prob(self, value):
        return self.base_dist.log_prob(value).expand(self._out_shape(value))

    def score_parts(self, value):
        shape = self._out_shape(value)
        parts = self.base_dist.score_parts(value)
        return ScoreParts(
            *(p.expand(shape) if isinstance(p, torch.Tensor) else p for p in parts)
        )

    def enumerate_support(self, expand=True):
        values = self.base_dist.enumerate_support(expand=False)
        n = values.shape[0]
        values = values.reshape((n,) + (1,) * len(self.batch_shape) + self.event_shape)
        if expand:
            values = values.expand((n,) + self.batch_shape + self.event_shape)
        return values

    @property
    def mean(self):
        return self.base_dist.mean.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self):
        return self.base_dist.variance.expand(self.batch_shape + self.event_shape)

    def entropy(self):
        return self.base_dist.entropy().expand(self.batch_shape)
