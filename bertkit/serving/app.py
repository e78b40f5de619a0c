"""The HTTP app of `bertkit serve` (FastAPI): POST /predict, GET /info, GET /health, the page at /, OpenAPI docs
at /docs.

FastAPI because its request and response models are pydantic, as bertkit's recipes are, and its OpenAPI schema
and docs come from them; uvicorn runs it and answers in-flight requests before it stops on SIGTERM. Every error
is JSON, `{"error": "..."}` with a 4xx status naming the problem; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from bertkit.config.sections import ServeConfig
from bertkit.errors import BertkitError
from bertkit.serving.batching import Batcher
from bertkit.tasks.predictor import Predictor


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="Raw texts (strings) where the model's task takes raw text (GET /info: raw_text), else objects "
        'with the task\'s columns (GET /info: columns), e.g. {"question": …, "context": …}.',
    )


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def create_app(predictor: Predictor, cfg: ServeConfig, name: str) -> FastAPI:
    batcher = Batcher(predictor.predict, cfg.max_batch_size, cfg.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"bertkit serve: {name}", lifespan=lifespan, summary="A fine-tuned bertkit model over HTTP.")
    app.state.batcher = batcher
    _errors(app)
    info = {
        "model": name,
        "task": predictor.cfg.finetune.task.type,
        "labels": predictor.labels,
        "raw_text": predictor.takes_raw_text,
        "columns": predictor.columns,
        "limits": {"max_inputs": cfg.max_inputs, "max_text_chars": cfg.max_text_chars},
    }
    page = files("bertkit.serving").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def describe() -> dict:
        """What the model is, its labels, and the inputs it takes."""
        return info

    schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": _schema()}}}}

    @app.post("/predict", openapi_extra=schema)
    async def predict(request: Request) -> JSONResponse:
        """One prediction per input, in order: the same objects `bertkit predict` writes as JSON lines."""
        inputs = _inputs(await _body(request, cfg.max_request_bytes), cfg)
        examples = await batcher.on_model_thread(_examples, predictor, inputs)
        return JSONResponse({"predictions": await batcher.predict(examples)})

    return app


def _schema() -> dict:
    schema = PredictRequest.model_json_schema()
    schema.pop("title", None)
    return schema


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(BertkitError)
    async def input_error(request: Request, error: BertkitError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        logging.getLogger("bertkit.serve").exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it passes `limit` bytes, whether or not it declared its length."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413, f"request body of {declared} bytes is over the limit of {limit} (serve.max_request_bytes)"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over the limit of {limit} bytes (serve.max_request_bytes)")
    return bytes(body)


def _inputs(body: bytes, cfg: ServeConfig) -> list:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f'body is not JSON ({e}); send {{"inputs": ["a text", …]}}') from None
    if isinstance(data, dict) and isinstance(data.get("inputs"), list) and len(data["inputs"]) > cfg.max_inputs:
        raise RequestError(413, f"{len(data['inputs'])} inputs; at most {cfg.max_inputs} a request (serve.max_inputs)")
    try:
        inputs = PredictRequest.model_validate(data).inputs
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestError(422, f'{where}: {first["msg"]}; send {{"inputs": ["a text", …]}}') from None
    for i, item in enumerate(inputs):
        for field, value in ({"text": item} if isinstance(item, str) else item).items():
            for text in value if isinstance(value, list) else [value]:
                _check_text(text, f"inputs.{i}: {field}", cfg.max_text_chars)
    return inputs


def _check_text(text, where: str, limit: int) -> None:
    if not isinstance(text, str):
        return
    if len(text) > limit:
        raise RequestError(413, f"{where} has {len(text)} characters; at most {limit} (serve.max_text_chars)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON lets a lone surrogate (\ud800) through; no tokenizer takes it
        raise RequestError(
            422, f"{where}: {e.object[e.start]!r} at {e.start} is not a character; send Unicode text"
        ) from None


def _text(item):
    return (
        item["text"] if isinstance(item, dict) and item.keys() == {"text"} and isinstance(item["text"], str) else item
    )


def _examples(predictor: Predictor, inputs: list) -> list[dict]:
    """The model's examples of a request's inputs (on the model's thread: the tokenizer is not shared)."""
    if predictor.takes_raw_text:  # {"text": …} is a raw text too
        inputs = [_text(item) for item in inputs]
    if all(isinstance(item, str) for item in inputs):
        if not predictor.takes_raw_text:
            fields = ", ".join(predictor.columns)
            raise RequestError(422, f"this model's task takes objects with the fields {fields}, not texts")
        return [predictor.raw(text, f"inputs.{i}") for i, text in enumerate(inputs)]
    if any(isinstance(item, str) for item in inputs):
        raise RequestError(422, "inputs mix texts and objects; send one kind in a request")
    return predictor.from_rows(inputs, "inputs")
