"""``FoldedDistribution``: the law of ``|X|`` for a univariate ``X``."""


from . import constraints
from .torch import TransformedDistribution
from .transforms import AbsTransform


class FoldedDistribution(TransformedDistribution):
    """The absolute value of a univariate distribution.

    :param base_dist: a distribution with ``event_shape == ()``.
    """

    arg_constraints = {}
    support = constraints.nonnegative

    def __init__(self, base_dist, validate_args=None):
        if base_dist.event_shape:
            raise ValueError(
                "FoldedDistribution: base_dist must be univariate, got event_shape "
                f"{tuple(base_dist.event_shape)}"
            )
        super().__init__(base_dist, AbsTransform(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(FoldedDistribution, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        dim = max(len(self.batch_shape), value.dim())
        plus_minus = value.new_tensor([1.0, -1.0]).reshape((2,) + (1,) * dim)
        return self.base_dist.log_prob(plus_minus * value).logsumexp(0)
