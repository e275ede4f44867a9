"""HTTP API for text and tabular models: POST /predict with JSON texts or feature rows, and a web page."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import Body, FastAPI, HTTPException
from fastapi_offline import FastAPIOffline

import tagnet
from tagnet.errors import DataError
from tagnet.predict_vectors import VectorPredictor
from tagnet.serve.app import MAX_UPLOAD_BYTES, add_common_routes
from tagnet.serve.stats import ServerStats

MAX_ITEMS = 256


def create_vector_app(predictor: VectorPredictor, *, max_items: int = MAX_ITEMS,
                      max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The FastAPI app serving a text or tabular model.

    POST /predict takes `{"texts": ["...", ...]}` (text model) or `{"rows": [[x0, x1, ...], ...]}` in the
    model's feature order, null for a missing value (tabular model), and answers every label's probability
    and the predicted set; GET /labels, /health and /metrics as for images; at / a page where each line
    of a text box is one input. Bad bodies get 400 with a JSON message, bodies over `max_upload_bytes` 413.
    """
    key = "texts" if predictor.modality == "text" else "rows"
    model_name = predictor.artifact.meta["model"]["name"]
    app = FastAPIOffline(title="tagnet", version=tagnet.__version__,
                  description=f"Multi-label {predictor.modality} classifier ({model_name}, "
                              f"labels: {', '.join(predictor.label_names)}).")
    add_common_routes(app, predictor, stats=ServerStats(), max_upload_bytes=max_upload_bytes, page="lines.html",
                      labels_extra={"modality": predictor.modality})

    @app.post("/predict")
    async def predict(body: Any = Body(..., examples=[{key: ["thanks, you made my day"] if key == "texts" else [[0.1, 2.0]]}])) -> dict:
        """Labels of one or more texts or feature rows: every label's probability and the predicted set."""
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise HTTPException(400, f'a {predictor.modality} model needs a JSON body {{"{key}": [...]}} with at least one item')
        if len(items) > max_items:
            raise HTTPException(400, f"{len(items)} items in one request; at most {max_items}")
        try:
            if key == "texts":
                if not all(isinstance(t, str) for t in items):
                    raise DataError('every entry of "texts" must be a string')
                results = await asyncio.to_thread(predictor.predict_texts, items)
            else:
                results = await asyncio.to_thread(predictor.predict_rows, np.asarray(items, dtype=np.float64))
        except (DataError, ValueError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from None
        return {"predictions": results.to_dicts()}

    return app
