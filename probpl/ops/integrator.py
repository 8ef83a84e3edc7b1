"""Velocity Verlet (leapfrog) integration of Hamiltonian dynamics, and the Gaussian kinetic
energy it integrates.

Positions ``z`` and momenta ``r`` are flat tensors shaped ``(..., D)``; leading dimensions
(one per chain) are batch dimensions.  The inverse mass matrix is either diagonal,
shaped like ``r``, or dense, shaped ``(..., D, D)``; the step size is a float or a tensor
with one entry per chain.

References

1. R. M. Neal (2011), "MCMC using Hamiltonian dynamics", Handbook of Markov Chain
   Monte Carlo, section 5.2.3.2.
2. B. Leimkuhler, S. Reich (2004), "Simulating Hamiltonian Dynamics", chapter 2.
"""

import torch


def velocity(r, inverse_mass_matrix):
    """:returns: ``M^{-1} r``, the time derivative of the position."""
    if inverse_mass_matrix.dim() == r.dim():
        return inverse_mass_matrix * r
    return torch.matmul(inverse_mass_matrix, r.unsqueeze(-1)).squeeze(-1)


def kinetic_energy(r, inverse_mass_matrix):
    """:returns: ``r^T M^{-1} r / 2``, one value per leading index of ``r``."""
    return 0.5 * (r * velocity(r, inverse_mass_matrix)).sum(-1)


def _as_column(step_size, like):
    if isinstance(step_size, torch.Tensor) and step_size.dim() > 0:
        return step_size.unsqueeze(-1).to(like)
    return step_size


def velocity_verlet(z, r, potential_and_grad, inverse_mass_matrix, step_size, num_steps=1,
                    z_grad=None):
    """Integrate ``num_steps`` leapfrog steps of size ``step_size``.

    :param torch.Tensor z: positions, ``(..., D)``.
    :param torch.Tensor r: momenta, ``(..., D)``.
    :param callable potential_and_grad: ``z -> (potential_energy, grad)``.
    :param torch.Tensor inverse_mass_matrix: diagonal ``(..., D)`` or dense ``(..., D, D)``.
    :param step_size: float, or a tensor with one entry per chain (negative integrates
        backwards in time).
    :param int num_steps: number of steps.
    :param torch.Tensor z_grad: the gradient at ``z`` if already known.
    :returns: ``(z, r, z_grad, potential_energy)`` at the end of the trajectory; the
        potential energy is ``None`` when ``num_steps`` is zero.
    """
    eps = _as_column(step_size, z)
    half = 0.5 * eps
    potential_energy = None
    if z_grad is None:
        potential_energy, z_grad = potential_and_grad(z)
    for _ in range(num_steps):
        r = r - half * z_grad
        z = z + eps * velocity(r, inverse_mass_matrix)
        potential_energy, z_grad = potential_and_grad(z)
        r = r - half * z_grad
    return z, r, z_grad, potential_energy
