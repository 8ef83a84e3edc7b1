"""``SVI``: stochastic variational inference, one optimizer step at a time."""

import torch
from tqdm.auto import tqdm

from probpl.params import _PYRO_PARAM_STORE
from probpl.poutine.trace_messenger import TraceMessenger


class SVI:
    """Fit a guide to a model's posterior by minimising a loss (usually an ELBO).

    :param model: the model, a callable.
    :param guide: the guide (variational family), a callable.
    :param optim: a :mod:`probpl.optim` optimizer.
    :param loss: an ELBO instance, e.g. ``Trace_ELBO()``.

    Example::

        >>> import torch, probpl
        >>> import probpl.distributions as dist
        >>> from probpl.infer import SVI, Trace_ELBO
        >>> from probpl.optim import Adam
        >>> def model(x):
        ...     m = probpl.sample("m", dist.Normal(0., 10.))
        ...     with probpl.plate("data", len(x)):
        ...         probpl.sample("x", dist.Normal(m, 1.), obs=x)
        >>> def guide(x):
        ...     probpl.sample("m", dist.Normal(probpl.param("loc", torch.tensor(0.)), 1.))
        >>> svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
        >>> losses = svi.run(300, torch.ones(10) * 3., progress_bar=False)
        >>> abs(probpl.param("loc").item() - 3.) < 0.5
        True
    """

    def __init__(self, model, guide, optim, loss, loss_and_grads=None, **kwargs):
        self.model = model
        self.guide = guide
        self.optim = optim
        if isinstance(loss, type):
            raise TypeError("SVI: pass an ELBO instance, e.g. Trace_ELBO(), not the class")
        self.loss = loss
        if loss_and_grads is None:
            loss_and_grads = getattr(loss, "loss_and_grads", None)
        if loss_and_grads is None:
            def loss_and_grads(model, guide, *args, **kwargs):
                value = loss(model, guide, *args, **kwargs)
                value.backward()
                return float(value)
        self.loss_and_grads = loss_and_grads
        self._loss_fn = getattr(loss, "loss", loss)

    def evaluate_loss(self, *args, **kwargs):
        """The loss without taking a step."""
        with torch.no_grad():
            return float(self._loss_fn(self.model, self.guide, *args, **kwargs))

    def step(self, *args, **kwargs):
        """One gradient step; returns the loss as a float."""
        with TraceMessenger(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        store = _PYRO_PARAM_STORE._params
        params = [store[name] for name in capture.trace.nodes if name in store]
        self.optim(params)
        for p in params:
            p.grad = None
        return loss

    def run(self, num_steps, *args, progress_bar=True, **kwargs):
        """Take ``num_steps`` steps and return the list of losses.

        :param bool progress_bar: show a tqdm bar with the running loss.
        """
        losses = []
        with tqdm(total=num_steps, disable=not progress_bar, desc="SVI") as bar:
            for i in range(num_steps):
                losses.append(self.step(*args, **kwargs))
                if progress_bar and (i % 10 == 0 or i == num_steps - 1):
                    bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                bar.update()
        return losses
