"""Layers and models: Module, Dense, Conv2D, pooling, Flatten, ReLU, BatchNorm, Sequential, and their
functional forms.

    import minigrad as mg
    model = mg.nn.Sequential(mg.nn.Dense(64, use_bias=False), mg.nn.BatchNorm(), mg.nn.ReLU(),
                             mg.nn.Dense(10))
    loss = mg.nn.functional.softmax_cross_entropy(model(x), labels)

BatchNorm trains with the fast kernels; `with mg.nn.batch_norm_form("closed_form"):` trains
with the reference equations instead (minigrad.ops.batch_norm), and get_batch_norm_form()
says which runs.
"""

from minigrad.nn import constraints, functional, initializers, regularizers
from minigrad.nn.batchnorm import BatchNorm
from minigrad.nn.conv import Conv2D
from minigrad.nn.pooling import AveragePooling2D, Flatten, GlobalAveragePooling2D, MaxPooling2D
from minigrad.nn.functional import batch_norm_form, get_batch_norm_form
from minigrad.nn.layers import Dense, ReLU, Sequential, Sigmoid
from minigrad.nn.module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "Flatten", "ReLU", "Sigmoid", "BatchNorm", "Sequential",
    "functional", "initializers", "regularizers", "constraints",
    "batch_norm_form", "get_batch_norm_form",
]
