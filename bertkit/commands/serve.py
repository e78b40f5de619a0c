"""`bertkit serve`: a fine-tuned model dir over HTTP, with a page to try it.

    bertkit serve runs/demo-zh/finetune/topic                     # http://127.0.0.1:8000/
    curl -s localhost:8000/predict -d '{"inputs": ["今天的比赛非常精彩"]}'

POST /predict answers what `bertkit predict` writes, one object per input, in order; concurrent requests share
forward passes (serve.max_batch_size, serve.max_wait_ms). SIGTERM or Ctrl-C: requests in flight are answered,
then the server stops.
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from bertkit.config import ServeRecipe
from bertkit.errors import BertkitError
from bertkit.tasks.predictor import Predictor


@dataclass
class Setup:
    app: object
    sock: socket.socket
    url: str


def run_serve(cfg: ServeRecipe, model_dir: Path) -> None:
    run = setup(cfg, model_dir)
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(run.app, log_level="info", timeout_graceful_shutdown=None))
    print(f"bertkit serve: {run.url} (the page), {run.url}docs (the API); Ctrl-C stops", flush=True)
    # uvicorn answers the requests in flight on SIGTERM/SIGINT, then raises the signal again for the handlers it
    # found: a stop asked for is a clean exit here, not the CLI's "stopped, outputs discarded".
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[run.sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    finish(run)


def setup(cfg: ServeRecipe, model_dir: Path) -> Setup:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise BertkitError("bertkit serve needs FastAPI and uvicorn: pip install 'bertkit[serve]'") from None
    from bertkit.serving.app import create_app

    sock = _listen(cfg.serve.host, cfg.serve.port)  # first: a port in use is told before the model loads
    app = create_app(Predictor(cfg, model_dir), cfg.serve, model_dir.name)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return Setup(app, sock, f"http://{shown}:{port}/")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: an answer's headers and body go out at once, not 40 ms apart (Nagle's
    # algorithm waiting on the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog while the app starts, none is refused
    except OSError as e:
        sock.close()
        raise BertkitError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another with serve.port=… or serve.host=…"
        ) from None
    return sock


def finish(run: Setup) -> None:
    run.sock.close()
    print(f"bertkit serve: stopped ({run.app.state.batcher.passes} forward passes)", flush=True)
