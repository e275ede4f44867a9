"""Label Studio CSV export: the task's data columns, id, one column per control, and the annotation columns."""

from __future__ import annotations

from tagnet.data.columns import ID_COLUMNS, pick_column
from tagnet.data.formats import table as tables
from tagnet.data.formats.labelstudio import (LABEL_STUDIO_CSV_COLUMNS, is_label_studio_csv, is_result_cell,
                                             label_studio_cell, label_studio_item)
from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "labelstudio-csv"
INFO = FormatInfo(NAME, "Label Studio CSV export (annotation_id and annotator columns; results as {\"choices\": [...]} or plain)",
                  layout="file", texts=True, own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """A CSV whose header has Label Studio's annotation_id and annotator columns."""
    if tables.is_table(src) and not src.no_header and is_label_studio_csv(src.csv()[0]):
        return Fit(NAME, 0.95, "a CSV with Label Studio's annotation_id and annotator columns")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each row: the task's image (or text, or id) and the labels of its control columns."""
    header, rows = src.csv()
    text_at = pick_column(header, [(src.text_column or "text").lower()])
    if src.id_column is not None:
        id_at = src.named_column(header, src.id_column, "item id")
    else:
        id_at = next((at for at in (pick_column(header, [c for c in ID_COLUMNS if c != "id"]), text_at,
                                    pick_column(header, ["id"])) if at is not None), None)
        if id_at is None:
            raise DataError(f"{src.path}: no item id column; available columns: {', '.join(header)}")
    locations = [f"{src.path.name} line {line}" for line, _ in rows]
    label_at = _label_columns(src, header, rows, (id_at, text_at))
    sets = [sorted({label for j in label_at for label in label_studio_cell(fields[j], where)})
            for (_, fields), where in zip(rows, locations)]
    items = [src.item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
    if header[id_at].lower() == "image":
        items = [label_studio_item(item) for item in items]
    texts = [fields[text_at] for _, fields in rows] if text_at is not None else None
    meta = {"labels_column": ", ".join(header[j] for j in label_at), "delimiter": src.delim,
            **({"text_items": True} if id_at == text_at else {})}
    return src.table(Records(items, sets, locations, texts=texts, meta=meta), NAME)


def _label_columns(src: Source, header: list[str], rows: list, taken: tuple) -> list[int]:
    """The control columns: those holding Label Studio results ({"choices": ...}); else the one column of plain
    values that repeat (single choices). Data fields (the task's own columns) are never read as labels."""
    if src.labels_column is not None:
        return [src.named_column(header, src.labels_column, "labels")]
    skip = {h.lower() for h in LABEL_STUDIO_CSV_COLUMNS}
    candidates = [j for j, h in enumerate(header) if h.lower() not in skip and j not in taken]
    results = [j for j in candidates if any(is_result_cell(fields[j]) for _, fields in rows)]
    if results:
        return results
    plain = [j for j in candidates if _choice_like([fields[j].strip() for _, fields in rows])]
    if len(plain) == 1:
        src.notes.append(f"column {header[plain[0]]!r} holds plain single choices (no {{\"choices\": ...}} result "
                         "in any column): read as the labels")
        return plain
    found = ", ".join(header[j] for j in candidates) or "none"
    raise DataError(f"{src.path}: no annotation column in this Label Studio CSV (no cell holds a result like "
                    f"{{\"choices\": [...]}}); the other columns ({found}) look like the task's data; "
                    "give --labels-column if one of them holds the labels")


def _choice_like(cells: list[str]) -> bool:
    """Short plain values that repeat across rows, as a single-choice control writes (not URLs, numbers, texts)."""
    filled = [c for c in cells if c]
    return (len(filled) >= 2 and len(set(filled)) < len(filled)
            and all(len(c.split()) <= 3 and "/" not in c and not c.replace(".", "", 1).isdigit() for c in filled))
