"""The digit server's API against a real server on 127.0.0.1 (free port), with a tutorial model
trained for one epoch on real MNIST: real digits round-trip to their labels, every bad request
gets its status and JSON message, and the server keeps answering afterwards."""

from __future__ import annotations

import base64
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from server_fixtures import (
    digit_as_drawing,
    mnist_arrays,
    png_data_url,
    request,
    running_server,
    trained_model_path,
)
from test_models import small_model

from minicnn import preprocess_digit
from minicnn.models import load_model
from minicnn.server import DEFAULT_MODEL_PATH, NOTHING_DRAWN, DigitPredictor, main, make_server

REPO_ROOT = Path(__file__).resolve().parent.parent
WEB = REPO_ROOT / "minicnn" / "web"


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    return trained_model_path(tmp_path_factory)


@pytest.fixture(scope="module")
def model(model_path):
    """The same model, loaded here to compute the expected answers."""
    return load_model(model_path)


@pytest.fixture(scope="module")
def server(model_path):
    with running_server(model_path) as srv:
        yield srv


@pytest.fixture(scope="module")
def test_digits():
    _, (x_test, y_test) = mnist_arrays()
    return x_test, y_test


def predict_pixels(server, digit):
    return request(server, "POST", "/api/predict",
                   {"pixels": np.asarray(digit, dtype=np.float64).ravel().tolist()})


def assert_still_serving(server, digit, label):
    status, health, _ = request(server, "GET", "/api/health")
    assert (status, health["status"]) == (200, "ok")
    status, answer, _ = predict_pixels(server, digit)
    assert status == 200 and answer["prediction"] == label


# ---- health and page ------------------------------------------------------------------------
def test_health_describes_the_loaded_model(server):
    status, health, headers = request(server, "GET", "/api/health")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert health == {"status": "ok", "model": "mnist_cnn.npz", "input_shape": [28, 28, 1],
                      "classes": 10}


def test_server_binds_loopback_by_default(model):
    server = make_server(model, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.server_close()


@pytest.mark.parametrize("path, name, content_type", [
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/index.html", "index.html", "text/html; charset=utf-8"),
    ("/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
    ("/app.js?v=2", "app.js", "text/javascript; charset=utf-8"),
])
def test_page_files_are_served_from_the_package(server, path, name, content_type):
    status, body, headers = request(server, "GET", path)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert body == (WEB / name).read_bytes()


def test_page_needs_no_network_beyond_the_server():
    for name in ("index.html", "app.js", "style.css"):
        text = (WEB / name).read_text(encoding="utf-8")
        # No absolute URL, protocol-relative URL, CSS import or web font anywhere.
        assert not re.search(r"https?:|(?<![:\w])//[\w.-]+\.\w+/|@import|@font-face", text), name
    html = (WEB / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'(?:src|href)="([^"]+)"', html)) == {"style.css", "app.js", "data:,"}


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/%2e%2e/pyproject.toml", "/web/app.js", "/minicnn/server.py",
    "/server.py", "//etc/passwd", "/..%2f..%2fetc%2fpasswd", "/static/../../README.md",
    "/app.js/..", "/api/healthz",
])
def test_nothing_but_the_page_files_is_reachable(server, path):
    status, body, _ = request(server, "GET", path)
    assert status == 404
    assert body["status"] == 404 and "no such page" in body["error"]


# ---- predictions on real digits ---------------------------------------------------------------
def test_real_mnist_digits_round_trip_to_their_labels(server, model, test_digits):
    x_test, y_test = test_digits
    x, y = x_test[:20], y_test[:20]
    expected = model.predict(x)
    predictions = []
    for digit, probabilities in zip(x, expected, strict=True):
        status, answer, _ = predict_pixels(server, digit)
        assert status == 200 and answer["blank"] is False
        np.testing.assert_allclose(answer["probabilities"], probabilities, atol=2e-6)
        assert answer["prediction"] == int(np.argmax(probabilities))
        # {"pixels": ...} is used as given: the processed image is the input itself.
        np.testing.assert_allclose(np.reshape(answer["image"], (28, 28, 1)), digit, atol=1e-4)
        predictions.append(answer["prediction"])
    assert np.mean(np.array(predictions) == y) >= 0.9, (predictions, y.tolist())


def test_drawn_digits_as_png_are_preprocessed_and_recognised(server, model, test_digits):
    x_test, y_test = test_digits
    correct = 0
    for digit, label in zip(x_test[:10], y_test[:10], strict=True):
        drawing = digit_as_drawing(digit)  # dark ink on white, 280 x 280, like the canvas
        status, answer, _ = request(server, "POST", "/api/predict",
                                    {"image": png_data_url(drawing)})
        assert status == 200
        seen = preprocess_digit(drawing)
        np.testing.assert_allclose(np.reshape(answer["image"], (28, 28)), seen, atol=1e-4)
        expected = model.predict(seen[None, :, :, None])[0]
        np.testing.assert_allclose(answer["probabilities"], expected, atol=2e-6)
        # The preprocessed drawing is close to the MNIST original: MNIST-style preprocessing.
        assert np.abs(seen - digit[:, :, 0]).mean() < 0.1
        correct += answer["prediction"] == label
    assert correct >= 8


def test_transparent_canvas_counts_as_white_paper(server, test_digits):
    x_test, _ = test_digits
    drawing = digit_as_drawing(x_test[0])
    rgba = np.zeros((*drawing.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - drawing  # black ink whose opacity is the ink; paper fully transparent
    on_white = request(server, "POST", "/api/predict", {"image": png_data_url(drawing)})[1]
    transparent = request(server, "POST", "/api/predict", {"image": png_data_url(rgba)})[1]
    assert transparent["prediction"] == on_white["prediction"]
    np.testing.assert_allclose(transparent["image"], on_white["image"], atol=2e-3)


def test_feature_maps_are_the_first_conv_layer_outputs(server, model, test_digits):
    x_test, _ = test_digits
    status, answer, _ = request(server, "POST", "/api/predict", {
        "pixels": x_test[3].ravel().tolist(), "feature_maps": True})
    assert status == 200
    maps = answer["feature_maps"]
    assert maps["layer"] == model.layers[0].name
    assert maps["shape"] == [26, 26, 25] and len(maps["maps"]) == 25
    out = model.layers[0](x_test[3:4])[0].astype(np.float64)
    np.testing.assert_allclose(maps["min"], out.min(axis=(0, 1)), atol=1e-4)
    np.testing.assert_allclose(maps["max"], out.max(axis=(0, 1)), atol=1e-4)
    span = np.where(out.max(axis=(0, 1)) > out.min(axis=(0, 1)),
                    out.max(axis=(0, 1)) - out.min(axis=(0, 1)), 1.0)
    expected = (out - out.min(axis=(0, 1))) / span * 255
    got = np.array(maps["maps"], dtype=np.float64).T.reshape(26, 26, 25)
    assert np.abs(got - expected).max() <= 0.51
    assert "feature_maps" not in request(server, "POST", "/api/predict",
                                         {"pixels": x_test[3].ravel().tolist()})[1]


# ---- blank drawings ---------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [
    {"image": png_data_url(np.full((280, 280), 255, dtype=np.uint8))},        # white canvas
    {"image": png_data_url(np.zeros((280, 280, 4), dtype=np.uint8))},         # transparent
    {"image": png_data_url(np.full((50, 80), 17, dtype=np.uint8))},           # flat dark grey
    {"pixels": [0.0] * 784},
    {"pixels": [0.05] * 784},
], ids=["white", "transparent", "flat-grey", "zero-pixels", "faint-pixels"])
def test_a_blank_drawing_gets_a_nothing_drawn_answer(server, payload, test_digits):
    status, answer, _ = request(server, "POST", "/api/predict", payload)
    assert status == 200
    assert answer["blank"] is True and answer["prediction"] is None
    assert answer["message"] == NOTHING_DRAWN and "Nothing drawn" in NOTHING_DRAWN
    x_test, y_test = test_digits
    assert_still_serving(server, x_test[0], y_test[0])


# ---- bad requests -----------------------------------------------------------------------------
def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _huge_png_url():
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000), 1).save(buffer, format="PNG")  # ~4 KB file, 25 Mpixels
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


_TRUNCATED_PNG = _png_bytes(np.eye(64, dtype=np.uint8) * 255)[:60]

BAD_REQUESTS = [
    # (id, method, path, body bytes or JSON object, status, part of the message)
    ("malformed-json", "POST", "/api/predict", b'{"pixels": [0.1, ', 400, "not valid JSON"),
    ("not-utf8", "POST", "/api/predict", b"\xff\xfe{}", 400, "not valid JSON"),
    ("empty-body", "POST", "/api/predict", b"", 400, "not valid JSON"),
    ("json-list", "POST", "/api/predict", [1, 2, 3], 400, "must be an object"),
    ("no-drawing", "POST", "/api/predict", {"picture": "x"}, 400, "exactly one of"),
    ("both", "POST", "/api/predict", {"image": "", "pixels": []}, 400, "exactly one of"),
    ("image-not-string", "POST", "/api/predict", {"image": 5}, 400, "must be a string"),
    ("not-a-data-url", "POST", "/api/predict", {"image": "hello.png"}, 400, "data URL"),
    ("bad-base64", "POST", "/api/predict", {"image": "data:image/png;base64,@@@@"}, 400,
     "not valid base64"),
    ("not-an-image", "POST", "/api/predict",
     {"image": "data:image/png;base64," + base64.b64encode(b"hello world").decode()}, 400,
     "could not be read"),
    ("truncated-png", "POST", "/api/predict",
     {"image": "data:image/png;base64," + base64.b64encode(_TRUNCATED_PNG).decode()}, 400,
     "could not be read"),
    ("too-many-image-pixels", "POST", "/api/predict", {"image": _huge_png_url()}, 413,
     "5000 x 5000 pixels"),
    ("pixels-short", "POST", "/api/predict", {"pixels": [0.5] * 783}, 400,
     "list of 784 numbers"),
    ("pixels-nested", "POST", "/api/predict", {"pixels": [[0.0] * 28] * 28}, 400,
     "list of 784 numbers"),
    ("pixels-not-list", "POST", "/api/predict", {"pixels": "0.5"}, 400, "list of 784 numbers"),
    ("pixels-strings", "POST", "/api/predict", {"pixels": ["0.5"] * 784}, 400,
     "only numbers, found '0.5'"),
    ("pixels-bool", "POST", "/api/predict", {"pixels": [True] * 784}, 400, "only numbers"),
    ("pixels-0-255", "POST", "/api/predict", {"pixels": [255] * 784}, 400,
     "must be in 0..1, got 255..255. Divide"),
    ("pixels-negative", "POST", "/api/predict", {"pixels": [-0.5] + [0.5] * 783}, 400,
     "must be in 0..1"),
    ("feature-maps-not-bool", "POST", "/api/predict",
     {"pixels": [0.5] * 784, "feature_maps": "yes"}, 400, "true or false"),
    ("get-predict", "GET", "/api/predict", None, 405, "use POST"),
    ("post-page", "POST", "/", {"pixels": []}, 405, "use GET"),
    ("post-elsewhere", "POST", "/api/other", {"pixels": []}, 404, "no such endpoint"),
]


@pytest.mark.parametrize("method, path, body, status, message",
                         [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_their_status_and_a_json_message(server, test_digits, method, path,
                                                          body, status, message):
    got_status, answer, headers = request(server, method, path, body)
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    assert answer["status"] == status and message in answer["error"], answer
    if status == 405:
        assert headers["Allow"] in ("GET", "POST")
    x_test, y_test = test_digits
    assert_still_serving(server, x_test[0], y_test[0])


def _raw_exchange(server, data: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes the connection."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_body_over_the_limit_gets_413_before_it_is_read(server, test_digits):
    answer = _raw_exchange(server, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Content-Type: application/json\r\n"
                                   b"Content-Length: 100000000\r\n\r\n{\"pixels\": [")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"100,000,000 bytes; the limit is 2,097,152 bytes" in body
    x_test, y_test = test_digits
    assert_still_serving(server, x_test[0], y_test[0])


def test_a_sent_body_over_a_small_limit_gets_413(model, test_digits):
    x_test, _ = test_digits
    with running_server(model, max_body_bytes=4000) as small:
        status, answer, _ = predict_pixels(small, x_test[0])  # ~9 KB of JSON floats
        assert status == 413 and "the limit is 4,000 bytes" in answer["error"]
        status, answer, _ = request(small, "POST", "/api/predict", {"pixels": [0] * 784})
        assert status == 200 and answer["blank"] is True  # ~2.4 KB: under the limit


@pytest.mark.parametrize("raw, status, message", [
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 411, b"Content-Length header"),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400,
     b"bad Content-Length"),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n", 400,
     b"bad Content-Length"),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 411, b"chunked"),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{\"pixels\"", 400,
     b"ended after 9 of 50 bytes"),
    (b"GET /a b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, b"Bad request syntax"),
    (b"BREW /coffee HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501, b"Unsupported method"),
])
def test_broken_http_gets_a_json_error(server, test_digits, raw, status, message):
    if b"ended after" in message:
        # Half a body, then the client stops sending: the server must not wait forever.
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
    else:
        answer = _raw_exchange(server, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] %d " % status, head), head
    assert message in body, body
    x_test, y_test = test_digits
    assert_still_serving(server, x_test[0], y_test[0])


def test_an_internal_error_answers_500_and_the_server_goes_on(model, test_digits):
    x_test, y_test = test_digits
    predictor = DigitPredictor(model)
    with running_server(predictor) as srv:
        original = predictor.predict

        def broken(*args, **kwargs):
            raise RuntimeError("simulated bug")

        predictor.predict = broken
        status, answer, _ = predict_pixels(srv, x_test[0])
        assert status == 500 and "RuntimeError" in answer["error"]
        predictor.predict = original
        assert_still_serving(srv, x_test[0], y_test[0])


def test_keep_alive_connection_serves_many_requests(server, test_digits):
    import http.client

    x_test, y_test = test_digits
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        for i in range(5):
            status, answer, _ = request(server, "POST", "/api/predict",
                                        {"pixels": x_test[i].ravel().tolist()},
                                        connection=connection)
            assert status == 200 and answer["prediction"] in range(10)
        status, _, _ = request(server, "GET", "/api/nothing", connection=connection)
        assert status == 404
        status, health, _ = request(server, "GET", "/api/health", connection=connection)
        assert health["status"] == "ok"
    finally:
        connection.close()


def test_concurrent_predictions_on_the_shared_model_do_not_mix(model, test_digits):
    """No lock: minicnn layers keep no per-call state, so threads predicting at once through
    the one model each get exactly the answer they would get alone."""
    x_test, _ = test_digits
    predictor = DigitPredictor(model, name="shared")
    images = [x_test[i].reshape(28, 28) for i in range(8)]
    expected = [predictor.predict(image, feature_maps=(k % 2 == 0)) for k, image in
                enumerate(images)]
    wrong = []

    def client(k):
        for _ in range(20):
            got = predictor.predict(images[k], feature_maps=(k % 2 == 0))
            if got != expected[k]:
                wrong.append(k)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not wrong, wrong[:5]


# ---- model loading and the command line --------------------------------------------------------
def test_a_missing_model_file_says_how_to_make_one(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert main(["--model", str(missing), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"no model file at '{missing}'" in err
    assert "python examples/mnist_cnn.py" in err and str(DEFAULT_MODEL_PATH) in err
    assert "--model PATH" in err


def test_the_default_model_path_is_what_the_example_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--port", "0"]) == 2
    assert "no model file at 'mnist_cnn_output/mnist_cnn.npz'" in capsys.readouterr().err


def test_an_unreadable_model_file_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["--model", str(bad), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the model" in err and "not a readable minicnn model file" in err


def test_a_model_that_is_not_a_digit_classifier_is_refused(tmp_path, capsys):
    other = small_model()  # takes (8, 8, 1) inputs
    with pytest.raises(ValueError, match=r"needs a classifier of \(28, 28, 1\) MNIST images"):
        DigitPredictor(other)
    other.save(tmp_path / "small.npz")
    assert main(["--model", str(tmp_path / "small.npz"), "--port", "0"]) == 2
    assert "(28, 28, 1)" in capsys.readouterr().err


def test_a_port_in_use_is_reported(model_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--model", str(model_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_command_line_prints_the_address_serves_and_stops_on_ctrl_c(model_path, test_digits):
    x_test, y_test = test_digits
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    code = "import sys; from minicnn.server import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--model", str(model_path), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)  # never wait forever
        assert ready, "the server printed nothing within 120 s"
        line = process.stdout.readline()
        match = re.search(r"Open (http://127\.0\.0\.1:(\d+)/) in a browser", line)
        assert match, (line, process.poll())

        class Address:
            server_address = ("127.0.0.1", int(match.group(2)))

        assert_still_serving(Address, x_test[0], y_test[0])
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped" in out
    # --quiet was not given: requests are logged to stderr, one line each.
    assert re.search(r'"POST /api/predict HTTP/1.1" 200', err), err


# ---- issue 12: bounded memory and time, strict HTTP, no NaN in JSON --------------------------
from hardening_fixtures import png_claiming, traced_peak  # noqa: E402

from minicnn.server import (  # noqa: E402
    NON_FINITE_OUTPUT,
    RequestError,
    _host_name,
    _is_loopback,
    handle_predict,
)


def strict_json(data):
    """Parse bytes as JSON, failing on NaN/Infinity tokens (JSON.parse would)."""
    import json

    def refuse(token):
        raise AssertionError(f"not JSON: {token}")

    return json.loads(data, parse_constant=refuse)


def raw_answer(server, data, shutdown=False, timeout=20):
    """Send raw bytes -> (status line, parsed JSON body or raw bytes)."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode()
    return status, (strict_json(body) if b"application/json" in head else body), head


def test_a_model_whose_outputs_overflow_answers_an_error_not_nan(model, test_digits):
    # Before: 200 with "prediction": 0 and NaN tokens, which JSON.parse refuses.
    x_test, _ = test_digits
    broken = _huge_copy(model)
    with running_server(broken) as srv:
        for body in ({"pixels": x_test[0].ravel().tolist()},
                     {"pixels": x_test[0].ravel().tolist(), "feature_maps": True}):
            status, answer, _ = request(srv, "POST", "/api/predict", body)
            assert status == 500 and answer["error"] == NON_FINITE_OUTPUT
        status, raw, _ = raw_answer(srv, _post(json_bytes({"pixels": x_test[0].ravel().tolist()}),
                                               close=True))
        assert status.startswith("HTTP/1.1 500") and "error" in raw  # parsed strictly


def _huge_copy(model):
    from minicnn import models as models_module

    twin = models_module.Sequential.from_config(model.get_config())
    twin.build(tuple(model.input_shape)[-3:])
    twin.set_weights([np.full_like(w, 1e30) for w in model.get_weights()])
    return twin


def json_bytes(obj):
    import json
    return json.dumps(obj).encode()


def _post(body: bytes, headers: bytes = b"", close: bool = False, length=None) -> bytes:
    length = str(len(body)).encode() if length is None else length
    return (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + headers + b"Content-Length: " + length + b"\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"pixels": [' + b"9" * 5000 + b"]}", "not valid JSON"),
    (b'{"pixels": [' + b"9" * 400 + b"]}", "list of 784 numbers"),
    (b'{"pixels": [' + b"9" * 400 + b"".join([b", 0"] * 783) + b"]}", "must be in 0..1"),
    (b'{"pixels": [1e400' + b"".join([b", 0"] * 783) + b"]}", "must be in 0..1"),
    (b'{"pixels": [-1e400' + b"".join([b", 0"] * 783) + b"]}", "must be in 0..1"),
    (b'{"image": "data:image/png;base64,' + __import__("base64").b64encode(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n") + b'"}',
     "its content is none of PNG, JPEG"),
], ids=["nested-100k", "5000-digit-int", "400-digit-int-short", "400-digit-int", "1e400",
        "-1e400", "eps"])
def test_absurd_json_is_a_client_error(server, test_digits, body, words):
    # Before: 500 for deep nesting and huge integers; EPS went to Ghostscript.
    status, answer, _ = request(server, "POST", "/api/predict", body)
    assert status == 400 and words in answer["error"], answer
    assert "sys.set_int_max_str_digits" not in answer["error"]  # advice for us, not the client
    x_test, y_test = test_digits
    assert_still_serving(server, x_test[0], y_test[0])


@pytest.mark.parametrize("headers, length, words", [
    (b"", b"1_0", "bad Content-Length '1_0'"),
    (b"", b"+10", "bad Content-Length"),
    (b"", b"0x10", "bad Content-Length"),
    (b"Content-Length: 10\r\n", b"10", "2 Content-Length headers"),
    (b"Content-Length: 5\r\n", b"10", "2 Content-Length headers"),
    (b"Transfer-Encoding: gzip\r\n", b"10", "chunked bodies are not supported"),
], ids=["underscore", "plus", "hex", "two-same", "two-different", "other-encoding"])
def test_content_length_is_strict(server, headers, length, words):
    # Before: int() took '1_0' as 10, and the first of two conflicting headers won.
    status, answer, _ = raw_answer(server, _post(b'{"pixels": 0}', headers, length=length))
    assert status.split()[1] in ("400", "411") and words in answer["error"], (status, answer)


def test_a_request_that_stops_arriving_gets_408(model, test_digits):
    # Before: 500 after 30 s for a body; a client sending a byte every few seconds held its
    # thread for ever.
    with running_server(model, request_timeout=0.6) as srv:
        began = time.monotonic()
        status, answer, _ = raw_answer(srv, _post(b'{"pix', length=b"100"))
        assert status.startswith("HTTP/1.1 408") and "did not arrive within 0.6 s" in answer[
            "error"]
        assert time.monotonic() - began < 15
        with socket.create_connection(srv.server_address[:2], timeout=20) as sock:
            began = time.monotonic()
            stop = threading.Event()

            def drip():  # a header, one byte every 50 ms: no single read ever times out
                try:
                    for byte in b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" * 10:
                        if stop.wait(0.05):
                            return
                        sock.sendall(bytes([byte]))
                except OSError:
                    pass  # cut off, as it should be

            dripper = threading.Thread(target=drip)
            dripper.start()
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
            stop.set()
            dripper.join(timeout=20)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
            assert time.monotonic() - began < 15
        x_test, y_test = test_digits
        assert_still_serving(srv, x_test[0], y_test[0])


@pytest.mark.parametrize("sent", [
    b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nX-Slow: " + b"a" * 40,
    b"GET /api/health?" + b"a" * 60,
    b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
], ids=["get-headers", "request-line", "post-headers"])
def test_a_request_line_or_headers_that_stop_arriving_get_408(model, sent):
    # Before: the fragment that had arrived when the deadline cut the connection was answered
    # as a whole request: 200 for the GET, an HTTP/0.9 body with no status line for the cut
    # request line, 411 for the POST.
    with running_server(model, request_timeout=0.6) as srv, socket.create_connection(
            srv.server_address[:2], timeout=20) as sock:
        stop = threading.Event()

        def drip():  # one byte every 30 ms: no single read times out, the request never ends
            try:
                for byte in sent:
                    if stop.wait(0.03):
                        return
                    sock.sendall(bytes([byte]))
                stop.wait(20)  # then nothing: still not a complete request
            except OSError:
                pass

        dripper = threading.Thread(target=drip)
        dripper.start()
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
        stop.set()
        dripper.join(timeout=20)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:120]
        assert b"did not arrive within 0.6 s" in answer


def test_clients_that_leave_early_leave_no_traceback(server, test_digits, capfd):
    # Before: each vanished client printed a 30-line BrokenPipe traceback.
    import json
    import struct

    x_test, y_test = test_digits
    body = json.dumps({"pixels": x_test[0].ravel().tolist(), "feature_maps": True}).encode()
    for _ in range(5):
        sock = socket.create_connection(server.server_address[:2])
        sock.sendall(_post(body))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # reset: the answer meets a closed socket
    time.sleep(0.5)
    assert_still_serving(server, x_test[0], y_test[0])
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Reset" not in err, err


@pytest.mark.parametrize("host, status", [
    (b"127.0.0.1:8000", 200), (b"localhost:8000", 200), (b"[::1]:8000", 200),
    (b"app.localhost", 200), (b"evil.example:8000", 403), (b"192.168.1.10:8000", 403),
    (b"127.0.0.1.evil.example", 403),
])
def test_bound_to_loopback_only_this_computer_s_names_are_answered(server, host, status):
    # Before: any Host was answered, so a page whose name resolves to 127.0.0.1 (DNS
    # rebinding) could read the API.
    got, answer, _ = raw_answer(server, b"GET /api/health HTTP/1.1\r\nHost: " + host
                                + b"\r\nConnection: close\r\n\r\n")
    assert got.split()[1] == str(status).encode().decode(), (got, answer)
    if status == 403:
        assert "answers only requests for this computer" in answer["error"]


def test_host_helpers():
    assert _host_name("a.b:80") == "a.b" and _host_name("[::1]:80") == "::1"
    assert _host_name("::1") == "::1" and _host_name("x") == "x"
    assert _is_loopback("127.0.0.1") and _is_loopback("127.8.9.10") and _is_loopback("::1")
    assert _is_loopback("localhost") and _is_loopback("LOCALHOST")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.1")
    assert not _is_loopback("localhost.example")


def test_connections_beyond_the_cap_get_503_at_once(model, test_digits):
    x_test, y_test = test_digits
    with running_server(model, max_connections=2) as srv:
        idle = [socket.create_connection(srv.server_address[:2], timeout=10) for _ in range(2)]
        try:
            time.sleep(0.3)  # both accepted, each holding a thread while it waits
            status, answer, head = raw_answer(srv, b"GET /api/health HTTP/1.1\r\n"
                                                   b"Host: 127.0.0.1\r\n\r\n")
            assert status.startswith("HTTP/1.1 503") and b"Retry-After: 1" in head
            assert "too many connections" in answer["error"]
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert_still_serving(srv, x_test[0], y_test[0])


def test_predictions_beyond_the_worker_cap_get_503_with_retry_after(model, test_digits):
    x_test, _ = test_digits
    predictor = DigitPredictor(model)
    original = predictor.predict

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    predictor.predict = slow
    results = []
    with running_server(predictor, max_workers=1, queue_timeout=0.2) as srv:
        def client():
            results.append(request(srv, "POST", "/api/predict",
                                   {"pixels": x_test[0].ravel().tolist()}))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 503], statuses
    _, answer, headers = next(r for r in results if r[0] == 503)
    assert headers["Retry-After"] == "1" and "busy" in answer["error"]


def test_an_image_at_the_pixel_cap_costs_little_memory(model):
    # Before: a 23 KB 2048 x 2048 RGBA PNG cost about 200 MB of float64; now 4096 x 4096 is
    # decoded, turned to gray band by band and shrunk.
    import json

    predictor = DigitPredictor(model)
    rgba = np.zeros((4096, 4096, 4), np.uint8)
    rgba[1000:3000, 1900:2200, 3] = 255  # a black '1' on a transparent canvas
    body = json.dumps({"image": png_data_url(rgba)}).encode()
    answer, peak = traced_peak(lambda: handle_predict(predictor, body))
    assert isinstance(answer, dict) and answer["blank"] is False, answer
    assert peak < 80e6, peak
    blank = json.dumps({"image": "data:image/png;base64," + base64.b64encode(
        png_claiming(4096, 4096, color_type=6)).decode()}).encode()
    answer, peak = traced_peak(lambda: handle_predict(predictor, blank))
    assert answer["blank"] is True and peak < 80e6, peak
    over = json.dumps({"image": "data:image/png;base64," + base64.b64encode(
        png_claiming(4097, 4096)).decode()}).encode()
    with pytest.raises(RequestError) as info:
        handle_predict(predictor, over)
    assert info.value.status == 413 and "4097 x 4096 pixels" in info.value.message
    # Said once: it repeated "the image: the image is ..." and the limit twice.
    assert info.value.message.count("limit") == 1 and "the image: " not in info.value.message


@pytest.mark.parametrize("args, words", [
    (["--port", "70000"], "expected a port number 0..65535"),
    (["--port", "-1"], "expected a port number 0..65535"),
    (["--host", ""], "an empty address would listen on every network interface"),
])
def test_bad_port_or_host_is_one_line(model_path, args, words):
    # Before: --port 70000 ended in an OverflowError traceback; --host '' bound every
    # interface with a garbled warning.
    result = subprocess.run([sys.executable, "-m", "minicnn", "serve", "--model",
                             str(model_path), *args], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr
