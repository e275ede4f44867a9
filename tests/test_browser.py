"""End to end in headless Chromium: upload an image on the web page and read the labels it shows."""

import shutil
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn

from tagnet.inference.predictor import Predictor
from tagnet.serve import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install 'tagnet[dev]')")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver; .ci/run installs them when it can)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,900")


@pytest.fixture
def server_url(tiny_run):
    """uvicorn serving the tiny run on a free loopback port in a thread; stopped after the test."""
    yield from _serve(create_app(Predictor(tiny_run.artifact_dir)))


@pytest.fixture
def tabular_server(tmp_path):
    """A tabular model (3 features, labels a = x0 > 0 and b = x1 > 0) trained for a few epochs, and its server URL."""
    from tagnet.config.settings import TrainConfig
    from tagnet.inference.predictor import Predictor
    from tagnet.serve import create_app
    from tagnet.training.trainer import train

    x = np.random.default_rng(0).normal(size=(80, 3))
    lines = ["x0,x1,x2,a,b"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(r[0] > 0)},{int(r[1] > 0)}" for r in x]
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    result = train(tmp_path / "table.csv", modality="tabular", out_dir=tmp_path / "run", progress=False,
                           config=TrainConfig(epochs=5, batch_size=16), read_options={"label_columns": ["a", "b"]})
    predictor = Predictor(result.run_dir)
    for url in _serve(create_app(predictor)):
        yield url, predictor


def _serve(app):
    """Run `app` with uvicorn on a free loopback port in a thread; yield its URL; stop it afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_upload_on_the_page_shows_labels_and_probabilities(server_url, browser, tiny_run, synthetic_data, tmp_path):
    image = sorted(synthetic_data.images_dir.iterdir())[0]
    expected = Predictor(tiny_run.artifact_dir).predict_paths([image]).predictions[0]
    wait = WebDriverWait(browser, 20)
    browser.get(server_url + "/")
    wait.until(lambda d: "labels:" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "file-input").send_keys(str(image))
    card = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card.done"))[0]
    assert card.find_element(By.TAG_NAME, "figcaption").text == image.name
    shown = card.find_element(By.CSS_SELECTOR, ".predicted").text
    assert shown == (", ".join(expected.labels) or "no label above its threshold")
    rows = card.find_elements(By.CSS_SELECTOR, ".label-row")
    assert sorted(row.get_attribute("data-label") for row in rows) == sorted(expected.probabilities)
    for row in rows:
        name = row.get_attribute("data-label")
        assert float(row.get_attribute("data-probability")) == pytest.approx(expected.probabilities[name], abs=1e-5)
        assert ("on" in row.get_attribute("class").split()) == (name in expected.labels)
        assert row.find_element(By.CSS_SELECTOR, ".tick").is_displayed()
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_lines_page_labels_feature_rows(tabular_server, browser):
    url, predictor = tabular_server
    rows = ["2.5, -1, 0", "?, 1.5, 0.3"]  # the second row's first value is missing
    expected = predictor.predict(np.array([[2.5, -1, 0], [np.nan, 1.5, 0.3]]))
    wait = WebDriverWait(browser, 20)
    browser.get(url + "/")
    wait.until(lambda d: "labels:" in d.find_element(By.ID, "model-info").text)
    assert "comma-separated" in browser.find_element(By.ID, "lines-help").text
    browser.find_element(By.ID, "lines").send_keys("\n".join(rows))
    browser.find_element(By.ID, "submit").click()
    cards = wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.done")) == 2
                       and d.find_elements(By.CSS_SELECTOR, ".card.done"))
    for card, line, want in zip(cards, rows, expected.predictions):
        assert card.find_element(By.CSS_SELECTOR, ".input").text == line
        assert card.find_element(By.CSS_SELECTOR, ".predicted").text == (", ".join(want.labels) or "no label above its threshold")
        for row in card.find_elements(By.CSS_SELECTOR, ".label-row"):
            name = row.get_attribute("data-label")
            assert float(row.get_attribute("data-probability")) == pytest.approx(want.probabilities[name], abs=1e-5)


def test_api_docs_render_without_a_network(server_url, browser):
    browser.get(server_url + "/docs")
    title = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".information-container .title"))
    assert title[0].text.startswith("tagnet")
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert {"/predict", "/explain", "/labels"} <= {op.text for op in operations}
