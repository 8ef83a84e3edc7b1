"""Inference: SVI with ELBO objectives, autoguides, Predictive, MCMC, enumeration."""

from probpl.infer.discrete import infer_discrete
from probpl.infer.elbo import ELBO
from probpl.infer.enum import config_enumerate, enumerated_log_density
from probpl.infer.mcmc import HMC, MCMC, NUTS
from probpl.infer.mcmc.util import initialize_model
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.traceenum_elbo import TraceEnum_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO

__all__ = [
    "ELBO", "HMC", "MCMC", "NUTS", "SVI", "TraceEnum_ELBO", "TraceGraph_ELBO",
    "TraceMeanField_ELBO", "Trace_ELBO", "config_enumerate", "enumerated_log_density",
    "infer_discrete", "initialize_model",
]
