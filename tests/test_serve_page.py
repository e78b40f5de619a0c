"""The page of `bertkit serve` at `/`, in a real headless Chromium (the OS's, driven by Selenium) against real
servers: the tiny run's topic classifier and a tagger fine-tuned from its BERT. Text typed and the button pressed,
the page draws what POST /predict answers for the same text: a bar per label, the widest the predicted one; each
entity marked with its type. Hostile text stays text, the server's errors are shown, and a screenshot is a real
picture of it."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, recipe_edits, run_cli

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PAGE = ROOT / "bertkit" / "serving" / "page.html"
TOPIC_TEXT = "湖人交易截止日前送走三名球员，换来一名射手"
NER_TEXT = "中国舞蹈家协会在昆明举办了民族舞蹈展演。张三在北京工作。"  # first the tagger's first training example
HOSTILE = '<img src=x onerror="window.pwned=1">张三在<b>北京</b>工作'

# Skipped as a whole, in one line, before any model is trained for it.
_MISSING = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
_MISSING += [] if importlib.util.find_spec("selenium") else ["selenium"]
if _MISSING:
    pytest.skip(
        f"the page's browser tests need {', '.join(_MISSING)}: apt-get install chromium chromium-driver; "
        "pip install -e '.[dev]'",
        allow_module_level=True,
    )


def test_the_page_is_self_contained():
    """Served offline: nothing fetched from elsewhere; and no text put in as HTML."""
    page = PAGE.read_text(encoding="utf-8")
    assert "://" not in page and "<link" not in page and "<script src" not in page and "@import" not in page
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page


# --- the browser and the servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # with the driver's path too, Selenium Manager looks nothing up
    profile = tempfile.mkdtemp(prefix="bertkit-chromium-")
    # Without the background-networking flags, its own connections get refused many at a time on offline machines.
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Server:
    """`bertkit serve MODEL serve.port=0 overrides…` in a subprocess; `wait()` gives its URL."""

    def __init__(self, model: Path, *overrides: str):
        # stdout to a file: a pipe nobody reads would fill with the access log and stall the server
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")
        command = [sys.executable, "-m", "bertkit", "serve", str(model), "serve.port=0", *overrides]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self.url = ""

    def wait(self) -> str:
        deadline = time.monotonic() + 120
        while not (match := re.search(r"bertkit serve: (http://\S+/) \(the page\)", self.output())):
            assert self.process.poll() is None and time.monotonic() < deadline, f"no URL in {self.output()!r}"
            time.sleep(0.1)
        self.url = match.group(1)
        return self.url

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def servers(tiny_run, tmp_path_factory):
    """URLs of the tiny run's topic classifier (texts of at most 50 characters) and of a tagger fine-tuned on the
    Chinese NER sample (3 epochs: it finds entities); both servers load while the tagger trains."""
    started = [Server(tiny_run[0] / "finetune" / "topic", "serve.max_text_chars=50")]
    try:
        out = tmp_path_factory.mktemp("tagger")
        edits = [
            f"output_dir={out}",
            f"finetune.model_dir={tiny_run[0] / 'pretrain'}",
            "finetune.train.epochs=3",
            "finetune.train.batch_size=32",
            "finetune.train.lr=5e-3",
            "finetune.task.max_seq_length=64",
            "finetune.task.stride=16",
        ]
        result = run_cli("finetune", ROOT / "recipes" / "finetune" / "zh-ner.yaml", *recipe_edits(edits))
        assert result.exit_code == 0, result.output
        started.append(Server(out / "finetune" / "ner"))
        yield {"topic": started[0].wait(), "tagger": started[1].wait()}
    finally:
        for server in started:  # all stopping at once: each takes seconds
            server.stop()
        for server in started:
            server.wait_stopped()


def request(url: str, method: str, path: str, body=None) -> tuple[int, dict]:
    """(status, JSON answer) of one request straight to the server, as the page's own would be."""
    host, port = re.match(r"http://([^/:]+):(\d+)/", url).groups()
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def predict(url: str, text: str) -> dict:
    status, answer = request(url, "POST", "/predict", {"inputs": [text]})
    assert status == 200, answer
    return answer["predictions"][0]


def wait_for(browser, states: set[str]) -> str:
    """Waits for the page's state (body's data-state: loading, ready, busy, done, error) to be one of `states`."""
    from selenium.webdriver.support.ui import WebDriverWait

    state = lambda b: b.find_element("tag name", "body").get_attribute("data-state")  # noqa: E731
    WebDriverWait(browser, 60).until(lambda b: state(b) in states)
    return state(browser)


def open_page(browser, url: str) -> None:
    browser.get(url)
    wait_for(browser, {"ready"})


def ask(browser, text: str, ctrl_enter: bool = False) -> str:
    """Types `text` into the page's text box, presses Predict (or Ctrl+Enter); the state it ends in."""
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element("id", "text")
    box.clear()
    box.send_keys(text)
    if ctrl_enter:
        box.send_keys(Keys.CONTROL, Keys.ENTER)
    else:
        browser.find_element("id", "predict").click()
    return wait_for(browser, {"done", "error"})


def bars(browser) -> list[dict]:
    """The bars drawn, top to bottom: label, the probability it says, its rendered width, marked as predicted."""
    return [
        {
            "label": row.get_attribute("data-label"),
            "probability": float(row.get_attribute("data-probability")),
            "width": row.find_element("class name", "bar-fill").rect["width"],
            "predicted": "predicted" in row.get_attribute("class").split(),
        }
        for row in browser.find_elements("css selector", "#result .bar")
    ]


# --- the tests ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_classifiers_probabilities_are_bars(browser, servers):
    url = servers["topic"]
    _, info = request(url, "GET", "/info")
    open_page(browser, url)
    assert browser.find_element("id", "model").text == info["model"] == "topic"
    assert browser.find_element("id", "task").text == "classification"
    for text, ctrl_enter in ((TOPIC_TEXT, False), ("山东泰山主场2比1逆转上海申花，升至积分榜第三", True)):
        assert ask(browser, text, ctrl_enter) == "done"
        expected = predict(url, text)
        drawn = bars(browser)
        assert sorted(b["label"] for b in drawn) == sorted(info["labels"])
        assert [b["probability"] for b in drawn] == sorted(expected["probabilities"].values(), reverse=True)
        assert {b["label"]: b["probability"] for b in drawn} == expected["probabilities"]
        assert max(drawn, key=lambda b: b["width"])["label"] == expected["prediction"]
        assert [b["label"] for b in drawn if b["predicted"]] == [expected["prediction"]]
        assert browser.find_element("id", "headline").text.startswith(expected["prediction"])


@pytest.mark.slow
def test_a_taggers_entities_are_marked_in_the_text(browser, servers):
    url = servers["tagger"]
    open_page(browser, url)
    assert ask(browser, NER_TEXT) == "done"
    expected = predict(url, NER_TEXT)["entities"]
    assert expected, "the tagger found no entity: nothing for the page to show"
    marks = browser.find_elements("css selector", "#tagged mark.entity")
    assert [(m.get_attribute("textContent"), m.get_attribute("data-type")) for m in marks] == [
        (e["text"], e["type"]) for e in expected
    ]
    # The marks wrap the text in place: the paragraph reads as the text typed, types drawn beside it.
    assert browser.find_element("id", "tagged").get_attribute("textContent") == NER_TEXT
    assert len(browser.find_elements("css selector", "#entities tbody tr")) == len(expected)
    # A type keeps one colour, and different types get different ones.
    colours = {(m.get_attribute("data-type"), m.value_of_css_property("background-color")) for m in marks}
    assert len(colours) == len({t for t, _ in colours}) == len({c for _, c in colours})


@pytest.mark.slow
def test_hostile_text_is_shown_not_run(browser, servers):
    open_page(browser, servers["tagger"])
    assert ask(browser, HOSTILE) == "done"
    assert browser.find_element("id", "tagged").get_attribute("textContent") == HOSTILE
    assert browser.find_elements("css selector", "#result img, #tagged b") == []
    assert browser.execute_script("return window.pwned === undefined")


@pytest.mark.slow
def test_the_servers_errors_are_shown(browser, servers):
    url = servers["topic"]
    open_page(browser, url)
    long = TOPIC_TEXT * 3  # over serve.max_text_chars=50
    assert ask(browser, long) == "error"
    status, answer = request(url, "POST", "/predict", {"inputs": [long]})
    assert status == 413 and "serve.max_text_chars" in answer["error"]
    assert browser.find_element("id", "error").text == answer["error"]
    assert browser.find_elements("css selector", "#result > *") == []
    assert ask(browser, TOPIC_TEXT) == "done" and browser.find_element("id", "error").text == ""


@pytest.mark.slow
def test_a_screenshot_shows_the_bars(browser, servers, tmp_path):
    """A PNG of the page after a prediction: the viewport's size, not blank, and the bars drawn in their colours
    where the page says they are. (Pixels only where no text is: fonts differ between machines, so no reference.)"""
    from PIL import Image

    open_page(browser, servers["topic"])
    assert ask(browser, TOPIC_TEXT) == "done"
    path = tmp_path / "page.png"
    assert browser.save_screenshot(str(path))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    width, height, scale = browser.execute_script("return [innerWidth, innerHeight, devicePixelRatio]")
    assert image.size == (round(width * scale), round(height * scale))
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50  # text and bars, not a blank page

    def colour_at(element) -> tuple[int, int, int]:
        r = element.rect
        return image.getpixel((int((r["x"] + r["width"] / 2) * scale), int((r["y"] + r["height"] / 2) * scale)))

    def near(colour, expected) -> bool:
        return all(abs(a - b) <= 12 for a, b in zip(colour, expected, strict=True))

    fills = browser.find_elements("css selector", "#result .bar-fill")
    predicted = browser.find_element("css selector", "#result .bar.predicted .bar-fill")
    assert near(colour_at(predicted), (0x2F, 0x6F, 0xDE))  # the accent blue
    others = [f for f in fills if f != predicted and f.rect["width"] >= 6]
    assert all(near(colour_at(f), (0x9D, 0xB7, 0xE8)) for f in others)  # the lighter blue
    assert near(image.getpixel((2, 2)), (0xF6, 0xF7, 0xF9))  # the page's background
