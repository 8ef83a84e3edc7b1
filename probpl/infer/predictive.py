"""``Predictive`` and ``log_likelihood``: running a model over many posterior draws.

Posterior draws come either as a dict of tensors with a leading sample dim
(what ``MCMC.get_samples()`` returns) or from a guide. Each draw fixes the
model's latent sites of the same name (without making them observations);
the other sites are sampled as usual. With ``parallel=True`` all draws (or
``batch_size`` of them at a time, to bound memory) run in one vectorised
execution along an extra plate left of the model's plates; otherwise the
model runs once per draw.
"""

import torch

from probpl.infer.elbo import plate_nesting
from probpl.poutine.handlers import replay, substitute, trace
from probpl.poutine.plate_messenger import PlateMessenger

_PLATE = "_num_predictive_samples"


def _sample_sites(tr):
    return {
        name: site for name, site in tr.nodes.items()
        if site["type"] == "sample" and not site["infer"].get("_subsample")
    }


def _num_draws(samples, num_samples):
    sizes = {name: v.shape[0] for name, v in samples.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"posterior_samples disagree on the number of draws: {sizes}")
    n = next(iter(sizes.values())) if sizes else num_samples
    if num_samples is not None and sizes and num_samples != n:
        raise ValueError(
            f"num_samples={num_samples} but posterior_samples hold {n} draws; leave "
            "num_samples out or make them agree"
        )
    if n is None:
        raise ValueError("Predictive needs posterior_samples or num_samples")
    return n


def _to_sample_major(name, value, site_shape, num, nesting, event_dim):
    """A vectorised site value reshaped to ``(num,) + site_shape``."""
    total = nesting + 1 + event_dim
    batch = site_shape[: len(site_shape) - event_dim]
    target = (num,) + (1,) * (nesting - len(batch)) + tuple(site_shape)
    try:
        value = value.reshape((1,) * (total - value.dim()) + value.shape)
        return value.expand(target).reshape((num,) + tuple(site_shape))
    except RuntimeError as e:
        raise ValueError(
            f"Predictive(parallel=True): site '{name}' has value shape {tuple(value.shape)} "
            f"under vectorisation, which does not line up with its per-draw shape "
            f"{tuple(site_shape)} and event_dim {event_dim}; a deterministic site inside plates "
            "needs event_dim set to its number of non-plate dims (e.g. "
            "probpl.deterministic(name, value, event_dim=0)), or use parallel=False"
        ) from e


def _vectorize_draws(draws, nesting, event_dims):
    """Draws ``(num,) + site shape`` reshaped so the sample dim sits just left of
    the model's ``nesting`` plate dims."""
    out = {}
    for name, value in draws.items():
        site_shape = tuple(value.shape[1:])
        batch = site_shape[: len(site_shape) - event_dims.get(name, 0)]
        if len(batch) > nesting:
            raise ValueError(
                f"posterior sample '{name}' has per-draw shape {site_shape} with {len(batch)} "
                f"batch dims, more than the model's {nesting} plate dims; use parallel=False "
                "or declare those dims with plates"
            )
        out[name] = value.reshape((value.shape[0],) + (1,) * (nesting - len(batch)) + site_shape)
    return out


def _is_observation(site):
    infer = site["infer"]
    return site["is_observed"] and not infer.get("_deterministic") and not infer.get("_factor")


class Predictive(torch.nn.Module):
    """Draw from the posterior predictive distribution (or any sites) of a model.

    :param model: the model.
    :param dict posterior_samples: ``{site: tensor}`` with a leading sample dim.
    :param guide: a guide to draw latent values from instead.
    :param int num_samples: number of draws (needed with a guide or for prior draws).
    :param return_sites: names to return; by default every sample site whose
        value is not supplied by the draws (observations, deterministic sites, ...).
    :param bool parallel: vectorise over draws with an outer plate (the model
        must be vectorisable: plates for every batch dim).
    :param int batch_size: with ``parallel``, the draws per vectorised run.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.predictive import Predictive
        >>> def model(y=None):
        ...     m = probpl.sample("m", dist.Normal(0., 1.))
        ...     with probpl.plate("data", 3):
        ...         return probpl.sample("y", dist.Normal(m, 1.), obs=y)
        >>> out = Predictive(model, {"m": torch.zeros(100)}, parallel=True)()
        >>> out["y"].shape
        torch.Size([100, 3])
    """

    def __init__(self, model, posterior_samples=None, guide=None, num_samples=None,
                 return_sites=(), parallel=False, batch_size=None):
        super().__init__()
        posterior_samples = {} if posterior_samples is None else dict(posterior_samples)
        if guide is not None and posterior_samples:
            raise ValueError("Predictive: give posterior_samples or a guide, not both")
        self.num_samples = _num_draws(posterior_samples, num_samples)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.guide = guide
        self.posterior_samples = posterior_samples
        self.return_sites = return_sites
        self.parallel = parallel
        self.batch_size = batch_size

    def forward(self, *args, **kwargs):
        """``{site: tensor of shape (num_samples,) + site shape}``."""
        probe = self._probe(args, kwargs)
        if not self.parallel:
            draws = [self._run_one(i, args, kwargs) for i in range(self.num_samples)]
            return self._stack(draws, probe)
        chunk = self.batch_size or self.num_samples
        parts = []
        for start in range(0, self.num_samples, chunk):
            stop = min(start + chunk, self.num_samples)
            parts.append(self._run_vectorized(start, stop, probe, args, kwargs))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def get_samples(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- helpers -----

    def _latents(self, i, args, kwargs):
        if self.guide is not None:
            guide_trace = trace(self.guide).get_trace(*args, **kwargs)
            return guide_trace
        return {k: v[i] for k, v in self.posterior_samples.items()}

    def _run_model(self, latents, args, kwargs):
        if isinstance(latents, dict):
            fn = substitute(self.model, data=latents)
        else:
            fn = replay(self.model, trace=latents)
        return trace(fn).get_trace(*args, **kwargs)

    def _probe(self, args, kwargs):
        """One sequential run: site shapes, event dims, plate nesting, the return set."""
        latents = self._latents(0, args, kwargs)
        tr = self._run_model(latents, args, kwargs)
        sites = _sample_sites(tr)
        # Only latent sites are supplied by the draws; deterministic sites that come
        # with them (e.g. from MCMC.get_samples) are recomputed and returned.
        supplied = (
            {n for n in self.posterior_samples if n in sites and not sites[n]["is_observed"]}
            if self.guide is None
            else set(_sample_sites(latents)) - {n for n, s in sites.items() if s["is_observed"]}
        )
        if self.return_sites:
            names = list(self.return_sites)
            missing = [n for n in names if n not in sites and n != "_RETURN"]
            if missing:
                raise ValueError(f"return_sites {missing} are not sample sites of the model; "
                                 f"it has {sorted(sites)}")
        else:
            names = [n for n in sites if n not in supplied]
        nesting = max(plate_nesting(tr), plate_nesting(latents) if self.guide else 0)
        shapes = {}
        for n in names:
            if n == "_RETURN":
                shapes[n] = (tuple(tr.nodes["_RETURN"]["value"].shape), 0)
            else:
                shapes[n] = (tuple(sites[n]["value"].shape), len(sites[n]["fn"].event_shape))
        return {"names": names, "shapes": shapes, "nesting": nesting}

    def _run_one(self, i, args, kwargs):
        tr = self._run_model(self._latents(i, args, kwargs), args, kwargs)
        return {n: tr.nodes[n]["value"] for n in tr.nodes}

    def _stack(self, draws, probe):
        out = {}
        for n in probe["names"]:
            shape = probe["shapes"][n][0]
            out[n] = torch.stack([d[n].expand(shape) for d in draws])
        return out

    def _run_vectorized(self, start, stop, probe, args, kwargs):
        num, nesting = stop - start, probe["nesting"]

        def in_plate(fn):
            def wrapped(*a, **k):
                with PlateMessenger(_PLATE, num, dim=-nesting - 1):
                    return fn(*a, **k)
            return wrapped

        if self.guide is not None:
            latents = trace(in_plate(self.guide)).get_trace(*args, **kwargs)
            fn = replay(self.model, trace=latents)
        else:
            draws = {k: v[start:stop] for k, v in self.posterior_samples.items()}
            latents = _vectorize_draws(draws, nesting, self._event_dims(args, kwargs))
            fn = substitute(self.model, data=latents)
        tr = trace(in_plate(fn)).get_trace(*args, **kwargs)
        out = {}
        for n in probe["names"]:
            shape, ev = probe["shapes"][n]
            value = tr.nodes[n]["value"]
            out[n] = _to_sample_major(n, value, shape, num, nesting, ev)
        return out

    def _event_dims(self, args, kwargs):
        if not hasattr(self, "_event_dims_cache"):
            tr = self._run_model(self._latents(0, args, kwargs), args, kwargs)
            self._event_dims_cache = {
                n: len(s["fn"].event_shape) for n, s in _sample_sites(tr).items()
            }
        return self._event_dims_cache


def log_likelihood(model, posterior_samples, *args, parallel=False, **kwargs):
    """The log-density of each observed site under each posterior draw, e.g. for
    WAIC or PSIS-LOO.

    :param model: the model (observations given through its arguments).
    :param dict posterior_samples: ``{site: tensor}`` with a leading sample dim.
    :param bool parallel: vectorise over draws.
    :returns: ``{observed site: tensor of shape (num_draws,) + site batch shape}``,
        unscaled and unmasked per-element log-densities.
    """
    num = _num_draws(dict(posterior_samples), None)
    if parallel:
        probe = trace(substitute(model, data={k: v[0] for k, v in posterior_samples.items()}))
        tr0 = probe.get_trace(*args, **kwargs)
        nesting = plate_nesting(tr0)
        event_dims = {n: len(s["fn"].event_shape) for n, s in _sample_sites(tr0).items()}
        latents = _vectorize_draws(posterior_samples, nesting, event_dims)

        def vectorized(*a, **k):
            with PlateMessenger(_PLATE, num, dim=-nesting - 1):
                return substitute(model, data=latents)(*a, **k)

        tr = trace(vectorized).get_trace(*args, **kwargs)
        out = {}
        for name, site in _sample_sites(tr).items():
            if _is_observation(site):
                shape = tuple(tr0.nodes[name]["fn"].batch_shape)
                lp = site["fn"].log_prob(site["value"])
                out[name] = _to_sample_major(name, lp, shape, num, nesting, 0)
        return out
    rows = {}
    for i in range(num):
        draw = {k: v[i] for k, v in posterior_samples.items()}
        tr = trace(substitute(model, data=draw)).get_trace(*args, **kwargs)
        for name, site in _sample_sites(tr).items():
            if _is_observation(site):
                rows.setdefault(name, []).append(site["fn"].log_prob(site["value"]))
    return {name: torch.stack(v) for name, v in rows.items()}
