"""Loads the demo page in headless Chromium through chromedriver (the WebDriver protocol,
Python's standard library only), and checks it.

With WebGPU (SwiftShader): waits for `#result` to read `test accuracy: 0.XXXX`, checks the
accuracy is at least 0.90, and saves a screenshot. Without WebGPU: checks that the page
says so in `#error` instead of staying blank or hanging.

Usage: python3 web/page_test.py URL SCREENSHOT.png
Exits non-zero, with the reason, on any failure.
"""

import base64
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

WEBGPU_ARGS = [
    "--headless=new",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-webgpu-adapter=swiftshader",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=800,850",
]
# WebGPU turned off: the page must say that it cannot run.
NO_WEBGPU_ARGS = ["--headless=new", "--disable-features=WebGPU", "--no-sandbox", "--disable-dev-shm-usage"]
TRAINING_SECONDS = 600
MIN_ACCURACY = 0.90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    """A chromedriver process and one browser session."""

    def __init__(self, args):
        self.port = free_port()
        self.process = subprocess.Popen(
            ["chromedriver", f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 30
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("chromedriver did not start")
                time.sleep(0.2)
        capabilities = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)["value"]

    def session_call(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def text(self, element_id):
        script = "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;"
        return self.session_call("POST", "/execute/sync", {"script": script, "args": [element_id]})

    def close(self):
        try:
            self.session_call("DELETE", "")
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


def check_trains(url, screenshot):
    driver = Driver(WEBGPU_ARGS)
    try:
        started = time.time()
        driver.session_call("POST", "/url", {"url": url})
        result = error = ""
        while time.time() - started < TRAINING_SECONDS:
            result, error = driver.text("result") or "", driver.text("error") or ""
            if result or error:
                break
            time.sleep(1)
        seconds = time.time() - started
        png = base64.b64decode(driver.session_call("GET", "/screenshot"))
        with open(screenshot, "wb") as f:
            f.write(png)
        adapter = driver.text("adapter")
        if error:
            raise SystemExit(f"the page stopped on an error: {error}")
        match = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", result)
        if not match:
            raise SystemExit(f"no '#result' of 'test accuracy: 0.XXXX' after {seconds:.0f} s (got {result!r})")
        accuracy = float(match.group(1))
        print(f"page: {result} in {seconds:.1f} s; {adapter}; screenshot {screenshot}")
        if accuracy < MIN_ACCURACY:
            raise SystemExit(f"the page's test accuracy {accuracy} is below {MIN_ACCURACY}")
    finally:
        driver.close()


def check_without_webgpu(url):
    driver = Driver(NO_WEBGPU_ARGS)
    try:
        driver.session_call("POST", "/url", {"url": url})
        deadline = time.time() + 60
        error = ""
        while time.time() < deadline and not error:
            error = driver.text("error") or ""
            time.sleep(0.5)
        if "WebGPU" not in error:
            raise SystemExit(f"without WebGPU the page did not say so in #error (got {error!r})")
        print(f"page without WebGPU: {error[:100]}...")
    finally:
        driver.close()


def wait_for_server(url):
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"the static server does not answer at {url}")
            time.sleep(0.2)


def main():
    url, screenshot = sys.argv[1], sys.argv[2]
    wait_for_server(url)
    check_without_webgpu(url)
    check_trains(url, screenshot)


if __name__ == "__main__":
    main()
