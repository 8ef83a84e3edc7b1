"""Normalizing-flow guides: a standard Normal over the packed unconstrained latents
pushed through learnable flows, e.g. stacked inverse autoregressive flows."""

import torch

from probpl.distributions import Normal, TransformedDistribution
from probpl.infer.autoguide.continuous import AutoContinuous
from probpl.infer.autoguide.initialization import init_to_median


class AutoNormalizingFlow(AutoContinuous):
    """A standard Normal pushed through a learnable flow over the packed latents.

    :param callable model: the model.
    :param callable init_transform_fn: ``latent_dim -> transform`` building the flow
        (a :class:`~probpl.distributions.transforms.TransformModule` or a list of them).
    """

    def __init__(self, model, init_transform_fn):
        self._init_transform_fn = init_transform_fn
        self.transform = None
        super().__init__(model, init_loc_fn=init_to_median)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        from probpl.distributions.transforms import ComposeTransformModule

        transform = self._init_transform_fn(self.latent_dim)
        if isinstance(transform, (list, tuple)):
            transform = ComposeTransformModule(list(transform))
        self.transform = transform
        self._base_loc = torch.zeros(self.latent_dim, dtype=self._init_loc().dtype,
                                     device=self._init_loc().device)

    def get_base_dist(self):
        zeros = self._base_loc
        return Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def get_transform(self, *args, **kwargs):
        return self.transform

    def get_posterior(self, *args, **kwargs):
        return TransformedDistribution(self.get_base_dist(), self.transform,
                                       validate_args=False)

    def median(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form median; draw "
                                  "samples with Predictive instead")

    quantiles = median


class AutoIAFNormal(AutoNormalizingFlow):
    """A flow guide of ``num_transforms`` affine inverse autoregressive flows.

    :param callable model: the model.
    :param int hidden_dim: hidden width of each flow's network (or a list of widths;
        default ``3 * latent_dim + 1``).
    :param int num_transforms: number of stacked flows.
    :param init_transform_kwargs: passed on to each ``AffineAutoregressive``.
    """

    def __init__(self, model, hidden_dim=None, init_loc_fn=None, num_transforms=1,
                 **init_transform_kwargs):
        if num_transforms < 1:
            raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
        hidden_dims = [hidden_dim] if isinstance(hidden_dim, int) else hidden_dim

        def init_transform_fn(latent_dim):
            from probpl.distributions.transforms import Permute
            from probpl.distributions.transforms.affine_flows import affine_autoregressive

            parts = []
            for i in range(num_transforms):
                if i > 0:
                    parts.append(Permute(torch.arange(latent_dim - 1, -1, -1)))
                parts.append(affine_autoregressive(latent_dim, hidden_dims,
                                                   **init_transform_kwargs))
            return parts

        super().__init__(model, init_transform_fn)
