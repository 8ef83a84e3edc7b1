import pytest
import torch

from probpl.ops.integrator import kinetic_energy, velocity_verlet


def _harmonic(z):
    return 0.5 * (z * z).sum(-1), z


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_conserved_harmonic_oscillator(dtype):
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=dtype)
    r = torch.tensor([[0.0, 1.0], [1.0, 0.5]], dtype=dtype)
    inv_mass = torch.ones_like(z)
    energy0 = _harmonic(z)[0] + kinetic_energy(r, inv_mass)
    step = torch.tensor([0.01, 0.02], dtype=dtype)
    z1, r1, _, pe1 = velocity_verlet(z, r, _harmonic, inv_mass, step, num_steps=300)
    energy1 = pe1 + kinetic_energy(r1, inv_mass)
    # leapfrog energy error is O(step**2)
    assert torch.allclose(energy0, energy1, rtol=1e-3)
    assert z1.dtype == dtype
    # the exact flow of the unit oscillator is a rotation by time t = n * step
    t = (300 * step).unsqueeze(-1)
    exact = z * torch.cos(t) + r * torch.sin(t)
    assert torch.allclose(z1, exact, atol=2e-3)


def test_reversible():
    torch.manual_seed(0)
    z = torch.randn(3, 4, dtype=torch.float64)
    r = torch.randn(3, 4, dtype=torch.float64)
    inv_mass = torch.rand(3, 4, 4, dtype=torch.float64)
    inv_mass = inv_mass @ inv_mass.transpose(-1, -2) + torch.eye(4, dtype=torch.float64)
    z1, r1, g1, _ = velocity_verlet(z, r, _harmonic, inv_mass, 0.1, num_steps=10)
    z2, r2, _, _ = velocity_verlet(z1, -r1, _harmonic, inv_mass, 0.1, num_steps=10, z_grad=g1)
    assert torch.allclose(z2, z, atol=1e-10)
    assert torch.allclose(r2, -r, atol=1e-10)
