"""The differentiable operations, one Function each: forward on arrays beside backward in Tensors.

arithmetic: + - * / ** and comparisons; elementwise: exp, log, sqrt, abs, relu, sigmoid,
tanh, keep_where, astype; reduce: sum, mean, max; shape: reshape, transpose, broadcast_to, indexing;
linalg: matmul. operators: these as Tensor's operators and methods (x + y, x.sum()).
"""

from minigrad.ops.arithmetic import add, compare, div, mul, neg, pow, rpow, sub
from minigrad.ops.elementwise import abs, astype, exp, keep_where, log, relu, sigmoid, sqrt, tanh
from minigrad.ops.linalg import matmul
from minigrad.ops.operators import attach_to_tensor
from minigrad.ops.reduce import max, mean, sum
from minigrad.ops.shape import broadcast_to, getitem, reshape, sum_to, transpose

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "rpow", "compare",
    "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "keep_where", "astype",
    "sum", "mean", "max",
    "reshape", "transpose", "broadcast_to", "getitem", "sum_to",
    "matmul",
]

attach_to_tensor()  # x + y, x @ w, x.sum(), ...: Tensor gets its operators once they all exist
