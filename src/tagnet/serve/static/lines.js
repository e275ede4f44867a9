// tagnet web page for text and tabular models: each line of the box is one input (a text, or a row of
// comma-separated feature values in the model's order, ? or empty = missing); all of them go to POST
// /predict in one JSON request and each gets a card with its labels (common.js).
"use strict";

const HELP = {
  text: "One text per line",
  tabular: "One row of feature values per line, comma-separated, in the model's feature order (? = missing)",
};

// A line of a tabular model's box -> numbers; a missing value is null (the model uses the training mean).
function parseRow(line) {
  return line.split(/[,;\t]/).map((cell) => {
    const text = cell.trim();
    return text === "" || text === "?" ? null : Number(text);
  });
}

function newCard(line) {
  const card = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".input").textContent = line;
  return card;
}

async function predictLines(event) {
  event.preventDefault();
  const lines = document.getElementById("lines").value.split("\n").map((l) => l.trim()).filter((l) => l);
  if (!lines.length) return;
  const cards = lines.map(newCard);
  document.getElementById("results").prepend(...cards);
  const body = state.modality === "text" ? { texts: lines } : { rows: lines.map(parseRow) };
  try {
    const answer = await fetchJson("/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    cards.forEach((card, i) => showPrediction(card, answer.predictions[i]));
  } catch (error) {
    cards.forEach((card) => showError(card, error.message));
  }
}

async function setUp() {
  document.getElementById("lines-form").addEventListener("submit", predictLines);
  await loadLabels();
  document.getElementById("lines-help").textContent = HELP[state.modality] || HELP.text;
}

document.addEventListener("DOMContentLoaded", setUp);
