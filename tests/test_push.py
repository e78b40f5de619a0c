"""`bertkit push` against a local HTTP server that answers the Hub's endpoints for creating a repo and committing
files (huggingface_hub's own client does the talking): the files that arrive are exactly the model's."""

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow  # each push runs in a process of its own
TOKEN = "hf_test_token"


class FakeHub(BaseHTTPRequestHandler):
    """POST /api/repos/create, /api/validate-yaml (the model card), /api/models/<repo>/preupload/<rev> (every
    file "regular": sent inline, no LFS)
    and /api/models/<repo>/commit/<rev> (NDJSON: a header, then each file base64-encoded)."""

    received: dict = {}

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen = self.received.setdefault("requests", [])
        seen.append((self.path.split("?")[0], self.headers.get("authorization")))
        if self.path == "/api/repos/create":
            asked = self.received["create"] = json.loads(body)
            self._reply(200, {"url": f"http://{self.headers['host']}/{asked['organization']}/{asked['name']}"})
        elif self.path == "/api/validate-yaml":  # the model card's metadata, checked before the commit
            self.received["card"] = json.loads(body)
            self._reply(200, {"errors": [], "warnings": []})
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            self._reply(
                200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        elif "/commit/" in self.path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    self.received.setdefault("files", {})[value["path"]] = base64.b64decode(value["content"])
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            url = f"http://{self.headers['host']}/{repo}/commit/{'1' * 40}"
            self._reply(200, {"commitUrl": url, "commitOid": "1" * 40, "pullRequestUrl": None})
        else:
            self._reply(404, {"error": f"not faked: {self.path}"})


@pytest.fixture
def fake_hub():
    FakeHub.received = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield FakeHub.received, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _push(endpoint: str, *args) -> subprocess.CompletedProcess:
    """`bertkit push` in a process of its own (the upload's client threads stay out of the test process, whose
    later tests fork), talking to the fake Hub with a token."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"}
    command = [sys.executable, "-m", "bertkit", "push", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_push_uploads_exactly_the_models_files(tiny_run, fake_hub):
    fake_hub, endpoint = fake_hub
    model_dir = tiny_run[0] / "pretrain"  # has checkpoints/ and the output marker: neither goes up
    result = _push(endpoint, model_dir, "someone/tiny", "--private")
    assert result.returncode == 0, result.stderr
    assert fake_hub["create"]["name"] == "tiny" and fake_hub["create"]["organization"] == "someone"
    assert fake_hub["create"]["visibility"] == "private"
    assert all(auth == f"Bearer {TOKEN}" for _, auth in fake_hub["requests"])  # the user's token on every call
    expected = {
        str(p.relative_to(model_dir)): p.read_bytes()
        for p in model_dir.rglob("*")
        if p.is_file() and p.parts[len(model_dir.parts)] not in ("checkpoints", "tensorboard", ".bertkit-output")
    }
    assert {"model.safetensors", "config.json", "vocab.txt", "bertkit.yaml", "README.md"} <= set(expected)
    assert fake_hub["files"] == expected  # byte for byte, nothing more
    assert (model_dir / "checkpoints").is_dir()


def test_push_with_checkpoints_and_a_refusal(tiny_run, fake_hub):
    fake_hub, endpoint = fake_hub
    model_dir = tiny_run[0] / "pretrain"
    assert _push(endpoint, model_dir, "someone/tiny", "push.checkpoints=true").returncode == 0
    assert any(path.startswith("checkpoints/") for path in fake_hub["files"])
    result = run_cli("push", model_dir, "someone/tiny", "train.lr=1")  # refused before any network use
    assert result.exit_code == 2 and "train.lr is read by pretrain, not push" in result.stderr


def test_an_unreachable_hub_is_one_line(tiny_run):
    result = _push("http://127.0.0.1:9", tiny_run[0] / "pretrain", "someone/tiny")  # port 9: nothing listens
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: someone/tiny: the Hub could not be reached"), lines
