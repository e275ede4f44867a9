"""What each modality declares (served page, request key, defaults, refusals, search space), once per modality."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# (low, high, log scale) of every float setting `tagnet tune` searches; the names are TrainConfig fields.
SEARCH_RANGES: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    "lr": (1e-4, 3e-2, True),
    "weight_decay": (1e-6, 1e-1, True),
    "dropout": (0.0, 0.5, False),
    "focal_gamma": (0.5, 4.0, False),
    "asl_gamma_neg": (1.0, 6.0, False),
    "asl_gamma_pos": (0.0, 1.5, False),
    "asl_clip": (0.0, 0.2, False),
})
# few and small inputs (texts, feature rows): the search also tries strong weight decay, label smoothing and mixup
SMALL_INPUT_RANGES: Mapping[str, tuple[float, float, bool]] = MappingProxyType({
    **SEARCH_RANGES, "weight_decay": (1e-5, 1.0, True), "label_smoothing": (0.0, 0.2, False), "mixup": (0.0, 0.5, False)})


@dataclass(frozen=True)
class SearchSpace:
    """What `tagnet tune` draws for one modality: (low, high, log scale) of float settings, and the head widths
    (head_hidden) it tries."""

    ranges: Mapping[str, tuple[float, float, bool]]
    head_widths: tuple[int, ...]


@dataclass(frozen=True)
class ModalitySpec:
    """Everything one modality declares, as data; what it does is its Modality class and roles (see `implementation`).

    Attributes:
        name: "image", "text" or "tabular": the artifact's and run's `modality`.
        implementation: "module:Class" of its Modality, loaded when first asked for (torch with it).
        request_key: the key of the inputs in a JSON request body, and the name of its Open Inference Protocol input.
        page: the web page the server shows at / (a file of tagnet/serve/static).
        explainable: Grad-CAM heatmaps (`tagnet explain`, POST /explain).
        thumbnails: reports and audit pages show its inputs as pictures.
        defaults: the settings filled in when not given (None in TrainConfig means "the modality's default").
        backbones: the only backbones that take its inputs; () (images): any other registered or timm model.
        refuses: settings it has no use for: giving one is an error, not silently ignored.
        scratch_backbones: backbones that always train whole, never as a frozen encoder under a head.
        frozen_needs_pretrained: heads train on a frozen encoder only when it is pretrained (else the whole network).
        default_time_budget: the time budget of the default recipe when none is given (None: no limit); with one, an
            unset finetune lets the budget choose the recipe (tagnet.training.recipes.choose_by_budget).
        head_first_up_to: choose_by_budget: up to this many training inputs a head on the frozen encoder comes first
            (the frozen pass is cheap), then fine-tuning kept only if it validates better; more fine-tune from the start.
        budget_steps: fused backbones, strongest first, that a fused backbone made of more of the same members gives
            way to when its features do not fit the time budget, before its fastest member alone.
        search: what `tagnet tune` searches.
    """

    name: str
    implementation: str
    request_key: str
    search: SearchSpace
    page: str = "lines.html"
    explainable: bool = False
    thumbnails: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    backbones: tuple[str, ...] = ()
    refuses: tuple[str, ...] = ()
    scratch_backbones: tuple[str, ...] = ()
    frozen_needs_pretrained: bool = False
    default_time_budget: str | None = None
    head_first_up_to: int = 0
    budget_steps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


IMAGE = ModalitySpec(
    name="image", implementation="tagnet.modalities.image:ImageModality", request_key="images", page="index.html",
    explainable=True, thumbnails=True,
    # Lite0, Lite1 and Lite2 side by side: nested 5-fold CV on miml-scene, 4 seeds, micro-F1 0.8845 vs 0.8812 for
    # Lite0 + Lite2 (higher in every seed) and 5-fold CV mAP 0.956 for the pair vs 0.948 for Lite0 (benchmarks/RESULTS.md)
    defaults={"backbone": "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2", "head_hidden": 0,
              "finetune_lr": 3e-4, "augment": "basic", "objective": "f1", "loss": "bce"},
    refuses=("select", "select_metric"),
    scratch_backbones=("seed_cnn",),  # the small CNN of the tests and demos learns everything from the images
    frozen_needs_pretrained=True,
    # the best pair of the three by nested CV on miml-scene (2 seeds): micro-F1 / mAP 0.8807 / 0.956 for Lite0 + Lite2,
    # 0.8788 / 0.956 for Lite1 + Lite2, 0.8785 / 0.952 for Lite0 + Lite1 (benchmarks/RESULTS.md)
    budget_steps=("efficientnet_lite0+efficientnet_lite2",),
    search=SearchSpace(SEARCH_RANGES, (0, 256, 512)),
)

TEXT = ModalitySpec(
    name="text", implementation="tagnet.modalities.text:TextModality", request_key="texts",
    # a linear head on unit-length sentence embeddings underfits (GoEmotions macro-F1 0.22 vs 0.41); a transformer
    # forgets its pretraining at the image fine-tuning rate. An unset finetune is off for images and tables; for text
    # the recipe is chosen by the data's size and the time budget (tagnet.training.recipes.choose_by_budget)
    defaults={"backbone": "minilm_l6", "head_hidden": 1024, "finetune_lr": 5e-5, "objective": "f1", "loss": "auto",
              # GoEmotions, 5,000 texts: thresholds on 30/50/70/90% of 2,713 held-out rows scored macro-F1 0.291 /
              # 0.301 / 0.320 / 0.322 on 2,713 others (benchmarks/RESULTS.md); early stopping needs few rows
              "threshold_share": 0.7},
    backbones=("minilm_l6",),
    refuses=("image_size", "augment", "weights", "select", "select_metric", "refit"),
    default_time_budget="15m",  # the default recipe sizes fine-tuning to a laptop's coffee break
    head_first_up_to=2_000,
    search=SearchSpace(SMALL_INPUT_RANGES, (256, 512, 1024)),
)

TABULAR = ModalitySpec(
    name="tabular", implementation="tagnet.modalities.tabular:TabularModality", request_key="rows",
    # tables are judged on Hamming loss (the MULAN literature's first metric): p >= 0.5 and the head chosen for it
    defaults={"backbone": "mlp", "head_hidden": 256, "select": "auto", "objective": "hamming",
              "loss": "bce"},
    backbones=("mlp",),
    refuses=("image_size", "augment", "weights", "finetune", "finetune_lr"),
    search=SearchSpace(SMALL_INPUT_RANGES, (128, 256, 512, 1024)),
)
