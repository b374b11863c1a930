"""A draw-a-digit web page for a trained model: ``python -m minicnn serve``.

The standard library's threaded HTTP server serves the page (``minicnn/web/``: index.html,
app.js, style.css, no CDN, no external fonts) and a small JSON API:

    GET  /api/health   -> {"status": "ok", "model": ..., "input_shape": [28, 28, 1], "classes": 10}
    POST /api/predict  <- {"image": "data:image/png;base64,..."}   any size; runs preprocess_digit
                       <- {"pixels": [784 numbers in 0..1]}       MNIST-like, light on dark, by rows
                          optional "feature_maps": true adds the first Conv2D layer's outputs
                       -> {"prediction": 7, "probabilities": [10 floats], "image": [784 floats],
                           "blank": false, "milliseconds": server time}
                          ("image": the 28x28 picture the model saw, row by row, 0..1)
A blank drawing answers 200 with {"blank": true, "prediction": null, "message": "Nothing drawn..."}:
an empty canvas is a normal state of the page, not a client error. Bad requests answer with a
JSON {"error": "..."}: 400 (malformed JSON, unreadable image, wrong pixels), 404, 405, 411, 413
(body over `max_body_bytes`, or an image over MAX_IMAGE_PIXELS), 500 (a bug: logged, and the
server goes on).

The model is loaded once and shared by the request threads without a lock: minicnn layers
keep no per-call state (each forward pass has its own context and each thread its own
buffers, see minicnn/graph.py), so requests run their forward passes at the same time.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import http.server
import importlib.resources
import io
import json
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from .preprocessing import MIN_CONTRAST, pil_to_gray, preprocess_digit

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL_PATH",
    "DEFAULT_PORT",
    "HELP",
    "DigitPredictor",
    "RequestError",
    "add_arguments",
    "main",
    "make_server",
    "run",
]

DEFAULT_MODEL_PATH = Path("mnist_cnn_output") / "mnist_cnn.npz"  # what examples/mnist_cnn.py writes
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# A 280 x 280 canvas as PNG is 5-30 KB; 2 MiB leaves room for big phone canvases and photos.
MAX_BODY_BYTES = 2 * 1024 * 1024
# Decoded size cap: a small, highly compressible PNG can claim enormous dimensions, and
# preprocessing costs time in proportion to the pixels. A phone canvas at 3x is ~1200 x 1200.
MAX_IMAGE_PIXELS = 2048 * 2048
# Seconds a connection may sit idle (or dribble a request) before its thread gives up.
REQUEST_TIMEOUT = 30
NOTHING_DRAWN = "Nothing drawn: the picture is blank. Draw a digit."

# The page's files: URL path -> (file in minicnn/web/, content type). Only these are served,
# so no URL can reach any other file (no path traversal by construction).
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class RequestError(Exception):
    """A request the server answers with `status` and {"error": message} instead of a result."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ModelNotFoundError(FileNotFoundError):
    """The model file to serve does not exist; the message says how to make one."""


# --------------------------------------------------------------------------------------------
# The model side
# --------------------------------------------------------------------------------------------
class DigitPredictor:
    """One loaded model shared by all request threads (minicnn layers keep no per-call state,
    so concurrent requests run their forward passes at the same time, without a lock).

    model: a built minicnn Sequential taking (28, 28, 1) images (MNIST-like, floats in [0, 1])
        and returning K class probabilities; K = `classes`.
    name: shown by /api/health (e.g. the model file's name).
    """

    def __init__(self, model, name: str = "model"):
        # Keras's shapes carry the batch axis: (None, 28, 28, 1) -> (28, 28, 1).
        input_shape = tuple(model.input_shape or ())[1:]
        output_shape = tuple(model.output_shape or ())[1:]
        if input_shape not in ((28, 28, 1), (28, 28)) or len(output_shape) != 1:
            raise ValueError(
                f"serve: the model {name} takes inputs {input_shape} and returns "
                f"{output_shape}; the digit page needs a classifier of (28, 28, 1) MNIST images "
                "returning class probabilities, like the one examples/mnist_cnn.py trains."
            )
        self.model = model
        self.name = name
        self.input_shape = input_shape
        self.classes = int(output_shape[0])
        first_conv = [i for i, layer in enumerate(model.layers)
                      if any(c.__name__ == "Conv2D" for c in type(layer).__mro__)]
        self._first_conv = first_conv[0] if first_conv else None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> DigitPredictor:
        """Load a file written by model.save(path); ModelNotFoundError says how to make one."""
        from .models import load_model

        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(
                f"serve: no model file at '{path}'. Train one first: `python "
                f"examples/mnist_cnn.py` writes {DEFAULT_MODEL_PATH} (run it from this folder), "
                "or pass --model PATH to a file saved with model.save(PATH)."
            )
        return cls(load_model(path), name=path.name)

    def predict(self, image: np.ndarray, feature_maps: bool = False) -> dict:
        """Classify one MNIST-like image.

        image: (28, 28) float in [0, 1], light digit on black.
        -> {"prediction": int, "probabilities": K floats, and with feature_maps=True
            "feature_maps": {"layer", "shape": [H, W, F], "min": F, "max": F,
                             "maps": F lists of H*W ints 0..255 (each map on its own scale)}}
        """
        x = image.astype(self.model.dtype).reshape((1, *self.input_shape))
        first_conv_out = None
        if feature_maps and self._first_conv is not None:
            conv_name = self.model.layers[self._first_conv].name
            last_name = self.model.layers[-1].name
            outputs = self.model.layer_outputs(x, names=[conv_name, last_name])
            first_conv_out = outputs[conv_name][0].astype(np.float64)
            probabilities = outputs[last_name][0].astype(np.float64)
        else:
            probabilities = self.model.predict(x, verbose=0)[0].astype(np.float64)
        result = {"prediction": int(np.argmax(probabilities)),
                  "probabilities": np.round(probabilities, 6).tolist()}
        if feature_maps:
            result["feature_maps"] = self._describe_maps(first_conv_out)
        return result

    def _describe_maps(self, maps: np.ndarray | None) -> dict | None:
        """(H, W, F) activations -> JSON-ready per-map 0..255 images with their value ranges."""
        if maps is None:
            return None
        h, w, f = maps.shape
        flat = maps.reshape(h * w, f)
        low, high = flat.min(axis=0), flat.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        scaled = np.rint((flat - low) / span * 255).astype(np.uint8)
        return {"layer": self.model.layers[self._first_conv].name, "shape": [h, w, f],
                "min": [round(float(v), 4) for v in low],
                "max": [round(float(v), 4) for v in high],
                "maps": [scaled[:, k].tolist() for k in range(f)]}


def decode_data_url(data_url) -> np.ndarray:
    """'data:image/png;base64,...' (PNG, JPEG or any Pillow-readable image) -> (H, W) float32
    gray in [0, 1], transparency composited on white. Raises RequestError 400 or 413."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data_url, str):
        raise RequestError(400, f"'image' must be a string 'data:image/png;base64,...', got "
                                f"{type(data_url).__name__}.")
    header, comma, payload = data_url.partition(",")
    if not comma or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise RequestError(400, "'image' must be a data URL 'data:image/png;base64,...' "
                                f"(got one starting {data_url[:30]!r}); send canvas.toDataURL().")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"'image' is not valid base64 ({exc}).") from exc
    try:
        with Image.open(io.BytesIO(raw)) as im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise RequestError(413, f"the image is {width} x {height} pixels; the limit is "
                                        f"{MAX_IMAGE_PIXELS:,} pixels. Send a smaller picture.")
            return pil_to_gray(im)
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise RequestError(400, f"the image could not be read ({type(exc).__name__}: {exc}); "
                                "send a PNG or JPEG data URL.") from exc


def parse_pixels(pixels, side: int = 28) -> np.ndarray:
    """[side*side numbers in 0..1], row by row -> (side, side) float32. Raises RequestError 400."""
    size = side * side
    if not isinstance(pixels, list) or len(pixels) != size:
        got = f"a list of {len(pixels)}" if isinstance(pixels, list) else type(pixels).__name__
        raise RequestError(400, f"'pixels' must be a list of {size} numbers (a 28x28 image row "
                                f"by row, 0 = background, 1 = ink), got {got}.")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pixels):
        bad = next(p for p in pixels
                   if not isinstance(p, (int, float)) or isinstance(p, bool))
        raise RequestError(400, f"'pixels' must hold only numbers, found {bad!r}.")
    array = np.array(pixels, dtype=np.float64)
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise RequestError(400, f"'pixels' must be in 0..1, got {array.min():.4g}.."
                                f"{array.max():.4g}. Divide 0..255 values by 255.")
    return array.reshape(side, side).astype(np.float32)


def _is_blank_error(exc: ValueError) -> bool:
    return "looks blank" in str(exc)


def handle_predict(predictor: DigitPredictor, body: bytes) -> dict:
    """The /api/predict logic on a raw request body -> the JSON-ready answer (see the module
    docstring). Raises RequestError for a bad request."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc}). Send "
                                '{"image": "data:image/png;base64,..."} or '
                                '{"pixels": [784 numbers]}.') from exc
    if not isinstance(request, dict):
        raise RequestError(400, f"the JSON body must be an object, got {type(request).__name__}:"
                                ' send {"image": ...} or {"pixels": [...]}.')
    has_image, has_pixels = "image" in request, "pixels" in request
    if has_image == has_pixels:
        raise RequestError(400, 'send exactly one of "image" (a data URL) or "pixels" '
                                f"(784 numbers); got keys {sorted(request)}.")
    feature_maps = request.get("feature_maps", False)
    if not isinstance(feature_maps, bool):
        raise RequestError(400, f"'feature_maps' must be true or false, got {feature_maps!r}.")

    if has_pixels:
        image = parse_pixels(request["pixels"])
        if image.max() < MIN_CONTRAST:
            return _blank_answer()
    else:
        gray = decode_data_url(request["image"])
        if gray.size == 0 or float(np.ptp(gray)) < MIN_CONTRAST:
            return _blank_answer()
        try:
            image = preprocess_digit(gray)
        except ValueError as exc:
            if _is_blank_error(exc):
                return _blank_answer()
            raise RequestError(400, f"the image could not be processed: {exc}") from exc
    answer = predictor.predict(image, feature_maps=feature_maps)
    answer["image"] = np.round(image.ravel().astype(np.float64), 4).tolist()
    answer["blank"] = False
    return answer


def _blank_answer() -> dict:
    return {"blank": True, "prediction": None, "probabilities": None, "image": None,
            "message": NOTHING_DRAWN}


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------
def _load_page_files() -> dict:
    """Read the page's files from the package once: URL path -> (bytes, content type)."""
    web = importlib.resources.files(__package__).joinpath("web")
    return {url: (web.joinpath(name).read_bytes(), ctype)
            for url, (name, ctype) in PAGE_FILES.items()}


class DigitRequestHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page files and the JSON API; `self.server` carries predictor and limits."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries a Content-Length
    server_version = "minicnn-serve"
    timeout = REQUEST_TIMEOUT
    # Headers and body go out as two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (~40 ms per request on a keep-alive connection).
    disable_nagle_algorithm = True

    # -- answers ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in extra_headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: dict, extra_headers=()):
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", extra_headers)

    def _send_error_json(self, status: int, message: str, extra_headers=()):
        self._send_json(status, {"error": message, "status": status}, extra_headers)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, 501...) as JSON, like all others."""
        self.close_connection = True
        try:
            self._send_error_json(code, message or self.responses.get(code, ("error",))[0])
        except OSError:
            pass  # the client is gone

    def log_message(self, format, *args):
        if self.server.log_requests:
            super().log_message(format, *args)

    def log_error(self, format, *args):
        """Errors (timeouts, 500s) are always logged, even with log_requests off."""
        super().log_message(format, *args)

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/api/health":
            predictor = self.server.predictor
            self._send_json(200, {"status": "ok", "model": predictor.name,
                                  "input_shape": list(predictor.input_shape),
                                  "classes": predictor.classes})
        elif path in self.server.page_files:
            body, content_type = self.server.page_files[path]
            self._send(200, body, content_type)
        elif path == "/api/predict":
            self._send_error_json(405, "use POST for /api/predict.", [("Allow", "POST")])
        else:
            self._send_error_json(404, f"no such page: {path!r}. The page is at /.")

    do_HEAD = do_GET

    def do_POST(self):
        path = urlsplit(self.path).path
        started = time.perf_counter()
        try:
            if path != "/api/predict":
                body_needed = path in self.server.page_files or path == "/api/health"
                self.close_connection = True  # the unread body must not be taken as a request
                if body_needed:
                    raise RequestError(405, f"use GET for {path}.")
                raise RequestError(404, f"no such endpoint: {path!r}; POST to /api/predict.")
            body = self._read_body()
            answer = handle_predict(self.server.predictor, body)
        except RequestError as exc:
            extra = [("Allow", "GET")] if exc.status == 405 else ()
            self._send_error_json(exc.status, exc.message, extra)
            return
        except Exception as exc:  # a bug: answer 500, log it, keep serving
            self.close_connection = True
            self.log_error("predict failed: %s: %s", type(exc).__name__, exc)
            self._send_error_json(500, f"internal error ({type(exc).__name__}); see the log.")
            return
        answer["milliseconds"] = round((time.perf_counter() - started) * 1000, 2)
        self._send_json(200, answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length.")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required.")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError as exc:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {length_text!r}.") from exc
        limit = self.server.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread: this connection is done
            raise RequestError(413, f"the request body is {length:,} bytes; the limit is "
                                    f"{limit:,} bytes. Send a smaller image.")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes.")
        return body


class DigitServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer holding the predictor, the page files and the limits."""

    daemon_threads = True  # a hung client never blocks shutdown
    # listen() backlog: the default 5 drops connections when a page reload and a few clients
    # connect at once, and a dropped SYN costs the client a 1 s retransmission.
    request_queue_size = 64

    def __init__(self, address, predictor: DigitPredictor, max_body_bytes: int = MAX_BODY_BYTES,
                 log_requests: bool = False):
        self.predictor = predictor
        self.max_body_bytes = int(max_body_bytes)
        self.log_requests = log_requests
        self.page_files = _load_page_files()
        if ":" in address[0]:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, DigitRequestHandler)

    @property
    def url(self) -> str:
        """The address to open, e.g. 'http://127.0.0.1:8000/'."""
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"


def make_server(model, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                max_body_bytes: int = MAX_BODY_BYTES, log_requests: bool = False) -> DigitServer:
    """A bound (not yet serving) server for `model`: a path to a model file, a Sequential or a
    DigitPredictor. port=0 picks a free port (see `server.server_address`). Call
    `server.serve_forever()`, and `server.shutdown()` from another thread to stop it."""
    if isinstance(model, DigitPredictor):
        predictor = model
    elif isinstance(model, (str, os.PathLike)):
        predictor = DigitPredictor.from_file(model)
    else:
        predictor = DigitPredictor(model, name=getattr(model, "name", "model"))
    return DigitServer((host, port), predictor, max_body_bytes, log_requests)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
HELP = "serve a draw-a-digit web page that classifies your drawing with a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add serve's options (--model, --host, --port, --quiet) to `parser`; returns it."""
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), metavar="PATH",
                        help=f"model file written by model.save (default: {DEFAULT_MODEL_PATH})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default: {DEFAULT_HOST}, this computer only; "
                             "0.0.0.0 opens it to your network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default: {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def run(args: argparse.Namespace) -> int:
    """Start the server from parsed arguments and serve until Ctrl+C; returns an exit code."""
    try:
        server = make_server(args.model, host=args.host, port=args.port,
                             log_requests=not args.quiet)
    except ModelNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:  # unreadable model file, or not a digit classifier
        print(f"serve: cannot use the model '{args.model}': {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # port taken, address not on this machine, no permission
        print(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. "
              "Try another --port (0 picks a free one).", file=sys.stderr)
        return 1
    with server:
        predictor = server.predictor
        print(f"minicnn: serving {predictor.name} ({predictor.classes} classes). "
              f"Open {server.url} in a browser. Press Ctrl+C to stop.", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"minicnn: listening on {args.host}: other computers may reach this page.",
                  flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("\nminicnn: stopped.", flush=True)
    return 0


def main(argv=None) -> int:
    """`python -m minicnn.server [--model PATH] [--host H] [--port P]`; returns an exit code."""
    parser = add_arguments(argparse.ArgumentParser(prog="minicnn serve", description=HELP))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
