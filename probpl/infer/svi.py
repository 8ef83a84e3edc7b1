"""``SVI``: stochastic variational inference, one optimizer step at a time.

A step asks the loss for its value and gradients, then lets the optimizer
update exactly the parameters that the model and guide touched during that
step (found by listening for param sites, not by scanning the store).
"""

import torch
from tqdm import tqdm

from probpl.params import _PYRO_PARAM_STORE
from probpl.poutine.messenger import Messenger


class _ParamCapture(Messenger):
    """Remembers the names of param sites, in order of first use."""

    def __init__(self):
        super().__init__()
        self.names = {}

    # Only param messages: the handler stack skips this frame for all others.
    def _pyro_post_param(self, msg):
        self.names[msg["name"]] = None


class SVI:
    """Fit a guide to a model's posterior by minimising a loss (usually an ELBO).

    :param model: the model, a callable.
    :param guide: the guide (variational family), a callable.
    :param optim: a :mod:`probpl.optim` optimizer.
    :param loss: an ELBO instance, e.g. ``Trace_ELBO()``, or a callable
        ``loss(model, guide, *args, **kwargs)`` returning a differentiable tensor.
    :param loss_and_grads: optional callable overriding ``loss.loss_and_grads``.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer.svi import SVI
        >>> from probpl.infer.trace_elbo import Trace_ELBO
        >>> from probpl.optim import Adam
        >>> probpl.set_rng_seed(0)
        >>> def model(x):
        ...     m = probpl.sample("m", dist.Normal(0., 10.))
        ...     with probpl.plate("data", len(x)):
        ...         probpl.sample("x", dist.Normal(m, 1.), obs=x)
        >>> def guide(x):
        ...     probpl.sample("m", dist.Normal(probpl.param("loc", torch.tensor(0.)), 0.3))
        >>> svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
        >>> losses = svi.run(500, torch.ones(10) * 3., progress_bar=False)
        >>> abs(probpl.param("loc").item() - 3.) < 0.3
        True
    """

    def __init__(self, model, guide, optim, loss, loss_and_grads=None, num_samples=0,
                 num_steps=0, **kwargs):
        if isinstance(loss, type):
            raise TypeError(f"SVI: pass an ELBO instance, e.g. {loss.__name__}(), not the class")
        if not callable(optim):
            raise TypeError(
                f"SVI: optim must be a probpl.optim optimizer (e.g. probpl.optim.Adam({{'lr': "
                f"0.01}})), got {type(optim).__name__}"
            )
        self.model = model
        self.guide = guide
        self.optim = optim
        self.loss = loss
        if loss_and_grads is None:
            loss_and_grads = getattr(loss, "loss_and_grads", None)
        if loss_and_grads is None:
            if not callable(loss):
                raise TypeError(f"SVI: loss must be an ELBO or a callable, got {type(loss)}")

            def loss_and_grads(model, guide, *args, **kwargs):
                value = loss(model, guide, *args, **kwargs)
                value.backward()
                return value.detach().item()

        self.loss_and_grads = loss_and_grads
        self._loss_fn = getattr(loss, "loss", loss)

    def evaluate_loss(self, *args, **kwargs):
        """The loss without taking a step (no gradients are computed)."""
        with torch.no_grad():
            value = self._loss_fn(self.model, self.guide, *args, **kwargs)
        return value.item() if isinstance(value, torch.Tensor) else float(value)

    def step(self, *args, **kwargs):
        """One gradient step; returns the loss as a float."""
        with _ParamCapture() as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        store = _PYRO_PARAM_STORE._params
        params = [store[name] for name in capture.names if name in store]
        self.optim(params)
        for p in params:
            p.grad = None
        return loss.item() if isinstance(loss, torch.Tensor) else loss

    def run(self, num_steps, *args, progress_bar=True, **kwargs):
        """Take ``num_steps`` steps and return the list of losses.

        :param bool progress_bar: show a tqdm bar with the running loss (it
            draws no random numbers, so results do not depend on it).
        """
        losses = []
        with tqdm(total=num_steps, disable=not progress_bar, desc="SVI") as bar:
            for i in range(num_steps):
                losses.append(self.step(*args, **kwargs))
                if progress_bar and (i % 10 == 0 or i == num_steps - 1):
                    bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                bar.update()
        return losses
