"""Merge layers for the functional API: Add, Subtract, Multiply, Average, Maximum, Concatenate.

Each takes a list of tensors: ``layers.Add()([x, shortcut])``. The math is ops.merge_forward /
ops.merge_backward (elementwise, NumPy broadcasting, gradients summed back over broadcast
axes) and ops.concatenate_forward / _backward (readable in ops/reference.py).
"""

from .. import arguments, ops
from .base import Layer, batch_shape


class _Merge(Layer):
    """Base: an elementwise merge of two or more inputs of one shape (or broadcastable)."""

    mode = None
    exactly = None  # Subtract takes exactly two inputs

    def _shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(
                input_shape[0], (list, tuple)):
            raise ValueError(f"{self.where}: call it on a list of tensors, e.g. "
                             f"layers.{type(self).__name__}()([x, y]); got one input of shape "
                             f"{input_shape}.")
        shapes = [batch_shape(s, self.where) for s in input_shape]
        if self.exactly is not None and len(shapes) != self.exactly:
            raise ValueError(f"{self.where}: takes exactly {self.exactly} inputs, got "
                             f"{len(shapes)}.")
        if len(shapes) < 2:
            raise ValueError(f"{self.where}: needs at least 2 inputs, got {len(shapes)}.")
        return shapes

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.params = {}
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s[1:]) for s in self._shapes(input_shape)]
        rank = max(len(s) for s in shapes)
        out = []
        for axis in range(rank):
            sizes = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
            sizes.discard(1)
            if len(sizes) > 1:
                raise ValueError(
                    f"{self.where}: input shapes {[(None, *s) for s in shapes]} do not match "
                    f"(axis {axis + 1} has sizes {sorted(sizes)}). Merged tensors must have the "
                    "same shape: for a residual block, give the shortcut a 1x1 Conv2D with as "
                    "many filters (and the same strides) as the main path.")
            out.append(sizes.pop() if sizes else 1)
        return (None, *out)

    def forward(self, xs, ctx):
        y, cache = ops.active.merge_forward(xs, self.mode)
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.active.merge_backward(dy, cache)


class Add(_Merge):
    """y = x0 + x1 + ...: the sum of its inputs (a residual connection)."""

    mode = "add"


class Subtract(_Merge):
    """y = x0 - x1 (exactly two inputs)."""

    mode = "subtract"
    exactly = 2


class Multiply(_Merge):
    """y = x0 * x1 * ...: the elementwise product."""

    mode = "multiply"


class Average(_Merge):
    """y = (x0 + x1 + ...) / n."""

    mode = "average"


class Maximum(_Merge):
    """y = max(x0, x1, ...) elementwise (the gradient goes to the first maximal input)."""

    mode = "maximum"


class Concatenate(Layer):
    """Joins its inputs along `axis` (default -1, the channels); other sizes must match."""

    exactly = None

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = arguments.integer(axis, "axis", self.where)
        if self.axis == 0:
            raise ValueError(f"{self.where}: axis 0 is the batch axis; concatenate along "
                             "-1 (channels) or another feature axis.")

    def build(self, input_shape):
        shapes = _Merge._shapes(self, input_shape)
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.params = {}
        self.built = True

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        rank = len(shapes[0])
        axis = self.axis % rank
        for s in shapes:
            others = [d for i, d in enumerate(s) if i not in (0, axis)]
            if len(s) != rank or others != [d for i, d in enumerate(shapes[0])
                                            if i not in (0, axis)]:
                raise ValueError(f"{self.where}: input shapes {shapes} differ outside the "
                                 f"concatenation axis {self.axis}; they must match there.")
        return (None, *(sum(s[axis] for s in shapes) if i == axis else shapes[0][i]
                        for i in range(1, rank)))

    def forward(self, xs, ctx):
        y, cache = ops.active.concatenate_forward(xs, self.axis)
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.active.concatenate_backward(dy, cache)

    def get_config(self):
        return {"axis": self.axis, **super().get_config()}
