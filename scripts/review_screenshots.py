"""Screenshots of the review pages for the README, taken by the headless chromium the tests use.

    python scripts/review_screenshots.py RESULTS_OR_PROJECT --out docs/review

Clicks a post-treatment minute on the study page (so the video shows the annotated face),
opens the gallery and the store, and scores two images of a fresh MGS kit.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from painface.mgs import sample
from painface.review import Server, create_app, locate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--out", default="docs/review")
    ap.add_argument("--store", default=None)
    ap.add_argument("--predictions", default=None)
    ap.add_argument("--ckpt-path", default=None)
    ap.add_argument("--minute", default="5.0", help="the strip cell to click")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kit_dir = Path(tempfile.mkdtemp())
    sources = locate(args.path, store=args.store, predictions=args.predictions, ckpt_path=args.ckpt_path)
    sources.kit = sample(sources.store, kit_dir / "kit", n=20, seed=0)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100", "--hide-scrollbars"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        with Server(create_app(sources, gallery_n=60)) as server:
            driver.get(server.url)
            cells = driver.find_elements(By.CSS_SELECTOR, f'#strip td.cell[data-minute="{args.minute}"]')
            cells[-1].click()  # the last animal: the highest dose in the study's order
            for _ in range(600):
                if driver.execute_script("return document.getElementById('player').readyState") >= 2:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            driver.save_screenshot(str(out / "study.png"))
            driver.get(server.url + "gallery")
            time.sleep(1.5)  # the visible images load lazily
            driver.save_screenshot(str(out / "gallery.png"))
            driver.get(server.url + "store")
            driver.find_elements(By.CSS_SELECTOR, "#units tr.unit")[0].click()
            time.sleep(1.5)
            driver.save_screenshot(str(out / "store.png"))
            driver.get(server.url + "mgs/score/alice")
            body = driver.find_element(By.TAG_NAME, "body")
            body.send_keys("2", "1", "1", "0", "1", "1", "2")
            time.sleep(1.0)
            driver.save_screenshot(str(out / "mgs.png"))
    finally:
        driver.quit()
        shutil.rmtree(kit_dir, ignore_errors=True)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
