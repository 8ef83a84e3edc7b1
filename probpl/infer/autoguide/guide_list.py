"""Combining guides: :class:`AutoGuideList` runs several guides, each covering part
of a model's sites, over shared plates; :class:`AutoCallable` wraps a hand-written
guide function so it can be one of the parts."""

import weakref

import torch

from probpl.infer.autoguide.guides import AutoGuide


class AutoGuideList(AutoGuide, torch.nn.ModuleList):
    """A guide made of parts, each covering some of the model's sites (for example
    an :class:`AutoDelta` on a blocked model plus an :class:`AutoNormal`). The parts
    share plates, so subsampled plates draw one minibatch for all of them.

    :param callable model: the model.
    :param callable create_plates: see :class:`AutoGuide`.
    """

    def __init__(self, model, *, create_plates=None):
        super().__init__(model, create_plates=create_plates)

    def _check_prototype(self, part_trace):
        for name, part_site in part_trace.iter_stochastic_nodes():
            self_site = self.prototype_trace.nodes.get(name)
            if self_site is None:
                raise ValueError(f"AutoGuideList: a part has site '{name}' the model lacks")
            if tuple(part_site["cond_indep_stack"]) != tuple(self_site["cond_indep_stack"]):
                raise ValueError(
                    f"AutoGuideList: site '{name}' is in different plates in a part "
                    "and in the model"
                )

    def append(self, part):
        """Add a part (an :class:`AutoGuide` or a plain callable guide)."""
        if not isinstance(part, AutoGuide):
            part = AutoCallable(self.model, part)
        if part.master is not None:
            raise RuntimeError("this guide is already part of an AutoGuideList")
        object.__setattr__(part, "master", weakref.ref(self))
        for _, mod in part.named_modules():
            if isinstance(mod, AutoGuide):
                object.__setattr__(mod, "master", weakref.ref(self))
        super().append(part)

    add = append

    def forward(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        self._create_plates(*args, **kwargs)
        result = {}
        for part in self:
            result.update(part(*args, **kwargs))
        return result

    def median(self, *args, **kwargs):
        result = {}
        for part in self:
            result.update(part.median(*args, **kwargs))
        return result

    def quantiles(self, quantiles, *args, **kwargs):
        result = {}
        for part in self:
            result.update(part.quantiles(quantiles, *args, **kwargs))
        return result


class AutoCallable(AutoGuide):
    """Wrap a hand-written guide function so it can join an :class:`AutoGuideList`.

    :param callable model: the model.
    :param callable guide: the guide function.
    :param callable median: optional function of the model's arguments returning
        a dict of posterior medians.
    """

    def __init__(self, model, guide, median=lambda *args, **kwargs: {}):
        super().__init__(model)
        self._guide = guide
        self._median = median

    def forward(self, *args, **kwargs):
        result = self._guide(*args, **kwargs)
        return {} if result is None else result

    def median(self, *args, **kwargs):
        return self._median(*args, **kwargs)
