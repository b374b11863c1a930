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
    answer = _raw_exchange(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
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
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", 411, b"Content-Length header"),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400,
     b"bad Content-Length"),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400,
     b"bad Content-Length"),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     411, b"chunked"),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"pixels\"", 400,
     b"ended after 9 of 50 bytes"),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"Bad request syntax"),
    (b"BREW /coffee HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"Unsupported method"),
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
