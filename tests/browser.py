"""A real headless Chromium (Debian's `chromium`) driven over the Chrome DevTools protocol.

    with Chromium(tmp_path) as browser:
        browser.navigate("http://127.0.0.1:9108/")
        browser.wait_for("document.querySelectorAll('.card').length >= 2", timeout=10)
        browser.screenshot(tmp_path / "page.png")

The DevTools port is chosen by Chromium (--remote-debugging-port=0) and read from DevToolsActivePort in
its profile; the page target's WebSocket is spoken to with `websockets`' synchronous client.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium: run scripts/install-system-deps.sh (Debian package chromium)")


class Chromium:
    def __init__(self, workdir: Path, width: int = 1280, height: int = 900, timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        self.profile = Path(workdir) / "chromium-profile"
        self.log = Path(workdir) / "chromium.log"
        args = [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        if not port_file.exists():
            self.close()
            raise RuntimeError(f"chromium gave no DevTools port within {timeout:.0f} s: {self.log.read_text()[-2000:]}")
        port = int(port_file.read_text().split()[0])
        page = None
        while page is None and time.monotonic() < deadline:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                time.sleep(0.1)
        if page is None:
            self.close()
            raise RuntimeError("chromium has no page target")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout, proxy=None, legacy=True)
        self._id = 0
        self.console: list[str] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if msg.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in msg["params"]["args"]))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(msg["params"]["exceptionDetails"])[:500])
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        """Go to `url` and wait until its document has loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"document.readyState === 'complete' && location.origin === {json.dumps(url.split('/', 3)[:3])}.join('/')",
                      timeout=timeout)

    def wait_for(self, expression: str, timeout: float = 10.0, every: float = 0.05) -> Any:
        """Evaluate until truthy (an exception counts as not yet); its value, or TimeoutError naming the
        expression and the last exception."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError as e:
                value, last_error = None, str(e)[:300]
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not true within {timeout:g} s: {expression} (last error: {last_error}; "
                                   f"console: {self.console[-5:]})")
            time.sleep(every)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
