"""Networks used by normalizing flows: the masked autoregressive network
(MADE) behind ``AffineAutoregressive`` and plain dense networks behind
coupling layers, each with an optional conditioning context.
"""

import torch
from torch import nn


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask``.

    :param int in_features: input size.
    :param int out_features: output size.
    :param torch.Tensor mask: shape ``(out_features, in_features)``.
    """

    def __init__(self, in_features, out_features, mask, bias=True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def _hidden_degrees(input_dim, hidden_dim):
    # Spread hidden units evenly over degrees 0..input_dim-2 so every output
    # (other than the first, which depends on nothing) has some support.
    top = max(input_dim - 1, 1)
    return torch.arange(hidden_dim) % top


def create_masks(input_dim, context_dim, hidden_dims, permutation, output_multiplier):
    """Masks making output ``permutation[k]`` depend only on inputs
    ``permutation[:k]`` (and on the whole context).

    :returns: ``(layer_masks, skip_mask)``; ``layer_masks[i]`` has shape
        ``(out_i, in_i)``; ``skip_mask`` connects inputs directly to outputs.
    """
    input_degree = torch.empty(input_dim, dtype=torch.long)
    input_degree[permutation] = torch.arange(input_dim)
    # Context units take degree -1: they feed every hidden unit.
    in_degree = torch.cat([torch.full((context_dim,), -1, dtype=torch.long), input_degree])
    masks = []
    for hidden_dim in hidden_dims:
        hidden_degree = _hidden_degrees(input_dim, hidden_dim)
        masks.append((hidden_degree[:, None] >= in_degree[None, :]).float())
        in_degree = hidden_degree
    out_degree = input_degree.repeat(output_multiplier)
    masks.append((out_degree[:, None] > in_degree[None, :]).float())
    skip = (out_degree[:, None] > input_degree[None, :]).float()
    skip = torch.cat([torch.ones(len(out_degree), context_dim), skip], dim=1)
    return masks, skip


class ConditionalAutoRegressiveNN(nn.Module):
    """A MADE network: output ``j`` for each parameter depends only on inputs
    that precede ``j`` in ``permutation`` (and on the whole context).

    :param int input_dim: size of the autoregressive input.
    :param int context_dim: size of the conditioning context.
    :param list hidden_dims: hidden layer sizes (each at least ``input_dim - 1``
        is recommended so every degree gets units).
    :param list param_dims: number of outputs per parameter per input dim.
    :param torch.LongTensor permutation: the variable order (random if None).
    :param bool skip_connections: add masked input-to-output connections.
    :param nonlinearity: the activation module.
    """

    def __init__(self, input_dim, context_dim, hidden_dims, param_dims=(1, 1), permutation=None,
                 skip_connections=False, nonlinearity=None):
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        for h in hidden_dims:
            if h < input_dim - 1 and input_dim > 1:
                raise ValueError(
                    f"hidden_dims {list(hidden_dims)}: each must be at least input_dim - 1 = "
                    f"{input_dim - 1} so every input can reach the outputs"
                )
        self.input_dim = input_dim
        self.context_dim = context_dim
        self.hidden_dims = list(hidden_dims)
        self.param_dims = list(param_dims)
        self.count_params = len(self.param_dims)
        self.output_multiplier = sum(self.param_dims)
        if permutation is None:
            permutation = torch.randperm(input_dim)
        self.register_buffer("permutation", torch.as_tensor(permutation, dtype=torch.long))
        masks, skip = create_masks(input_dim, context_dim, self.hidden_dims, self.permutation,
                                   self.output_multiplier)
        sizes = [input_dim + context_dim] + self.hidden_dims + [
            input_dim * self.output_multiplier
        ]
        self.layers = nn.ModuleList(
            MaskedLinear(sizes[i], sizes[i + 1], masks[i]) for i in range(len(masks))
        )
        if not skip_connections:
            skip[:, context_dim:] = 0
        # The context also feeds the outputs directly, so even the first output
        # in the order (which sees no inputs) can depend on it.
        self.skip_layer = (
            MaskedLinear(input_dim + context_dim, sizes[-1], skip, bias=False)
            if skip_connections or context_dim
            else None
        )
        self.f = nn.ReLU() if nonlinearity is None else nonlinearity
        ends = torch.tensor(self.param_dims).cumsum(0).tolist()
        self._slices = [slice(e - p, e) for p, e in zip(self.param_dims, ends)]

    def get_permutation(self):
        """The variable order used for the masks."""
        return self.permutation

    def forward(self, inputs, context=None):
        if self.context_dim:
            if context is None:
                raise ValueError("this network needs a context of size %d" % self.context_dim)
            context = context.expand(inputs.shape[:-1] + context.shape[-1:])
            inputs = torch.cat([context, inputs], dim=-1)
        h = inputs
        for layer in self.layers[:-1]:
            h = self.f(layer(h))
        h = self.layers[-1](h)
        if self.skip_layer is not None:
            h = h + self.skip_layer(inputs)
        if self.output_multiplier == 1:
            return h
        h = h.reshape(h.shape[:-1] + (self.output_multiplier, self.input_dim))
        if self.count_params == 1:
            return h
        return tuple(h[..., s, :].squeeze(-2) if s.stop - s.start == 1 else h[..., s, :]
                     for s in self._slices)


class AutoRegressiveNN(ConditionalAutoRegressiveNN):
    """A MADE network without context; see :class:`ConditionalAutoRegressiveNN`.

    Example::

        >>> arn = AutoRegressiveNN(3, [10], param_dims=[1, 1])
        >>> loc, log_scale = arn(torch.randn(5, 3))
        >>> loc.shape
        torch.Size([5, 3])
    """

    def __init__(self, input_dim, hidden_dims, param_dims=(1, 1), permutation=None,
                 skip_connections=False, nonlinearity=None):
        super().__init__(input_dim, 0, hidden_dims, param_dims, permutation, skip_connections,
                         nonlinearity)

    def forward(self, x):
        return super().forward(x)


class ConditionalDenseNN(nn.Module):
    """A fully connected network on ``cat([context, inputs])`` whose output is
    split into one tensor per entry of ``param_dims``.

    :param int input_dim: input size.
    :param int context_dim: context size.
    :param list hidden_dims: hidden layer sizes.
    :param list param_dims: output size of each parameter.
    :param nonlinearity: the activation module.
    """

    def __init__(self, input_dim, context_dim, hidden_dims, param_dims=(1, 1),
                 nonlinearity=None):
        super().__init__()
        self.input_dim = input_dim
        self.context_dim = context_dim
        self.param_dims = list(param_dims)
        self.count_params = len(self.param_dims)
        sizes = [input_dim + context_dim] + list(hidden_dims) + [sum(self.param_dims)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.f = nn.ReLU() if nonlinearity is None else nonlinearity
        ends = torch.tensor(self.param_dims).cumsum(0).tolist()
        self._slices = [slice(e - p, e) for p, e in zip(self.param_dims, ends)]

    def forward(self, x, context=None):
        if self.context_dim:
            if context is None:
                raise ValueError("this network needs a context of size %d" % self.context_dim)
            x = torch.cat([context.expand(x.shape[:-1] + context.shape[-1:]), x], dim=-1)
        for layer in self.layers[:-1]:
            x = self.f(layer(x))
        x = self.layers[-1](x)
        if self.count_params == 1:
            return x
        return tuple(x[..., s] for s in self._slices)


class DenseNN(ConditionalDenseNN):
    """A fully connected network without context; see :class:`ConditionalDenseNN`."""

    def __init__(self, input_dim, hidden_dims, param_dims=(1, 1), nonlinearity=None):
        super().__init__(input_dim, 0, hidden_dims, param_dims, nonlinearity)

    def forward(self, x):
        return super().forward(x)
