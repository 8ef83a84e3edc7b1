"""Compiling a model for MCMC (:func:`initialize_model`), finding initial points, and the
diagnostics re-exported with Pyro's names (``summary``, ``print_summary``,
``diagnostics``, effective sample size and R-hat).
"""

import math

import torch

from probpl.distributions import biject_to
from probpl.infer.autoguide.initialization import InitMessenger, init_to_uniform
from probpl.infer.mcmc.potential import (
    FlatLayout,
    PotentialMessenger,
    SiteSpec,
    batched_potential_and_grad,
    make_flat_potential,
    no_validation,
)
from probpl.ops.stats import (  # noqa: F401 - re-exported with Pyro's module path
    autocorrelation,
    autocovariance,
    effective_sample_size,
    gelman_rubin,
    hpdi,
    quantile,
    split_gelman_rubin,
    summary,
)
from probpl.poutine import substitute, trace

MAX_INIT_TRIES = 100


def enumerated_potential(compiled):
    """The flat potential of a model with enumerated discrete latent sites: continuous
    sites take their values from the flat vector, and the discrete ones are summed out
    exactly by the same contraction ``TraceEnum_ELBO`` uses (one traced model run per
    evaluation, so this is slower than the lean path for purely continuous models)."""
    from probpl.infer.enum import enumerated_log_density

    layout = compiled.layout
    max_plate_nesting = max(
        [-f.dim for site in compiled.prototype_trace.nodes.values() if site["type"] == "sample"
         for f in site["cond_indep_stack"] if f.dim is not None],
        default=0,
    )

    def potential(z):
        values, log_det = {}, 0.0
        for spec in layout.specs:
            u = z[spec.offset:spec.offset + spec.numel].reshape(spec.shape)
            x = spec.transform(u)
            values[spec.name] = x
            log_det = log_det + spec.transform.log_abs_det_jacobian(u, x).sum()
        with no_validation():
            log_density, _ = enumerated_log_density(
                compiled.model, compiled.model_args, compiled.model_kwargs, values,
                max_plate_nesting,
            )
        return -(log_density + log_det)

    return potential


class CompiledModel:
    """A model traced once and laid out for MCMC.

    :param callable model: the model.
    :param tuple model_args: its positional arguments.
    :param dict model_kwargs: its keyword arguments.
    :param dict transforms: optional site name to a transform from the constrained to the
        unconstrained space (Pyro's convention); the default is ``biject_to(support).inv``.
    :param callable init_strategy: strategy used for the prototype trace.
    """

    def __init__(self, model, model_args=(), model_kwargs=None, transforms=None,
                 init_strategy=init_to_uniform):
        self.model = model
        self.model_args = tuple(model_args)
        self.model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
        self.init_strategy = init_strategy
        self.prototype_trace = self._init_trace(init_strategy)
        specs, offset = [], 0
        self.enumerated, self.deterministic_names, self.observed_names = [], [], []
        for name, site in self.prototype_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                if site["infer"].get("_deterministic"):
                    self.deterministic_names.append(name)
                else:
                    self.observed_names.append(name)
                continue
            fn = site["fn"]
            if getattr(fn.support, "is_discrete", False):
                if site["infer"].get("enumerate") == "parallel":
                    self.enumerated.append(name)
                    continue
                raise ValueError(
                    f"sample site '{name}' is discrete ({type(fn).__name__}); HMC and NUTS "
                    "need continuous latent sites. Mark discrete sites for enumeration with "
                    "@config_enumerate (infer={'enumerate': 'parallel'}) or marginalise them."
                )
            if transforms is not None and name in transforms:
                t = transforms[name].inv
            else:
                t = biject_to(fn.support)
            u = t.inv(site["value"])
            specs.append(SiteSpec(name, offset, u.numel(), u.shape, t))
            offset += u.numel()
        if not specs:
            raise ValueError("the model has no continuous latent sample sites to sample")
        self.layout = FlatLayout(specs)
        self.dtype = site_dtype = self.prototype_trace.nodes[specs[0].name]["value"].dtype
        self.device = self.prototype_trace.nodes[specs[0].name]["value"].device
        if not site_dtype.is_floating_point:
            self.dtype = torch.get_default_dtype()
        if self.enumerated:
            self.flat_potential = enumerated_potential(self)
        else:
            self.flat_potential = make_flat_potential(
                model, self.model_args, self.model_kwargs, self.layout
            )

    @property
    def transforms(self):
        """Site name to transform from constrained to unconstrained space."""
        return {s.name: s.transform.inv for s in self.layout.specs}

    def _init_trace(self, init_strategy):
        return trace(InitMessenger(init_strategy)(self.model)).get_trace(
            *self.model_args, **self.model_kwargs
        )

    def potential_fn(self, params):
        """Pyro-style potential: dict of unconstrained values -> potential energy."""
        return self.flat_potential(self.layout.pack(params))

    def nonfinite_sites(self, z):
        """Names of the sites whose log-density is not finite at flat point ``z``."""
        values = {k: v.detach() for k, v in self.layout.constrain(z).items()}
        bad = [k for k, u in self.layout.unpack(z).items() if not torch.isfinite(u).all()]
        with no_validation():
            tr = trace(substitute(self.model, data=values)).get_trace(
                *self.model_args, **self.model_kwargs
            )
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or site["infer"].get("_deterministic"):
                continue
            try:
                lp = site["fn"].log_prob(site["value"])
            except (ValueError, RuntimeError):
                bad.append(name)
                continue
            if not torch.isfinite(lp).all() and name not in bad:
                bad.append(name)
        return bad

    def initial_points(self, num_chains, init_strategy=None, initial_params=None):
        """Find a point with finite potential and gradient for every chain.

        :param int num_chains: number of chains.
        :param callable init_strategy: initialisation strategy (default: the one given).
        :param dict initial_params: unconstrained values, with a leading chain dimension
            when ``num_chains > 1``.
        :returns: ``(num_chains, D)`` flat unconstrained points.
        :raises ValueError: naming the sites with non-finite log-density when no valid
            point is found in 100 tries.
        """
        strategy = self.init_strategy if init_strategy is None else init_strategy
        single = batched_potential_and_grad(self.flat_potential, self._example(), False)
        if initial_params is not None:
            batch = (num_chains,) if num_chains > 1 else ()
            z = self.layout.pack(initial_params, batch).reshape(num_chains, -1)
            z = z.to(dtype=self.dtype, device=self.device)
            for c in range(num_chains):
                if not _finite(single(z[c:c + 1])):
                    raise ValueError(
                        f"initial_params of chain {c} give a non-finite potential energy; "
                        f"log-density not finite at site(s) {self.nonfinite_sites(z[c])}"
                    )
            return z
        points, bad = [], {}
        for c in range(num_chains):
            for attempt in range(MAX_INIT_TRIES):
                tr = self.prototype_trace if (c == 0 and attempt == 0) else None
                if tr is None or strategy is not self.init_strategy:
                    tr = self._init_trace(strategy)
                values = {s.name: s.transform.inv(tr.nodes[s.name]["value"])
                          for s in self.layout.specs}
                z = self.layout.pack(values).to(dtype=self.dtype, device=self.device)
                if _finite(single(z.unsqueeze(0))):
                    points.append(z)
                    break
                for name in self.nonfinite_sites(z):
                    bad[name] = bad.get(name, 0) + 1
            else:
                names = ", ".join(f"'{n}'" for n in bad) or "(none: the gradient is not finite)"
                raise ValueError(
                    f"could not find a valid initial point for chain {c} in {MAX_INIT_TRIES} "
                    f"tries: log-density not finite at site(s) {names}. Check the model's "
                    "parameters and data, or pass initial_params / another init_strategy."
                )
        return torch.stack(points)

    def _example(self):
        return torch.zeros(1, self.layout.dim, dtype=self.dtype, device=self.device)

    def potential_and_grad(self, z_example, jit_compile=False):
        """``z (C, D) -> (potential (C,), grad (C, D))``; see
        :func:`~probpl.infer.mcmc.potential.batched_potential_and_grad`."""
        return batched_potential_and_grad(self.flat_potential, z_example, jit_compile)

    def constrained_samples(self, z):
        """Flat unconstrained draws ``(..., D)`` -> constrained latent values plus the
        deterministic sites."""
        out = {k: v.detach() for k, v in self.layout.constrain(z).items()}
        if self.deterministic_names:
            out.update(self._collect(z, "deterministic"))
        return out

    def log_likelihood(self, z):
        """Pointwise log-likelihood of each observed site at draws ``(..., D)``."""
        return self._collect(z, "log_likelihood")

    def _collect(self, z, what):
        layout, model = self.layout, self.model
        args, kwargs = self.model_args, self.model_kwargs
        names = self.deterministic_names if what == "deterministic" else self.observed_names

        def fn(zi):
            handler = _Collector(layout, zi, what)
            with no_validation(), handler:
                model(*args, **kwargs)
            return tuple(handler.values[n] for n in names)

        batch = z.shape[:-1]
        flat = z.detach().reshape(-1, z.shape[-1])
        with torch.no_grad():
            try:
                results = torch.func.vmap(fn)(flat)
            except Exception:  # noqa: BLE001 - models vmap cannot run are evaluated one by one
                per = [fn(zi) for zi in flat.unbind(0)]
                results = tuple(torch.stack(r) for r in zip(*per))
        return {n: r.reshape(batch + r.shape[1:]) for n, r in zip(names, results)}


class _Collector(PotentialMessenger):
    def __init__(self, layout, z, what):
        super().__init__(layout, z)
        self.what = what
        self.values = {}

    def _pyro_post_sample(self, msg):
        deterministic = msg["infer"].get("_deterministic", False)
        if self.what == "deterministic" and deterministic:
            self.values[msg["name"]] = msg["value"]
        elif self.what == "log_likelihood" and msg["is_observed"] and not deterministic:
            self.values[msg["name"]] = msg["fn"].log_prob(msg["value"])


def _finite(pe_grad):
    pe, grad = pe_grad
    return bool(torch.isfinite(pe).all()) and bool(torch.isfinite(grad).all())


def initialize_model(model, model_args=(), model_kwargs={}, transforms=None,
                     max_plate_nesting=None, jit_compile=False, jit_options=None,
                     skip_jit_warnings=False, num_chains=1, init_strategy=init_to_uniform,
                     initial_params=None):
    """Compile ``model`` for HMC/NUTS.

    :returns: ``(init_params, potential_fn, transforms, prototype_trace)`` as in Pyro:
        unconstrained initial values (with a leading chain dimension when
        ``num_chains > 1``), a potential energy function of a dict of unconstrained values,
        the transforms from constrained to unconstrained space, and the model trace.
    """
    compiled = CompiledModel(model, model_args, model_kwargs, transforms, init_strategy)
    z = compiled.initial_points(num_chains, init_strategy, initial_params)
    params = compiled.layout.unpack(z if num_chains > 1 else z[0])
    return params, compiled.potential_fn, compiled.transforms, compiled.prototype_trace


def diagnostics(samples, group_by_chain=True):
    """Effective sample size and split R-hat of each site.

    :param dict samples: site name to draws (``(chains, samples, ...)`` when grouped).
    :returns: site name to ``{"n_eff": ..., "r_hat": ...}``.
    """
    out = {}
    for name, value in samples.items():
        x = value if group_by_chain else value.unsqueeze(0)
        x = x if x.is_floating_point() else x.double()
        out[name] = {"n_eff": effective_sample_size(x), "r_hat": split_gelman_rubin(x)}
    return out


def print_summary(samples, prob=0.9, group_by_chain=True):
    """Print a table of :func:`summary` statistics, one row per scalar component."""
    stats = summary(samples, prob=prob, group_by_chain=group_by_chain)
    if not stats:
        return
    columns = list(next(iter(stats.values())).keys())
    rows = []
    for name, st in stats.items():
        shape = st["mean"].shape
        for idx in range(max(1, math.prod(shape))):
            label = name
            if shape:
                label += "[" + ",".join(str(i) for i in _unravel(idx, shape)) + "]"
            rows.append([label] + [float(st[c].reshape(-1)[idx]) for c in columns])
    width = max(len(r[0]) for r in rows) + 2
    print(" " * width + "".join(f"{c:>10}" for c in columns))
    for r in rows:
        print(f"{r[0]:>{width}}" + "".join(f"{v:10.2f}" for v in r[1:]))
    print()


def _unravel(idx, shape):
    out = []
    for size in reversed(shape):
        out.append(idx % size)
        idx //= size
    return tuple(reversed(out))
