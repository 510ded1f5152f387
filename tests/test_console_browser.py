"""The console in a real headless browser (Debian's chromium, driven by Selenium through Debian's
chromium-driver): log in, a new incident appears without a reload while an edge sends it, open it,
acknowledge it in one window and see a second window follow, draw a zone, export it and run the
pipeline with it. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.console.edges import EdgeControl

from .conftest import unavailable
from .iccc import PASSWORD, Iccc, video_frame
from .util import free_port, scripted, write_config

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.slow


@pytest.fixture
def browser_factory() -> Iterator:
    if CHROMIUM is None or DRIVER is None:
        unavailable("chromium and chromedriver are not installed", "apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(width: int = 1920, height: int = 1080):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={width},{height}",
            "--lang=en-GB",
        ):
            options.add_argument(arg)
        d = webdriver.Chrome(service=Service(DRIVER), options=options)
        drivers.append(d)
        return d

    yield start
    for d in drivers:
        d.quit()


@pytest.fixture
def iccc(tmp_path: Path) -> Iterator[Iccc]:
    env = Iccc(tmp_path, free_port())
    yield env
    env.close()


def wait(driver, cond, timeout: float = 15.0):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the live pages re-render their tables as changes arrive: an element found a moment ago may be gone
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(cond)


def log_in(driver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    assert driver.current_url.endswith("/login")  # no anonymous page: sent to log in
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(driver, lambda d: d.find_element(By.ID, "live").text == "live")


def click_at(driver, canvas, fx: float, fy: float) -> None:
    """A click at (fx, fy) of the canvas, in fractions of its size (Selenium offsets from the centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    w, h = canvas.size["width"], canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        canvas, int((fx - 0.5) * w), int((fy - 0.5) * h)
    ).click().perform()


def draw_zone(driver, canvas, name: str, corners: tuple[tuple[float, float], ...]) -> None:
    """Click the corners, name the zone, close it (as an operator does in the editor)."""
    from selenium.webdriver.common.by import By

    for fx, fy in corners:
        click_at(driver, canvas, fx, fy)
    field = driver.find_element(By.ID, "shape-name")
    field.clear()
    field.send_keys(name)
    driver.find_element(By.ID, "close-polygon").click()


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


BAY = ("loading-bay", [[600, 30], [768, 30], [768, 120], [600, 120]])  # configs/demo.yaml's, on vtest.avi


def test_operators_work_an_incident_live_in_two_windows(
    browser_factory, iccc: Iccc, tmp_path: Path, vtest: Path
) -> None:
    from selenium.webdriver.common.by import By

    a, b = browser_factory(), browser_factory(1366, 768)  # a control-room screen and a laptop
    log_in(a, iccc.url, "oper")
    log_in(b, iccc.url, "oper2")
    a.execute_script("window.notReloaded = true")
    edge = iccc.edge(tmp_path, cameras=("gate-cam", "bay-cam"))
    frame = video_frame(vtest, 6.0)  # real footage: the van and the car standing in the loading bay
    lawn = ("lawn", [[0, 240], [330, 318], [470, 385], [768, 497], [768, 576], [0, 576]])
    person = (("person", (300.0, 300.0, 350.0, 420.0)),)
    parked = (("truck", (612.0, 38.0, 700.0, 110.0)), ("car", (700.0, 60.0, 766.0, 118.0)))
    edge.incident(kind="theft", camera="gate-cam", severity="high", frame=frame, zone=lawn, objects=person)
    iid = edge.incident(
        kind="encroachment", camera="bay-cam", severity="medium", frame=frame, zone=BAY, objects=parked
    )
    row = f'#queue tr[data-key="edge-1/{iid}"]'
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue tr.incident-row")) == 2)
    assert a.execute_script("return window.notReloaded") is True  # pushed, not reloaded
    first = a.find_elements(By.CSS_SELECTOR, "#queue tr.incident-row")[0]
    assert "bay-cam" in first.text and "new" in first.text  # newest first
    shot(a, "queue-1920x1080")
    # the filter narrows the live queue
    a.find_element(By.CSS_SELECTOR, 'select[name="type"] option[value="theft"]').click()
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue tr.incident-row")) == 1)
    assert "gate-cam" in a.find_element(By.CSS_SELECTOR, "#queue tr.incident-row").text
    a.find_element(By.CSS_SELECTOR, "#filters button[type=reset]").click()
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue tr.incident-row")) == 2)

    # both open the incident; a acknowledges it, b sees it change without reloading
    wait(a, lambda d: d.find_element(By.CSS_SELECTOR, row + " a").click() or True)  # (the row may re-render)
    wait(a, lambda d: d.find_element(By.ID, "state").text == "new")
    assert a.execute_script("return document.querySelector('img.snapshot').naturalWidth") == 768
    b.get(a.current_url)
    wait(b, lambda d: d.find_element(By.ID, "live").text == "live")
    b.execute_script("window.notReloaded = true")
    shot(a, "incident-1920x1080")
    a.find_element(By.CSS_SELECTOR, "form.action button.act-acknowledge").click()
    wait(a, lambda d: d.find_element(By.ID, "state").text == "acknowledged")
    wait(b, lambda d: d.find_element(By.ID, "state").text == "acknowledged")
    assert b.execute_script("return window.notReloaded") is True
    assert "oper acknowledge" in b.find_element(By.ID, "action-log").text
    assert not b.find_element(By.CSS_SELECTOR, "form.action button.act-acknowledge").is_displayed()
    # b marks it a false alarm (a comment is required): a follows
    form = b.find_element(By.CSS_SELECTOR, "form.action button.act-false_alarm").find_element(By.XPATH, "..")
    form.find_element(By.NAME, "comment").send_keys("the owner, loading his own van")
    form.find_element(By.TAG_NAME, "button").click()
    wait(a, lambda d: d.find_element(By.ID, "state").text == "false alarm")
    assert "the owner, loading his own van" in a.find_element(By.ID, "action-log").text
    shot(b, "incident-1366x768")
    a.get(iccc.url + "/")
    wait(a, lambda d: "false alarm" in d.find_element(By.CSS_SELECTOR, row).text)


def test_a_zone_drawn_in_the_browser_runs_in_the_pipeline(
    browser_factory, iccc: Iccc, tmp_path: Path, clips: list[Path], vtest: Path
) -> None:
    from selenium.webdriver.common.by import By

    edge = iccc.edge(tmp_path, source="edge-7", cameras=("cam0",))
    edge.incident(
        camera="cam0",
        frame=video_frame(vtest, 6.0),
        zone=BAY,
        objects=(("truck", (612.0, 38.0, 700.0, 110.0)),),
    )
    d = browser_factory()
    log_in(d, iccc.url, "oper")
    d.get(iccc.url + "/cameras")
    wait(d, lambda d: "cam0" in d.find_element(By.ID, "cameras").text)
    d.find_element(By.CSS_SELECTOR, 'tr[data-camera="cam0"] a').click()
    canvas = wait(d, lambda d: d.find_element(By.ID, "zone-canvas"))
    # the camera's latest snapshot (768x576) is drawn: the canvas takes its shape
    wait(d, lambda d: d.execute_script("return document.getElementById('zone-canvas').height") == 720)
    draw_zone(d, canvas, "footpath", ((0.1, 0.5), (0.6, 0.5), (0.6, 0.9), (0.1, 0.9)))
    d.find_element(By.ID, "new-line").click()
    for fx, fy in ((0.2, 0.3), (0.8, 0.3)):
        click_at(d, canvas, fx, fy)
    d.find_element(By.ID, "export").click()
    text = wait(d, lambda d: d.find_element(By.ID, "yaml").get_attribute("value"))
    shot(d, "zone-editor")
    snippet = yaml.safe_load(text)
    (zone,), (line,) = snippet["zones"], snippet["lines"]
    assert zone["name"] == "footpath" and zone["normalized"] is True
    assert [round(v, 1) for v in zone["polygon"][0]] == [0.1, 0.5] and [
        round(v, 1) for v in zone["polygon"][2]
    ] == [0.6, 0.9]
    assert line["name"] == "line-2" and len(line["points"]) == 2

    # the exported keys go into a camera of a config, and `safecity run` runs it, reporting to this sink
    # and serving its control interface, which the console is told about
    control, token = free_port(), tmp_path / "control.token"
    token.write_text("a control token of some length\n")
    token.chmod(0o600)
    iccc.console.edges["edge-9"] = EdgeControl(
        "edge-9", f"http://127.0.0.1:{control}", token.read_text().strip()
    )
    cfg = write_config(
        tmp_path / "edge.yaml",
        edge_id="edge-9",
        device="cpu",
        cameras=[{"id": "cam0", "source": str(clips[0]), "loop": True, "analytics_fps": 5, **snippet}],
        model={
            "backend": "scripted",
            "scripted_detections": str(scripted(tmp_path / "s.jsonl", [], ["person"], 0)),
        },
        sink={"endpoint": iccc.endpoint, "outbox": str(tmp_path / "edge9.sqlite"), "insecure": True},
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--duration", "90", "--quiet",
         "--control", f"127.0.0.1:{control}", "--control-token-file", str(token)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # its heartbeats reach the console: the camera of the run is listed with its edge, up
        d.get(iccc.url + "/cameras")
        wait(d, lambda d: "edge-9" in d.find_element(By.ID, "cameras").text, 60)
        wait(d, lambda d: "up" in d.find_element(By.CSS_SELECTOR, "#cameras tr:last-child").text, 30)
        shot(d, "cameras")
        # an admin opens its zones: what the edge runs with is loaded, edited, pushed back
        d.get(iccc.url + "/")
        d.find_element(By.CSS_SELECTOR, "form.inline button.link").click()  # log out
        wait(d, lambda d: d.current_url.endswith("/login"))  # the click returns before the post is done
        log_in(d, iccc.url, "admin")
        d.get(iccc.url + "/zones/edge-9/cam0")
        wait(d, lambda d: "footpath" in d.find_element(By.ID, "shapes").text and "line-2" in d.find_element(
            By.ID, "shapes").text)  # fmt: skip
        canvas = d.find_element(By.ID, "zone-canvas")
        draw_zone(d, canvas, "bay2", ((0.7, 0.1), (0.95, 0.1), (0.95, 0.3)))
        d.find_element(By.ID, "push").click()
        d.switch_to.alert.accept()  # "Replace the zones and lines camera cam0 runs with on edge-9?"
        wait(
            d,
            lambda d: (
                "pushed to edge-9: 2 zones, 1 lines" in d.find_element(By.ID, "yaml").get_attribute("value")
            ),
        )
        shot(d, "zone-editor-push")
        from pipeline.control import request

        status, body = request(f"http://127.0.0.1:{control}/cameras", "GET", token=token.read_text().strip())
        (cam,) = body["cameras"]
        assert [z["name"] for z in cam["config"]["zones"]] == ["footpath", "bay2"]
        assert [x["name"] for x in cam["config"]["lines"]] == ["line-2"]
        assert any(
            e["action"] == "zones.push" and e["user"] == "admin" for e in iccc.console.store.audit_log()
        )
        # only admins push; operators and viewers may look
        oper = iccc.client("oper")
        nothing = {"source": "edge-9", "camera_id": "cam0", "zones": [], "lines": []}
        status, _, raw = oper.request(
            "POST", "/api/zones/push", body=nothing, headers={"X-CSRF-Token": oper.csrf}
        )
        assert status == 403 and b"only admins" in raw
        assert oper.get_json("/api/zones/edge-9/cam0")[0] == 200
        assert iccc.client("viewer").get_json("/api/zones/edge-9/cam0")[0] == 404  # no such page for viewers
        assert oper.get_json("/api/zones/edge-1/cam0")[0] == 404  # an edge the console does not know
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.stderr.read() if run.stderr else ""
    finally:
        if run.poll() is None:
            run.kill()
