"""A real headless Chromium driven over the DevTools protocol on a pipe (no extra packages).

:func:`render` opens a local page, records every request it makes, waits until a JavaScript
condition holds (e.g. the plots drew), evaluates expressions on the rendered DOM and saves
screenshots. Debian's ``chromium`` package provides the browser; CI installs it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Flags for a quiet, offline-clean headless run: no background fetches, no sync, no first-run
#: pages, software WebGL (plotly's 3-D scenes need WebGL; there is no GPU).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def chromium() -> str | None:
    """Path of the chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Rendered:
    """What a page did: the URLs it requested, the values of the expressions, exceptions thrown."""

    requests: list[str] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    exceptions: list[str] = field(default_factory=list)


class _Pipe:
    """DevTools messages (NUL-terminated JSON) to and from the browser's fds 3 and 4."""

    def __init__(self, write_fd: int, read_fd: int):
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


def _high(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def render(
    page: Path,
    ready: str,
    expressions: dict[str, str],
    screenshots: dict[Path, str],
    width: int = 1280,
    height: int = 900,
    timeout: float = 120,
) -> Rendered:
    """Open ``page``, wait until the JavaScript ``ready`` is true, then evaluate ``expressions``
    (name -> JavaScript returning JSON-able values) and save ``screenshots`` (path -> a CSS
    selector whose element is captured, scrolled into view)."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    # Pipe ends at fds >= 10, so that moving them to 3 and 4 in the child cannot clobber one another.
    to_browser, from_browser = (tuple(_high(fd) for fd in os.pipe()) for _ in range(2))
    profile = tempfile.mkdtemp(prefix="infpop-chromium-")
    log = open(Path(profile) / "chromium.log", "w+b")  # noqa: SIM115 (closed below, read on failure)
    # The browser reads commands on fd 3 and writes replies on fd 4 (bash: dash takes one-digit fds only).
    shell = f'exec "$@" 3<&{to_browser[0]} 4>&{from_browser[1]}'
    proc = subprocess.Popen(
        ["bash", "-c", shell, "bash", exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"],
        pass_fds=(to_browser[0], from_browser[1]),
        stdout=log,
        stderr=log,
    )
    os.close(to_browser[0])
    os.close(from_browser[1])
    pipe = _Pipe(to_browser[1], from_browser[0])
    out = Rendered()
    try:
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        except (RuntimeError, TimeoutError) as exc:
            log.seek(0)
            raise RuntimeError(
                f"chromium did not start: {exc}\n{log.read().decode(errors='replace')[-3000:]}"
            ) from None
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)

        def evaluate(expression: str):
            res = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
            if "exceptionDetails" in res:
                raise RuntimeError(f"{expression}: {res['exceptionDetails'].get('text')}")
            return res["result"].get("value")

        deadline = time.monotonic() + timeout
        while not evaluate(ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never became ready: {ready}")
            time.sleep(0.5)
        out.values = {name: evaluate(js) for name, js in expressions.items()}
        for path, selector in screenshots.items():
            box = evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                " const r = e.getBoundingClientRect();"
                " return {x: r.x + window.scrollX, y: Math.max(0, r.y + window.scrollY - 8), width: r.width,"
                " height: r.height + 8}; })()"
            )
            time.sleep(1.0)  # let WebGL scenes scrolled into view repaint
            shot = pipe.send(
                "Page.captureScreenshot",
                {"format": "png", "clip": {**box, "scale": 1}, "captureBeyondViewport": True},
                session=session,
            )
            path.write_bytes(base64.b64decode(shot["data"]))
        for event in pipe.events:
            if event.get("method") == "Network.requestWillBeSent":
                out.requests.append(event["params"]["request"]["url"])
            elif event.get("method") == "Runtime.exceptionThrown":
                out.exceptions.append(json.dumps(event["params"]["exceptionDetails"])[:500])
        try:
            pipe.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError):
            pass
    finally:
        os.close(to_browser[1])
        os.close(from_browser[0])
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    return out
