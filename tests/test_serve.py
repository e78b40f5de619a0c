"""`bertkit serve`: a real server process on a loopback port, spoken to over HTTP. Its answers are predict's,
bad requests are 4xx JSON errors that leave it serving, concurrent requests share forward passes, SIGTERM
answers what is in flight. The batcher's rules are unit-tested in-process."""

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import DATA
from typer.testing import CliRunner

from bertkit.cli import app
from bertkit.serving.batching import Batcher

TEXTS = [json.loads(line)["text"] for line in (DATA / "zh" / "topic" / "test.jsonl").read_text().splitlines()]


class Server:
    """`bertkit serve MODEL overrides…` on a free loopback port, stopped (SIGTERM) at the end."""

    def __init__(self, model: Path, *overrides: str):
        command = [sys.executable, "-m", "bertkit", "serve", str(model), "serve.port=0", *overrides]
        # stdout to a file: a pipe nobody reads would fill with the access log and stall the server
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 120
        while not (match := re.search(r"http://127\.0\.0\.1:(\d+)/", self.output())):
            assert self.process.poll() is None and time.monotonic() < deadline, f"no URL in {self.output()!r}"
            time.sleep(0.1)
        self.port = int(match.group(1))

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def request(self, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
        """(status, JSON answer) of one request on a connection of its own."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        content = response.read()
        connection.close()
        return response.status, json.loads(content) if content[:1] in (b"{", b"[") else content.decode()

    def predict(self, inputs: list) -> list[dict]:
        status, answer = self.request("POST", "/predict", {"inputs": inputs})
        assert status == 200, answer
        return answer["predictions"]

    def stop(self) -> str:
        """SIGTERM; what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return self.output()


def _wait_for_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def topic(tiny_run):
    return tiny_run[0] / "finetune" / "topic"


@pytest.fixture(scope="module")
def predicted(topic) -> dict[str, dict]:
    """`bertkit predict`'s answer for each text, keyed by the text."""
    args = ["predict", str(topic), *[a for text in TEXTS for a in ("--text", text)]]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {row["text"]: row for row in map(json.loads, result.stdout.splitlines())}


@pytest.fixture(scope="module")
def server(topic):
    running = Server(topic, "serve.max_inputs=8", "serve.max_text_chars=200", "serve.max_request_bytes=20000")
    yield running
    running.stop()


def _same(answer: dict, expected: dict) -> None:
    """Equal to predict's answer; probabilities to 1e-5, as another batch's padding moves the last digits."""
    assert answer.keys() == expected.keys()
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    top = sorted(expected["probabilities"].values())
    if top[-1] - top[-2] > 1e-4:
        assert answer["prediction"] == expected["prediction"]


@pytest.mark.slow
def test_answers_are_predicts(server, predicted):
    assert server.request("GET", "/health") == (200, {"status": "ok"})
    status, info = server.request("GET", "/info")
    assert status == 200 and info["task"] == "classification" and info["raw_text"] and info["columns"] == ["text"]
    assert info["labels"] == sorted(predicted[TEXTS[0]]["probabilities"], key=info["labels"].index)
    for answer, text in zip(server.predict(TEXTS[:8]), TEXTS[:8], strict=True):
        _same(answer, predicted[text])
    assert server.predict([{"text": TEXTS[0]}])[0]["prediction"] == predicted[TEXTS[0]]["prediction"]
    status, page = server.request("GET", "/")
    assert status == 200 and "<html" in page.lower()
    status, schema = server.request("GET", "/openapi.json")
    assert status == 200 and {"/predict", "/health", "/info"} <= set(schema["paths"])


@pytest.mark.slow
def test_every_bad_request_is_a_json_4xx_and_the_server_keeps_serving(server):
    long_text = "长" * 201
    cases = [
        (dict(raw=b"not json"), 400, "body is not JSON"),
        (dict(raw='{"inputs": ["\xff"]'.encode("latin-1")), 400, "body is not JSON"),
        (dict(body={"inputs": []}), 422, "inputs: List should have at least 1 item"),
        (dict(raw=b'{"inputs": ["\\ud800x"]}'), 422, "inputs.0: text: '\\ud800' at 0 is not a character"),
        (dict(body={"texts": ["a"]}), 422, "inputs: Field required"),
        (dict(body={"inputs": ["a"], "extra": 1}), 422, "extra: Extra inputs are not permitted"),
        (dict(body={"inputs": [1]}), 422, "inputs.0"),
        (dict(body=["a"]), 422, "Input should be a valid dictionary"),
        (dict(body={"inputs": ["a", {"review": "b"}]}), 422, "inputs mix texts and objects"),
        (dict(body={"inputs": [{"review": "b"}]}), 422, "inputs: no column 'text'"),
        (dict(body={"inputs": ["a"] * 9}), 413, "9 inputs; at most 8 a request (serve.max_inputs)"),
        (dict(body={"inputs": ["a", long_text]}), 413, "inputs.1: text has 201 characters; at most 200"),
        (dict(body={"inputs": [{"text": long_text}]}), 413, "inputs.0: text has 201 characters"),
        (dict(raw=b" " * 20001), 413, "over the limit of 20000 (serve.max_request_bytes)"),
    ]
    for request, status, message in cases:
        got, answer = server.request("POST", "/predict", **request)
        assert (got, message in answer.get("error", "")) == (status, True), (request, answer)
    assert server.request("GET", "/nowhere") == (404, {"error": "Not Found"})
    assert server.request("GET", "/predict")[0] == 405
    # A chunked body declares no length: it is cut off at the limit all the same.
    got, answer = server.request("POST", "/predict", raw=b" " * 20001, headers={"Transfer-Encoding": "chunked"})
    assert got in (400, 413), answer
    assert len(server.predict(["还在服务"])) == 1


@pytest.mark.slow
def test_load_32_clients_2000_requests_share_passes_and_equal_predict(topic, predicted):
    server = Server(topic, "serve.max_wait_ms=10")
    try:

        def client(k: int) -> list[tuple[str, dict]]:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)  # kept alive
            answers = []
            for i in range(k, 2000, 32):
                text = TEXTS[i % len(TEXTS)]
                connection.request("POST", "/predict", body=json.dumps({"inputs": [text]}).encode())
                response = connection.getresponse()
                assert response.status == 200
                answers.append((text, json.loads(response.read())["predictions"][0]))
            connection.close()
            return answers

        with ThreadPoolExecutor(32) as pool:
            answers = [a for batch in pool.map(client, range(32)) for a in batch]
    finally:
        out = server.stop()
    assert len(answers) == 2000
    for text, answer in answers:
        _same(answer, predicted[text])
    passes = int(re.search(r"stopped \((\d+) forward passes\)", out).group(1))
    assert passes < 2000 / 2, f"{passes} passes for 2000 requests: concurrent requests did not share them"


@pytest.mark.slow
def test_sigterm_answers_the_request_in_flight_then_exits_0(topic):
    server = Server(topic, "serve.max_wait_ms=1500")  # the request waits in the batcher when SIGTERM comes
    answer = {}

    def send():
        answer["status"], answer["body"] = server.request("POST", "/predict", {"inputs": TEXTS[:3]})

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    out = server.stop()
    assert answer["status"] == 200 and len(answer["body"]["predictions"]) == 3
    assert server.process.returncode == 0 and "stopped (1 forward passes)" in out
    _wait_for_port_free(server.port)  # the socket is closed


@pytest.mark.slow
def test_a_port_in_use_is_one_line_before_the_model_loads(topic):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bertkit", "serve", str(topic), f"serve.port={port}"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_COLOR": "1"},
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another with serve.port=… or "
        "serve.host=…"
    ]


def _batcher_run(requests: list[list[dict]], max_batch_size=8, max_wait_ms=50.0, fail_on=None):
    """Each request's answer (or error), and the passes the fake model saw."""
    passes = []

    def predict(examples):
        passes.append([e["id"] for e in examples])
        if fail_on is not None and any(e["id"] == fail_on for e in examples):
            raise ValueError(f"bad input {fail_on}")
        return [{"id": e["id"], "twice": e["id"] * 2} for e in examples]

    async def main():
        batcher = Batcher(predict, max_batch_size, max_wait_ms)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.predict(r) for r in requests), return_exceptions=True)
        await batcher.stop()
        return answers

    return asyncio.run(main()), passes


def test_concurrent_requests_share_passes_in_order_up_to_the_batch_size():
    requests = [[{"id": 10 * r + i} for i in range(n)] for r, n in enumerate([1, 3, 2, 5, 1])]
    answers, passes = _batcher_run(requests)
    assert answers == [[{"id": e["id"], "twice": 2 * e["id"]} for e in r] for r in requests]
    # 1+3+2 = 6 fit in a pass of 8, the 5 would overflow it: it opens the next pass, with the last request.
    assert passes == [[0, 10, 11, 12, 20, 21], [30, 31, 32, 33, 34, 40]]


def test_a_request_larger_than_the_batch_runs_alone():
    answers, passes = _batcher_run([[{"id": i} for i in range(12)], [{"id": 99}]], max_batch_size=8)
    assert [len(a) for a in answers] == [12, 1] and passes == [list(range(12)), [99]]


def test_a_failing_input_fails_its_own_request_only():
    requests = [[{"id": 1}], [{"id": 2}, {"id": 3}], [{"id": 4}]]
    answers, passes = _batcher_run(requests, fail_on=3)
    assert answers[0] == [{"id": 1, "twice": 2}] and answers[2] == [{"id": 4, "twice": 8}]
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "bad input 3"
    assert passes == [[1, 2, 3, 4], [1], [2, 3], [4]]


def test_max_wait_zero_never_waits():
    answers, passes = _batcher_run([[{"id": 1}], [{"id": 2}]], max_wait_ms=0)
    assert answers == [[{"id": 1, "twice": 2}], [{"id": 2, "twice": 4}]]
    assert passes in ([[1], [2]], [[1, 2]])  # what was already queued may still join


FAMILY_RECIPES = ["zh-cmrc.yaml", "zh-choice.yaml", "zh-ner.yaml", "zh-pairs.yaml"]


@pytest.fixture(scope="module", params=FAMILY_RECIPES)
def family_model(request, tiny_run, tmp_path_factory):
    """A tiny model of each family that needs more than one raw text (QA, choice, pairs) or gives spans (NER)."""
    from conftest import ROOT, recipe_edits, run_cli
    from test_tasks import FAST

    out = tmp_path_factory.mktemp(request.param.split(".")[0])
    edits = recipe_edits([f"output_dir={out}", f"finetune.model_dir={tiny_run[0] / 'pretrain'}", *FAST])
    result = run_cli("finetune", ROOT / "recipes" / "finetune" / request.param, *edits)
    assert result.exit_code == 0, result.output
    return next((out / "finetune").iterdir())


def _served(model_dir: Path):
    from starlette.testclient import TestClient

    from bertkit.config.sections import ServeConfig
    from bertkit.serving.app import create_app
    from bertkit.tasks.predictor import Predictor, load_predict_recipe

    predictor = Predictor(load_predict_recipe(model_dir, [], "serve"), model_dir)
    return predictor, TestClient(create_app(predictor, ServeConfig(), model_dir.name))


@pytest.mark.slow
def test_every_family_answers_as_predict_does(family_model):
    """Objects with the task's columns (QA, multiple choice, pairs) or raw texts (NER): the same answers as
    predict's decoding of the same inputs read from the task's file."""
    predictor, client = _served(family_model)
    cfg = predictor.cfg.finetune.task
    with client:
        info = client.get("/info").json()
        source = {"question-answering": "qa/dev.json", "multiple-choice": "choice/dev.jsonl"}
        source |= {"token-classification": "ner/dev.jsonl", "classification": "pairs/dev.tsv"}
        examples = predictor.task.read(DATA / "zh" / source[info["task"]], cfg, labelled=False)[:6]
        if info["raw_text"]:
            assert info["task"] == "token-classification" and info["columns"] == ["text"]
            examples = [predictor.raw("".join(e["tokens"]), "test") for e in examples]
            inputs = [e["text"] for e in examples]
        else:
            fields = {
                "question-answering": ["question", "context"],
                "multiple-choice": ["context", "question", "choices"],
            }
            assert info["columns"] == fields.get(info["task"], ["sentence1", "sentence2"])
            keys = {"sentence1": "text", "sentence2": "text_pair"}
            inputs = [{c: e[keys.get(c, c)] for c in info["columns"]} for e in examples]
        answer = client.post("/predict", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        expected = predictor.predict(examples)
    for got, want in zip(answer.json()["predictions"], expected, strict=True):
        assert got["prediction"] == want["prediction"]
        for key in ("entities", "start", "end", "score", "probability"):
            assert (key in got) == (key in want)
            if key in want:
                assert got[key] == pytest.approx(want[key], abs=1e-4) if key != "entities" else got[key] == want[key]
    if info["task"] == "multiple-choice":  # every candidate's probability, the chosen one's the largest
        for got, item in zip(answer.json()["predictions"], inputs, strict=True):
            assert len(got["probabilities"]) == len(item["choices"])
            assert sum(got["probabilities"]) == pytest.approx(1, abs=1e-5)
            assert max(got["probabilities"]) == got["probabilities"][got["prediction"]] == got["probability"]
    if info["task"] == "question-answering":  # the answer's offsets slice the context
        for got, item in zip(answer.json()["predictions"], inputs, strict=True):
            assert got["start"] is None or item["context"][got["start"] : got["end"]] == got["prediction"]


@pytest.mark.slow
def test_a_family_taking_objects_refuses_texts_naming_its_fields(family_model):
    predictor, client = _served(family_model)
    with client:
        answer = client.post("/predict", json={"inputs": ["只是一句话"]})
    if predictor.takes_raw_text:
        assert answer.status_code == 200
    else:
        fields = ", ".join(predictor.columns)
        assert answer.status_code == 422
        assert answer.json() == {"error": f"this model's task takes objects with the fields {fields}, not texts"}
