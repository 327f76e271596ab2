"""Fixtures of the web UI tests (tests/ui): a real mlops-server after the demo has run, with
100,000 more runs and three long curves written in bulk beforehand (mlops-bench ui --seed_only),
and headless Chromium driven by Selenium (Debian's chromium, chromium-driver, python3-selenium).

MLOPS_BUILD_DIR (default build/default) holds the binaries; screenshots of every page go to
MLOPS_UI_SCREENSHOTS (default build/default/ui-screenshots)."""
import json
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build" / "default"))
SHOTS = pathlib.Path(os.environ.get("MLOPS_UI_SCREENSHOTS", BUILD / "ui-screenshots"))
BULK_RUNS = int(os.environ.get("MLOPS_UI_RUNS", "100000"))


class Site:
    """The server under test: its HTTP port (UI and API) and what the data set holds."""

    def __init__(self, http_port, grpc_port, seed):
        self.base = f"http://127.0.0.1:{http_port}"
        self.grpc = f"127.0.0.1:{grpc_port}"
        self.bulk_experiment, self.curves_experiment = seed[0], seed[1]
        self.curve_runs = seed[2:]

    def api(self, service, method, body=None):
        request = urllib.request.Request(
            f"{self.base}/api/v1/{service}/{method}", data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def url(self, **state):
        return self.base + "/?" + "&".join(f"{k}={v}" for k, v in state.items())


def start_server(work, data, extra_args=()):
    """A real mlops-server on loopback port 0 with its data in `data`; returns the process and its
    gRPC and HTTP ports (log in work/server.log)."""
    ports = work / "ports"
    with open(work / "server.log", "ab") as log:
        server = subprocess.Popen(
            [str(BUILD / "tools" / "server" / "mlops-server"), "--host=127.0.0.1", "--port=0",
             "--metrics_port=0", f"--data_dir={data}", f"--port_file={ports}",
             "--shutdown_grace_s=1", *extra_args], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not (ports.exists() and len(ports.read_text().split()) >= 2):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"mlops-server did not start: see {work / 'server.log'}")
        time.sleep(0.05)
    grpc_port, http_port = (int(p) for p in ports.read_text().split()[:2])
    return server, grpc_port, http_port


def stop_server(server):
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui")
    data = work / "data"
    started = time.monotonic()
    subprocess.run([str(BUILD / "tools" / "bench" / "mlops-bench"), "ui", "--seed_only",
                    f"--data_dir={data}", f"--runs={BULK_RUNS}", "--curve_runs=3",
                    "--points=200000"], check=True, stdout=subprocess.DEVNULL)
    seed = (data / "ui-seed.txt").read_text().split()
    print(f"seeded {BULK_RUNS} runs in {time.monotonic() - started:.0f} s")
    server, grpc_port, http_port = start_server(work, data)
    try:
        started = time.monotonic()
        env = dict(os.environ, MLOPS_SERVER=f"127.0.0.1:{grpc_port}")
        with open(work / "demo.log", "wb") as demo_log:
            subprocess.run(["bash", str(ROOT / "examples" / "demo.sh"), str(BUILD)], env=env,
                           check=True, stdout=demo_log, stderr=subprocess.STDOUT, timeout=900)
        print(f"demo ran in {time.monotonic() - started:.0f} s")
        yield Site(http_port, grpc_port, seed)
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


class Page:
    """The browser on one view: waits, console errors, screenshots."""

    def __init__(self, driver):
        self.driver = driver

    def open(self, url, ready_css, timeout=30):
        self.driver.get_log("browser")  # drop what earlier pages logged
        self.driver.get(url)
        return self.wait_for(ready_css, timeout)

    def wait_for(self, css, timeout=30):
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css) or d.find_elements(
                By.CSS_SELECTOR, "main .error"))
        errors = self.driver.find_elements(By.CSS_SELECTOR, "main > .error")
        assert not errors, f"{self.driver.current_url}: {errors[0].text}"
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_until(self, script, timeout=30):
        """Waits until the JavaScript expression `script` is truthy; returns its value."""
        return WebDriverWait(self.driver, timeout).until(
            lambda d: d.execute_script("return " + script))

    def console_errors(self):
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def shoot(self, name):
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))

    def css(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)


@pytest.fixture
def page(browser):
    browser.set_window_size(1400, 1000)
    return Page(browser)
