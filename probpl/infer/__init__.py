"""Inference: SVI with ELBO objectives, autoguides, Predictive, MCMC, enumeration."""

from probpl.infer.elbo import ELBO
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO

__all__ = ["ELBO", "SVI", "Trace_ELBO"]
