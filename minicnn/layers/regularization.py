"""Dropout. The math is ops.dropout_forward/backward (readable in ops/reference.py)."""

import numpy as np

from .. import arguments, ops
from .base import Layer


class Dropout(Layer):
    """Inverted dropout (Keras's): in training, each entry is zeroed with probability `rate`
    and the others are divided by 1 - rate, so nothing changes at inference, where the layer
    is the identity. x: any shape -> y like x.

    rate: in [0, 1]. noise_shape: the shape of the mask, broadcast over x, e.g.
    (None, 1, 1, C) drops whole feature maps (None takes the input's size there).
    seed: an int mixed into the draws. The masks come from ctx.rng(): a generator seeded per
    training step (from minicnn.set_random_seed), layer and batch shard, so a seeded run
    repeats its masks exactly, and the shards of a batch split over threads draw different
    masks. Unlike Keras, `seed` alone does not fix the masks across runs without the global
    seed; layers with different seeds draw different masks.
    """

    stochastic = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = arguments.real(rate, "rate", self.where, minimum=0, maximum=1)
        self.noise_shape = self._check_noise_shape(noise_shape)
        self.seed = None if seed is None else arguments.integer(seed, "seed", self.where,
                                                                minimum=0)

    def _check_noise_shape(self, noise_shape):
        if noise_shape is None:
            return None
        if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
            raise ValueError(f"{self.where}: noise_shape must be a tuple of ints or None, "
                             f"e.g. (None, 1, 1, 64); got {noise_shape!r}.")
        return tuple(None if d is None else
                     arguments.integer(d, "noise_shape", self.where, minimum=1)
                     for d in noise_shape)

    def _validate_input_shape(self, input_shape):
        if self.noise_shape is None:
            return
        if len(self.noise_shape) != len(input_shape):
            raise ValueError(f"{self.where}: noise_shape {self.noise_shape} has "
                             f"{len(self.noise_shape)} entries; the inputs {input_shape} have "
                             f"{len(input_shape)} axes (the batch axis included).")
        for d, size in zip(self.noise_shape[1:], input_shape[1:], strict=True):
            if d is not None and d not in (1, size):
                raise ValueError(f"{self.where}: noise_shape {self.noise_shape} does not "
                                 f"broadcast to the inputs {input_shape}: each entry must be "
                                 "None, 1 or the input's size.")

    def _mask_shape(self, x_shape):
        if self.noise_shape is None:
            return x_shape
        shape = tuple(size if d is None else d for d, size in zip(self.noise_shape, x_shape,
                                                                  strict=True))
        if shape[0] not in (1, x_shape[0]):
            raise ValueError(f"{self.where}: noise_shape {self.noise_shape} fixes the batch "
                             f"axis to {shape[0]}, but the batch has {x_shape[0]} samples; "
                             "use None there.")
        return shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        if not ctx.training or self.rate == 0:
            ctx.save(None)
            return x
        rng = ctx.rng()
        if self.seed is not None:
            rng = np.random.default_rng((self.seed, int(rng.integers(2**63))))
        y, cache = ops.active.dropout_forward(x, self.rate, self._mask_shape(x.shape), rng,
                                              ws=ctx.workspace("dropout"))
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return dy if cache is None else ops.active.dropout_backward(dy, cache)

    def get_config(self):
        return {
            "rate": self.rate,
            "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
            "seed": self.seed,
            **super().get_config(),
        }
