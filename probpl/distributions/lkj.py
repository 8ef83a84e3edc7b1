"""``LKJ``: the LKJ distribution over correlation matrices, as the image of
``LKJCholesky`` under ``L -> L L^T``.
"""

import torch

from . import constraints
from .torch import LKJCholesky, TransformedDistribution
from .transforms import CorrMatrixCholeskyTransform


class LKJ(TransformedDistribution):
    """The LKJ distribution over ``dim x dim`` correlation matrices:
    density proportional to ``det(C) ** (concentration - 1)``.

    :param int dim: matrix size (at least 2).
    :param concentration: positive shape parameter; 1 is uniform over correlation matrices.
    """

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_matrix

    def __init__(self, dim, concentration=1.0, validate_args=None):
        base = LKJCholesky(dim, concentration, validate_args=validate_args)
        self.dim = dim
        self.concentration = base.concentration
        super().__init__(base, CorrMatrixCholeskyTransform().inv, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJ, _instance)
        new.dim = self.dim
        new.concentration = self.concentration.expand(torch.Size(batch_shape))
        return super().expand(batch_shape, _instance=new)

    @property
    def mean(self):
        eye = torch.eye(self.dim, dtype=self.concentration.dtype, device=self.concentration.device)
        return eye.expand(self.batch_shape + (self.dim, self.dim))
