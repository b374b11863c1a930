// Draw-a-digit page: pointer drawing with undo, debounced predictions from /api/predict,
// probability bars, the 28x28 image the model saw and (optionally) first-layer feature maps.
"use strict";

(function () {
  const DEBOUNCE_MS = 120;      // wait this long after the last change before asking the server
  const INK_WIDTH = 24;         // stroke width on the 280 px canvas: MNIST-like thickness
  const INK = "#111";
  const PAPER = "#fff";

  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const undoButton = document.getElementById("undo");
  const clearButton = document.getElementById("clear");
  const predictionEl = document.getElementById("prediction");
  const confidenceEl = document.getElementById("confidence");
  const barsEl = document.getElementById("bars");
  const statusEl = document.getElementById("status");
  const seen = document.getElementById("seen-image");
  const seenCtx = seen.getContext("2d");
  const mapsToggle = document.getElementById("show-maps");
  const mapsEl = document.getElementById("maps");
  const mapsTitle = document.getElementById("maps-title");

  let strokes = [];             // each stroke: array of [x, y] in canvas pixels
  let current = null;           // the stroke being drawn
  let activePointer = null;     // only one pointer draws at a time
  let timer = null;
  let inFlight = false;
  let pending = false;
  let classes = 10;

  // ---- bars -----------------------------------------------------------------------------
  const bars = [];
  function buildBars(count) {
    barsEl.textContent = "";
    barsEl.style.gridTemplateColumns = "repeat(" + count + ", 1fr)";
    bars.length = 0;
    for (let k = 0; k < count; k++) {
      const column = document.createElement("div");
      column.className = "bar";
      column.dataset.digit = String(k);
      const value = document.createElement("span");
      value.className = "value";
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      track.appendChild(fill);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = String(k);
      column.append(value, track, label);
      barsEl.appendChild(column);
      bars.push({ column, value, fill });
    }
  }

  function showProbabilities(probabilities, top) {
    probabilities.forEach((p, k) => {
      const bar = bars[k];
      bar.fill.style.height = (100 * p).toFixed(1) + "%";
      bar.value.textContent = p >= 0.005 ? Math.round(100 * p) + "%" : "";
      bar.column.classList.toggle("best", k === top);
      bar.column.dataset.probability = p.toFixed(4);
    });
  }

  // ---- the drawing --------------------------------------------------------------------------
  function resetPad() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
  }

  // A stroke is drawn as a dot plus one short segment per pointer move, both while drawing
  // and when Undo redraws it, so a redrawn picture is pixel for pixel what was on screen.
  function drawDot(point) {
    ctx.fillStyle = INK;
    ctx.beginPath();
    ctx.arc(point[0], point[1], INK_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function drawSegment(from, to) {
    ctx.strokeStyle = INK;
    ctx.lineWidth = INK_WIDTH;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  }

  function redraw() {
    resetPad();
    for (const points of strokes) {
      drawDot(points[0]);
      for (let i = 1; i < points.length; i++) drawSegment(points[i - 1], points[i]);
    }
  }

  function toCanvas(event) {
    // The canvas is scaled by CSS: map from screen pixels to its own 280 x 280 pixels.
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width),
            (event.clientY - box.top) * (pad.height / box.height)];
  }

  function updateButtons() {
    undoButton.disabled = strokes.length === 0;
    clearButton.disabled = strokes.length === 0;
  }

  pad.addEventListener("pointerdown", (event) => {
    if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    activePointer = event.pointerId;
    pad.setPointerCapture(event.pointerId);
    current = [toCanvas(event)];
    strokes.push(current);
    drawDot(current[0]);
    updateButtons();
    schedule();
  });

  pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer || current === null) return;
    event.preventDefault();
    // Coalesced events hold the points the browser merged into this one: smoother curves.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of (events.length ? events : [event])) {
      const point = toCanvas(e);
      const last = current[current.length - 1];
      current.push(point);
      drawSegment(last, point);
    }
    schedule();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    current = null;
    schedule(0);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  undoButton.addEventListener("click", undo);
  clearButton.addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    }
  });

  function undo() {
    if (current !== null || strokes.length === 0) return;
    strokes.pop();
    redraw();
    updateButtons();
    if (strokes.length === 0) showEmpty(); else schedule(0);
  }

  function clear() {
    if (current !== null) return;
    strokes = [];
    redraw();
    updateButtons();
    showEmpty();
  }

  // ---- asking the server --------------------------------------------------------------------
  function schedule(delay = DEBOUNCE_MS) {
    clearTimeout(timer);
    timer = setTimeout(send, delay);
  }

  async function send() {
    if (strokes.length === 0) { showEmpty(); return; }
    if (inFlight) { pending = true; return; }   // at most one request at a time; then the latest
    inFlight = true;
    const body = { image: pad.toDataURL("image/png"), feature_maps: mapsToggle.checked };
    try {
      const response = await fetch("api/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({ error: response.statusText }));
      if (strokes.length === 0) return;          // cleared while we waited
      if (!response.ok) {
        setStatus("The server could not read the drawing: " + (answer.error || response.status),
                  true);
      } else if (answer.blank) {
        showEmpty(answer.message);
      } else {
        showAnswer(answer);
      }
    } catch (error) {
      setStatus("No answer from the server (" + error.message + "). Is it still running?", true);
    } finally {
      inFlight = false;
      if (pending) { pending = false; send(); }
    }
  }

  function setStatus(text, isError = false) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", isError);
  }

  function showAnswer(answer) {
    const top = answer.prediction;
    const p = answer.probabilities[top];
    predictionEl.textContent = String(top);
    predictionEl.dataset.state = "answer";
    confidenceEl.textContent = Math.round(100 * p) + "% sure";
    showProbabilities(answer.probabilities, top);
    showSeen(answer.image);
    if (answer.feature_maps) showMaps(answer.feature_maps); else hideMaps();
    const others = answer.probabilities
      .map((q, k) => [q, k]).filter(([q, k]) => k !== top && q >= 0.1)
      .map(([q, k]) => k + " (" + Math.round(100 * q) + "%)");
    setStatus(others.length ? "It also thinks of " + others.join(", ") + "."
                            : "Keep drawing, or Clear to try another digit.");
  }

  function showEmpty(message) {
    predictionEl.textContent = "–";
    predictionEl.dataset.state = "empty";
    confidenceEl.textContent = "";
    showProbabilities(new Array(classes).fill(0), -1);
    seenCtx.fillStyle = "#000";
    seenCtx.fillRect(0, 0, seen.width, seen.height);
    hideMaps();
    setStatus(message || "Draw a digit to start.");
  }

  // ---- images ---------------------------------------------------------------------------
  function showSeen(pixels) {
    const image = seenCtx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = Math.round(255 * pixels[i]);
      image.data.set([v, v, v, 255], 4 * i);
    }
    seenCtx.putImageData(image, 0, 0);
  }

  // Matplotlib's viridis at 5 stops: dark violet = weak response, yellow = strong.
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    const x = t * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const f = x - i;
    return VIRIDIS[i].map((c, j) => Math.round(c + f * (VIRIDIS[i + 1][j] - c)));
  }

  function showMaps(maps) {
    const [h, w, count] = maps.shape;
    mapsTitle.textContent = "Layer " + maps.layer + ": " + count + " feature maps of " + h +
      "\u00d7" + w + ", one per filter. Bright = the filter's pattern is strongly there " +
      "(each map on its own scale).";
    mapsTitle.hidden = false;
    mapsEl.hidden = false;
    while (mapsEl.children.length > count) mapsEl.lastChild.remove();
    for (let k = 0; k < count; k++) {
      let cell = mapsEl.children[k];
      if (!cell) {
        cell = document.createElement("figure");
        const canvas = document.createElement("canvas");
        const caption = document.createElement("figcaption");
        cell.append(canvas, caption);
        mapsEl.appendChild(cell);
      }
      const canvas = cell.firstChild;
      canvas.width = w;
      canvas.height = h;
      cell.lastChild.textContent = "filter " + k;
      const c = canvas.getContext("2d");
      const image = c.createImageData(w, h);
      const values = maps.maps[k];
      for (let i = 0; i < values.length; i++) {
        image.data.set([...viridis(values[i] / 255), 255], 4 * i);
      }
      c.putImageData(image, 0, 0);
    }
  }

  function hideMaps() {
    mapsEl.hidden = true;
    mapsTitle.hidden = true;
  }

  mapsToggle.addEventListener("change", () => {
    if (mapsToggle.checked && strokes.length) schedule(0); else hideMaps();
  });

  // ---- start --------------------------------------------------------------------------------
  async function start() {
    try {
      const health = await (await fetch("api/health")).json();
      classes = health.classes || 10;
      document.getElementById("footer").textContent =
        "minicnn · model " + health.model + " · input " + health.input_shape.join("\u00d7") +
        " · everything runs on this computer";
    } catch (error) {
      setStatus("The server does not answer (" + error.message + ").", true);
    }
    buildBars(classes);
    resetPad();
    updateButtons();
    showEmpty();
    document.body.dataset.ready = "true";
  }
  start();
})();
