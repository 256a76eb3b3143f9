"""`painface review` in a real headless browser (Debian's chromium + chromium-driver,
through Selenium; nothing downloads a browser): the study page seeks the video to a
clicked minute, the gallery filters, blind MGS scoring by keyboard survives a reload
and writes the sheet `mgs compare` reads, and no request leaves 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.conftest import analysis_study_file, fake_predictions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytest.importorskip("flask")
pytest.importorskip("plotly")


@pytest.fixture(scope="module")
def sources(store, quick_checkpoint, tmp_path_factory):
    """A study analysed from predictions with known probabilities, and a checkpoint for Grad-CAM."""
    from painface.analysis import analyze_study
    from painface.review import locate

    tmp = tmp_path_factory.mktemp("review")
    pred = fake_predictions(store, tmp)
    analyze_study(analysis_study_file(tmp, bin_s=6), pred, store, tmp / "results")  # 0.1-min bins
    return locate(tmp / "results", ckpt_path=quick_checkpoint)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(fn, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_study_page_seeks_the_video_to_a_clicked_minute_and_stays_on_this_machine(sources, browser, manifest):
    from selenium.webdriver.common.by import By

    from painface.manifest import read_manifest
    from painface.review import Server, create_app

    m = read_manifest(manifest)
    with Server(create_app(sources, gallery_n=24)) as server:
        browser.get(server.url)
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#groups .main-svg"), what="the group plot")
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#animals .main-svg"), what="the per-animal plot")
        # every animal of the study has a row; the first post minute of one mouse is clicked
        rows = {td.get_attribute("data-mouse") for td in browser.find_elements(By.CSS_SELECTOR, "#strip td.cell")}
        assert rows == set(m.mouse_id)
        mouse = sorted(m.mouse_id)[0]
        cell = browser.find_element(By.CSS_SELECTOR, f'#strip td.cell[data-mouse="{mouse}"][data-minute="0.0"]')
        session = cell.get_attribute("data-session")
        cell.click()
        cameras = browser.find_elements(By.CSS_SELECTOR, "#camera option")
        camera = next(o.text for o in cameras if o.is_selected())
        row = m[(m.session_id == session) & (m.camera == camera)].iloc[0]
        expected = row.treatment_time_s  # minute 0 starts at the treatment; frame_offset is 0 here
        state = _wait(
            lambda: (
                (
                    s := browser.execute_script(
                        "const v = document.getElementById('player');"
                        "return {t: v.currentTime, ready: v.readyState, w: v.videoWidth, err: v.error && v.error.code};"
                    )
                )["ready"]
                >= 1
                and abs(s["t"] - expected) < 0.5 / row.fps
                and s
            ),
            what=f"the video to seek to {expected} s",
        )
        assert state["w"] > 0 and state["err"] is None  # Chromium decoded the H.264 render
        # a later minute of the same session: seeking moves on without reloading the video
        later = browser.find_element(By.CSS_SELECTOR, f'#strip td.cell[data-session="{session}"][data-minute="0.1"]')
        later.click()
        want = expected + 0.1 * 60
        _wait(
            lambda: (
                abs(browser.execute_script("return document.getElementById('player').currentTime") - want)
                < 0.5 / row.fps
            ),
            what=f"the video to seek to {want} s",
        )
        for page in ("gallery", "store"):
            browser.get(server.url + page)
        urls = _requested_urls(browser)
    assert any(u.endswith("/static/plotly.min.js") for u in urls)
    assert any(".mp4" in u for u in urls)
    outside = [u for u in urls if not u.startswith(server.url) and not u.startswith(("data:", "blob:"))]
    assert not outside, f"requests left 127.0.0.1: {outside}"


def test_gallery_filters_by_class_region_animal_and_phase(sources, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from painface.review import Server, create_app

    with Server(create_app(sources, gallery_n=24)) as server:
        browser.get(server.url + "gallery")
        figs = browser.find_elements(By.CSS_SELECTOR, "#grid figure")
        assert len(figs) == 24
        assert all(img.get_property("naturalWidth") > 0 for img in browser.find_elements(By.CSS_SELECTOR, "#grid img"))

        def visible():
            return [f for f in browser.find_elements(By.CSS_SELECTOR, "#grid figure") if f.is_displayed()]

        predicted = Select(browser.find_element(By.ID, "filter-predicted"))
        classes = [o.text for o in predicted.options if o.text != "all"]
        assert classes and set(classes) <= {"pain", "no_pain"}
        for cls in classes:
            predicted.select_by_visible_text(cls)
            shown = visible()
            # p(pain) printed in the caption agrees with the class it was filtered by
            probs = [float(f.text.split("p(pain) ")[1].split(" ")[0]) for f in shown]
            # the pain decision is p > 0.5 (a tie is no pain); captions round to 2 decimals
            assert all(p >= 0.5 if cls == "pain" else p <= 0.5 for p in probs)
            n = sum(f.get_attribute("data-predicted") == cls for f in figs)
            assert len(shown) == n
            assert browser.find_element(By.ID, "shown").text == f"{n} of 24 shown"
        Select(browser.find_element(By.ID, "filter-predicted")).select_by_visible_text("all")
        # a region: every shown crop lists it among its Grad-CAM-positive regions
        counts = pd.Series([r for f in figs for r in f.get_attribute("data-regions").split()]).value_counts()
        region = counts.index[0]
        Select(browser.find_element(By.ID, "filter-regions")).select_by_visible_text(region)
        shown = visible()
        assert len(shown) == counts[region] and all(region in f.text for f in shown)
        # animal and phase together
        Select(browser.find_element(By.ID, "filter-regions")).select_by_visible_text("all")
        mouse = figs[0].get_attribute("data-mouse_id")
        phase = figs[0].get_attribute("data-phase")
        Select(browser.find_element(By.ID, "filter-mouse_id")).select_by_visible_text(mouse)
        Select(browser.find_element(By.ID, "filter-phase")).select_by_visible_text(phase)
        shown = visible()
        assert shown and all(f.text.startswith(f"{mouse} · {phase}") for f in shown)


def test_store_page_lists_every_video_and_shows_its_crops(sources, browser, manifest):
    from selenium.webdriver.common.by import By

    from painface.manifest import read_manifest
    from painface.review import Server, create_app

    m = read_manifest(manifest)
    with Server(create_app(sources)) as server:
        browser.get(server.url + "store")
        rows = browser.find_elements(By.CSS_SELECTOR, "#units tr.unit")
        assert len(rows) == len(m)
        header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#units th")]
        r = rows[0]
        cells = dict(zip(header, [td.text for td in r.find_elements(By.TAG_NAME, "td")]))
        # frames = faces + skipped, and skipped = no nose + no eye (every frame is accounted for)
        assert int(cells["frames"]) == int(cells["faces"]) + int(cells["skipped"])
        assert int(cells["skipped"]) == int(cells["skip_no_nose"]) + int(cells["skip_no_eye"])
        assert int(cells["faces"]) == sum(int(cells[f"rule_{k}"]) for k in ("i", "ii", "iii"))
        r.click()
        session, camera = r.get_attribute("data-session"), r.get_attribute("data-camera")
        _wait(lambda: session in browser.find_element(By.ID, "crops-title").text, what="the video's crops")
        alts = [i.get_attribute("alt") for i in browser.find_elements(By.CSS_SELECTOR, "#crops img")]
        assert alts and all(a.startswith(f"{session}/{camera}/") for a in alts)
        images = browser.find_elements(By.CSS_SELECTOR, "#crops img")
        _wait(lambda: all(i.get_property("naturalWidth") > 0 for i in images), what="the crops to load")


def test_blind_mgs_scoring_by_keyboard_survives_a_reload_and_feeds_mgs_compare(store, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from painface.mgs import KEY_FILE, compare, sample
    from painface.review import Server, create_app, locate

    kit = sample(store, tmp_path / "kit", n=5, seed=3)
    sheet_order = pd.read_csv(kit / "scoring_sheet.csv")["image"].tolist()
    key = pd.read_csv(kit / KEY_FILE).set_index("image")["label"]
    presses = [[2, 2, 1, 0, 1], "x", [0, 0, 0, 1, 0], [1, 2, 2, 2, 1], [0, 1, 0, 0, 0]]
    with Server(create_app(locate(None, kit=kit))) as server:
        browser.get(server.url + "mgs")
        browser.find_element(By.ID, "scorer").send_keys("alice", Keys.ENTER)
        _wait(lambda: "0 of 5" in browser.find_element(By.ID, "progress").text, what="the scoring page")
        body = browser.find_element(By.TAG_NAME, "body")

        def score(i, keys):
            assert browser.find_element(By.ID, "image").get_attribute("alt") == sheet_order[i]
            body.send_keys(*(["x"] if keys == "x" else [str(k) for k in keys]))
            _wait(lambda: f"{i + 1} of 5" in browser.find_element(By.ID, "progress").text, what=f"image {i + 1} saved")

        score(0, presses[0])
        score(1, presses[1])
        browser.refresh()  # a reload (or a crash) mid-way loses nothing and resumes at image 3
        _wait(lambda: "2 of 5" in browser.find_element(By.ID, "progress").text, what="resumed progress")
        body = browser.find_element(By.TAG_NAME, "body")
        # a slip corrected with Backspace before the fifth unit
        assert browser.find_element(By.ID, "image").get_attribute("alt") == sheet_order[2]
        body.send_keys("2", Keys.BACKSPACE)
        score(2, presses[2])
        # a fast scorer types the next image's scores while this one is saved: they queue
        assert browser.find_element(By.ID, "image").get_attribute("alt") == sheet_order[3]
        body.send_keys(*[str(k) for k in presses[3] + presses[4]])
        _wait(lambda: "5 of 5" in browser.find_element(By.ID, "progress").text, what="images 4 and 5 saved")
        _wait(lambda: browser.find_element(By.ID, "finished").is_displayed(), what="the finished message")
        # a second scorer through the same endpoint the page uses
        second = [[2, 2, 1, 0, 0], None, [0, 0, 1, 1, 0], [1, 2, 2, 2, 2], [0, 1, 0, 0, 0]]
        units = ("orbital_tightening", "nose_bulge", "cheek_bulge", "ear_position", "whisker_change")
        for image, s in zip(sheet_order, second):
            body_json = {"image": image, "scores": dict(zip(units, s)) if s else None, "exclude": "" if s else "blurry"}
            req = urllib.request.Request(
                server.url + "mgs/score/bob", json.dumps(body_json).encode(), {"Content-Type": "application/json"}
            )
            assert urllib.request.urlopen(req).status == 200
        browser.get(server.url + "mgs")
        table = browser.find_element(By.ID, "agreement").text
    result = compare(kit / "scores" / "alice.csv", kit / KEY_FILE, tmp_path / "cmp")
    totals = {img: sum(p) for img, p in zip(sheet_order, presses) if p != "x"}
    by_label = pd.Series(totals).groupby(key.reindex(list(totals)).to_numpy()).mean()
    assert result["n"] == 4 and result["n_excluded"] == 1
    for label, mean in by_label.items():
        assert result["mgs_by_label"][label]["mean"] == pytest.approx(mean, abs=1e-4)
    # quadratic-weighted kappa of the totals by hand: 1 - sum(w O) / sum(w E)
    a = np.array([sum(p) for p in presses if p != "x"])
    b = np.array([sum(s) for s, p in zip(second, presses) if p != "x"])
    cats = np.arange(11)
    obs = np.array([[np.sum((a == i) & (b == j)) for j in cats] for i in cats], float)
    exp = np.outer(obs.sum(1), obs.sum(0)) / obs.sum()
    w = (cats[:, None] - cats[None, :]) ** 2
    kappa = 1 - (w * obs).sum() / (w * exp).sum()
    assert f"{kappa:.3f}" in table.split("\n")[-1]


def test_review_inputs_fail_in_one_line_naming_them(store, tmp_path):
    from painface.cli import main
    from painface.mgs import SheetError, sample, save_score
    from painface.review import ReviewError, build_gallery, locate

    with pytest.raises(ReviewError, match="nowhere"):
        locate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReviewError, match="neither a project folder"):
        locate(tmp_path / "empty")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "per_minute.csv").write_text("minute\n")
    with pytest.raises(ReviewError, match="provenance.json"):
        locate(tmp_path / "old")
    with pytest.raises(SheetError, match="not an MGS kit"):
        locate(None, kit=tmp_path / "empty")
    kit = sample(store, tmp_path / "kit", n=2)
    image = pd.read_csv(kit / "scoring_sheet.csv")["image"][0]
    with pytest.raises(SheetError, match="'nose_bulge': score '3'"):
        save_score(kit, "alice", image, {"orbital_tightening": 0, "nose_bulge": 3})
    with pytest.raises(SheetError, match="scorer '../x'"):
        save_score(kit, "../x", image, None, exclude="blurry")
    with pytest.raises(SheetError, match="'mgs_nope.png' is not in this kit"):
        save_score(kit, "alice", "mgs_nope.png", None, exclude="blurry")
    assert not (kit / "scores").exists()  # nothing half-written by the refused scores
    # a hand-edited sheet with an impossible score is refused, not counted
    save_score(kit, "carol", image, None, exclude="blurry")
    sheet = kit / "scores" / "carol.csv"
    sheet.write_text(sheet.read_text().replace("blurry", "").replace(f"{image},,,,,,", f"{image},3,0,0,0,0,"))
    with pytest.raises(SheetError, match=r"carol.csv: row 2 .*'orbital_tightening': score '3'"):
        save_score(kit, "carol", image, None, exclude="blurry")
    (sheet).unlink()
    with pytest.raises(ReviewError, match="--gallery-n"):
        build_gallery(locate(None, kit=kit), n=0)
    assert main(["review", str(tmp_path / "nowhere"), "--port", "0"]) == 1
    import socket

    with socket.socket() as busy:  # a port already taken: one line, exit 1
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["mgs", "score", str(kit), "--port", str(busy.getsockname()[1])]) == 1
    assert main(["mgs", "agreement", str(kit)]) == 1


def test_agreement_needs_both_scorers_to_have_scored_an_image(store, tmp_path):
    from painface.mgs import agreement, sample, save_score

    kit = sample(store, tmp_path / "kit", n=3, seed=1)
    images = pd.read_csv(kit / "scoring_sheet.csv")["image"].tolist()
    units = ("orbital_tightening", "nose_bulge", "cheek_bulge", "ear_position", "whisker_change")
    save_score(kit, "a", images[0], dict.fromkeys(units, 1))
    save_score(kit, "a", images[1], dict.fromkeys(units, 2))
    save_score(kit, "b", images[0], dict.fromkeys(units, 1))
    save_score(kit, "b", images[1], dict.fromkeys(units, 2))
    save_score(kit, "b", images[2], dict.fromkeys(units, 0))  # a has not scored this one
    t = agreement(kit)
    assert len(t) == 1 and t.loc[0, "n_images"] == 2
    assert t.loc[0, "kappa_total"] == pytest.approx(1.0)  # identical scores on the shared images
    sheet = pd.read_csv(kit / "scores" / "a.csv", dtype=str, keep_default_na=False)
    assert list(sheet["image"]) == images and list(sheet["orbital_tightening"]) == ["1", "2", ""]


def test_painface_review_prints_its_url_serves_and_stops_on_ctrl_c(sources, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "painface", "review", str(sources.results), "--port", "0", "--gallery-n", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = ""
        while "http://" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url).read().decode()
        assert "<h1>t</h1>" in page  # the study's name
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
