"""Markov chain Monte Carlo: HMC, NUTS, a random-walk kernel and the MCMC driver."""

from probpl.infer.mcmc.api import MCMC
from probpl.infer.mcmc.hmc import HMC
from probpl.infer.mcmc.mcmc_kernel import MCMCKernel
from probpl.infer.mcmc.nuts import NUTS
from probpl.infer.mcmc.rwkernel import RandomWalkKernel

__all__ = ["HMC", "MCMC", "MCMCKernel", "NUTS", "RandomWalkKernel"]
