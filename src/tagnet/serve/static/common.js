// tagnet web pages, shared part: the model's labels and thresholds (GET /labels), JSON requests, and a
// result card's label rows: probability bars, each marked at the label's decision threshold.
"use strict";

const state = { labels: [], thresholds: [], modality: "image", paths: {} };

async function loadLabels() {
  const info = document.getElementById("model-info");
  try {
    const [labels, health] = await Promise.all([fetchJson("/labels"), fetchJson("/health")]);
    state.labels = labels.labels;
    state.thresholds = labels.thresholds;
    state.modality = labels.modality || "image";
    // under a label hierarchy each label is shown as its path from the root (vehicle/car/taxi)
    state.paths = Object.fromEntries(labels.labels.map((name, j) => [name, (labels.paths || [])[j] || name]));
    info.textContent = `${health.model} on ${health.runtime} · ${labels.labels.length} labels: ` +
      `${labels.labels.map(shown).join(", ")} · thresholds: ${labels.threshold_mode}`;
  } catch (error) {
    info.textContent = `cannot reach the model: ${error.message}`;
  }
}

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function shown(name) {
  return state.paths[name] || name;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

// One label's row: name, probability bar with the threshold tick, value, and an empty slot for a button.
function labelRow(name, probability, threshold, predicted) {
  const row = document.createElement("li");
  row.className = predicted ? "label-row on" : "label-row off";
  row.dataset.label = name;
  row.dataset.probability = probability.toFixed(6);
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = shown(name);
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.title = `probability ${percent(probability)}, threshold ${percent(threshold)}`;
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = percent(probability);
  const tick = document.createElement("span");
  tick.className = "tick";
  tick.style.left = percent(Math.min(threshold, 1));  // 2 = never predicted by its threshold
  bar.append(fill, tick);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = percent(probability);
  const slot = document.createElement("span");
  slot.className = "explain-slot";
  row.append(label, bar, value, slot);
  return row;
}

function showPrediction(card, prediction) {
  const predicted = new Set(prediction.labels);
  card.querySelector(".predicted").textContent =
    prediction.labels.length ? prediction.labels.map(shown).join(", ") : "no label above its threshold";
  card.querySelector(".predicted").classList.toggle("none", !prediction.labels.length);
  const rows = card.querySelector(".label-rows");
  rows.replaceChildren(...state.labels
    .map((name, j) => ({ name, p: prediction.probabilities[name], t: state.thresholds[j] }))
    .sort((a, b) => b.p - a.p)
    .map(({ name, p, t }) => labelRow(name, p, t, predicted.has(name))));
  card.classList.add("done");
}

function showError(card, message) {
  const line = card.querySelector(".predicted");
  line.textContent = message;
  line.classList.add("error");
  card.classList.add("failed");
}

