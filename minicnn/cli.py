"""The command line: `python -m minicnn train | predict | serve` (and the `minicnn` script).

    python -m minicnn train [--epochs 10 --limit N ...]    runs examples/mnist_cnn.py
    python -m minicnn predict digit.png [--json]           reads your own handwriting
    python -m minicnn serve [--port 8000]                  a draw-a-digit page in the browser
    python -m minicnn export m.npz m.onnx                  ONNX (or .keras, .npz) for other tools

Adding a subcommand: write `configure(parser)` (adds its arguments to an argparse parser) and
`run(args, extra) -> exit code`, then call `register(Command(name, help, configure, run))` at
the bottom of this file. Import heavy modules inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Command", "CommandError", "register", "main", "default_model_path"]

# Where examples/mnist_cnn.py saves its model when run with no arguments (its DEFAULT_OUTPUT_DIR
# and MODEL_FILE; a test keeps the two in step).
DEFAULT_MODEL = Path("mnist_cnn_output") / "mnist_cnn.npz"
MODEL_ENV = "MINICNN_MODEL"
EXAMPLE = Path("examples") / "mnist_cnn.py"


class CommandError(Exception):
    """A problem to report in one line ("minicnn <command>: error: ...") with exit status 1."""


@dataclass(frozen=True)
class Command:
    """One subcommand.

    name, help: as shown by `python -m minicnn --help`.
    configure(parser): adds the subcommand's arguments to its argparse parser.
    run(args, extra) -> int: does the work; `args.prog` is the command's name for messages
        ("python -m minicnn predict"); `extra` holds the arguments argparse did not know,
        which only a `passthrough` command receives (the others reject them).
    passthrough: hand unknown arguments (and --help) to `run` instead of rejecting them.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]
    passthrough: bool = False


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add a subcommand to `python -m minicnn` (a later one with the same name replaces it)."""
    COMMANDS[command.name] = command
    return command


def _prog() -> str:
    return "minicnn" if Path(sys.argv[0]).name == "minicnn" else "python -m minicnn"


def build_parser(prog: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The top-level parser and {name: subparser} for every registered command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=prog or _prog(),
        description="minicnn: a small CNN framework in NumPy and Numba with Keras's API.")
    parser.add_argument("--version", action="version", version=f"minicnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parsers = {}
    for command in COMMANDS.values():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help,
                                    add_help=not command.passthrough)
        command.configure(sub)
        parsers[command.name] = sub
    return parser, parsers


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line with argv (default sys.argv[1:]); returns the exit status."""
    parser, parsers = build_parser(prog)
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        command = COMMANDS[args.command]
        if extra and not command.passthrough:
            parsers[command.name].error(f"unrecognized arguments: {' '.join(extra)}")
        args.prog = parsers[command.name].prog
        return command.run(args, extra) or 0
    except SystemExit as exit_:  # argparse's --help and usage errors: return, do not exit
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except CommandError as exc:
        print(f"{args.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------------------------
# train: runs examples/mnist_cnn.py, the tutorial, so both are one piece of code
# --------------------------------------------------------------------------------------------
def _configure_train(parser: argparse.ArgumentParser) -> None:
    """Nothing to add: the script parses its own options (and answers --help)."""


def _run_train(args: argparse.Namespace, extra: list[str]) -> int:
    # examples/mnist_cnn.py is installed as minicnn.examples.mnist_cnn (see pyproject.toml), so
    # this works from a wheel as from a checkout.
    from .examples import mnist_cnn

    try:
        mnist_cnn.main(extra, prog=args.prog)
    except (OSError, ValueError) as exc:  # e.g. no network for the download, a bad option mix
        raise CommandError(str(exc)) from exc
    return 0


# --------------------------------------------------------------------------------------------
# predict: your own handwriting
# --------------------------------------------------------------------------------------------
def default_model_path() -> Path:
    """$MINICNN_MODEL if set, else ./mnist_cnn_output/mnist_cnn.npz (the tutorial's output)."""
    return Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL)


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="PNG or JPEG file of one handwritten digit: a photo or scan, dark "
                             "on light or light on dark, any size, colour or gray")
    parser.add_argument("--model", metavar="PATH",
                        help=f"model file written by model.save() (default: ${MODEL_ENV} if "
                             f"set, else {DEFAULT_MODEL.as_posix()}, where `train` saves it)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line and image: image, prediction, "
                             "probabilities")
    parser.add_argument("--save-processed", metavar="PATH",
                        help="save the 28x28 image the model sees beside a bar chart of its "
                             "probabilities as a PNG at PATH; with several images PATH is a "
                             "folder that gets <image name>.processed.png for each")


def _load_predict_model(option: str | None):
    from .models import load_model

    path = Path(option) if option else default_model_path()
    if not path.exists():
        if option:
            raise CommandError(f"no model file at {path}.")
        shown = path.as_posix() if path.is_absolute() else f"./{path.as_posix()}"
        where = (f"${MODEL_ENV} points to {shown}, which does not exist"
                 if os.environ.get(MODEL_ENV) else
                 f"no model at {shown}, where the tutorial saves it")
        raise CommandError(
            f"{where}. Train one first, from this folder: `python -m minicnn train` (the "
            "tutorial, 10 epochs) or `python -m minicnn train --epochs 1 --limit 10000` (a "
            "rougher model in a fraction of the time); or pass --model PATH.")
    try:
        model = load_model(path)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if tuple(model.input_shape[1:]) != (28, 28, 1) or len(model.output_shape) != 2:
        raise CommandError(
            f"{path} holds a model for inputs {model.input_shape} with outputs "
            f"{model.output_shape}; predict needs an MNIST-style model: (28, 28, 1) images in, "
            "one probability per class out.")
    return model, path


def _processed_targets(option: str | None, images: list[str]) -> list[Path | None]:
    """Where each image's processed figure goes (None: not saved); checked before any work."""
    if option is None:
        return [None] * len(images)
    target = Path(option)
    if len(images) == 1 and not target.is_dir():
        if not target.parent.is_dir():
            raise CommandError(f"--save-processed {option}: the folder {target.parent} does "
                               "not exist.")
        return [target]
    if not target.is_dir():
        raise CommandError(f"--save-processed {option}: with {len(images)} images, give an "
                           "existing folder; each image gets <name>.processed.png in it.")
    names = [Path(image).stem + ".processed.png" for image in images]
    if len(set(names)) != len(names):
        raise CommandError("--save-processed: two images have the same name; they would "
                           "overwrite each other's figure. Rename one or run them separately.")
    return [target / name for name in names]


def _top3_text(image: str, probabilities: np.ndarray) -> str:
    order = np.argsort(probabilities, kind="stable")[::-1][:3]
    ranked = [f"{int(k)} ({probabilities[k]:.2%})" for k in order]
    return f"{image}: {ranked[0]}, then {', '.join(ranked[1:])}"


def _run_predict(args: argparse.Namespace, extra: list[str]) -> int:
    from . import plot
    from .preprocessing import preprocess_digit

    model, _ = _load_predict_model(args.model)
    targets = _processed_targets(args.save_processed, args.images)
    failures = 0
    for image, target in zip(args.images, targets, strict=True):
        try:
            digit = preprocess_digit(image)
        except (OSError, ValueError, TypeError) as exc:  # missing, not an image, blank
            failures += 1
            print(f"{args.prog}: error: {image}: {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}), flush=True)
            continue
        probabilities = model.predict(digit[None, :, :, None], verbose=0)[0].astype(np.float64)
        if target is not None:
            plot.plot_digit_probabilities(digit, probabilities, Path(image).name, target)
        if args.json:
            record = {"image": image, "prediction": int(np.argmax(probabilities)),
                      "probabilities": probabilities.tolist()}
            if target is not None:
                record["processed"] = str(target)
            print(json.dumps(record), flush=True)
        else:
            print(_top3_text(image, probabilities), flush=True)
    return 1 if failures else 0


register(Command("train", "train the tutorial's CNN on MNIST and save it (runs "
                 f"{EXAMPLE.as_posix()})", _configure_train, _run_train, passthrough=True))
register(Command("predict", "classify your own handwritten digits (PNG/JPEG) with a saved "
                 "model", _configure_predict, _run_predict))


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    from . import server
    server.add_arguments(parser)


def _run_serve(args: argparse.Namespace, extra: list[str]) -> int:
    from . import server
    return server.run(args)


register(Command("serve", "serve a draw-a-digit web page that classifies your drawing with a "
                 "trained model", _configure_serve, _run_serve))


# --------------------------------------------------------------------------------------------
# export: a saved model to ONNX, Keras's .keras or minicnn's .npz, by the output's suffix
# --------------------------------------------------------------------------------------------
_EXPORT_SUFFIXES = (".onnx", ".keras", ".npz")


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="model file written by model.save() (.npz) or by Keras (.keras)")
    parser.add_argument("output", metavar="OUTPUT",
                        help="file to write; its suffix picks the format: .onnx (ONNX, for "
                             "ONNX Runtime), .keras (Keras 3), .npz (minicnn)")


def _run_export(args: argparse.Namespace, extra: list[str]) -> int:
    from .models import load_model

    output = Path(args.output)
    if output.suffix.lower() not in _EXPORT_SUFFIXES:
        raise CommandError(f"{output}: unknown format {output.suffix or '(no suffix)'!r}; name "
                           "the output .onnx, .keras or .npz.")
    if not Path(args.model).exists():
        raise CommandError(f"no model file at {args.model}.")
    try:
        model = load_model(args.model)
        if output.suffix.lower() == ".onnx":
            from .export import OPSET, to_onnx
            to_onnx(model, output)
            sizes = ", ".join(str(d) for d in model.input_shape if d is not None)
            what = f"ONNX opset {OPSET}, input 'input': float32 (N, {sizes})"
        else:
            model.save(output)
            what = "Keras 3 format" if output.suffix.lower() == ".keras" else "minicnn format"
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"Wrote {output} ({what}, {output.stat().st_size:,} bytes).")
    return 0


register(Command("export", "convert a saved model to ONNX (.onnx), Keras (.keras) or minicnn "
                 "(.npz)", _configure_export, _run_export))
