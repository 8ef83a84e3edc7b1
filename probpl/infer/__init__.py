"""Inference: SVI with ELBO objectives, autoguides, Predictive, MCMC, enumeration."""

from probpl.infer.elbo import ELBO
from probpl.infer.mcmc import HMC, MCMC, NUTS
from probpl.infer.mcmc.util import initialize_model
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO

__all__ = ["ELBO", "HMC", "MCMC", "NUTS", "SVI", "Trace_ELBO", "initialize_model"]
