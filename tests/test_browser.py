"""End to end in a real browser: headless Chromium (Debian's chromium + chromium-driver, no
browser download) opens the draw-a-digit page served on 127.0.0.1, draws digits on the canvas
with real pointer input (W3C actions: mouse, finger and pen, so pointerdown/move/up fire),
and checks the page's prediction, Undo and Clear. Screenshots go to the test's temporary folder.

Chromium and chromedriver come from `.ci/install-browser`; where they are missing the test
fails under CI (which installs them) and is skipped elsewhere with the reason.
"""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from server_fixtures import running_server, trained_model_path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    # Without these Chromium tries to reach Google services and, on a closed network, stalls.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server", "--window-size=1280,1100", "--force-device-scale-factor=1",
]
WAIT = 20  # seconds for the page to show an answer


def _require_browser():
    """(chromium, chromedriver) paths, or fail under CI / skip elsewhere, naming what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver))
               if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = (f"browser test needs {', '.join(missing)}: run `bash .ci/install-browser` "
                   "(Debian's chromium and chromium-driver) and `pip install -e '.[test]'`")
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must install them")
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    return trained_model_path(tmp_path_factory)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(browser, model_path):
    """The page, loaded from a fresh server, with a log of the pointer events it receives."""
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(model_path) as server:
        browser.get(server.url)
        WebDriverWait(browser, WAIT).until(
            lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        browser.execute_script("""
            window.pointerLog = [];
            const pad = document.getElementById('pad');
            for (const type of ['pointerdown', 'pointermove', 'pointerup'])
              pad.addEventListener(type, e => window.pointerLog.push([type, e.pointerType]));
        """)
        yield browser


# ---- helpers ----------------------------------------------------------------------------------
def draw(driver, strokes, kind="mouse"):
    """Draw strokes on the canvas with real pointer input. strokes: lists of (u, v) points in
    [-1, 1] (fractions of the canvas' half-size from its centre, v down)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    half = pad.size["width"] / 2
    kinds = {"mouse": interaction.POINTER_MOUSE, "touch": interaction.POINTER_TOUCH,
             "pen": interaction.POINTER_PEN}
    builder = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind), duration=15)
    pointer = builder.pointer_action
    for stroke in strokes:
        u, v = stroke[0]
        pointer.move_to(pad, round(u * half), round(v * half))
        pointer.pointer_down()
        for u, v in stroke[1:]:
            pointer.move_to(pad, round(u * half), round(v * half))
        pointer.pointer_up()
    builder.perform()


def vertical_line():
    """A '1': one stroke from top to bottom, slightly slanted like most MNIST ones."""
    return [[(0.08 - 0.16 * t / 20, -0.7 + 1.4 * t / 20) for t in range(21)]]


def loop():
    """A '0': one closed oval stroke, taller than wide."""
    return [[(0.45 * math.sin(2 * math.pi * t / 40), -0.65 * math.cos(2 * math.pi * t / 40))
             for t in range(42)]]


def wait_for_answer(driver, digit):
    """Wait until the page shows `digit` as its prediction; fail with what it shows instead."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        element = d.find_element("id", "prediction")
        return (element.get_attribute("data-state") == "answer"
                and element.text == str(digit))
    try:
        WebDriverWait(driver, WAIT).until(shown)
    except TimeoutException:
        state = driver.execute_script("""return [document.getElementById('prediction').textContent,
            document.getElementById('status').textContent,
            [...document.querySelectorAll('.bar')].map(b => b.dataset.probability)]""")
        pytest.fail(f"the page did not show {digit}: prediction, status, bars = {state}")


def page_state(driver):
    return driver.execute_script("""
        const pad = document.getElementById('pad');
        const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
        let ink = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] < 128) ink++;
        const seen = document.getElementById('seen-image').getContext('2d')
          .getImageData(0, 0, 28, 28).data;
        let seenSum = 0;
        for (let i = 0; i < seen.length; i += 4) seenSum += seen[i];
        return {
          ink: ink,
          seenSum: seenSum,
          prediction: document.getElementById('prediction').textContent,
          state: document.getElementById('prediction').dataset.state,
          probabilities: [...document.querySelectorAll('.bar')]
                           .map(b => Number(b.dataset.probability)),
          top: [...document.querySelectorAll('.bar.best')].map(b => b.dataset.digit),
          undoDisabled: document.getElementById('undo').disabled,
          clearDisabled: document.getElementById('clear').disabled,
        };""")


def canvas_pixels(driver):
    return driver.execute_script("""
        const pad = document.getElementById('pad');
        return Array.from(pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data
                          .filter((_, i) => i % 4 === 0));""")


def clear(driver):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("id", "clear").click()
    WebDriverWait(driver, WAIT).until(lambda d: page_state(d)["state"] == "empty")


# ---- the tests ------------------------------------------------------------------------------
def test_drawing_a_one_with_the_mouse_shows_1(page, tmp_path):
    clear_log(page)
    draw(page, vertical_line(), kind="mouse")
    wait_for_answer(page, 1)
    state = page_state(page)
    assert state["ink"] > 1000 and state["seenSum"] > 0
    assert state["top"] == ["1"] and np.argmax(state["probabilities"]) == 1
    assert abs(sum(state["probabilities"]) - 1) < 1e-3
    assert not state["undoDisabled"] and not state["clearDisabled"]
    types = page.execute_script("return window.pointerLog")
    assert {tuple(t) for t in types} >= {("pointerdown", "mouse"), ("pointermove", "mouse"),
                                         ("pointerup", "mouse")}
    page.save_screenshot(str(tmp_path / "one.png"))

    clear(page)
    state = page_state(page)
    assert state["ink"] == 0 and state["seenSum"] == 0  # white canvas, black 28x28 image
    assert state["prediction"] == "–" and state["top"] == []
    assert state["probabilities"] == [0.0] * 10
    assert state["undoDisabled"] and state["clearDisabled"]


def test_drawing_a_zero_with_a_finger_shows_0_and_feature_maps(page, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    clear_log(page)
    draw(page, loop(), kind="touch")
    wait_for_answer(page, 0)
    types = {tuple(t) for t in page.execute_script("return window.pointerLog")}
    assert ("pointerdown", "touch") in types and ("pointermove", "touch") in types

    page.find_element("id", "show-maps").click()
    WebDriverWait(page, WAIT).until(lambda d: d.execute_script(
        "return !document.getElementById('maps').hidden"
        " && document.querySelectorAll('#maps canvas').length === 25"))
    title = page.find_element("id", "maps-title").text
    assert "25 feature maps of 26×26" in title
    screenshot = tmp_path / "zero.png"
    page.save_screenshot(str(screenshot))
    with Image.open(screenshot) as image:
        assert image.size == (1280, page.execute_script("return window.innerHeight"))
        pixels = np.asarray(image.convert("L"))
    assert (pixels < 60).sum() > 1000  # the drawn ink and the dark 28x28 image are visible
    print(f"screenshot: {screenshot}")

    page.find_element("id", "show-maps").click()
    clear(page)
    assert page_state(page)["ink"] == 0
    assert page.execute_script("return document.getElementById('maps').hidden")


def test_undo_removes_only_the_last_stroke(page):
    clear_log(page)
    draw(page, vertical_line(), kind="pen")
    wait_for_answer(page, 1)
    one_stroke = canvas_pixels(page)
    draw(page, [[(-0.5 + t / 10, -0.7) for t in range(11)]], kind="pen")  # a bar on top: '7'?
    assert canvas_pixels(page) != one_stroke
    page.find_element("id", "undo").click()
    assert canvas_pixels(page) == one_stroke  # redrawn exactly as before the second stroke
    wait_for_answer(page, 1)
    page.find_element("id", "undo").click()
    state = page_state(page)
    assert state["ink"] == 0 and state["state"] == "empty" and state["undoDisabled"]


def clear_log(driver):
    driver.execute_script("window.pointerLog = []")
