"""Replays answers recorded elsewhere, so that predictions from another toolkit are re-scored here.

``replay:PATH`` reads a predictions file once and answers each item with the raw text recorded
for its index. Accepted files: JSONL (``{"index": ..., "prediction": ...}`` per line, or a
records.jsonl of this client), TSV/CSV with ``index`` and ``prediction`` columns, and the XLSX
files VLMEvalKit writes (needs ``pip install 'gmai-client[xlsx]'``). An item with no recorded
prediction is an error record ("no prediction"), never a guess.

An index given twice is an error naming the file and the rows: which of two answers is the model's
cannot be told. A records.jsonl of this client keeps its own rule (a later record of an item
replaces an earlier one: an error answered by ``--retry-errors``), and must hold one model's records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

from gmai_client.backend import Backend
from gmai_client.config import ModelSpec
from gmai_client.errors import BadRequest, ConfigError, MissingExtra
from gmai_client.types import Request, Response


def _index_text(value: object) -> str:
    # Spreadsheets turn 17 into 17.0; indexes are compared as text.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_predictions(path: Path) -> dict[str, str]:
    """index -> raw prediction text, from any accepted file type."""
    if not path.is_file():
        raise ConfigError(f"replay: predictions file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return _load_jsonl(path)
        if suffix in (".tsv", ".csv", ".txt"):
            return _load_delimited(path, "\t" if suffix != ".csv" else ",")
        if suffix == ".xlsx":
            return _load_xlsx(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"replay: {path}: not UTF-8 text ({exc.reason} at byte {exc.start}): a binary file?"
        ) from None
    except OSError as exc:
        raise ConfigError(f"replay: {path}: cannot read ({exc.strerror or exc})") from None
    raise ConfigError(f"replay: {path}: unsupported file type {suffix!r} (use .jsonl, .tsv, .csv or .xlsx)")


class _Predictions:
    """index -> prediction as a file is read, refusing an index given twice (``where`` names a
    row or line for the message)."""

    def __init__(self, path: Path, where: str):
        self.path, self.where = path, where
        self.values: dict[str, str] = {}
        self._seen: dict[str, int] = {}
        self._twice: list[tuple[str, int, int]] = []

    def add(self, index: str, prediction: str, number: int) -> None:
        if index in self._seen:
            self._twice.append((index, self._seen[index], number))
        self._seen.setdefault(index, number)
        self.values[index] = prediction

    def checked(self) -> dict[str, str]:
        if self._twice:
            shown = "; ".join(f"index {i} on {self.where}s {a} and {b}" for i, a, b in self._twice[:3])
            more = f" (and {len(self._twice) - 3} more)" if len(self._twice) > 3 else ""
            raise ConfigError(
                f"replay: {self.path}: an index is given twice, so which answer is the model's cannot be told: "
                f"{shown}{more}. Keep one row per index"
            )
        return self.values


def _load_jsonl(path: Path) -> dict[str, str]:
    predictions = _Predictions(path, "line")
    journal: dict[str, str] = {}  # a records.jsonl of this client: its last record per item wins
    models: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"replay: {path}, line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "index" not in row or "prediction" not in row:
                raise ConfigError(f"replay: {path}, line {number}: needs 'index' and 'prediction' fields")
            index, prediction = _index_text(row["index"]), row["prediction"]
            if "model" in row and "status" in row:
                models.add(str(row["model"]))
                if prediction is None:
                    journal.pop(index, None)  # an errored record: nothing to replay
                else:
                    journal[index] = str(prediction)
            elif prediction is not None:
                predictions.add(index, str(prediction), number)
    if len(models) > 1:
        raise ConfigError(
            f"replay: {path} holds the records of several models ({', '.join(sorted(models))}): "
            "replay one model's records (its lines of the file)"
        )
    return {**predictions.checked(), **journal}


def _columns(path: Path, header: list[str]) -> tuple[int, int]:
    lowered = [str(name).strip().lower() for name in header]
    missing = [name for name in ("index", "prediction") if name not in lowered]
    if missing:
        raise ConfigError(
            f"replay: {path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, header))}"
        )
    return lowered.index("index"), lowered.index("prediction")


def _load_delimited(path: Path, delimiter: str) -> dict[str, str]:
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ConfigError(f"replay: {path}: empty file")
        index_col, prediction_col = _columns(path, header)
        predictions = _Predictions(path, "row")
        for number, row in enumerate(reader, start=2):
            if len(row) > max(index_col, prediction_col):
                predictions.add(_index_text(row[index_col]), row[prediction_col], number)
        return predictions.checked()


def _load_xlsx(path: Path) -> dict[str, str]:
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingExtra("replay", "xlsx", "openpyxl") from exc
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        rows = list(workbook.active.iter_rows(values_only=True))
    except Exception as exc:  # zipfile/openpyxl/XML errors of a damaged workbook
        raise ConfigError(f"replay: {path}: not a readable xlsx workbook ({type(exc).__name__}: {exc})") from None
    rows = iter(rows)
    header = next(rows, None)
    if not header:
        raise ConfigError(f"replay: {path}: empty sheet")
    index_col, prediction_col = _columns(path, list(header))
    predictions = _Predictions(path, "row")
    for number, row in enumerate(rows, start=2):
        if len(row) > max(index_col, prediction_col) and row[index_col] is not None:
            value = row[prediction_col]
            predictions.add(_index_text(row[index_col]), "" if value is None else str(value), number)
    return predictions.checked()


class ReplayBackend(Backend):
    """Answers each item with the prediction recorded for its index in a file."""

    name = "replay"

    def __init__(self, path: Path):
        self.path = path
        self.predictions: dict[str, str] = {}

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0) -> ReplayBackend:
        if not spec.target:
            raise ConfigError("replay needs a predictions file: replay:PATH")
        cls.parse_options(spec)  # it takes none: refuse any
        return cls(Path(spec.target))

    def identity(self) -> Mapping[str, str]:
        return {"backend": self.name, "model": str(self.path), "endpoint": ""}

    def cacheable(self) -> bool:
        return False  # costs nothing to ask again; caching would only fill the cache

    async def start(self) -> None:
        self.predictions = load_predictions(self.path)

    async def generate(self, request: Request) -> Response:
        try:
            return Response(self.predictions[request.item_index])
        except KeyError:
            raise BadRequest(f"replay: no prediction for index {request.item_index} in {self.path}") from None
