"""minicnn.parallel: a training step split over threads equals the one-thread step (to float
rounding), is deterministic, falls back cleanly, gives layers whole-batch sums (allreduce), and
needs nothing from the layers but their public forward/backward."""

import threading

import numpy as np
import pytest

import minicnn
from minicnn import layers, models, optimizers, parallel


@pytest.fixture(autouse=True)
def split_small_models(monkeypatch):
    """The small test models are far below the work a split needs to pay off; split them
    anyway (only the sample minimum applies), unless a test says otherwise."""
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SHARD", 0)


def tutorial_model(dtype=None):
    model = models.Sequential([
        layers.Conv2D(25, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], dtype=dtype)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def small_model(loss="sparse_categorical_crossentropy", last=None):
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        *(last or [layers.Dense(3, activation="softmax")]),
    ])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss=loss, metrics=["accuracy"])
    return model


def with_threads(model, n):
    model.strategy.threads = n
    return model


def shards(model, n):
    return model.strategy.shards_for(n, model.flops())


def step_grads(model, x, y):
    """One training step from the public pieces -> (loss, correct, grads, weights after)."""
    y_pred, tape = model.forward(x, training=True)
    loss, dy, from_logits = model.compute_loss_and_gradient(y, y_pred, None, tape)
    labels = y if y.ndim == 1 else y.argmax(1)
    correct = int((y_pred.argmax(1) == labels).sum())
    grads = [g.copy() for g in model.backward(dy, tape, from_logits)]
    model.optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
    return loss, correct, grads, model.get_weights()


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("n, threads", [(32, 2), (37, 3)])
def test_split_step_equals_the_one_thread_step(dtype, rtol, n, threads, rng):
    x = rng.random((n, 28, 28, 1)).astype(dtype)
    y = rng.integers(0, 10, n)
    runs = []
    for t in (1, threads):
        minicnn.set_random_seed(4)
        model = with_threads(tutorial_model(dtype), t)
        assert shards(model, n) == t
        runs.append([step_grads(model, x, y) for _ in range(2)])  # second step: new weights
    for (loss1, correct1, grads1, _), (loss2, correct2, grads2, _) in zip(*runs, strict=True):
        assert correct1 == correct2
        assert loss2 == pytest.approx(loss1, rel=rtol)
        for g1, g2 in zip(grads1, grads2, strict=True):
            assert g2.dtype == np.dtype(dtype)
            scale = float(np.max(np.abs(g1)))
            assert scale > 0
            np.testing.assert_allclose(g2, g1, rtol=rtol, atol=rtol * scale)
    for w1, w2 in zip(runs[0][-1][3], runs[1][-1][3], strict=True):
        np.testing.assert_allclose(w2, w1, rtol=10 * rtol, atol=10 * rtol)


@pytest.mark.parametrize("loss, last", [
    ("sparse_categorical_crossentropy", None),
    ("categorical_crossentropy", [layers.Dense(3), layers.Activation("softmax")]),
    ("categorical_crossentropy", [layers.Dense(3, activation="tanh")]),  # no fused softmax
])
def test_split_step_other_output_layers(loss, last, rng):
    x = rng.random((24, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    y = np.eye(3, dtype=np.float32)[y] if loss == "categorical_crossentropy" else y
    results = []
    for t in (1, 2):
        minicnn.set_random_seed(2)
        fresh = [type(layer).from_config(layer.get_config()) for layer in last] if last else None
        model = with_threads(small_model(loss, fresh), t)
        results.append(step_grads(model, x, y))
    assert results[0][1] == results[1][1]
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    for g1, g2 in zip(results[0][2], results[1][2], strict=True):
        np.testing.assert_allclose(g2, g1, rtol=1e-5, atol=1e-6)


def test_split_training_is_bit_identical_per_seed_and_differs_from_one_thread(rng):
    x = rng.random((96, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    weights = {}
    for key, t in (("a", 2), ("b", 2), ("one", 1)):
        minicnn.set_random_seed(9)
        model = small_model()
        # fit re-reads MINICNN_THREADS; pin the count through the environment.
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MINICNN_THREADS", str(t))
            model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        assert model.strategy.threads == t
        weights[key] = model.get_weights()
    for a, b in zip(weights["a"], weights["b"], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights["a"], weights["one"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_predict_and_evaluate_split_equal_one_thread(rng):
    minicnn.set_random_seed(1)
    model = tutorial_model()
    x = rng.random((300, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    out = {}
    for t in (1, 2):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MINICNN_THREADS", str(t))
            out[t] = model.predict(x, verbose=0), model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(out[2][0], out[1][0], rtol=1e-5, atol=1e-7)
    assert out[2][1][1] == out[1][1][1]
    assert out[2][1][0] == pytest.approx(out[1][1][0], rel=1e-5)


def test_models_with_little_work_are_not_split(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SHARD", 50e6)
    small, big = with_threads(small_model(), 4), with_threads(tutorial_model(), 4)
    assert shards(small, 1024) == 1  # ~3 kFLOP per image
    assert big.flops() == 4_462_024
    # 16 samples would make 2 shards of 8, but 71 MFLOP < 2 x 50; 32 samples: 4 by count,
    # 2 by work (142.8 MFLOP).
    assert [shards(big, n) for n in (16, 23, 24, 32, 45)] == [1, 2, 2, 2, 4]


def test_small_batches_and_one_thread_are_not_split(monkeypatch):
    model = small_model()
    split = with_threads(model, 2)
    assert [shards(split, n) for n in (1, 8, 15, 16, 17, 64)] == [1, 1, 1, 2, 2, 2]
    model.strategy.threads = 4
    assert [shards(model, n) for n in (15, 16, 24, 31, 32, 1000)] == [1, 2, 3, 3, 4, 4]
    monkeypatch.setenv("MINICNN_THREADS", "1")
    assert parallel.default_threads() == 1
    monkeypatch.setenv("MINICNN_THREADS", "3")
    assert parallel.default_threads() == 3
    monkeypatch.setenv("MINICNN_THREADS", "junk")
    assert parallel.default_threads() == parallel._usable_cores()
    monkeypatch.delenv("MINICNN_THREADS")
    assert parallel.default_threads() == parallel._usable_cores()


def test_busy_workers_fall_back_to_the_exact_one_thread_step(rng):
    x = rng.random((32, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    results = []
    for t, busy in ((1, False), (2, True)):
        minicnn.set_random_seed(3)
        model = with_threads(small_model(), t)
        pool = parallel._get_pool()
        if busy:  # as if another thread were running a split step
            assert pool.busy.acquire(blocking=False)
        try:
            results.append(step_grads(model, x, y))
        finally:
            if busy:
                pool.busy.release()
    assert results[0][:2] == results[1][:2]
    for a, b in zip(results[0][2] + results[0][3], results[1][2] + results[1][3], strict=True):
        np.testing.assert_array_equal(a, b)


class FailOnNegative(layers.Flatten):
    """Raises in forward when its input holds a negative value (only in one shard below)."""

    def forward(self, x, ctx):
        if np.any(x < 0):
            raise ValueError("FailOnNegative: negative input")
        return super().forward(x, ctx)


def test_an_error_in_a_worker_reaches_the_caller_and_the_pool_still_works(rng):
    model = models.Sequential([layers.MaxPooling2D(2, input_shape=(8, 8, 1)), FailOnNegative(),
                               layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    with_threads(model, 2)
    x = rng.random((32, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    x[20] = -1  # a row of the second shard (rows 16..31): the worker raises
    with pytest.raises(ValueError, match="negative input"):
        model.train_step((x, y))
    assert not parallel._get_pool().busy.locked()
    x[20] = 0.5
    logs = model.train_step((x, y))
    assert np.isfinite(logs["loss"])
    assert not parallel._get_pool().busy.locked()


class Center(layers.Layer):
    """y = x - mean over the whole batch (a BatchNormalization-like whole-batch statistic):
    the mean comes from ctx.allreduce, so it must not depend on how the batch is split."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        count = ctx.allreduce(np.array([float(len(x))]))[0]
        mean = ctx.allreduce(x.sum(axis=0)) / count
        ctx.save(count)
        return x - mean

    def backward(self, dy, ctx):
        (count,) = ctx.saved
        return dy - ctx.allreduce(dy.sum(axis=0)) / count


@pytest.mark.parametrize("threads", [2, 3])
def test_whole_batch_statistics_through_allreduce_match_the_unsplit_pass(threads, rng):
    x = rng.random((30, 8, 8, 1))
    y = rng.integers(0, 3, 30)
    runs = []
    for t in (1, threads):
        minicnn.set_random_seed(5)
        model = models.Sequential([layers.Conv2D(3, 3, input_shape=(8, 8, 1)), Center(),
                                   layers.Flatten(), layers.Dense(3, activation="softmax")],
                                  dtype="float64")
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        with_threads(model, t)
        assert shards(model, 30) == t
        runs.append(step_grads(model, x, y))
    assert runs[1][0] == pytest.approx(runs[0][0], rel=1e-12)
    for g1, g2 in zip(runs[0][2], runs[1][2], strict=True):
        np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-12)


class CenterThenFail(Center):
    """Fails in one shard before its allreduce: the other shards must not wait forever."""

    def forward(self, x, ctx):
        if ctx.shard_index == 1:
            raise ValueError("CenterThenFail: shard 1 fails")
        return super().forward(x, ctx)


def test_a_shard_failing_before_an_allreduce_does_not_deadlock(rng):
    model = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)), CenterThenFail(),
                               layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    with_threads(model, 2)
    x, y = rng.random((32, 4, 4, 1)).astype(np.float32), rng.integers(0, 2, 32)
    with pytest.raises(ValueError, match="shard 1 fails"):
        model.train_step((x, y))
    assert not parallel._get_pool().busy.locked()
    # The aborted barrier is not reused: the next split pass with an allreduce works.
    healthy = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)), Center(),
                                 layers.Dense(2, activation="softmax")], dtype="float64")
    healthy.compile(loss="sparse_categorical_crossentropy")
    with_threads(healthy, 2)
    assert shards(healthy, 32) == 2
    assert np.isfinite(healthy.train_step((x, y))["loss"])


@pytest.mark.parametrize("threads", ["1", "2"])
def test_one_model_serves_many_threads_at_once(threads, rng, monkeypatch):
    """Layers keep no per-call state: threads predicting through the same layer objects at
    the same time get what they would get alone: exactly, when no batch is split (with
    splitting, a call that finds the workers busy runs unsplit: float rounding differs)."""
    monkeypatch.setenv("MINICNN_THREADS", threads)
    minicnn.set_random_seed(0)
    model = tutorial_model()
    inputs = [rng.random((n, 28, 28, 1)).astype(np.float32) for n in (1, 5, 40, 130)]
    expected = [model.predict(x, verbose=0) for x in inputs]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = model.predict(inputs[i % 4], verbose=0)
                if threads == "1":
                    np.testing.assert_array_equal(results[i], expected[i % 4])
                else:
                    np.testing.assert_allclose(results[i], expected[i % 4], rtol=1e-5,
                                               atol=1e-7)
        except BaseException as exc:  # collected: the main thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_profile_with_split_rows_add_up(monkeypatch):
    monkeypatch.setenv("MINICNN_THREADS", "2")
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 1)), rng.integers(0, 3, 64)
    minicnn.set_random_seed(0)
    model = small_model()
    prof = model.fit(x, y, epochs=1, batch_size=16, verbose=0, profile=True).profile
    assert prof.shards == 2
    assert prof.seconds["shards: wait"] > 0 and prof.seconds["shards: sum gradients"] > 0
    assert list(prof.seconds)[-5:] == ["shards: wait", "shards: sum gradients", "optimizer",
                                       "callbacks", "other"]
    assert sum(prof.seconds.values()) == pytest.approx(prof.wall_seconds, rel=1e-6)
    assert str(prof).startswith("batch split over 2 threads")


def test_a_store_reuses_buffers_per_input_shape_and_keeps_at_most_three(rng):
    from minicnn.graph import Graph, WorkspaceStore, run_forward

    model = small_model()
    model.build((None, 8, 8, 1))
    store = WorkspaceStore()
    batch = {n: rng.random((n, 8, 8, 1), dtype=np.float32) for n in (2, 3, 4, 5)}

    def output(n):
        (y,), _ = run_forward(model._graph, [batch[n]], store=store)
        return y

    def conv_buffers(n):  # the first layer's im2col buffer for batches of n
        return store._passes[((batch[n].shape, "f"),)][0]["conv2d"]["cols"]

    output(2)
    cols = conv_buffers(2)
    output(2)
    assert conv_buffers(2) is cols  # the same shape again: the same buffers
    for n in (3, 4, 5):
        output(n)
    assert len(store._passes) == 3  # memory stays bounded: shape 2 was the least recent
    output(2)
    assert conv_buffers(2) is not cols
    np.testing.assert_allclose(output(3), model.predict(batch[3], verbose=0), rtol=1e-6)
    other = Graph.chain(model.layers)  # the model's layers changed: slots of other nodes
    run_forward(other, [batch[3]], store=store)
    assert list(store._passes) == [((batch[3].shape, "f"),)]
