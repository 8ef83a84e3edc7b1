"""Transforms with learnable parameters.

A :class:`TransformModule` is both a ``torch.distributions.Transform`` and a
``torch.nn.Module``, so its parameters are found by ``probpl.module`` and
trained by SVI like any other network.
"""

import torch
from torch.distributions.transforms import ComposeTransform, Transform


class TransformModule(Transform, torch.nn.Module):
    """Base class for transforms that own ``nn.Parameter`` s."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def __hash__(self):
        return torch.nn.Module.__hash__(self)


class ComposeTransformModule(ComposeTransform, torch.nn.ModuleList):
    """A :class:`~torch.distributions.transforms.ComposeTransform` that is also
    an ``nn.ModuleList``, so the parameters of its parts are registered.

    :param parts: the transforms, applied left to right.
    """

    def __init__(self, parts, cache_size=0):
        super().__init__(parts, cache_size=cache_size)
        for part in parts:
            if isinstance(part, torch.nn.Module):
                self.append(part)

    def with_cache(self, cache_size=1):
        if cache_size == self._cache_size:
            return self
        return ComposeTransformModule(self.parts, cache_size=cache_size)

    def __hash__(self):
        return torch.nn.Module.__hash__(self)
