"""Stateless array ops for convolution and max pooling, NHWC.

The names exported here are the fast Numba kernels (:mod:`minicnn.ops.kernels`) and the Keras
padding helpers (:mod:`minicnn.ops.padding`). The readable NumPy reference versions, with the
math in their docstrings, are in :mod:`minicnn.ops.reference` (same names and signatures).
"""

from . import reference
from .kernels import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    im2col,
    maxpool2d_backward,
    maxpool2d_forward,
)
from .padding import conv_geometry, conv_output_length, output_hw, padding_amounts

__all__ = [
    "reference",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "conv_output_length",
    "padding_amounts",
    "conv_geometry",
    "output_hw",
]
