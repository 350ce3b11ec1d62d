"""minigrad: a tiny reverse-mode autodiff engine on NumPy or CuPy, for learning BatchNorm.

    import minigrad as mg
    x = mg.Tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad is 2 * x
"""

from minigrad import data, nn, optim, training
from minigrad.autograd import Function, enable_grad, grad, is_grad_enabled, no_grad, topological_order
from minigrad.backend import get_backend, set_backend, use_backend
from minigrad.gradcheck import GradcheckError, GradcheckReport, gradcheck, gradgradcheck
from minigrad.ops import (
    abs, broadcast_to, exp, log, matmul, relu, reshape, sigmoid, sqrt, tanh, transpose,
)
from minigrad.random import manual_seed, rand, randn
from minigrad.tensor import Tensor, ones, zeros

__version__ = "0.1.0"

__all__ = [
    "nn", "optim", "data", "training",
    "Tensor", "zeros", "ones", "rand", "randn", "manual_seed",
    "no_grad", "enable_grad", "is_grad_enabled", "grad", "Function", "topological_order",
    "set_backend", "get_backend", "use_backend",
    "gradcheck", "gradgradcheck", "GradcheckError", "GradcheckReport",
    "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "matmul", "reshape", "transpose", "broadcast_to",
]
