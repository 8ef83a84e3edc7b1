"""``PyroLRScheduler``: a ``torch.optim.lr_scheduler`` over the lazily grown
optimizer of :class:`~probpl.optim.optim.PyroOptim`.

The scheduler is built with the optimizer on the first step. Parameters that
appear later join as new param groups and start their own schedule from
their initial learning rate. ``step()`` advances the schedule; before the
first SVI step it does nothing, since there is nothing to schedule yet.
"""

import torch

from probpl.optim.optim import _SCHEDULER_KEY, PyroOptim


class PyroLRScheduler(PyroOptim):
    """Wrap a learning-rate scheduler class.

    :param scheduler_constructor: e.g. ``torch.optim.lr_scheduler.ExponentialLR``.
    :param dict optim_args: ``{"optimizer": torch optimizer class, "optim_args":
        dict or callable of optimizer options, **scheduler keyword arguments}``.
    :param clip_args: as for :class:`~probpl.optim.optim.PyroOptim`.

    Example::

        >>> import torch, probpl.optim
        >>> scheduler = probpl.optim.ExponentialLR(
        ...     {"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.01}, "gamma": 0.9})
        >>> scheduler.step()  # call once per epoch, after that epoch's svi.step() calls
    """

    def __init__(self, scheduler_constructor, optim_args, clip_args=None):
        if not isinstance(optim_args, dict) or "optimizer" not in optim_args:
            raise ValueError(
                "a learning-rate scheduler needs optim_args={'optimizer': torch optimizer class, "
                "'optim_args': {...}, **scheduler options}"
            )
        optim_args = dict(optim_args)
        optimizer = optim_args.pop("optimizer")
        optimizer_args = optim_args.pop("optim_args", {})
        self.pt_scheduler_constructor = scheduler_constructor
        self.kwargs = optim_args
        self.scheduler = None
        super().__init__(optimizer, optimizer_args, clip_args)

    def _make_optimizer(self, groups):
        optim = super()._make_optimizer(groups)
        self.scheduler = self.pt_scheduler_constructor(optim, **self.kwargs)
        if self._pending_scheduler is not None:
            self.scheduler.load_state_dict(self._pending_scheduler)
            self._pending_scheduler = None
        return optim

    def _add_group(self, group):
        super()._add_group(group)
        new = self.optim.param_groups[-1]
        new.setdefault("initial_lr", new["lr"])
        for attr in ("base_lrs", "_last_lr"):
            values = getattr(self.scheduler, attr, None)
            if isinstance(values, list):
                values.append(new["lr"])

    def __call__(self, params, *args, **kwargs):
        super().__call__(params)

    def step(self, *args, **kwargs):
        """Advance the schedule (e.g. ``step(loss)`` for ``ReduceLROnPlateau``)."""
        if self.scheduler is not None:
            self.scheduler.step(*args, **kwargs)

    def get_state(self):
        state = super().get_state()
        if self.scheduler is not None:
            state[_SCHEDULER_KEY] = self.scheduler.state_dict()
        elif self._pending_scheduler is not None:
            state[_SCHEDULER_KEY] = self._pending_scheduler
        return state

    def _set_scheduler_state(self, state):
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        else:
            self._pending_scheduler = state


def _make_scheduler_wrapper(scheduler_cls):
    def constructor(optim_args, clip_args=None):
        return PyroLRScheduler(scheduler_cls, optim_args, clip_args)

    constructor.__name__ = scheduler_cls.__name__
    constructor.__qualname__ = scheduler_cls.__name__
    constructor.__doc__ = (
        f"``torch.optim.lr_scheduler.{scheduler_cls.__name__}`` over the parameters inference "
        "touches.\n\n:param dict optim_args: ``{'optimizer': cls, 'optim_args': {...}, "
        "**scheduler options}``.\n"
    )
    return constructor


def scheduler_classes():
    """The scheduler classes of ``torch.optim.lr_scheduler``, by name."""
    base = getattr(torch.optim.lr_scheduler, "LRScheduler", None)
    out = {}
    for name in dir(torch.optim.lr_scheduler):
        cls = getattr(torch.optim.lr_scheduler, name)
        if not isinstance(cls, type) or name.startswith("_") or name == "LRScheduler":
            continue
        if (base is not None and issubclass(cls, base) and cls is not base) or name == \
                "ReduceLROnPlateau":
            out[name] = cls
    return out
