"""Observability: GET /metrics (Prometheus text), --metrics-bind, GET /cloche/host
and the /ui/ dashboard, each checked with the real tool its users have: promtool,
a Prometheus server scraping the daemon, and headless Chromium driven through
chromedriver's W3C WebDriver API (urllib only).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import BUILD_DIR, free_port, run_to_exit

MIB = 1 << 20
TOKEN = "observe-token-0123456789"
SPIN = {"path": "cloche-payload", "args": ["spin", "120"]}


def metrics_text(client) -> tuple[str, str]:
    status, headers, body = client.raw("GET", "/metrics")
    assert status == 200, body[:300]
    return headers.get("Content-Type", ""), body.decode()


def series(text: str) -> dict[str, float]:
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def http_get(url: str, token: "str | None" = None, timeout: float = 10.0):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_for(what: str, fn, timeout: float = 30.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def start_spin(client, handle):
    return client.run(handle, SPIN, stdout=False, stderr=False)


# --------------------------------------------------------------------------
# /metrics


def test_metrics_exposition_passes_promtool(daemon):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian's prometheus package; scripts/deps.sh test)")
    port = free_port()
    d = daemon("--metrics-interval", "1", "--metrics-bind", f"127.0.0.1:{port}")
    c = d.client()
    limited = c.create({"handle": "obs-limited", "limits": {"memory_limits": {"limit_in_bytes": 64 * MIB}}})
    plain = c.create({"handle": "obs-plain"})
    start_spin(c, plain)
    c.stop(limited)

    ctype, text = metrics_text(c)
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    s = series(text)
    assert s['container_spec_memory_limit_bytes{handle="obs-limited"}'] == 64 * MIB
    assert s['container_spec_memory_limit_bytes{handle="obs-plain"}'] == 0
    for h in (limited, plain):
        for name in ("container_memory_usage_bytes", "container_memory_working_set_bytes",
                     "container_cpu_usage_seconds_total", "container_fs_usage_bytes",
                     "container_oom_events_total", "container_processes",
                     "container_network_receive_bytes_total",
                     "container_network_transmit_bytes_total"):
            assert f'{name}{{handle="{h}"}}' in s, (name, h)
    assert s['container_processes{handle="obs-plain"}'] >= 2  # init and the spinner
    assert s['container_memory_usage_bytes{handle="obs-plain"}'] > 0
    assert s['cloche_containers{state="active"}'] == 1
    assert s['cloche_containers{state="stopped"}'] == 1
    assert s['cloche_http_requests_total{route="Create",status="200"}'] == 2
    assert s['cloche_container_create_duration_seconds_count'] == 2
    assert s['cloche_process_run_duration_seconds_count'] == 1
    assert s['cloche_subnet_pool_used'] == 2 and s['cloche_subnet_pool_size'] == 256
    cap = c.capacity()  # the layer store, as Capacity reports it
    assert s['cloche_image_store_bytes'] == cap['cloche_image_store_bytes']
    assert s['cloche_image_store_layers'] == cap['cloche_image_store_layers']
    assert 'cloche_http_request_duration_seconds_bucket{route="Create",le="+Inf"}' in s

    # CPU time grows while the spinner runs.
    cpu0 = s['container_cpu_usage_seconds_total{handle="obs-plain"}']
    time.sleep(2.0)
    cpu1 = series(metrics_text(c)[1])['container_cpu_usage_seconds_total{handle="obs-plain"}']
    assert cpu1 > cpu0 + 0.2, (cpu0, cpu1)  # the machine is shared: not a full CPU

    # The metrics listener serves /metrics and nothing else.
    status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and b'container_memory_usage_bytes{handle="obs-plain"}' in body
    status, _, body = http_get(f"http://127.0.0.1:{port}/containers")
    assert status == 404, body
    assert c.list() and sorted(c.list()) == ["obs-limited", "obs-plain"]  # main listener does

    # A destroyed container's series go away.
    c.destroy(limited)
    assert 'handle="obs-limited"' not in metrics_text(c)[1]


def test_metrics_count_the_streamed_routes(daemon):
    """Run, Attach, the stdout/stderr streams, StreamIn and StreamOut are served
    on the daemon's own handler, not libmicrohttpd's: they count too, by status."""
    import io
    import tarfile
    from garden_client import GardenError
    d = daemon()
    c = d.client()
    h = c.create({"handle": "obs-streams"})
    p = c.run(h, {"path": "echo", "args": ["hi"]})
    assert p.wait() == 0 and p.stdout == b"hi\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("f")
        info.size = 2
        t.addfile(info, io.BytesIO(b"ok"))
    c.stream_in(h, "/tmp", buf.getvalue())
    assert c.stream_out(h, "/tmp/f")
    with pytest.raises(GardenError) as e:
        c.stream_out(h, "/no/such/file")
    out_status = e.value.status
    with pytest.raises(GardenError) as e:
        c.run("obs-no-such", {"path": "true"})
    assert e.value.status == 404
    status, _, _ = c.raw("GET", "/cloche/events")
    assert status == 200
    status, _, _ = c.raw("GET", "/containers/obs-no-such/cloche/logs")
    assert status == 404
    s = series(metrics_text(c)[1])
    assert s['cloche_http_requests_total{route="Events",status="200"}'] == 1
    assert s['cloche_http_requests_total{route="ContainerLogs",status="404"}'] == 1
    assert s['cloche_http_requests_total{route="Run",status="201"}'] == 1
    assert s['cloche_http_requests_total{route="Run",status="404"}'] == 1
    assert s['cloche_http_requests_total{route="Stdout",status="200"}'] == 1
    assert s['cloche_http_requests_total{route="Stderr",status="200"}'] == 1
    assert s['cloche_http_requests_total{route="StreamIn",status="200"}'] == 1
    assert s['cloche_http_requests_total{route="StreamOut",status="200"}'] == 1
    assert s[f'cloche_http_requests_total{{route="StreamOut",status="{out_status}"}}'] == 1
    assert s['cloche_http_request_duration_seconds_count{route="Run"}'] == 2
    # The ordinary routes are still counted as before.
    assert s['cloche_http_requests_total{route="Create",status="200"}'] == 1


def test_metrics_bind_follows_the_token_rule(daemon, nonloopback_ip):
    port = free_port(nonloopback_ip)
    argv = ["--metrics-bind", f"{nonloopback_ip}:{port}"]
    d = daemon(*argv, token=TOKEN)
    url = f"http://{nonloopback_ip}:{port}/metrics"
    status, headers, _ = http_get(url)
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    assert http_get(url, token="wrong-token-xxxxxxxx")[0] == 401
    status, _, body = http_get(url, token=TOKEN)
    assert status == 200 and b"cloche_containers" in body
    # Without a token the daemon refuses to serve metrics on that address.
    bare = daemon.new(*argv)
    result = run_to_exit(bare.argv())
    assert result.returncode != 0
    assert "Refusing to serve metrics" in result.stderr, result.stderr
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9100", "[127.0.0.1]:9100",
                "nohost:9100"):
        r = run_to_exit(bare.argv(["--metrics-bind", bad]))
        assert r.returncode == 2 and "--metrics-bind" in r.stderr, (bad, r.stderr)
    assert d.alive()


def test_prometheus_server_scrapes_the_daemon(daemon):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.skip("prometheus is not installed (Debian's prometheus package)")
    port = free_port()
    d = daemon("--metrics-bind", f"127.0.0.1:{port}")
    c = d.client()
    h = c.create({"handle": "obs-scraped", "limits": {"memory_limits": {"limit_in_bytes": 96 * MIB}}})
    with tempfile.TemporaryDirectory(prefix="cloche-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: cloche\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{port}']\n")
        web = free_port()
        log = open(Path(tmp) / "prometheus.log", "wb")
        proc = subprocess.Popen([prometheus, f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{web}"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            query = urllib.parse.urlencode(
                {"query": f'container_spec_memory_limit_bytes{{handle="{h}"}}'})

            def limit_series():
                try:
                    status, _, body = http_get(f"http://127.0.0.1:{web}/api/v1/query?{query}")
                except OSError:
                    return None
                if status != 200:
                    return None
                result = json.loads(body)["data"]["result"]
                return result or None

            result = wait_for("Prometheus to have the container's memory series", limit_series,
                              timeout=90)
            assert float(result[0]["value"][1]) == 96 * MIB
            assert result[0]["metric"]["job"] == "cloche"
            usage = urllib.parse.urlencode({"query": f'container_memory_usage_bytes{{handle="{h}"}}'})
            status, _, body = http_get(f"http://127.0.0.1:{web}/api/v1/query?{usage}")
            assert status == 200 and json.loads(body)["data"]["result"], body
            status, _, body = http_get(f"http://127.0.0.1:{web}/api/v1/targets")
            targets = json.loads(body)["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], targets
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# --------------------------------------------------------------------------
# /cloche/host


def test_host_figures_and_top_containers(daemon):
    d = daemon("--metrics-interval", "1")
    c = d.client()
    idle = c.create({"handle": "obs-idle"})
    busy = c.create({"handle": "obs-busy"})
    start_spin(c, busy)
    # Page cache written inside the container is charged to it.
    fat = c.create({"handle": "obs-fat"})
    p = c.run(fat, {"path": "sh", "args": ["-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null; sync"]})
    assert p.wait() == 0

    def busy_on_top():
        host = c.request("GET", "/cloche/host")
        assert host.status == 200, host.body
        h = json.loads(host.body)
        top = h["top_cpu"]
        return h if top and top[0]["handle"] == busy and top[0]["cpu_percent"] > 20 else None

    h = wait_for("the spinning container to top the CPU list", busy_on_top, timeout=20)
    assert h["cpu"]["cores"] == os.cpu_count()
    assert 0 < h["cpu"]["busy_percent"] <= 100
    assert h["top_cpu"][1]["cpu_percent"] < h["top_cpu"][0]["cpu_percent"]
    mem = h["memory"]
    assert 0 < mem["available_bytes"] <= mem["total_bytes"]
    assert mem["used_bytes"] == mem["total_bytes"] - mem["available_bytes"]
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    assert mem["total_bytes"] == total_kib * 1024
    st = os.statvfs(d.depot)
    assert h["disk"]["path"] == str(d.depot)
    assert h["disk"]["total_bytes"] == st.f_blocks * st.f_frsize
    assert 0 < h["disk"]["used_bytes"] < h["disk"]["total_bytes"]
    assert len(h["load_average"]) == 3 and all(x >= 0 for x in h["load_average"])
    assert h["containers"] == 3
    assert len(h["top_cpu"]) == 3 and len(h["top_memory"]) == 3
    assert h["top_memory"][0]["handle"] == fat, h["top_memory"]
    assert h["top_memory"][0]["memory_bytes"] >= 40 * MIB
    assert idle in [e["handle"] for e in h["top_cpu"]]


# --------------------------------------------------------------------------
# /ui/


class WebDriver:
    """The few W3C WebDriver calls the dashboard test needs, over urllib."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method: str, path: str, body=None, timeout: float = 60.0):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            value = json.loads(e.read()).get("value", {})
            raise RuntimeError(f"{method} {path}: {value.get('error')}: "
                               f"{str(value.get('message'))[:300]}") from None

    def start(self, user_data_dir: str):
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--window-size=1280,900", f"--user-data-dir={user_data_dir}"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": shutil.which("chromium") or "/usr/bin/chromium",
                                   "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def js(self, script: str, *args):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": list(args)})

    def click(self, css: str):
        for _ in range(5):  # the table is redrawn every few seconds: retry a stale element
            try:
                el = self.call("POST", self.s("/element"), {"using": "css selector", "value": css})
                self.call("POST", self.s(f"/element/{el[self.ELEMENT]}/click"), {})
                return
            except RuntimeError as e:
                if "stale" not in str(e):
                    raise
        raise RuntimeError(f"{css}: stale five times")


def test_dashboard_in_headless_chromium(daemon):
    d = daemon("--metrics-interval", "1")
    c = d.client()
    status, headers, body = c.raw("GET", "/ui")
    assert status == 301 and headers.get("Location") == "/ui/"
    status, headers, body = c.raw("GET", "/ui/")
    assert status == 200 and headers.get("Content-Type", "").startswith("text/html")
    assert b"<script>" in body and b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")
    assert b"https://" not in body  # nothing fetched from elsewhere

    chromedriver = shutil.which("chromedriver")
    if not chromedriver or not shutil.which("chromium"):
        pytest.skip("chromium/chromium-driver are not installed (scripts/deps.sh test)")
    watched = c.create({"handle": "obs-watched", "limits": {"memory_limits": {"limit_in_bytes": 128 * MIB}}})
    victim = c.create({"handle": "obs-victim"})
    start_spin(c, watched)
    # A container whose service writes a line to stdout and one to stderr every 0.2 s.
    talker = c.create({"handle": "obs-talker", "cloche_service": {
        "path": "sh", "args": ["-c", "i=0; while true; do i=$((i+1)); echo out-$i; "
                              "echo err-$i >&2; sleep 0.2; done"]}})

    tmp = tempfile.mkdtemp(prefix="cloche-chromium-")
    wd_port = free_port()
    log = open(Path(tmp) / "chromedriver.log", "wb")
    env = dict(os.environ, HOME=tmp)
    driver = subprocess.Popen([chromedriver, f"--port={wd_port}"], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    wd = WebDriver(wd_port)
    try:
        deadline = time.monotonic() + 20
        while not _ready(wd):
            if driver.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (Path(tmp) / "chromedriver.log").read_text(errors="replace")[-300:]
                pytest.skip(f"chromedriver cannot run here: {tail.strip() or 'not ready in 20 s'}")
            time.sleep(0.2)
        try:
            wd.start(str(Path(tmp) / "profile"))
        except RuntimeError as e:
            pytest.skip(f"headless chromium cannot start here: {e}")
        wd.call("POST", wd.s("/url"), {"url": f"http://127.0.0.1:{d.bind_port}/ui/"})
        rows = wait_for("the table to list the containers", lambda: sorted(wd.js(
            "return [...document.querySelectorAll('tr[data-handle]')].map(r => r.dataset.handle)"
        )) == sorted(c.list()) and len(c.list()) == 3, timeout=20)
        assert rows
        state = wd.js("return document.querySelector('tr[data-handle=\"obs-victim\"] td:nth-child(2)').textContent")
        assert state == "active"
        limit = wd.js("return document.querySelector('tr[data-handle=\"obs-watched\"] td:nth-child(4)').textContent")
        assert limit == "128.0 MiB"

        wd.click('tr[data-handle="obs-watched"] td')
        points = wait_for("the CPU graph to draw points", lambda: wd.js(
            "const p = document.querySelector('svg[data-title=\"CPU\"] polyline');"
            "return p ? p.getAttribute('points').trim().split(/\\s+/).filter(Boolean).length : 0"
        ) >= 2, timeout=30)
        assert points
        mem_points = wd.js("return document.querySelector('svg[data-title=\"Memory\"] polyline')"
                           ".getAttribute('points')")
        assert re.match(r"^[\d.]+,[\d.]+ ", mem_points), mem_points

        wd.click('tr[data-handle="obs-victim"] button.stop')
        wait_for("the stop button to stop the container",
                 lambda: c.info(victim)["State"] == "stopped", timeout=30)
        assert c.info(watched)["State"] == "active"
        wait_for("the table to show it stopped", lambda: wd.js(
            "return document.querySelector('tr[data-handle=\"obs-victim\"]').dataset.state"
        ) == "stopped", timeout=20)
        # Its start button (enabled only now) brings it back.
        assert wd.js("return document.querySelector("
                     "'tr[data-handle=\"obs-watched\"] button.start').disabled") is True
        wd.click('tr[data-handle="obs-victim"] button.start')
        wait_for("the start button to start the container",
                 lambda: c.info(victim)["State"] == "active", timeout=30)
        wait_for("the table to show it active again", lambda: wd.js(
            "return document.querySelector('tr[data-handle=\"obs-victim\"]').dataset.state"
        ) == "active", timeout=20)

        # Selecting a container tails its service's logs, stdout and stderr, as they come.
        wd.click('tr[data-handle="obs-talker"] td')
        seen = wait_for("the selected container's log lines", lambda: wd.js(
            "return [...document.querySelectorAll('#logs div')].map(d => d.className + ' ' + "
            "d.textContent)") or None, timeout=20)
        assert any(re.fullmatch(r"stdout out-\d+", l) for l in seen), seen
        assert any(re.fullmatch(r"stderr err-\d+", l) for l in seen), seen
        last = max(int(l.split("-")[1]) for l in seen if l.startswith("stdout"))
        wait_for("new log lines to arrive while following", lambda: max(
            [int(t.split("-")[1]) for t in wd.js(
                "return [...document.querySelectorAll('#logs div.stdout')].map(d => d.textContent)")]
            or [0]) >= last + 3, timeout=20)
        assert wd.js("return document.getElementById('logs').dataset.state") == "following"
        # A container without logs says so.
        wd.click('tr[data-handle="obs-victim"] td')
        wait_for("the no-logs note", lambda: "no logs" in wd.js(
            "return document.getElementById('logs').textContent"), timeout=20)

        shot = base64.b64decode(wd.call("GET", wd.s("/screenshot")))
        assert shot.startswith(b"\x89PNG")
        out = BUILD_DIR / "test-observe-dashboard.png"
        out.write_bytes(shot)
    finally:
        if wd.session:
            try:
                wd.call("DELETE", wd.s(""), timeout=20)
            except (RuntimeError, OSError):
                pass
        driver.terminate()
        try:
            driver.wait(timeout=20)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _ready(wd: WebDriver) -> bool:
    try:
        return bool(wd.call("GET", "/status", timeout=2).get("ready"))
    except (OSError, RuntimeError):
        return False
