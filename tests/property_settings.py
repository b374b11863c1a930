"""Hypothesis profiles for the property-based tests (tests/test_property_*.py).

MINICNN_HYPOTHESIS_PROFILE chooses one:
  ci        (the default) a fixed, derandomised run: every property test together takes well
            under a minute on CI's 2 cores, and a failure repeats exactly on a rerun;
  thorough  20 times the examples, random seeds and the example database, for a local run:
            MINICNN_HYPOTHESIS_PROFILE=thorough pytest tests/test_property_*.py
Tests ask for `examples(n)`: n examples under ci, 20 n under thorough.

No test here has a time limit (the machine is shared and timings are noisy): each property
test measures its slowest example and prints it, and asserts a memory budget instead.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, settings

PROFILE_ENV = "MINICNN_HYPOTHESIS_PROFILE"
_SCALE = {"ci": 1, "thorough": 20}

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
settings.register_profile(
    "thorough", derandomize=False, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
PROFILE = os.environ.get(PROFILE_ENV, "ci")
if PROFILE not in _SCALE:
    raise ValueError(f"${PROFILE_ENV} must be one of {sorted(_SCALE)}, got {PROFILE!r}")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """How many examples a test of nominal size n runs under the loaded profile."""
    return n * _SCALE[PROFILE]


class Budget:
    """Runs each example under tracemalloc, asserts its peak allocation stays under a memory
    budget, and records the slowest example (reported, never asserted)."""

    def __init__(self, name: str):
        self.name = name
        self.slowest = 0.0
        self.peak = 0
        self.count = 0

    def run(self, function, max_bytes: float):
        """function() -> (its result or the exception it raised); fails past max_bytes."""
        tracemalloc.start()
        began = time.perf_counter()
        try:
            try:
                result = function()
            except Exception as exc:  # the caller checks its type
                result = exc
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.slowest = max(self.slowest, time.perf_counter() - began)
        self.peak = max(self.peak, peak)
        self.count += 1
        assert peak <= max_bytes, f"{self.name}: {peak:,} bytes allocated, budget {max_bytes:,.0f}"
        return result

    def report(self) -> str:
        return (f"{self.name}: {self.count} examples, slowest {self.slowest * 1000:.0f} ms, "
                f"peak allocation {self.peak / 1e6:.1f} MB")


def report_budgets(request, budgets):
    """Print each Budget's line on the terminal (past pytest's output capture)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        for item in budgets.values():
            reporter.write_line(item.report())


class Budgets(dict):
    """A module's Budgets by name: budget("parse_idx(random bytes)").run(...)."""

    def __call__(self, name: str) -> Budget:
        return self.setdefault(name, Budget(name))


def reporting(budgets: Budgets):
    """A module-scoped autouse fixture printing the module's budgets when it is done:
    `_report = reporting(budget)` at the top of a test module."""

    @pytest.fixture(scope="module", autouse=True)
    def _report(request):
        yield
        report_budgets(request, budgets)

    return _report
