"""Model._step_plan: what a step reads of the layers (trainable weights, regularized weights,
FLOPs, the output layer) is cached, and every change a user can make is seen at the next step:
freezing, replacing a parameter array, setting a regularizer, changing a nested model. And a
training step itself changes no layer attribute (so the cache holds, and layers keep no state
of a call)."""

import numpy as np
import pytest

from minicnn import layers, models, optimizers, regularizers
from minicnn.layers import base as layer_base


def small_model(optimizer="adam"):
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(8, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(rng, n=32):
    return rng.random((n, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, n)


def test_a_training_step_changes_no_layer_attribute(rng):
    model = models.Sequential([
        layers.Conv2D(4, 3, input_shape=(8, 8, 1)),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.AveragePooling2D(2),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(8, activation="gelu", kernel_regularizer=regularizers.L2(1e-3)),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data(rng, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    before = layer_base.structure_version
    plan = model._step_plan()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert layer_base.structure_version == before
    assert model._step_plan() is plan


def freeze_after_fit(model, layer, rng):
    """fit, freeze `layer`, fit again -> (trainable weight counts before and after freezing);
    asserts the frozen layer's kernel did not change in the second fit."""
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    before = len(model.trainable_weights)
    layer.trainable = False
    after = len(model.trainable_weights)
    kernel = layer.params["kernel"].copy()
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(layer.params["kernel"], kernel)
    return before, after


def test_freezing_after_fit_is_seen_by_the_next_step(rng):
    model = small_model()
    assert freeze_after_fit(model, model.layers[0], rng) == (6, 4)


def test_replacing_a_parameter_array_is_seen_by_the_next_step(rng):
    """layer.params['kernel'] = new: the optimizer updates the new array, not the old one."""
    model = small_model()
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    dense = model.layers[3]
    old = dense.params["kernel"]
    new = old.copy()
    dense.params["kernel"] = new
    assert any(w is new for w in model.trainable_weights)
    assert not any(w is old for w in model.trainable_weights)
    kept = old.copy()
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(old, kept)
    assert not np.array_equal(new, kept)


def test_a_regularizer_set_after_compile_joins_the_loss(rng):
    model = small_model(optimizers.SGD(learning_rate=0.01))
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.losses == []
    base_loss = model.evaluate(x, y, verbose=0)[0]
    model.layers[3].kernel_regularizer = regularizers.L2(10.0)
    penalty = 10.0 * float(np.sum(model.layers[3].params["kernel"].astype(np.float64) ** 2))
    assert model.losses == [pytest.approx(penalty, rel=1e-5)]
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(base_loss + penalty, rel=1e-4)
    # The penalty's gradient reaches the weights: each step shrinks the kernel by ~20 %.
    norm = float(np.linalg.norm(model.layers[3].params["kernel"]))
    model.fit(x, y, epochs=3, verbose=0)
    assert float(np.linalg.norm(model.layers[3].params["kernel"])) < 0.7 * norm


def test_changes_inside_a_nested_model_reach_the_outer_model(rng):
    inner = models.Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                               layers.Flatten()])
    outer = models.Sequential([inner, layers.Dense(3, activation="softmax")])
    outer.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert freeze_after_fit(outer, inner.layers[0], rng) == (4, 2)


def test_adding_a_layer_gives_a_new_plan(rng):
    model = models.Sequential([layers.Flatten(input_shape=(8, 8, 1)), layers.Dense(8)])
    flops = model.flops()
    plan = model._step_plan()
    model.add(layers.Dense(3, activation="softmax"))
    assert model._step_plan() is not plan
    assert model.flops() == flops + 2 * 8 * 3
    assert model.output_layer is model.layers[-1]
    assert len(model.trainable_weights) == 4
