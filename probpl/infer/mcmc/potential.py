"""A model compiled into a potential-energy function of one flat vector of unconstrained
coordinates, and the machinery to evaluate it for a batch of chains.

The model is traced once to lay its continuous latent sites out in a flat vector
(:class:`FlatLayout`).  In the sampling loop the model runs under
:class:`PotentialMessenger`, a lean handler that substitutes each latent value (mapped
from unconstrained space) and adds the scale- and mask-weighted log-densities and the
log-Jacobians into one accumulator; no ``Trace`` is built.  Distribution validation runs
when the model is first traced and is switched off in the loop.

Chains are evaluated together: with several chains the single-chain potential is mapped
over the chain dimension with ``torch.func.vmap`` (a model written for one chain needs no
change), the gradient comes from one backward pass of the summed energies.  When compiled
(:func:`compile_leaf`, the default of HMC and NUTS whenever it is safe) the whole leapfrog
step around the value and gradient is traced once into a simplified ATen graph
(:mod:`probpl.infer.mcmc.compile`) run by TorchScript, which removes the Python cost of the
model, the distributions, autograd and the trajectory bookkeeping from the loop; this
requires a model whose control flow and shapes do not depend on the latent values.
"""

import warnings
from typing import NamedTuple

import torch

from probpl import util as _util
from probpl.poutine.messenger import Messenger


class SiteSpec(NamedTuple):
    name: str
    offset: int  # first coordinate of the site in the flat vector
    numel: int  # number of unconstrained coordinates
    shape: torch.Size  # unconstrained shape
    transform: object  # unconstrained -> constrained (biject_to(support))


class FlatLayout:
    """Where each latent site lives in the flat unconstrained vector.

    :param list specs: the :class:`SiteSpec` of each site, in model order.
    """

    def __init__(self, specs):
        self.specs = list(specs)
        self.index = {s.name: s for s in self.specs}
        self.dim = sum(s.numel for s in self.specs)

    def unpack(self, z):
        """``(..., D)`` -> dict of unconstrained values shaped ``(..., *site_shape)``."""
        batch = z.shape[:-1]
        return {
            s.name: z[..., s.offset:s.offset + s.numel].reshape(batch + s.shape)
            for s in self.specs
        }

    def pack(self, values, batch_shape=()):
        """Dict of unconstrained values shaped ``(*batch_shape, *site_shape)`` -> flat."""
        batch_shape = torch.Size(batch_shape)
        parts = []
        for s in self.specs:
            if s.name not in values:
                raise KeyError(f"no value for latent site '{s.name}'")
            v = values[s.name]
            if v.shape != batch_shape + s.shape:
                raise ValueError(
                    f"latent site '{s.name}': expected unconstrained value of shape "
                    f"{tuple(batch_shape + s.shape)}, got {tuple(v.shape)}"
                )
            parts.append(v.reshape(batch_shape + (s.numel,)))
        return torch.cat(parts, -1)

    def constrain(self, z):
        """``(..., D)`` -> dict of constrained values."""
        return {name: self.index[name].transform(u) for name, u in self.unpack(z).items()}


class PotentialMessenger(Messenger):
    """Substitute latent values from a flat unconstrained vector and accumulate the log
    joint density (with log-Jacobians).  One job, no trace.

    :param FlatLayout layout: the site layout.
    :param torch.Tensor z: flat unconstrained values, ``(D,)``.
    """

    def __init__(self, layout, z):
        super().__init__()
        self.layout = layout
        self.z = z
        self.log_joint = 0.0

    def _pyro_sample(self, msg):
        spec = self.layout.index.get(msg["name"])
        if spec is None or msg["is_observed"]:
            return
        u = self.z[spec.offset:spec.offset + spec.numel].reshape(spec.shape)
        value = spec.transform(u)
        msg["value"] = value
        msg["done"] = True
        lad = spec.transform.log_abs_det_jacobian(u, value)
        self.log_joint = self.log_joint + lad.sum()

    def _pyro_post_sample(self, msg):
        if msg["infer"].get("_deterministic"):
            return
        mask = msg["mask"]
        if mask is False:
            return
        log_prob = msg["fn"].log_prob(msg["value"])
        if mask is not None and mask is not True:
            log_prob = torch.where(mask, log_prob, log_prob.new_zeros(()))
        scale = msg["scale"]
        if not (isinstance(scale, float) and scale == 1.0):
            log_prob = log_prob * scale
        self.log_joint = self.log_joint + log_prob.sum()


class no_validation:
    """Switch distribution and site validation off for the enclosed evaluation."""

    def __enter__(self):
        self._old = (_util._VALIDATION_ENABLED, torch.distributions.Distribution._validate_args)
        _util._VALIDATION_ENABLED = False
        torch.distributions.Distribution._validate_args = False

    def __exit__(self, *exc):
        _util._VALIDATION_ENABLED, torch.distributions.Distribution._validate_args = self._old
        return False


def make_flat_potential(model, model_args, model_kwargs, layout):
    """:returns: ``z (D,) -> potential energy`` (minus the log joint in unconstrained space)."""

    def potential(z):
        handler = PotentialMessenger(layout, z)
        with no_validation(), handler:
            model(*model_args, **model_kwargs)
        log_joint = handler.log_joint
        if not isinstance(log_joint, torch.Tensor):
            log_joint = z.new_tensor(log_joint)
        return -log_joint

    return potential


def _eager_single(flat_potential):
    def potential_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            pe = flat_potential(z.view(-1))
            (grad,) = torch.autograd.grad(pe, z)
        return pe.detach().reshape(1), grad

    return potential_and_grad


def _eager_batched(flat_potential, vectorize):
    mapped = torch.func.vmap(flat_potential) if vectorize else None

    def potential_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            if mapped is not None:
                pe = mapped(z)
            else:
                pe = torch.stack([flat_potential(zi) for zi in z.unbind(0)])
            (grad,) = torch.autograd.grad(pe.sum(), z)
        return pe.detach(), grad

    return potential_and_grad


def traceable_potential_and_grad(flat_potential, num_chains, functional=False):
    """``z (C, D) -> (potential (C,), grad (C, D))`` for tracing.

    :param bool functional: use ``torch.func`` transforms for the gradient (which compose
        with functionalization, see :func:`~probpl.infer.mcmc.compile.trace_graph`)
        rather than autograd.  Autograd is preferred: it dispatches fused kernels (say,
        ``binary_cross_entropy_with_logits``) where the transforms decompose them, and it
        does not load ``torch._dynamo``, whose import costs seconds.
    """
    if not functional:
        if num_chains == 1:
            return _eager_single(flat_potential)
        return _eager_batched(flat_potential, vectorize=True)
    value_and_grad = torch.func.grad_and_value(flat_potential)
    if num_chains > 1:
        value_and_grad = torch.func.vmap(value_and_grad)

        def potential_and_grad(z):
            grad, pe = value_and_grad(z)
            return pe, grad
    else:

        def potential_and_grad(z):
            grad, pe = value_and_grad(z[0])
            return pe.reshape(1), grad.unsqueeze(0)

    return potential_and_grad


def _compiled(flat_potential, z_example):
    from probpl.infer.mcmc.compile import compile_function

    gen = torch.Generator(device=z_example.device).manual_seed(0)
    other = z_example + 0.1 * torch.randn(z_example.shape, generator=gen,
                                          dtype=z_example.dtype, device=z_example.device)
    def build(functional):
        return traceable_potential_and_grad(flat_potential, z_example.shape[0], functional)

    return compile_function(build, (z_example,), [(other,)])


def compile_leaf(flat_potential, build, example_inputs, jit_compile=None):
    """Compile a leaf function of the trajectory (for instance
    :func:`~probpl.infer.mcmc.trajectory.leaf_step`: leapfrog step, potential and gradient,
    energy error and U-turn checks) into one graph.

    :param callable flat_potential: ``z (D,) -> potential energy``.
    :param callable build: ``potential_and_grad -> leaf function``.
    :param callable example_inputs: ``seed -> example inputs of the leaf function``.
    :param bool jit_compile: ``True`` compiles and warns when that fails, ``None`` compiles
        when possible and silently keeps eager evaluation otherwise, ``False`` does not
        compile.
    :returns: the compiled leaf function, or ``None``.
    """
    if jit_compile is False:
        return None
    from probpl.infer.mcmc.compile import compile_function

    try:
        inputs = example_inputs(0)

        def make(functional):
            pg = traceable_potential_and_grad(flat_potential, inputs[0].shape[0], functional)
            return build(pg)

        return compile_function(make, inputs, [example_inputs(1)])
    except Exception as e:  # noqa: BLE001 - any tracing failure falls back to eager mode
        if jit_compile:
            warnings.warn(
                f"jit_compile=True: could not compile the potential ({type(e).__name__}: "
                f"{e}); falling back to eager evaluation",
                RuntimeWarning,
            )
        return None


def batched_potential_and_grad(flat_potential, z_example, jit_compile=False):
    """Build ``z (C, D) -> (potential (C,), grad (C, D))`` for ``C = z_example.shape[0]``.

    :param callable flat_potential: ``z (D,) -> potential energy``.
    :param torch.Tensor z_example: a valid point for every chain, used to choose and check
        the evaluation strategy.
    :param bool jit_compile: trace and compile the gradient and value function.
    """
    num_chains = z_example.shape[0]
    if jit_compile:
        try:
            fn = _compiled(flat_potential, z_example)
            fn(z_example)
            return fn
        except Exception as e:  # noqa: BLE001 - any tracing failure falls back to eager mode
            warnings.warn(
                f"jit_compile=True: could not compile the potential ({type(e).__name__}: {e}); "
                "falling back to eager evaluation",
                RuntimeWarning,
            )
    if num_chains == 1:
        return _eager_single(flat_potential)
    fn = _eager_batched(flat_potential, vectorize=True)
    try:
        fn(z_example)
        return fn
    except Exception:  # noqa: BLE001 - models vmap cannot run (e.g. .item()) loop over chains
        return _eager_batched(flat_potential, vectorize=False)
