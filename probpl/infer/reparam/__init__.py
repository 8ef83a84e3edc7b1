"""Reparameterizers for :func:`probpl.poutine.reparam`: they replace a sample
site by an equivalent construction that is easier for inference."""

from probpl.infer.reparam.loc_scale import LocScaleReparam
from probpl.infer.reparam.reparam import Reparam
from probpl.infer.reparam.transform import TransformReparam

__all__ = ["LocScaleReparam", "Reparam", "TransformReparam"]
