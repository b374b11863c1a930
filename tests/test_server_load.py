"""A bounded load test of the digit server on 127.0.0.1: 8 client threads send 50 predictions
each (400 in all, half 28x28 pixel arrays, half 280x280 PNG drawings that go through
preprocess_digit), each thread on its own keep-alive connection. Every answer must be 200 and
exactly the answer computed beforehand for its digit: the shared model must not mix up
concurrent requests. Requests per second and the 50th/99th percentile latency are printed;
nothing is asserted about speed (the machine is shared)."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time

import numpy as np
import pytest
from server_fixtures import (
    digit_as_drawing,
    mnist_arrays,
    png_data_url,
    running_server,
    trained_model_path,
)

from minicnn import preprocess_digit
from minicnn.models import load_model

THREADS = 8
REQUESTS_PER_THREAD = 50
DIGITS = 40  # distinct payloads, cycled through by every thread
TIMEOUT = 30  # seconds per request: the test stops by itself even if the server hangs


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    return trained_model_path(tmp_path_factory)


def make_payloads(model):
    """DIGITS request bodies and, for each, the expected (prediction, probabilities)."""
    _, (x_test, _) = mnist_arrays()
    bodies, expected = [], []
    for i in range(DIGITS):
        digit = x_test[i]
        if i % 2 == 0:
            body = {"pixels": digit.ravel().tolist()}
            seen = digit[None]
        else:
            drawing = digit_as_drawing(digit)
            body = {"image": png_data_url(drawing)}
            seen = preprocess_digit(drawing)[None, :, :, None]
        probabilities = model.predict(seen)[0]
        bodies.append(json.dumps(body).encode("utf-8"))
        expected.append((int(np.argmax(probabilities)), probabilities))
    return bodies, expected


def test_eight_threads_send_400_predictions_without_error(model_path, capsys):
    model = load_model(model_path)
    bodies, expected = make_payloads(model)
    latencies = [[] for _ in range(THREADS)]
    failures = []
    start = threading.Barrier(THREADS + 1)

    def client(index, address):
        connection = http.client.HTTPConnection(*address, timeout=TIMEOUT)
        try:
            start.wait(timeout=TIMEOUT)
            for n in range(REQUESTS_PER_THREAD):
                k = (index * 7 + n) % DIGITS  # threads ask for different digits at once
                began = time.perf_counter()
                connection.request("POST", "/api/predict", body=bodies[k],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                latencies[index].append(time.perf_counter() - began)
                if response.status != 200:
                    failures.append((index, n, response.status, data[:200]))
                    continue
                answer = json.loads(data)
                prediction, probabilities = expected[k]
                if (answer["prediction"] != prediction
                        or not np.allclose(answer["probabilities"], probabilities, atol=2e-6)):
                    failures.append((index, n, "wrong answer for digit", k, answer["prediction"],
                                     prediction))
        except Exception as exc:  # recorded, and the assertion below reports it
            failures.append((index, "exception", repr(exc)))
        finally:
            connection.close()

    with running_server(model_path) as server:
        threads = [threading.Thread(target=client, args=(i, server.server_address[:2]))
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        start.wait(timeout=TIMEOUT)
        began = time.perf_counter()
        for thread in threads:
            thread.join(timeout=THREADS * REQUESTS_PER_THREAD * TIMEOUT)
        elapsed = time.perf_counter() - began
        assert not any(thread.is_alive() for thread in threads), "a client thread hung"

    assert not failures, failures[:5]
    all_latencies = np.array([t for per_thread in latencies for t in per_thread]) * 1000
    assert all_latencies.size == THREADS * REQUESTS_PER_THREAD
    p50, p99 = np.percentile(all_latencies, [50, 99])
    with capsys.disabled():
        print(f"\nload test: {all_latencies.size} predictions from {THREADS} threads in "
              f"{elapsed:.2f} s = {all_latencies.size / elapsed:.0f} requests/s; latency "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {all_latencies.max():.1f} ms")


# ---- issue 12: the same server under images at the pixel cap ---------------------------------
CAP_THREADS = 4
CAP_REQUESTS_PER_THREAD = 6
CAP_DIGITS = 4
RSS_BUDGET = 1 << 30  # bytes: 2 workers at ~150 MB each plus the process itself fit easily


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of a process (bytes), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _rgba_drawing_at_the_cap(digit):
    """A 4096 x 4096 RGBA canvas (black ink, transparent paper): the most expensive picture
    the API accepts, 4 bytes a pixel when decoded."""
    from PIL import Image

    from minicnn.preprocessing import MAX_IMAGE_PIXELS

    side = int(MAX_IMAGE_PIXELS ** 0.5)
    ink = digit_as_drawing(digit, size=side, margin=side // 6)
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[:, :, 3] = 255 - ink
    assert side * side == MAX_IMAGE_PIXELS
    return Image.fromarray(rgba)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for RSS")
def test_load_at_the_pixel_cap_stays_bounded(model_path, tmp_path, capsys):
    import io
    import re
    import subprocess
    import sys
    from base64 import b64encode

    from conftest import REPO_ROOT

    model = load_model(model_path)
    _, (x_test, _) = mnist_arrays()
    bodies, expected = [], []
    for i in range(CAP_DIGITS):
        picture = _rgba_drawing_at_the_cap(x_test[i])
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        path = tmp_path / f"cap{i}.png"
        path.write_bytes(buffer.getvalue())
        seen = preprocess_digit(path)[None, :, :, None]  # the pipeline the server runs
        bodies.append(json.dumps({"image": "data:image/png;base64,"
                                   + b64encode(buffer.getvalue()).decode()}).encode())
        expected.append(int(np.argmax(model.predict(seen)[0])))
    assert max(len(b) for b in bodies) < 2 * 1024 * 1024  # under the body limit

    server = subprocess.Popen(
        [sys.executable, "-m", "minicnn", "serve", "--model", str(model_path), "--port", "0",
         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    failures = []
    try:
        line = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, server.poll())
        address = ("127.0.0.1", int(match.group(1)))
        idle_rss = _vm_hwm(server.pid)
        start = threading.Barrier(CAP_THREADS + 1)

        def client(index):
            connection = http.client.HTTPConnection(*address, timeout=120)
            try:
                start.wait(timeout=120)
                for n in range(CAP_REQUESTS_PER_THREAD):
                    k = (index + n) % CAP_DIGITS
                    connection.request("POST", "/api/predict", body=bodies[k],
                                       headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    data = response.read()
                    if response.status != 200:
                        failures.append((index, n, response.status, data[:200]))
                    elif json.loads(data)["prediction"] != expected[k]:
                        failures.append((index, n, "wrong prediction", k))
            except Exception as exc:  # recorded, and the assertion below reports it
                failures.append((index, "exception", repr(exc)))
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CAP_THREADS)]
        for thread in threads:
            thread.start()
        start.wait(timeout=120)
        began = time.perf_counter()
        for thread in threads:
            thread.join(timeout=CAP_REQUESTS_PER_THREAD * 120)
        elapsed = time.perf_counter() - began
        assert not any(thread.is_alive() for thread in threads), "a client thread hung"
        peak_rss = _vm_hwm(server.pid)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert not failures, failures[:5]
    answers = CAP_THREADS * CAP_REQUESTS_PER_THREAD
    with capsys.disabled():
        print(f"\nload test at the pixel cap (4096 x 4096 RGBA PNG, {len(bodies[0]) // 1024} KB "
              f"bodies): {answers} answers from {CAP_THREADS} threads in {elapsed:.2f} s = "
              f"{answers / elapsed:.1f} answers/s; server peak RSS {peak_rss / 2**20:.0f} MiB "
              f"(idle {idle_rss / 2**20:.0f} MiB)")
    assert peak_rss < RSS_BUDGET, peak_rss
