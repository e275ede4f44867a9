"""The model card of an artifact (MODEL_CARD.md beside tagnet.json): the model, its labels, its scores and its privacy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagnet.files import atomic_write

CARD_FILE = "MODEL_CARD.md"
SHOWN_LABELS = 20
METRICS = ("mAP", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "exact_match")


def privacy_section(privacy: dict[str, Any] | None) -> list[str]:
    """The card's privacy lines: what DP-SGD spent and which steps the budget covers, or that it was not used."""
    if not privacy:
        return ["Trained without differential privacy: the weights may reflect individual training items."]
    lines = [f"Head trained with differentially private SGD (Opacus): **ε = {privacy['epsilon']:.3g}** "
             f"(asked {privacy['target_epsilon']:g}), **δ = {privacy['delta']:.3g}**, "
             f"{privacy['accountant'].upper()} accountant.", "",
             f"- noise multiplier {privacy['noise_multiplier']:.4g}, per-row clipping norm {privacy['max_grad_norm']:g}",
             f"- {privacy['steps']} steps at Poisson sample rate {privacy['sample_rate']:.4g} ({privacy['epochs']} epochs "
             f"over {privacy['training_rows']} training rows)",
             "- noise from " + ("a cryptographically secure generator" if privacy.get("secure_rng") else
                                "PyTorch's pseudo-random generator (Opacus secure_mode off)"), ""]
    for key, title in (("covered", "Covered by ε"), ("no_private_data", "Reads no private data"),
                       ("not_covered", "NOT covered by ε (reads private data outside the budget)")):
        if privacy.get(key):
            lines += [f"{title}:", *[f"- {line}" for line in privacy[key]], ""]
    return lines


def model_card(meta: dict[str, Any]) -> str:
    """The model card of an artifact's tagnet.json contents, as Markdown."""
    config, extra, names = meta.get("config", {}), meta.get("extra", {}), meta["label_names"]
    shown = ", ".join(names[:SHOWN_LABELS]) + (f" ... ({len(names)} in all)" if len(names) > SHOWN_LABELS else "")
    metrics = meta.get("metrics", {})
    lines = [f"# Model card: tagnet {meta['modality']} model, {len(names)} labels", "",
             f"Created {meta.get('created', '?')} by tagnet {meta.get('tagnet_version', '?')}.", "",
             "## Model", "",
             f"- backbone {config.get('backbone')}, head hidden width {config.get('head_hidden')}, "
             f"recipe {extra.get('recipe', {}).get('name', '?')}, fine-tuned: {extra.get('finetuned', False)}",
             f"- multi-label: a sigmoid per label; thresholds {meta.get('thresholds', {}).get('mode', '?')} "
             f"(objective {config.get('objective')})", "",
             "## Labels", "", shown, "",
             "## Validation metrics at training time", "",
             *[f"- {name}: {metrics[name]:.4f}" for name in METRICS if isinstance(metrics.get(name), (int, float))], "",
             "## Privacy", "", *privacy_section(extra.get("privacy"))]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(artifact_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write `artifact_dir`/MODEL_CARD.md (atomically) from the artifact's metadata; return its path."""
    path = Path(artifact_dir) / CARD_FILE
    text = model_card(meta)
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))
    return path
