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
JSON {"error": "..."}: 400 (malformed or absurd JSON, unreadable image, wrong pixels, a bad or
doubled Content-Length), 403 (a Host that is not this computer while bound to loopback), 404,
405, 408 (the request was not complete within `request_timeout`), 411, 413 (body over
`max_body_bytes`, or an image over preprocessing.MAX_IMAGE_PIXELS), 503 with Retry-After (more
than `max_connections` connections, or every prediction slot busy for `queue_timeout`), 500 (a
bug, or a model whose outputs are not finite: logged, and the server goes on). No answer ever
holds NaN or Infinity, which are not JSON.

Bounded by construction: at most `max_connections` connections (one thread each), each holding
at most one body of `max_body_bytes`; at most `max_workers` requests decode, preprocess and
predict at once (an image at the pixel cap costs about 100 MB while it is worked on: decoded,
then turned to gray band by band and shrunk, see preprocessing); every request must arrive
within `request_timeout` seconds (a watchdog closes slower connections). When bound to
loopback, only Host names of this computer are answered (DNS rebinding). Images are PNG or JPEG,
recognised by content. Why the standard library's server and not waitress: see HTTP below.

The model is loaded once and shared by the request threads without a lock: minicnn layers
keep no per-call state (each forward pass has its own context and each thread its own
buffers, see minicnn/graph.py), so requests run their forward passes at the same time.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import concurrent.futures
import http.server
import importlib.resources
import io
import ipaddress
import json
import math
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from .preprocessing import (
    MIN_CONTRAST,
    ImageTooLargeError,
    preprocess_digit,
    read_image,
)

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
# The decoded-size cap is preprocessing.MAX_IMAGE_PIXELS (4096 x 4096), the same for every
# entry point: a small, highly compressible PNG can claim enormous dimensions.
# Seconds a request may take to arrive, from its first byte (or the end of the previous answer
# on a kept-alive connection) to the end of its body; slower connections are closed (408).
REQUEST_TIMEOUT = 30
# Connections served at once (a thread each); more are answered 503 at once and closed.
MAX_CONNECTIONS = 32
# Requests decoding, preprocessing and predicting at once (the machine's cores, at least 2);
# the others wait up to QUEUE_TIMEOUT seconds for a slot, then get 503 with Retry-After.
MAX_WORKERS = max(2, os.cpu_count() or 2)
QUEUE_TIMEOUT = 10.0
# Image formats the API decodes, recognised by content: what canvas.toDataURL() sends (PNG)
# and photos (JPEG). Pillow would also hand EPS to Ghostscript; it never sees one here.
API_IMAGE_FORMATS = ("PNG", "JPEG")
NOTHING_DRAWN = "Nothing drawn: the picture is blank. Draw a digit."
NON_FINITE_OUTPUT = ("the model's outputs are not finite numbers (NaN or inf), so it has no "
                     "prediction: its weights are broken or too large (a diverged training?). "
                     "Retrain it, or serve another model file.")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")

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
    """'data:image/png;base64,...' (PNG or JPEG, recognised by content) -> (H, W) float32 gray
    in [0, 1], transparency composited on white, at most 1024 pixels a side (larger pictures
    are shrunk by area averaging while they are turned to gray). Raises RequestError 400, or
    413 over MAX_IMAGE_PIXELS (checked before decoding)."""
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
        return read_image(io.BytesIO(raw), "the uploaded picture", API_IMAGE_FORMATS)
    except ImageTooLargeError as exc:
        raise RequestError(413, str(exc)) from exc  # it gives the size and the limit
    except ValueError as exc:
        raise RequestError(400, f"{exc} Send a PNG or JPEG data URL.") from exc


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
    try:
        array = np.array(pixels, dtype=np.float64)
    except OverflowError:  # an integer of hundreds of digits
        array = np.array([float("inf")])
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
    except RecursionError as exc:
        raise RequestError(400, "the JSON body is nested too deeply. Send "
                                '{"image": "data:image/png;base64,..."} or '
                                '{"pixels": [784 numbers]}.') from exc
    except ValueError as exc:  # bad JSON or UTF-8, an integer of more than 4300 digits
        # Python's advice for that integer (sys.set_int_max_str_digits) is for the server's
        # programmer, not for the client reading this answer.
        reason = str(exc).split("; use sys.set_int_max_str_digits")[0]
        raise RequestError(400, f"the body is not valid JSON ({reason}). Send "
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
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            answer = predictor.predict(image, feature_maps=feature_maps)
    except ArithmeticError as exc:  # the model itself may refuse outputs that are not finite
        raise RequestError(500, NON_FINITE_OUTPUT) from exc
    if not all(math.isfinite(p) for p in answer["probabilities"]):
        raise RequestError(500, NON_FINITE_OUTPUT)
    answer["image"] = np.round(image.ravel().astype(np.float64), 4).tolist()
    answer["blank"] = False
    return answer


def _blank_answer() -> dict:
    return {"blank": True, "prediction": None, "probabilities": None, "image": None,
            "message": NOTHING_DRAWN}


# --------------------------------------------------------------------------------------------
# HTTP
#
# The standard library's threaded server, hardened here, rather than a WSGI server such as
# waitress: probed with the same requests, waitress refuses a bad or doubled Content-Length
# (which takes a regular expression and a header count here) and takes chunked bodies, but
# answers a body that stops coming by closing the connection without a word after its
# channel_timeout (checked every cleanup_interval, 30 s), not 408; its task queue has no bound,
# so the 503 cap, the Host check and every API answer would still be written here; and it would
# be a new dependency and a second way of running the page. What the stdlib lacks is small and
# is below: strict Content-Length, a deadline per request with 408, caps on connections and
# concurrent work with 503, quiet handling of clients that leave, a Host check.
# --------------------------------------------------------------------------------------------
def _load_page_files() -> dict:
    """Read the page's files from the package once: URL path -> (bytes, content type)."""
    web = importlib.resources.files(__package__).joinpath("web")
    return {url: (web.joinpath(name).read_bytes(), ctype)
            for url, (name, ctype) in PAGE_FILES.items()}


def _is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name, IPv6 with or without brackets) is this computer."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host part of a Host header: 'a:8000' -> 'a', '[::1]:8000' -> '::1'."""
    header = header.strip()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class DigitRequestHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page files and the JSON API; `self.server` carries predictor and limits."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries a Content-Length
    server_version = "minicnn-serve"
    timeout = REQUEST_TIMEOUT  # per read; the whole request's deadline is the watchdog's
    # Headers and body go out as two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the headers (~40 ms per request on a keep-alive connection).
    disable_nagle_algorithm = True

    # -- connection life ----------------------------------------------------------------------
    def setup(self):
        self.timeout = self.server.request_timeout
        super().setup()

    def handle(self):
        """Serve the connection; a client that leaves or stalls ends it quietly."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):  # BrokenPipe, reset: nobody to answer
            self.close_connection = True
        finally:
            self.server.watchdog.forget(self.connection)

    def finish(self):
        try:
            super().finish()
        except (ConnectionError, TimeoutError):
            pass

    def handle_one_request(self):
        # Waiting for this request, its headers and its body all count against the deadline.
        self.server.watchdog.start(self.connection)
        super().handle_one_request()

    def parse_request(self):
        """http.server's parsing, but a request whose line or headers the deadline cut off is
        answered 408: what had arrived is a fragment, not a request to serve."""
        if not super().parse_request():
            return False  # already answered (send_error turns it into 408 if it was cut off)
        if self.server.watchdog.expired(self.connection):
            self.send_error(408)
            return False
        return True

    # -- answers ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra_headers=()):
        self.server.watchdog.forget(self.connection)  # answering: the request has arrived
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
        try:  # NaN and Infinity are not JSON: JSON.parse in the page would fail on them
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except ValueError:
            self.log_error("an answer held a number that is not finite: %.200r", payload)
            status, extra_headers = 500, ()
            body = json.dumps({"error": "internal error: the answer held a number that is not "
                                        "finite; see the log.", "status": 500})
        self._send(status, body.encode("utf-8"), "application/json", extra_headers)

    def _send_error_json(self, status: int, message: str, extra_headers=()):
        self._send_json(status, {"error": message, "status": status}, extra_headers)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, 501...) as JSON, like all others; 408
        when the request stopped arriving before its deadline."""
        self.close_connection = True
        if self.server.watchdog.expired(self.connection):
            code, message = 408, self._too_slow()
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            # A cut-off or garbled request line leaves http.server assuming HTTP/0.9, which
            # has no status line or headers; nobody speaks it: answer in HTTP/1.1.
            self.request_version = "HTTP/1.1"
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

    def _too_slow(self) -> str:
        return (f"the request did not arrive within {self.server.request_timeout:g} s; send "
                "it at once.")

    # -- checks -------------------------------------------------------------------------------
    def _check_host(self):
        """Bound to loopback, answer only requests naming this computer: a web page elsewhere
        may make its own name resolve to 127.0.0.1 (DNS rebinding) to read the API."""
        if not self.server.loopback_only:
            return
        host = self.headers.get("Host")
        if host is None or _is_loopback(_host_name(host)):
            return
        self.close_connection = True
        raise RequestError(403, f"this server answers only requests for this computer, not "
                                f"for Host {host[:100]!r}; open {self.server.url}.")

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        try:
            self._check_host()
        except RequestError as exc:
            self._send_error_json(exc.status, exc.message)
            return
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
        extra = ()
        try:
            self._check_host()
            if path != "/api/predict":
                body_needed = path in self.server.page_files or path == "/api/health"
                self.close_connection = True  # the unread body must not be taken as a request
                if body_needed:
                    extra = [("Allow", "GET")]
                    raise RequestError(405, f"use GET for {path}.")
                raise RequestError(404, f"no such endpoint: {path!r}; POST to /api/predict.")
            body = self._read_body()
            answer = self.server.run_work(handle_predict, self.server.predictor, body)
        except RequestError as exc:
            if exc.status == 503:
                extra = [("Retry-After", "1")]
            if exc.status == 500:
                self.log_error("predict refused: %s", exc.message)
            self._send_error_json(exc.status, exc.message, extra)
            return
        except (ConnectionError, TimeoutError):
            raise  # the client left: handle() ends the connection quietly
        except Exception as exc:  # a bug: answer 500, log it, keep serving
            self.close_connection = True
            self.log_error("predict failed: %s: %s", type(exc).__name__, exc)
            self._send_error_json(500, f"internal error ({type(exc).__name__}); see the log.")
            return
        answer["milliseconds"] = round((time.perf_counter() - started) * 1000, 2)
        self._send_json(200, answer)

    def _read_body(self) -> bytes:
        if self.headers.get_all("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length.")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required.")
        if len(lengths) > 1:
            # Which one a proxy in front believed is unknowable (request smuggling): refuse.
            self.close_connection = True
            raise RequestError(400, f"{len(lengths)} Content-Length headers "
                                    f"({', '.join(map(repr, lengths[:3]))}); send one.")
        length_text = lengths[0].strip()
        if not _CONTENT_LENGTH.fullmatch(length_text):  # int() would take '1_0', '+5', ' 5'
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {lengths[0][:40]!r}: expected digits.")
        length = int(length_text)
        limit = self.server.max_body_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread: this connection is done
            raise RequestError(413, f"the request body is {length:,} bytes; the limit is "
                                    f"{limit:,} bytes. Send a smaller image.")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = b""
            self.server.watchdog.expire(self.connection)
        if len(body) < length:
            self.close_connection = True
            if self.server.watchdog.expired(self.connection):
                raise RequestError(408, self._too_slow())
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes.")
        self.server.watchdog.forget(self.connection)
        return body


class _Watchdog:
    """Closes the reading side of connections whose request is not complete by its deadline
    (socket timeouts alone are per read: a client sending a byte every few seconds would hold
    its thread for ever). The handler then answers 408 on the still-open writing side."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._deadlines: dict = {}
        self._expired: set = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minicnn-watchdog", daemon=True)
        self._thread.start()

    def start(self, sock):
        with self._lock:
            self._deadlines[sock] = time.monotonic() + self.seconds
            self._expired.discard(sock)

    def forget(self, sock):
        with self._lock:
            self._deadlines.pop(sock, None)

    def expire(self, sock):
        with self._lock:
            self._deadlines.pop(sock, None)
            self._expired.add(sock)

    def expired(self, sock) -> bool:
        with self._lock:
            return sock in self._expired

    def close(self):
        self._stop.set()

    def _run(self):
        tick = min(0.25, self.seconds / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
                for sock in late:
                    del self._deadlines[sock]
                    self._expired.add(sock)
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RD)  # a blocked read returns; writing still works
                except OSError:
                    pass


class DigitServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer holding the predictor, the page files and the limits (see the
    module docstring): max_body_bytes, request_timeout (s), max_connections, max_workers,
    queue_timeout (s)."""

    daemon_threads = True  # a hung client never blocks shutdown
    # listen() backlog: the default 5 drops connections when a page reload and a few clients
    # connect at once, and a dropped SYN costs the client a 1 s retransmission.
    request_queue_size = 64

    def __init__(self, address, predictor: DigitPredictor, max_body_bytes: int = MAX_BODY_BYTES,
                 log_requests: bool = False, request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, max_workers: int = MAX_WORKERS,
                 queue_timeout: float = QUEUE_TIMEOUT):
        self.predictor = predictor
        self.max_body_bytes = int(max_body_bytes)
        self.log_requests = log_requests
        self.request_timeout = float(request_timeout)
        self.max_connections = int(max_connections)
        self.queue_timeout = float(queue_timeout)
        self.page_files = _load_page_files()
        self._work = threading.BoundedSemaphore(int(max_workers))
        self._workers = concurrent.futures.ThreadPoolExecutor(int(max_workers),
                                                              "minicnn-predict")
        self._connections = 0
        self._connections_lock = threading.Lock()
        if ":" in address[0]:  # an IPv6 address such as ::1
            self.address_family = socket.AF_INET6
        self.watchdog = _Watchdog(self.request_timeout)  # before binding: server_close stops it
        super().__init__(address, DigitRequestHandler)
        self.loopback_only = _is_loopback(self.server_address[0])

    @property
    def url(self) -> str:
        """The address to open, e.g. 'http://127.0.0.1:8000/'."""
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def run_work(self, function, *args):
        """function(*args) on one of max_workers worker threads, waiting at most queue_timeout
        for a free one (else RequestError 503). A fixed set of threads does every decode, so
        the memory allocator keeps at most max_workers per-thread arenas of image buffers, not
        one per connection that ever decoded a big picture."""
        if not self._work.acquire(timeout=self.queue_timeout):
            raise RequestError(503, "the server is busy with other predictions; try again in a "
                                    "moment.")
        try:
            return self._workers.submit(function, *args).result()
        finally:
            self._work.release()

    # -- connections --------------------------------------------------------------------------
    def process_request(self, request, client_address):
        """Start a thread for the connection, or answer 503 at once beyond max_connections."""
        with self._connections_lock:
            full = self._connections >= self.max_connections
            if not full:
                self._connections += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release_connection()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release_connection()

    def _release_connection(self):
        with self._connections_lock:
            self._connections -= 1

    def _refuse(self, request):
        body = json.dumps({"error": "the server has too many connections open; try again in a "
                                    "moment.", "status": 503}).encode("utf-8")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n"
                "\r\n").encode("ascii")
        try:
            request.setblocking(False)  # never wait on this client in the accepting thread
            request.send(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        """One log line instead of socketserver's traceback for an error outside a request."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        sys.stderr.write(f"minicnn serve: error with {client_address[0]}: "
                         f"{type(exc).__name__}: {exc}\n")

    def server_close(self):
        self.watchdog.close()
        self._workers.shutdown(wait=False)
        super().server_close()


def make_server(model, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                max_body_bytes: int = MAX_BODY_BYTES, log_requests: bool = False,
                **limits) -> DigitServer:
    """A bound (not yet serving) server for `model`: a path to a model file, a Sequential or a
    DigitPredictor. port=0 picks a free port (see `server.server_address`). limits: any of
    request_timeout, max_connections, max_workers, queue_timeout (see DigitServer). Call
    `server.serve_forever()`, and `server.shutdown()` from another thread to stop it."""
    if isinstance(model, DigitPredictor):
        predictor = model
    elif isinstance(model, (str, os.PathLike)):
        predictor = DigitPredictor.from_file(model)
    else:
        predictor = DigitPredictor(model, name=getattr(model, "name", "model"))
    return DigitServer((host, port), predictor, max_body_bytes, log_requests, **limits)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
HELP = "serve a draw-a-digit web page that classifies your drawing with a trained model"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535 (0 picks a free "
                                         f"one), got {text!r}")
    return port


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty address would listen on every network interface; give 127.0.0.1 (this "
            "computer only, the default) or 0.0.0.0 (your network) explicitly")
    return text.strip()


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add serve's options (--model, --host, --port, --quiet) to `parser`; returns it."""
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), metavar="PATH",
                        help=f"model file written by model.save (default: {DEFAULT_MODEL_PATH})")
    parser.add_argument("--host", type=_host, default=DEFAULT_HOST,
                        help=f"address to bind (default: {DEFAULT_HOST}, this computer only; "
                             "0.0.0.0 opens it to your network)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
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
        if not server.loopback_only:
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
