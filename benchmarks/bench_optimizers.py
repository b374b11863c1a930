"""Time one optimizer step on the tutorial model's parameters, on both backends.

    python benchmarks/bench_optimizers.py [--repeats 400]

For each optimizer (and variant) it prints the median time of ``apply_gradients`` over the
tutorial model's 10 parameter arrays (56,458 float32 numbers) with ``ops`` set to the reference
(NumPy) and to the fast (Numba) backend, in two states: "fresh" (slots of normal size) and
"dead units" (a third of the gradient entries are 0 for 3,000 steps first, so their decaying
slots have fallen into subnormal numbers unless the update flushes them, as a ReLU network's
dead units do). A training step of the tutorial model takes about 5 ms on the 2-core VM, so
anything well under 0.1 ms is noise in fit.
"""

import argparse
import statistics
import time

import numpy as np

from minicnn import ops, optimizers

# The tutorial model's parameter shapes (Conv2D 25, 64, 64; Dense 64, 10).
SHAPES = [(3, 3, 1, 25), (25,), (3, 3, 25, 64), (64,), (3, 3, 64, 64), (64,), (64, 64), (64,),
          (64, 10), (10,)]

OPTIMIZERS = {
    "SGD": lambda: optimizers.SGD(),
    "SGD momentum=0.9": lambda: optimizers.SGD(momentum=0.9),
    "RMSprop": lambda: optimizers.RMSprop(),
    "RMSprop momentum, centered": lambda: optimizers.RMSprop(momentum=0.9, centered=True),
    "Adagrad": lambda: optimizers.Adagrad(),
    "Adam": lambda: optimizers.Adam(),
    "AdamW": lambda: optimizers.AdamW(),
    "Adam clipnorm=1": lambda: optimizers.Adam(clipnorm=1.0),
}


def time_steps(make, backend, dead, repeats, rng):
    params = [rng.normal(0, 0.05, s).astype(np.float32) for s in SHAPES]
    grads = [rng.normal(0, 1e-3, s).astype(np.float32) for s in SHAPES]
    with ops.backend(backend):
        optimizer = make()
        if dead:
            masks = [rng.random(s) < 1 / 3 for s in SHAPES]
            for g, mask in zip(grads, masks, strict=True):
                g[mask] = 0
            for _ in range(3000):
                optimizer.apply_gradients(zip(grads, params, strict=True))
        else:
            optimizer.apply_gradients(zip(grads, params, strict=True))  # compile, make slots
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            optimizer.apply_gradients(zip(grads, params, strict=True))
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'optimizer':<28} {'state':<11} {'reference us':>13} {'fast us':>9}")
    for name, make in OPTIMIZERS.items():
        for dead in (False, True):
            ref = time_steps(make, "reference", dead, args.repeats, rng)
            fast = time_steps(make, "fast", dead, args.repeats, rng)
            state = "dead units" if dead else "fresh"
            print(f"{name:<28} {state:<11} {ref:>13.0f} {fast:>9.0f}")


if __name__ == "__main__":
    main()
