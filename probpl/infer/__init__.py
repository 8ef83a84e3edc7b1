"""Inference: SVI with ELBO objectives, autoguides, Predictive, MCMC, enumeration."""

from probpl.infer import autoguide, reparam, util
from probpl.infer.discrete import infer_discrete
from probpl.infer.elbo import ELBO
from probpl.infer.enum import config_enumerate, enumerated_log_density
from probpl.infer.importance import EmpiricalMarginal, Importance
from probpl.infer.jit_elbo import JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO
from probpl.infer.mcmc import HMC, MCMC, NUTS, RandomWalkKernel
from probpl.infer.mcmc.util import initialize_model
from probpl.infer.predictive import Predictive, log_likelihood
from probpl.infer.renyi_elbo import RenyiELBO
from probpl.infer.svi import SVI
from probpl.infer.trace_elbo import Trace_ELBO
from probpl.infer.trace_mean_field_elbo import TraceMeanField_ELBO
from probpl.infer.trace_tail_adaptive_elbo import TraceTailAdaptive_ELBO
from probpl.infer.traceenum_elbo import TraceEnum_ELBO
from probpl.infer.tracegraph_elbo import TraceGraph_ELBO

__all__ = [
    "ELBO", "EmpiricalMarginal", "HMC", "Importance", "JitTraceGraph_ELBO",
    "JitTraceMeanField_ELBO", "JitTrace_ELBO", "MCMC", "NUTS", "Predictive", "RandomWalkKernel",
    "RenyiELBO", "SVI",
    "TraceEnum_ELBO", "TraceGraph_ELBO", "TraceMeanField_ELBO", "TraceTailAdaptive_ELBO",
    "Trace_ELBO", "autoguide", "config_enumerate", "enumerated_log_density", "infer_discrete",
    "initialize_model", "log_likelihood", "reparam", "util",
]
