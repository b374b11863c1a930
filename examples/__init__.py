"""The examples, installed with minicnn as `minicnn.examples`: `mnist_cnn.py` is the tutorial
that `python -m minicnn train` runs (see pyproject.toml's package-dir)."""
