"""Numerical kernels with no knowledge of models: tensor contraction for
enumeration, Welford estimators, dual averaging, integrators, diagnostics."""
