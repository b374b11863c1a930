"""A bounded load test of the digit server on 127.0.0.1: 8 client threads send 50 predictions
each (400 in all, half 28x28 pixel arrays, half 280x280 PNG drawings that go through
preprocess_digit), each thread on its own keep-alive connection. Every answer must be 200 and
exactly the answer computed beforehand for its digit: the shared model must not mix up
concurrent requests. Requests per second and the 50th/99th percentile latency are printed;
nothing is asserted about speed (the machine is shared)."""

from __future__ import annotations

import http.client
import json
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
