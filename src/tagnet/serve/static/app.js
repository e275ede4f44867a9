// tagnet web page for image models: sends each chosen or dropped image to POST /predict and shows its
// labels (common.js); a toggle on each predicted label lays that label's heatmap (from POST /explain)
// over the image.
"use strict";

// A "heatmap" button in the slot of every predicted label's row.
function addHeatmapToggles(card) {
  card.querySelectorAll(".label-row.on").forEach((row) => {
    const name = row.dataset.label;
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "explain-toggle";
    toggle.textContent = "heatmap";
    toggle.title = `show where the model sees ${name}`;
    toggle.setAttribute("aria-pressed", "false");
    toggle.addEventListener("click", () => toggleHeatmap(card, name, toggle));
    row.querySelector(".explain-slot").append(toggle);
  });
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
    addHeatmapToggles(card);
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
