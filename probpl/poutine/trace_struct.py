"""A record of one execution of a model: its sites, in order, with their values.

:class:`Trace` holds the site messages in ``nodes`` (an ordered dict keyed by
site name) and computes the quantities inference needs from them: scaled and
masked log-densities per site, score-function parts for gradient estimators,
and a readable shape table for debugging. With ``graph_type="dense"`` it also
keeps dependency edges between stochastic sites, respecting the conditional
independence declared by sequential plates.
"""

from collections import OrderedDict

import torch

from probpl.distributions.score_parts import ScoreParts
from probpl.distributions.util import scale_and_mask


def site_is_subsample(site):
    """Whether ``site`` records the subsample indices drawn by a plate."""
    return site["type"] == "sample" and site["infer"].get("_subsample", False)


def _is_stochastic(site):
    return site["type"] == "sample" and not site["infer"].get("_subsample", False)


def _describe_site(name, site):
    fn = site["fn"]
    plates = ", ".join(
        f"'{f.name}' (dim {f.dim}, size {f.size})" for f in site["cond_indep_stack"] if f.vectorized
    )
    where = f" in plates {plates}" if plates else ""
    shapes = ""
    if hasattr(fn, "batch_shape"):
        shapes = (
            f"distribution batch_shape {tuple(fn.batch_shape)}, event_shape "
            f"{tuple(fn.event_shape)}"
        )
    value = site["value"]
    if isinstance(value, torch.Tensor):
        shapes += f", value shape {tuple(value.shape)}"
    return f"sample site '{name}'{where}: {shapes}"


class Trace:
    """An ordered record of the sites of one model execution.

    :param str graph_type: ``"flat"`` (no edges) or ``"dense"`` (edges from every
        stochastic site to each later one that is not conditionally independent of it).
    """

    def __init__(self, graph_type="flat"):
        if graph_type not in ("flat", "dense"):
            raise ValueError(f"graph_type must be 'flat' or 'dense', got {graph_type!r}")
        self.graph_type = graph_type
        self.nodes = OrderedDict()
        self._succ = {}  # site name -> names of its successors (dense graphs only)
        self._pred = {}

    def __contains__(self, name):
        return name in self.nodes

    def __iter__(self):
        return iter(self.nodes.keys())

    def __len__(self):
        return len(self.nodes)

    def add_node(self, site_name, **kwargs):
        """Add a site. Two sample sites may not share a name in one trace."""
        self._add_site(site_name, kwargs)

    def _add_site(self, site_name, kwargs):
        if site_name in self.nodes:
            site = self.nodes[site_name]
            if site["type"] != kwargs["type"]:
                raise RuntimeError(
                    f"site name '{site_name}' is used by both a {site['type']} site and a "
                    f"{kwargs['type']} site; site names must be unique"
                )
            if kwargs["type"] != "param":
                raise RuntimeError(
                    f"Multiple {kwargs['type']} sites named '{site_name}' in one trace; "
                    "give each site a unique name (inside a loop, include the index)"
                )
        self.nodes[site_name] = kwargs
        # Edge sets are made on first use: a flat trace never has edges.
        if self.graph_type == "dense" and _is_stochastic(kwargs):
            for other, site in self.nodes.items():
                if other != site_name and _is_stochastic(site) and _dependent(site, kwargs):
                    self.add_edge(other, site_name)

    def add_edge(self, site1, site2):
        self._edges(self._succ, site1).add(site2)
        self._edges(self._pred, site2).add(site1)

    def _edges(self, table, site_name):
        edges = table.get(site_name)
        if edges is None:
            if site_name not in self.nodes:
                raise KeyError(site_name)
            edges = table[site_name] = set()
        return edges

    def remove_node(self, site_name):
        self.nodes.pop(site_name)
        for p in self._pred.pop(site_name, ()):
            self._succ.get(p, set()).discard(site_name)
        for s in self._succ.pop(site_name, ()):
            self._pred.get(s, set()).discard(site_name)

    def predecessors(self, site_name):
        return self._edges(self._pred, site_name)

    def successors(self, site_name):
        return self._edges(self._succ, site_name)

    def topological_sort(self, reverse=False):
        """Site names in execution order (already topological), or reversed."""
        names = list(self.nodes)
        return names[::-1] if reverse else names

    def copy(self):
        """A shallow copy: a new node dict whose site dicts are copies."""
        new = Trace(graph_type=self.graph_type)
        new.nodes = OrderedDict((k, dict(v)) for k, v in self.nodes.items())
        new._succ = {k: set(v) for k, v in self._succ.items()}
        new._pred = {k: set(v) for k, v in self._pred.items()}
        return new

    def detach_(self):
        """Detach every tensor value in place."""
        for site in self.nodes.values():
            if isinstance(site.get("value"), torch.Tensor):
                site["value"] = site["value"].detach()

    # ----- log-densities -----

    def _site_log_prob(self, name, site):
        try:
            return site["fn"].log_prob(site["value"])
        except (ValueError, RuntimeError) as e:
            where = _describe_site(name, site)
            raise ValueError(f"Error computing log_prob at {where}: {e}") from e

    def compute_log_prob(self, site_filter=None):
        """Store ``log_prob`` (scaled and masked, batch-shaped), ``unscaled_log_prob``
        and ``log_prob_sum`` on every sample site that passes ``site_filter``."""
        for name, site in self.nodes.items():
            if site["type"] != "sample" or "log_prob" in site:
                continue
            if site["infer"].get("_subsample", False):
                continue
            if site_filter is not None and not site_filter(name, site):
                continue
            self._store_log_prob(name, site)

    def _store_log_prob(self, name, site):
        try:
            lp = site["fn"].log_prob(site["value"])
        except (ValueError, RuntimeError) as e:
            where = _describe_site(name, site)
            raise ValueError(f"Error computing log_prob at {where}: {e}") from e
        site["unscaled_log_prob"] = lp
        if not _unscaled(site):
            lp = scale_and_mask(lp, site["scale"], site["mask"])
        site["log_prob"] = lp
        # A 0-dim log-density is its own sum (and one autograd node fewer).
        site["log_prob_sum"] = lp if isinstance(lp, torch.Tensor) and lp.dim() == 0 else lp.sum()

    def compute_score_parts(self):
        """Store ``score_parts`` (log_prob, score_function, entropy_term) on latent
        sites and ``log_prob`` on observed ones, each scaled and masked."""
        for name, site in self.nodes.items():
            if site["type"] != "sample" or "score_parts" in site:
                continue
            if site["infer"].get("_subsample", False):
                continue
            if site["is_observed"]:
                if "log_prob" not in site:
                    self._store_log_prob(name, site)
                continue
            try:
                parts = site["fn"].score_parts(site["value"])
            except (ValueError, RuntimeError) as e:
                raise ValueError(
                    f"Error computing log_prob at {_describe_site(name, site)}: {e}"
                ) from e
            site["unscaled_log_prob"] = parts.log_prob
            if _unscaled(site):
                pass  # nothing to scale or mask: keep the parts as they are
            elif parts.entropy_term is parts.log_prob:
                # Reparameterised: scale once, so the parts stay one tensor.
                lp = scale_and_mask(parts.log_prob, site["scale"], site["mask"])
                parts = ScoreParts(lp, scale_and_mask(parts.score_function, 1.0, site["mask"]), lp)
            else:
                parts = parts.scale_and_mask(site["scale"], site["mask"])
            site["score_parts"] = parts
            lp = site["log_prob"] = parts.log_prob
            site["log_prob_sum"] = lp if isinstance(lp, torch.Tensor) and lp.dim() == 0 \
                else lp.sum()

    def log_prob_sum(self, site_filter=lambda name, site: True):
        """The total scaled and masked log-density of the sample sites passing ``site_filter``."""
        total = 0.0
        for name, site in self.nodes.items():
            if not _is_stochastic(site) or not site_filter(name, site):
                continue
            if "log_prob_sum" in site:
                total = total + site["log_prob_sum"]
            else:
                lp = scale_and_mask(self._site_log_prob(name, site), site["scale"], site["mask"])
                total = total + lp.sum()
        return total

    # ----- node filters -----

    @property
    def stochastic_nodes(self):
        return [n for n, s in self.nodes.items() if _is_stochastic(s) and not s["is_observed"]]

    @property
    def reparameterized_nodes(self):
        return [
            n for n in self.stochastic_nodes if getattr(self.nodes[n]["fn"], "has_rsample", False)
        ]

    @property
    def nonreparam_stochastic_nodes(self):
        return [
            n
            for n in self.stochastic_nodes
            if not getattr(self.nodes[n]["fn"], "has_rsample", False)
        ]

    @property
    def observation_nodes(self):
        return [n for n, s in self.nodes.items() if _is_stochastic(s) and s["is_observed"]]

    @property
    def param_nodes(self):
        return [n for n, s in self.nodes.items() if s["type"] == "param"]

    def iter_stochastic_nodes(self):
        """Yield ``(name, site)`` for every latent (unobserved) sample site."""
        for name, site in self.nodes.items():
            if _is_stochastic(site) and not site["is_observed"]:
                yield name, site

    # ----- debugging -----

    def format_shapes(self, title="Trace Shapes:", last_site=None):
        """A table of every site's plates, batch and event shapes, value and
        log_prob shapes: the first thing to print when shapes go wrong."""
        rows = [("site", "plates", "batch | event", "value", "log_prob")]
        for name, site in self.nodes.items():
            if site["type"] == "param":
                value = site["value"]
                rows.append((name, "", "param", _shape(value), ""))
            elif _is_stochastic(site):
                fn = site["fn"]
                plates = ",".join(
                    f"{f.name}[{f.dim}]" if f.vectorized else f"{f.name}[seq]"
                    for f in site["cond_indep_stack"]
                )
                be = f"{_shape(fn.batch_shape)} | {_shape(fn.event_shape)}"
                lp = site.get("log_prob")
                tag = " (obs)" if site["is_observed"] else ""
                rows.append((name + tag, plates, be, _shape(site["value"]), _shape(lp)))
            if name == last_site:
                break
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [title]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return "\n".join(lines)


def _unscaled(site):
    """Whether the site's scale is the number 1 and it has no mask (most sites):
    a plain type test, cheaper than the general ``scale_and_mask``."""
    scale = site["scale"]
    return site["mask"] is None and (scale.__class__ is float or scale.__class__ is int) \
        and scale == 1


def _shape(x):
    if x is None:
        return ""
    shape = x.shape if isinstance(x, torch.Tensor) else x
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _dependent(site1, site2):
    """False when the two sites lie in different iterations of one sequential plate."""
    frames1 = {f.name: f for f in site1["cond_indep_stack"] if not f.vectorized}
    for f in site2["cond_indep_stack"]:
        if not f.vectorized and f.name in frames1 and frames1[f.name].counter != f.counter:
            return False
    return True


__all__ = ["Trace", "ScoreParts", "site_is_subsample"]
