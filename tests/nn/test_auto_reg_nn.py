"""The autoregressive property of MADE networks, checked by autograd Jacobians."""

import pytest
import torch

from probpl.nn.auto_reg_nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, DenseNN


@pytest.mark.parametrize("input_dim,hidden,skip", [(1, [4], False), (4, [8, 8], False),
                                                   (5, [5], True)])
def test_outputs_depend_only_on_earlier_inputs(input_dim, hidden, skip):
    arn = AutoRegressiveNN(input_dim, hidden, param_dims=[1, 2], skip_connections=skip).double()
    x = torch.randn(input_dim, dtype=torch.float64)
    rank = torch.empty(input_dim, dtype=torch.long)
    rank[arn.get_permutation()] = torch.arange(input_dim)
    allowed = rank[:, None] > rank[None, :]  # output i may see input j
    loc, multi = arn(x)
    assert loc.shape == (input_dim,) and multi.shape == (2, input_dim)
    for out in [lambda z: arn(z)[0], lambda z: arn(z)[1][0], lambda z: arn(z)[1][1]]:
        jac = torch.autograd.functional.jacobian(out, x)
        assert (jac[~allowed] == 0).all()
        if input_dim > 1:
            assert (jac[allowed] != 0).any()


def test_conditional_context_reaches_every_output_and_dense_shapes():
    arn = ConditionalAutoRegressiveNN(3, 2, [6], param_dims=[1]).double()
    x = torch.randn(3, dtype=torch.float64)
    ctx = torch.randn(2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda c: arn(x, c), ctx)
    assert jac.shape == (3, 2) and (jac.abs().sum(-1) > 0).all()
    net = DenseNN(3, [7], param_dims=[2, 1])
    a, b = net(torch.randn(5, 3))
    assert a.shape == (5, 2) and b.shape == (5, 1)


def test_hidden_too_small_is_an_error():
    with pytest.raises(ValueError, match="hidden_dims"):
        AutoRegressiveNN(5, [2])
