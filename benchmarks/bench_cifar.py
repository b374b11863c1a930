"""Train the CIFAR-10 example's small ResNet with minicnn, Keras and PyTorch: time per epoch.

The model (``resnet-cifar`` in benchmarks/_model.py) is a graph built with the functional API:
a 3x3 conv stem, three stages of one residual block each (16, 32, 64 filters; conv + BN + ReLU
+ conv + BN, added to the block's input or to a 1x1 conv + BN where the shape changes, then
ReLU), global average pooling and Dense(10, softmax); 78,042 trainable weights, 74.1 MFLOP per
training image (convs and dense, as bench_mnist.py counts them), 5.7x the MNIST tutorial's.
Batch 128, Adam, sparse categorical cross-entropy. The data are random images of CIFAR-10's
shapes (50,000 training and 10,000 test images 32x32x3, labels 0-9 drawn independently, the
same for every framework and seed), so nothing is downloaded; the accuracy is chance and only
the times and memory are results.

Everything else is bench_mnist.py's machinery and options (fresh interleaved processes,
warm-ups, medians over seeds, BLAS and peak, ratios, JSON and chart, --from-json); only the
defaults differ: ``--model resnet-cifar``, 3 epochs (the first and two later ones), seeds 1-3,
frameworks minicnn, keras, torch, torch-best. Results: ``results/<date>-<host>-resnet-cifar.json``.

    PYTHONPATH=. python benchmarks/bench_cifar.py --wait-idle 0.3           # about an hour
    PYTHONPATH=. python benchmarks/bench_cifar.py --quick --limit 512        # a smoke run

minicnn builds the model as the Keras worker does, with the functional API
(``_model.functional_model(api, "resnet-cifar")``: ``Input``, ``layers.Conv2D``,
``BatchNormalization``, ``ReLU``, ``Add``, ``GlobalAveragePooling2D``, ``Dense``,
``Model(inputs, outputs)``). An older minicnn checkout (``--minicnn old=PATH``) that lacks the
functional API or one of those layers reports "skipped" with what is missing, and the table
lists it; JAX's peer skips graphs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_mnist  # noqa: E402

DEFAULTS = {"model": "resnet-cifar", "epochs": 3, "frameworks": "minicnn,keras,torch,torch-best"}


def main(argv=None):
    """Run bench_mnist.main with the CIFAR defaults; returns the report dict."""
    return bench_mnist.main(argv, defaults=DEFAULTS, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
