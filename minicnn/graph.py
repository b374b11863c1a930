"""Running a model's layers forward and backward, with every call's state kept outside the layers.

A model is a graph: ``Graph.nodes`` lists layer calls in an order where each node's inputs are
computed before it (a Sequential model is a chain). Values are numbered: the model's inputs,
then each node's output. One pass::

    outputs, tape = run_forward(graph, inputs, training, store)     # each node: layer.forward
    grads = run_backward(tape, output_grads)                        # each node, reversed

Each layer call gets a fresh ``Context``: the layer saves into it what its backward needs and
backward writes its parameter gradients into ``ctx.grads``. Nothing of a call is stored on the
layer, so one layer object can run in two threads at once (the batch shards of
minicnn/parallel.py, the web server's requests) and can be used in several models.

Gradients: where a value feeds several nodes (a fork), the gradients from each are added;
where a layer is called more than once (shared weights), its parameter gradients are added.
A node's backward is skipped when nothing before it needs a gradient (a frozen first layer).

Buffers: the fast ops reuse arrays between calls (see ops/fast.py). ``WorkspaceStore`` keeps
them per model-input shape (one slot per node), one store per thread and model; a training
pass holds its store until its backward has run, and a second training pass started meanwhile
in the same thread gets fresh buffers, so a pending tape is never overwritten.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

from . import ops

__all__ = ["Node", "Graph", "Context", "Tape", "WorkspaceStore", "run_forward", "run_backward"]


class Node:
    """One call of `layer` in a graph: it reads values `inputs` and writes value `output`.
    as_list: the layer takes its inputs as a list (merge layers), even a list of one."""

    __slots__ = ("layer", "inputs", "output", "index", "as_list")

    def __init__(self, layer, inputs, output, index, as_list=False):
        self.layer, self.inputs, self.output, self.index = layer, tuple(inputs), output, index
        self.as_list = as_list or len(self.inputs) > 1

    def __repr__(self):
        return f"<Node {self.index}: {self.layer.name} {self.inputs} -> {self.output}>"


class Graph:
    """Layer calls in execution order. inputs/outputs: value numbers of the model's inputs and
    outputs; nodes: a list of Node, each after the nodes whose outputs it reads."""

    def __init__(self, inputs, nodes, outputs):
        self.inputs, self.nodes, self.outputs = list(inputs), list(nodes), list(outputs)
        self.n_values = 1 + max([*self.inputs, *(n.output for n in self.nodes)])

    @classmethod
    def chain(cls, layers):
        """The graph of a Sequential model: value 0 is the input, value i+1 layer i's output."""
        nodes = [Node(layer, (i,), i + 1, i) for i, layer in enumerate(layers)]
        return cls([0], nodes, [len(layers)])


class WorkspaceStore:
    """Reusable buffers of one thread's passes through one model: per model-input shape a list
    of one {op tag: buffer dict} per node, for at most `per_key` input shapes (the training
    batch, the last short batch, the prediction chunk); the least recently used goes."""

    def __init__(self, per_key=3):
        self.per_key = per_key
        self._owner = None  # weak reference to the training tape using these buffers
        self._graph = None  # the graph whose nodes the slots belong to
        self._passes = {}  # input key -> [slot per node], oldest first

    @property
    def busy(self):
        """True while a training tape that uses these buffers awaits its backward (a tape
        that is dropped without backward frees the store when it is garbage-collected)."""
        return self._owner is not None and self._owner() is not None

    def claim(self, tape):
        """Mark the buffers as in use by `tape` until tape.release()."""
        self._owner = weakref.ref(tape)

    def slots(self, graph, input_key):
        """[{tag: buffer dict} per node of graph] for model inputs of this key (shapes, dtypes).

        Looked up once per pass, not per node: the shapes inside a pass follow from the
        model's input shapes, and every fast op checks its buffers' shapes anyway."""
        passes = self._passes
        if graph is not self._graph:  # the model's layers changed: other nodes
            passes.clear()
            self._graph = graph
        slots = passes.get(input_key)
        if slots is not None:
            if len(passes) > 1:  # most recently used last
                passes[input_key] = passes.pop(input_key)
            return slots
        while len(passes) >= self.per_key:
            passes.pop(next(iter(passes)))
        slots = passes[input_key] = [{} for _ in graph.nodes]
        return slots

    def clear(self):
        """Drop every buffer."""
        self._passes.clear()


class Context:
    """The private state of one layer call: what forward saves and backward reads.

    For layer authors: ``ctx.training`` (bool), ``ctx.save(*values)`` / ``ctx.saved``,
    ``ctx.grads[name] = gradient`` in backward, ``ctx.need_input_grad`` (False: backward may
    return None), ``ctx.need_param_grads`` (False: the layer is frozen), ``ctx.workspace(tag)``
    (a dict of reusable buffers for the fast ops, or None), ``ctx.rng()`` (a generator for
    this call, e.g. Dropout's mask), ``ctx.allreduce(array)`` (the sum over the batch shards of
    this step, e.g. BatchNormalization's statistics), ``ctx.shard_index``/``ctx.shard_count``.
    """

    __slots__ = ("training", "saved", "grads", "need_input_grad", "need_param_grads",
                 "_tape", "_node", "_slot")

    def __init__(self, training=False, tape=None, node=None, slot=None,
                 need_input_grad=True, need_param_grads=True):
        self.training = training
        self.saved = None
        self.grads = {}
        self.need_input_grad = need_input_grad
        self.need_param_grads = need_param_grads
        self._tape, self._node = tape, node
        self._slot = slot  # this call site's {tag: buffers} in the tape's store, or None

    @property
    def shard_index(self):
        """This call's batch shard: 0 .. shard_count - 1 (0 when the batch is not split)."""
        tape = self._tape
        return tape.shard_index if tape is not None else 0

    @property
    def shard_count(self):
        """The number of shards the batch of this call is split into (1: not split)."""
        tape = self._tape
        return tape.shard_count if tape is not None else 1

    def save(self, *values):
        """Keep values for backward (read back as ctx.saved, a tuple)."""
        self.saved = values

    def workspace(self, tag):
        """Reusable buffers for op `tag` of this call site and input shape (None outside a model
        pass: the ops then allocate)."""
        slot = self._slot
        if slot is None:
            return None
        ws = slot.get(tag)
        if ws is None:
            ws = slot[tag] = {}
        return ws

    def rng(self):
        """A NumPy generator for this call: reproducible from the step's seed, different for
        every node and batch shard."""
        tape = self._tape
        seed = tape.seed if tape is not None else None
        if seed is None:
            from .backend import get_rng
            return get_rng()
        return np.random.default_rng((seed, self._node, self.shard_index))

    def allreduce(self, array):
        """Sum of `array` over the shards of this batch (the array itself when not split)."""
        tape = self._tape
        if tape is None or tape.group is None:
            return array
        return tape.group.allreduce(self.shard_index, array)


class Tape:
    """What one forward pass leaves for backward: the graph, each node's Context, the outputs.

    store: the WorkspaceStore its buffers live in (held until backward, see release);
    seed: the step's random seed; shard_index/shard_count/group: its place in a split batch.
    """

    def __init__(self, graph, training, store, seed=None, shard_index=0, shard_count=1,
                 group=None, profiler=None):
        self.graph, self.training, self.store, self.seed = graph, training, store, seed
        self.shard_index, self.shard_count, self.group = shard_index, shard_count, group
        self.profiler = profiler if shard_index == 0 else None
        self.contexts = [None] * len(graph.nodes)
        self.outputs = None
        self.generation = ops.generation()

    def release(self):
        """Give the buffers back to the store (done by run_backward; call it yourself when a
        training pass will not be followed by backward)."""
        if self.store is not None and self.store._owner is not None:
            if self.store._owner() is self:
                self.store._owner = None
        self.store = None
        for ctx in self.contexts:  # break the tape <-> context cycle
            if ctx is not None:
                ctx._tape = ctx._slot = None

    def output_logits(self, position=0):
        """The logits (softmax input) of output `position`, whose layer ends in a softmax."""
        node = self.graph.nodes[self._output_node(position)]
        return node.layer.output_logits(self.contexts[node.index])

    def _output_node(self, position):
        value = self.graph.outputs[position]
        for node in reversed(self.graph.nodes):
            if node.output == value:
                return node.index
        raise ValueError(f"Tape: output {position} is a model input, not a layer's output.")


def run_forward(graph, inputs, training=False, store=None, seed=None, input_grads=False,
                shard_index=0, shard_count=1, group=None, profiler=None, observe=None):
    """Run every node of `graph` on `inputs` (a list, one array per model input).

    -> (outputs: list of arrays, tape). training: layers behave as in training (Dropout,
    BatchNormalization statistics) and keep what backward needs. input_grads: backward will
    return gradients for the model inputs too (gradient checks). The outputs may be buffers of
    `store`: copy them to keep them past the next pass. observe(layer, output), when given, is
    called after each node (feature maps).
    """
    if store is not None and training and store.busy:
        store = WorkspaceStore()  # a tape of this thread still needs those buffers
    tape = Tape(graph, training, store, seed, shard_index, shard_count, group, profiler)
    if store is not None and training:
        store.claim(tape)
    values = [None] * graph.n_values
    requires_grad = [False] * graph.n_values
    for value, x in zip(graph.inputs, inputs, strict=True):
        values[value] = x
        requires_grad[value] = input_grads
    slots = None
    if store is not None:
        slots = store.slots(graph, tuple((x.shape, x.dtype.char) for x in inputs))
    profiler = tape.profiler
    contexts = tape.contexts
    for node in graph.nodes:
        layer = node.layer
        if not node.as_list:
            x = values[node.inputs[0]]
            need_input = requires_grad[node.inputs[0]]
        else:
            x = [values[i] for i in node.inputs]
            need_input = any(requires_grad[i] for i in node.inputs)
        need_params = training and layer.trainable and bool(layer.params)
        index = node.index
        ctx = contexts[index] = Context(training, tape, index,
                                        None if slots is None else slots[index],
                                        need_input, need_params)
        if profiler is None:
            y = values[node.output] = layer.forward(x, ctx)
        else:
            start = time.perf_counter()
            y = values[node.output] = layer.forward(x, ctx)
            profiler.add(f"{layer.name} forward", time.perf_counter() - start)
        requires_grad[node.output] = need_input or need_params
        if observe is not None:
            observe(layer, y)
    tape.outputs = [values[v] for v in graph.outputs]
    return tape.outputs, tape


def run_backward(tape, output_grads, logits_outputs=()):
    """Backpropagate `output_grads` (one per model output, dL/d(output)) through the tape.

    logits_outputs: positions of outputs whose gradient is given w.r.t. the logits of their
    final softmax (see Model.compute_loss_and_gradient); their layer starts below the softmax.
    -> (param_grads: {id(param array): gradient}, input_grads: list per model input, None
    where not requested). Releases the tape's buffers.
    """
    if tape.generation != ops.generation():
        raise RuntimeError("backward: the ops backend was changed between this forward pass and "
                           "its backward; switch backends between steps, not during one.")
    graph = tape.graph
    grads = {}
    from_logits = {graph.outputs[p] for p in logits_outputs}
    for value, g in zip(graph.outputs, output_grads, strict=True):
        _accumulate(grads, value, g)
    param_grads = {}
    profiler = tape.profiler
    contexts = tape.contexts
    for node in reversed(graph.nodes):
        ctx = contexts[node.index]
        dy = grads.pop(node.output, None)
        if dy is None or not (ctx.need_input_grad or ctx.need_param_grads):
            continue  # nothing after this node reaches the loss, or nothing before needs it
        layer = node.layer
        backward = (layer.backward_from_logits if node.output in from_logits
                    else layer.backward)
        if profiler is None:
            dx = backward(dy, ctx)
        else:
            start = time.perf_counter()
            dx = backward(dy, ctx)
            profiler.add(f"{layer.name} backward", time.perf_counter() - start)
        if ctx.need_param_grads:
            for name, g in ctx.grads.items():
                key = id(layer.params[name])
                param_grads[key] = g if key not in param_grads else param_grads[key] + g
        if ctx.need_input_grad:
            if not node.as_list:
                if dx is not None:  # _accumulate, inline: this runs for every node
                    value = node.inputs[0]
                    grads[value] = dx if value not in grads else grads[value] + dx
            else:
                for value, g in zip(node.inputs, dx, strict=True):
                    _accumulate(grads, value, g)
    input_grads = [grads.get(value) for value in graph.inputs]
    tape.release()
    return param_grads, input_grads


def _accumulate(grads, value, g):
    if g is None:
        return
    # At a fork the second gradient is added out of place: the first may be a layer's buffer.
    grads[value] = g if value not in grads else grads[value] + g
