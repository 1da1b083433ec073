"""Screenshots of draw.py's page in its five modes, to compare before and after a change (not part of the suite).

    python tests/page_screens.py CHECKPOINT OUT_DIR --data-dir DIR     # OUT_DIR/draw.png, explain.png, ...
    python tests/page_screens.py --compare OLD_DIR NEW_DIR             # pixels differing in each; exit 1 if any

The page is driven as tests/test_draw.py drives it (headless Chromium, Selenium, real pointer events, the
hooks of draw/hooks.js): draw, a digit drawn and its explanation and attack shown; explain, another digit's
bar clicked and the attack's largest ε; number, three digits written on the wide pad; photo, a photo of a
line of digits; collect, draw.py --collect with a drawing saved. Before each screenshot the timing text
("12.3 ms") and the name of the saved file are masked (replaced in the page by the same text each time).
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reading_outputs import tool_parser  # noqa: E402
from test_draw import ANSWERED, chromium, start_server, stop, strokes, wait_for  # noqa: E402

import conftest  # noqa: E402

MODES = ("draw", "explain", "number", "photo", "collect")
STILL = "!document.body.dataset.explaining && !document.body.dataset.attacking"
MASK = r"""
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walk.nextNode(); n; n = walk.nextNode()) {
  n.nodeValue = n.nodeValue.replace(/\d[\d.]* ms/g, "00.0 ms").replace(/drawn-\d{8}-\d{6}[^ :]*\.png/g, "drawn-N.png");
}"""


def pen(driver, image):
    """Draw `image` (uint8 rows x columns, ink high) over the whole pad with a mouse, as test_draw.draw does."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    left, top, width, height = driver.execute_script(
        "const r = document.getElementById('pad').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
    )
    rows, cols = image.shape
    actions = ActionBuilder(driver, mouse=PointerInput("mouse", "mouse"), duration=10)
    for path in strokes(image):
        for i, (y, x) in enumerate(path):
            actions.pointer_action.move_to_location(left + (x + 0.5) * width / cols, top + (y + 0.5) * height / rows)
            if i == 0:
                actions.pointer_action.pointer_down()
        actions.pointer_action.pointer_up()
    actions.perform()
    wait_for(driver, ANSWERED)


def no_errors(driver):
    """The page's console has no error (a module that failed to load, or threw)."""
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def shoot(driver, path):
    """The whole page, its timings masked: the window made as tall as the page for the screenshot (a capture
    beyond the window left some text below it unpainted, one run in two), then as test_draw.py sets it."""
    driver.execute_script(MASK)
    metrics = {"width": 1100, "deviceScaleFactor": 1, "mobile": False}
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    try:
        # two frames: the page laid out and painted at its new size
        driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": 700})


def explained(driver):
    """Wait for the drawing's map and attack; returns (version, digit read)."""
    v = driver.execute_script("return document.body.dataset.version")
    read = driver.find_element("id", "digit").text
    wait_for(driver, f"document.body.dataset.why === '{v}:{read}' && "
                     f"document.body.dataset.attacked === '{v}:0.1:any:pgd' && {STILL}")
    return v, read


def record(checkpoint, out, data_dir):
    from selenium.webdriver.common.keys import Keys

    from lab.data import load_split
    from reading.sheets import make_sheet

    images, labels = load_split(False, data_dir)
    images, labels = images.numpy(), labels.numpy()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint).resolve()
    work = Path(tempfile.gettempdir()) / "page-screens"  # a fixed path: collect mode shows its folder
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    proc, url, _ = start_server(checkpoint, cwd=work)
    try:
        with chromium(url, work / "profile") as driver:
            pen(driver, images[1])  # draw: the digit, its map and its attack
            v, read = explained(driver)
            shoot(driver, out / "draw.png")
            other = (int(read) + 5) % 10  # explain: why not another digit, and the largest ε
            driver.find_elements("css selector", "#bars .bar")[other].click()
            wait_for(driver, f"document.body.dataset.why === '{v}:{other}' && {STILL}")
            slider = driver.find_element("id", "eps")
            slider.send_keys(Keys.END)
            largest = slider.get_attribute("max")
            wait_for(driver, f"document.body.dataset.attacked === '{v}:{largest}:any:pgd' && {STILL}")
            shoot(driver, out / "explain.png")
            slider.send_keys(Keys.HOME)
            driver.find_element("id", "number").click()  # number: three digits on the wide pad
            wait_for(driver, ANSWERED)
            pen(driver, np.hstack([images[2], images[3], images[4]]))
            wait_for(driver, "document.body.dataset.number !== ''")
            shoot(driver, out / "number.png")
            driver.find_element("id", "number").click()  # photo: a line of digits, on the square pad
            wait_for(driver, ANSWERED)
            sheet = make_sheet(images[20:24], labels[20:24], np.random.default_rng(3), "wide", [4])
            sheet.image.save(work / "photo.jpg", quality=90)
            driver.find_element("id", "file").send_keys(str(work / "photo.jpg"))
            wait_for(driver, ANSWERED)
            v = driver.execute_script("return document.body.dataset.version")
            wait_for(driver, f"document.body.dataset.pageRead === '{v}'")
            shoot(driver, out / "photo.png")
            no_errors(driver)
    finally:
        stop(proc)
    proc, url, _ = start_server(checkpoint, "--collect", work / "collected", cwd=work)
    try:
        with chromium(url, work / "profile2") as driver:  # collect: a drawing saved
            pen(driver, images[5])
            explained(driver)
            driver.find_element("id", "save").click()
            wait_for(driver, f"document.body.dataset.collected === '1' && {ANSWERED}")
            shoot(driver, out / "collect.png")
            no_errors(driver)
    finally:
        stop(proc)
    print(f"wrote {', '.join(m + '.png' for m in MODES)} into {out}")


def compare(old, new):
    differing = 0
    for mode in MODES:
        a = np.asarray(Image.open(Path(old) / f"{mode}.png").convert("RGB"), np.int16)
        b = np.asarray(Image.open(Path(new) / f"{mode}.png").convert("RGB"), np.int16)
        if a.shape != b.shape:
            print(f"{mode}: sizes differ, {a.shape} and {b.shape}")
            differing += 1
            continue
        diff = np.abs(a - b).max(-1)
        n = int((diff > 0).sum())
        differing += n
        where = np.nonzero(diff)
        box = f", within x {where[1].min()}-{where[1].max()}, y {where[0].min()}-{where[0].max()}" if n else ""
        print(f"{mode}: {n} of {diff.size} pixels differ (largest difference {int(diff.max())}{box})")
    return 1 if differing else 0


def main():
    args = tool_parser(__doc__).parse_args()
    if args.compare:
        return compare(*args.paths)
    try:
        record(*args.paths, args.data_dir)
    finally:
        if conftest._warm is not None:  # the warm server (tests/warm.py) the page's servers were forked from
            conftest._warm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
