"""A persistent minicnn worker for bench_mnist.py --turns: one checkout, one process, many turns.

Run by benchmarks/_turns.py (never imported by it), with a checkout first on PYTHONPATH:

    python benchmarks/_turn_worker.py --model tutorial --seed 1 --batch-size 32

It loads the data (minicnn.datasets.mnist, MINICNN_DATA_DIR, ``x / 255.0``), builds and
compiles the model as _workers.py does, warms up (a short fit and one predict, untimed), prints
``TURN_READY {json}`` and then waits on stdin, idle. Each line it reads is one turn, a JSON
object ``{"steps": S}``: it trains S batches (the next S * batch_size training images, going
round the data set) with fit(), predicts the test set once, and prints ``TURN_RESULT {json}``:

- ``step_ms``: milliseconds per training step, from the end of the first batch to the end of
  the last (on_train_batch_end), so fit()'s set-up and the first step are left out;
- ``predict_images_per_s``: test images over the seconds of one predict() call.

An empty line or the end of stdin ends it.
"""

import argparse
import json
import sys
import time

import _model  # benchmarks/ is sys.path[0]
import _workers

READY_PREFIX = "TURN_READY "
RESULT_PREFIX = "TURN_RESULT "


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tutorial", choices=("tutorial", "tutorial-wide"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--predict-batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)

    import numpy as np

    import minicnn
    from minicnn import callbacks, layers, models

    (x_train, y_train), (x_test, _) = _workers.load_mnist(args.limit)
    minicnn.set_random_seed(args.seed)
    model = models.Sequential(_model.keras_layers(layers, args.model))
    model.build(_model.INPUT_SHAPE)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class StepClock(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    offset = 0

    def turn(steps):
        nonlocal offset
        rows = np.arange(offset, offset + steps * args.batch_size) % len(x_train)
        offset = int(rows[-1] + 1) % len(x_train)
        x, y = x_train[rows], y_train[rows]
        clock = StepClock()
        clock.times = []
        model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0,
                  callbacks=[clock])
        step_ms = 1e3 * (clock.times[-1] - clock.times[0]) / max(1, len(clock.times) - 1)
        start = time.perf_counter()
        model.predict(x_test, batch_size=args.predict_batch_size, verbose=0)
        images_per_s = len(x_test) / (time.perf_counter() - start)
        return {"step_ms": step_ms, "predict_images_per_s": images_per_s}

    turn(20)  # untimed: kernels loaded, buffers made
    print(READY_PREFIX + json.dumps({"minicnn_path": minicnn.__file__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        print(RESULT_PREFIX + json.dumps(turn(int(json.loads(line)["steps"]))), flush=True)


if __name__ == "__main__":
    main()
