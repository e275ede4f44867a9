// tagnet web page: sends each chosen or dropped image to POST /predict and shows its labels with
// probability bars, each bar marked at the label's decision threshold (from GET /labels); a toggle on
// each predicted label lays that label's heatmap (from POST /explain) over the image.
"use strict";

const state = { labels: [], thresholds: [] };

async function loadLabels() {
  const info = document.getElementById("model-info");
  try {
    const [labels, health] = await Promise.all([fetchJson("/labels"), fetchJson("/health")]);
    state.labels = labels.labels;
    state.thresholds = labels.thresholds;
    info.textContent = `${health.model} on ${health.runtime} · ${labels.labels.length} labels: ` +
      `${labels.labels.join(", ")} · thresholds: ${labels.threshold_mode}`;
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

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

// One label's row: name, probability bar with the threshold tick, value.
function labelRow(name, probability, threshold, predicted) {
  const row = document.createElement("li");
  row.className = predicted ? "label-row on" : "label-row off";
  row.dataset.label = name;
  row.dataset.probability = probability.toFixed(6);
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.title = `probability ${percent(probability)}, threshold ${percent(threshold)}`;
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = percent(probability);
  const tick = document.createElement("span");
  tick.className = "tick";
  tick.style.left = percent(threshold);
  bar.append(fill, tick);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = percent(probability);
  const explainSlot = document.createElement("span");
  explainSlot.className = "explain-slot";
  if (predicted) {
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "explain-toggle";
    toggle.textContent = "heatmap";
    toggle.title = `show where the model sees ${name}`;
    toggle.setAttribute("aria-pressed", "false");
    toggle.addEventListener("click", () => toggleHeatmap(toggle.closest(".card"), name, toggle));
    explainSlot.append(toggle);
  }
  row.append(label, bar, value, explainSlot);
  return row;
}

// Shows one label's heatmap over the card's image (fetched once per label), or hides it when pressed again.
async function toggleHeatmap(card, name, toggle) {
  const overlay = card.querySelector("img.heatmap");
  const wasOn = toggle.getAttribute("aria-pressed") === "true";
  card.querySelectorAll(".explain-toggle").forEach((other) => other.setAttribute("aria-pressed", "false"));
  overlay.hidden = true;
  if (wasOn) return;
  toggle.setAttribute("aria-pressed", "true");
  card.heatmaps = card.heatmaps || {};
  if (!(name in card.heatmaps)) {
    const form = new FormData();
    form.append("files", card.file, card.file.name);
    toggle.disabled = true;
    try {
      const body = await fetchJson(`/explain?labels=${encodeURIComponent(name)}`, { method: "POST", body: form });
      card.heatmaps[name] = body.explanations[0].heatmaps[name];
    } catch (error) {
      toggle.setAttribute("aria-pressed", "false");
      toggle.classList.add("failed");
      toggle.title = `no heatmap: ${error.message}`;
      return;
    } finally {
      toggle.disabled = false;
    }
  }
  if (toggle.getAttribute("aria-pressed") === "true") {  // still wanted once the heatmap arrived
    overlay.src = card.heatmaps[name];
    overlay.alt = `heatmap of ${name}`;
    overlay.hidden = false;
  }
}

function showPrediction(card, prediction) {
  const predicted = new Set(prediction.labels);
  card.querySelector(".predicted").textContent =
    prediction.labels.length ? prediction.labels.join(", ") : "no label above its threshold";
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

function newCard(file) {
  const card = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
  card.file = file;
  const image = card.querySelector("img");
  image.addEventListener("error", () => image.classList.add("broken"));
  image.src = URL.createObjectURL(file);
  image.alt = file.name;
  const overlay = document.createElement("img");
  overlay.className = "heatmap";
  overlay.hidden = true;
  image.after(overlay);
  card.querySelector("figcaption").textContent = file.name;
  return card;
}

async function predictInto(card) {
  const form = new FormData();
  form.append("files", card.file, card.file.name);
  try {
    const body = await fetchJson("/predict", { method: "POST", body: form });
    showPrediction(card, body.predictions[0]);
  } catch (error) {
    showError(card, error.message);
  }
}

function handleFiles(files) {
  // Newest files on top, in the order chosen; one request per image so that each card shows its own
  // result or error (the server batches requests that arrive together).
  const cards = files.map(newCard);
  document.getElementById("results").prepend(...cards);
  cards.forEach(predictInto);
}

function setUp() {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    handleFiles([...input.files]);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    handleFiles([...event.dataTransfer.files]);
  });
  loadLabels();
}

document.addEventListener("DOMContentLoaded", setUp);
