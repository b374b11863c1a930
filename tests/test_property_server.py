"""Property-based tests of the server's request parsing (issue 12): request bodies of random
bytes, random JSON and near-valid requests (pixels of every kind of value, data URLs of
mutated PNGs), and whole HTTP requests with random request lines, headers and lengths sent
to a running server. Every outcome is a correct answer (10 finite probabilities summing to 1,
the 784-pixel image) or a client error with a JSON message -- never a 500 -- within a memory
budget; the server keeps answering. Profiles: see property_settings."""

from __future__ import annotations

import base64
import io
import json
import math
import socket

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from property_settings import Budgets, examples, reporting, settings
from server_fixtures import request, running_server

import minicnn
from minicnn import layers, models
from minicnn.server import DigitPredictor, RequestError, handle_predict

budget = Budgets()
_report = reporting(budget)
CLIENT_ERRORS = {400, 403, 404, 405, 408, 411, 413, 414, 431, 501, 505}


_PREDICTOR = {}


def predictor():
    """A small real classifier of (28, 28, 1) images: Conv2D, pooling, Dense, softmax."""
    if not _PREDICTOR:
        minicnn.set_random_seed(1)
        model = models.Sequential([
            layers.Conv2D(2, 3, activation="relu", input_shape=(28, 28, 1)),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10, activation="softmax")])
        _PREDICTOR["p"] = DigitPredictor(model, name="tiny")
    return _PREDICTOR["p"]


def check_answer(outcome):
    if isinstance(outcome, dict):
        json.dumps(outcome, allow_nan=False)  # valid JSON, no NaN
        if outcome["blank"]:
            assert outcome["prediction"] is None and outcome["probabilities"] is None
            return
        probabilities = outcome["probabilities"]
        assert len(probabilities) == 10 and all(math.isfinite(p) for p in probabilities)
        assert abs(sum(probabilities) - 1) < 1e-4
        assert outcome["prediction"] == int(np.argmax(probabilities))
        assert len(outcome["image"]) == 784 and 0 <= min(outcome["image"]) <= max(
            outcome["image"]) <= 1
    else:
        assert isinstance(outcome, RequestError), repr(outcome)
        assert outcome.status in (400, 413), (outcome.status, outcome.message)
        assert outcome.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["image", "pixels", "feature_maps", "x", ""]) | st.text(
        max_size=8), children, max_size=4),
    max_leaves=20)
PIXEL = (st.floats(0, 1) | st.floats() | st.integers(-2, 2) | st.integers(10**300, 10**301)
         | st.booleans() | st.none() | st.text(max_size=3))


@st.composite
def near_valid_bodies(draw):
    kind = draw(st.sampled_from(["pixels", "image", "both"]))
    request_ = {}
    if kind in ("pixels", "both"):
        n = draw(st.sampled_from([784, 784, 784, 783, 785, 0]))
        uniform = draw(st.booleans())
        if uniform:
            request_["pixels"] = [draw(st.floats(0, 1))] * n
        else:
            request_["pixels"] = draw(st.lists(PIXEL, min_size=n, max_size=n))
    if kind in ("image", "both"):
        side = draw(st.integers(1, 60))
        picture = np.full((side, side), 255, np.uint8)
        picture[side // 4: 3 * side // 4, side // 2: side // 2 + max(1, side // 8)] = 0
        buffer = io.BytesIO()
        fmt = draw(st.sampled_from(["PNG", "PNG", "JPEG", "GIF"]))  # GIF must be refused
        mode = "RGB" if fmt == "JPEG" else draw(st.sampled_from(["L", "RGB", "RGBA", "P"]))
        Image.fromarray(picture).convert(mode).save(buffer, format=fmt)
        raw = bytearray(buffer.getvalue())
        for _ in range(draw(st.integers(0, 2))):
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        prefix = draw(st.sampled_from(["data:image/png;base64,", "data:image/jpeg;base64,",
                                       "data:text/plain;base64,", "data:image/png,", ""]))
        request_["image"] = prefix + base64.b64encode(bytes(raw)).decode()
    if draw(st.booleans()):
        request_["feature_maps"] = draw(st.booleans() | JSON)
    return json.dumps(request_).encode()


BODIES = st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()),
                   near_valid_bodies())


@settings(max_examples=examples(300))
@given(BODIES)
def test_any_body_gets_an_answer_or_a_client_error(body):
    outcome = budget("handle_predict(random bodies)").run(
        lambda: handle_predict(predictor(), body), 20e6 + 40 * len(body))
    check_answer(outcome)


# ---- whole HTTP requests against a running server --------------------------------------------
TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                min_size=1, max_size=12)
HEADER_VALUE = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.sampled_from(["127.0.0.1", "localhost:8000", "evil.example", "[::1]", ""]))
LENGTH = st.one_of(st.integers(0, 3000).map(str), st.sampled_from(
    ["1_0", "+5", "-1", " 7", "0x10", "9" * 30, "", "10, 10", "1e3"]))


@st.composite
def http_requests(draw):
    body = draw(st.one_of(near_valid_bodies(), st.binary(max_size=200)))
    method = draw(st.sampled_from(["POST", "POST", "GET", "HEAD", "PUT", "BREW"]) | TOKEN)
    path = draw(st.sampled_from(["/api/predict", "/api/predict", "/", "/api/health",
                                 "/../etc/passwd", "/api/predict?x=1", "*"]) | TOKEN)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/x"]))
    headers = [("Host", draw(st.sampled_from(["127.0.0.1", "localhost"]) | HEADER_VALUE))]
    lengths = draw(st.lists(st.one_of(st.just(str(len(body))), LENGTH), max_size=2))
    headers += [("Content-Length", value) for value in lengths]
    headers += draw(st.lists(st.tuples(TOKEN, HEADER_VALUE), max_size=3))
    if draw(st.booleans()):
        headers.append(("Transfer-Encoding", draw(st.sampled_from(["chunked", "gzip", "x"]))))
    headers.append(("Connection", "close"))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


@pytest.fixture(scope="module")
def live_server():
    with running_server(predictor(), request_timeout=2.0, log_requests=False) as server:
        yield server


@settings(max_examples=examples(80))
@given(raw=http_requests())
def test_any_http_request_gets_a_json_answer_never_a_500(live_server, raw):
    def exchange():
        with socket.create_connection(live_server.server_address[:2], timeout=30) as sock:
            try:
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered early (e.g. 413) and closed: read what it said
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                pass  # unread bytes of ours reset the connection after the answer
            return b"".join(chunks)

    answer = budget("HTTP requests (client side)").run(exchange, 50e6)
    assert isinstance(answer, bytes), repr(answer)
    if answer:  # a request line so broken that http.server drops it silently is allowed
        status_line = answer.split(b"\r\n", 1)[0]
        status = int(status_line.split()[1])
        assert status in CLIENT_ERRORS | {200}, (status_line, raw[:200])
        head, _, body = answer.partition(b"\r\n\r\n")
        if b"application/json" in head and body:
            json.loads(body, parse_constant=lambda token: pytest.fail(f"not JSON: {token}"))
    status, health, _ = request(live_server, "GET", "/api/health")
    assert status == 200 and health["status"] == "ok"
