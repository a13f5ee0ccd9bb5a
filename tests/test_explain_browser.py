"""The explain page in a real browser: headless Chromium, driven by Playwright.

The page written by ``superpose explain`` for the demo task set is opened from disk in
headless Chromium (Debian's ``chromium`` package, or the browser named by
``SUPERPOSE_CHROMIUM``; Playwright drives it through its executable path, so Playwright's
own browser download is never needed). The test checks that it renders with no console
error, no uncaught exception and no network request; that every layer section and every
used head's heatmap is there; that the numbers shown for the query's output equal
``superpose run --json``'s; that hovering a heatmap cell and clicking a token work; and it
saves screenshots (into ``SUPERPOSE_EXPLAIN_SCREENSHOTS`` when set: ``make explain-figure``
writes the README's ``docs/figures/explain.png`` that way).

Without Chromium the tests are skipped with the reason, unless ``SUPERPOSE_REQUIRE_BROWSER=1``
(set by ``.ci/run``, which installs Chromium first): then a missing browser is a failure.
"""

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from superpose.cli import main
from superpose.construct.build import LAYER_SPECS
from superpose.demo import digit_tasks, mixed_prompt
from superpose.examples.ab_digits import ab_prompt, ab_tasks

pytestmark = pytest.mark.slow  # drives a browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REQUIRED = os.environ.get("SUPERPOSE_REQUIRE_BROWSER") == "1"
VIEWPORT = {"width": 1480, "height": 1000}


def find_chromium() -> str | None:
    named = os.environ.get("SUPERPOSE_CHROMIUM")
    if named:
        return named if os.path.exists(named) else None
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    path = find_chromium()
    if path is None:
        named = os.environ.get("SUPERPOSE_CHROMIUM")
        where = f"SUPERPOSE_CHROMIUM={named} does not exist" if named else \
            "none of " + ", ".join(BROWSERS) + " is on PATH"
        why = (f"headless Chromium was not found ({where}), so the explain page was NOT rendered in a browser; "
               "install it with `apt-get install chromium` (Debian) to run these tests")
        if REQUIRED:
            pytest.fail(why + " -- SUPERPOSE_REQUIRE_BROWSER=1 requires them (CI)")
        pytest.skip(why)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Chromium is at {path} but Playwright for Python is missing; it is part of the test extra "
                    "(pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True)
        yield chromium
        chromium.close()


def call(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def write_page(directory: Path, tasks, prompt, name: str) -> tuple[Path, tuple[str, str]]:
    files = (directory / f"{name}-tasks.json", directory / f"{name}-prompt.json")
    files[0].write_text(json.dumps(tasks.to_json()))
    files[1].write_text(json.dumps(prompt.to_json()))
    page = directory / f"{name}.html"
    code, _, err = call("explain", str(files[0]), str(files[1]), "-o", str(page), "--dtype", "float64")
    assert code == 0, err
    return page, (str(files[0]), str(files[1]))


class Opened:
    """A page opened in the browser, with everything it logged and requested."""

    def __init__(self, browser, path: Path):
        self.console, self.errors, self.requests = [], [], []
        self.page = browser.new_page(viewport=VIEWPORT)
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        start = time.perf_counter()
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='true']", timeout=15_000)
        self.seconds = time.perf_counter() - start


@pytest.fixture(scope="module")
def demo(browser, tmp_path_factory):
    directory = tmp_path_factory.mktemp("browser")
    tasks = digit_tasks()
    prompt = mixed_prompt(tasks)
    page, files = write_page(directory, tasks, prompt, "demo")
    code, report, err = call("run", *files, "--json", "--dtype", "float64")
    assert code == 0, err
    opened = Opened(browser, page)
    yield {"opened": opened, "page": opened.page, "report": json.loads(report), "tasks": tasks, "prompt": prompt,
           "T": tasks.prompt_length(prompt.n_examples), "dir": directory}
    opened.page.close()


def test_renders_without_console_errors_or_network(demo):
    opened = demo["opened"]
    assert opened.errors == []
    assert [(kind, text) for kind, text in opened.console if kind in ("error", "warning")] == []
    assert opened.requests and all(url.startswith("file://") for url in opened.requests), opened.requests
    assert opened.seconds < 10
    print(f"\nthe demo page rendered in {opened.seconds:.2f} s")


def test_every_layer_section_and_head_heatmap_is_there(demo):
    page, tasks, T = demo["page"], demo["tasks"], demo["T"]
    assert page.locator("section.layer").count() == 7
    for spec in LAYER_SPECS:
        section = page.locator(f"section#layer-{spec.number}")
        assert section.locator("h2").inner_text() == spec.title
        assert spec.in_words in section.locator("p.in-words").inner_text()
        heatmaps = section.locator("svg.heatmap")
        assert heatmaps.count() == spec.n_heads(tasks)
        for h in range(spec.n_heads(tasks)):
            # the demo's 39 tokens are all shown: a 39 x 39 grid of cells per head
            assert section.locator(f"svg.heatmap[data-head='{h}'] rect.cell").count() == T * T
        # each sublayer shows its writes as a table, or says it has no heads / units
        for part in ("attention", "mlp"):
            assert section.locator(f"table.writes[data-part='{part}'], p.nothing[data-part='{part}']").count() == 1
    assert page.locator(".tok").count() == T
    assert page.locator("#status").inner_text() == "within the bound"


def test_query_output_equals_run_json(demo):
    page, report = demo["page"], demo["report"]
    expected = report["predictions"][-1]["model"]
    cells = page.locator("#query-output td.model:not(.analytic)")
    shown = {}
    for i in range(cells.count()):
        cell = cells.nth(i)
        token = int(cell.get_attribute("data-token"))
        value = float(cell.get_attribute("data-value"))
        assert value == expected[token]                            # the same float, bit for bit
        assert cell.inner_text().strip() == f"{expected[token]:.9f}"  # and the text shown
        shown[token] = value
    # the query 7: 7 (copy), 8 (next digit), seven (to word) are listed; every other token is ~0
    assert set(shown) == {7, 8, 17}
    assert all(abs(p) < 1e-9 for v, p in enumerate(expected) if v not in shown)
    bound = page.locator("#bound").inner_text()
    assert f"{report['bound']['total']:.2e}" in bound and f"{report['max_abs_error']:.2e}" in bound


def test_hover_shows_query_key_and_weight(demo):
    page, T = demo["page"], demo["T"]
    q = T - 1
    cell = page.locator(f"#layer-5 svg.heatmap[data-head='0'] rect[data-q='{q}'][data-k='3']")
    weight = float(cell.get_attribute("data-w"))
    assert weight == pytest.approx(1 / 12, abs=1e-4)      # the tally: 12 consistent answers, 1/12 each
    cell.hover()
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert f"query position {q} '->'" in text and "key position 3 '7'" in text
    assert f"weight {weight:.4f}" in text
    page.locator("#layer-1 svg.heatmap rect[data-q='0'][data-k='5']").hover()   # a future key
    assert "masked" in page.locator("#tooltip").inner_text()


def test_click_follows_a_position_through_the_layers(demo):
    page = demo["page"]
    page.locator(".tok[data-pos='3']").click()                  # the first example's answer
    assert "sel" in page.locator(".tok[data-pos='3']").get_attribute("class")
    assert "sel" in page.locator("#layer-1 table.writes[data-part='mlp'] td[data-pos='3']").get_attribute("class")
    panel = page.locator("#layer-2 .panel").inner_text()
    assert "Following position 3 '7'" in panel and "match_raw[copy] = 1" in panel
    # layer 2's head, seen from the answer at 3, reads the input at 1 (look back 2)
    assert page.locator("#layer-2 table.writes[data-part='attention'] td[data-pos='1']").first.get_attribute(
        "class").split().count("read") == 1
    assert "vote[copy] = 1" in page.locator("#layer-4 .panel").inner_text()
    page.locator(f".tok[data-pos='{demo['T'] - 1}']").click()  # back to the query


def test_screenshots(demo, tmp_path):
    page = demo["page"]
    out = Path(os.environ.get("SUPERPOSE_EXPLAIN_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    top = out / "explain.png"   # the header, the prompt and the task shares
    bottom = page.locator("#task-shares").bounding_box()
    page.screenshot(path=str(top), clip={"x": 0, "y": 0, "width": VIEWPORT["width"],
                                         "height": bottom["y"] + bottom["height"] + 12})
    tally = out / "explain-tally.png"
    page.locator("#layer-5").screenshot(path=str(tally))
    for path in (top, tally):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < path.stat().st_size < 600_000
    print(f"\nscreenshots: {top}, {tally}")


def test_a_long_two_slot_prompt_is_summarised_in_the_browser(browser, tmp_path):
    tasks = ab_tasks()
    page_path, _ = write_page(tmp_path, tasks, ab_prompt(tasks, (10, 8, 6)), "ab")
    opened = Opened(browser, page_path)
    try:
        page = opened.page
        assert opened.errors == [] and [c for c in opened.console if c[0] in ("error", "warning")] == []
        assert re.search(r"This prompt has 100 tokens; the page is readable up to about 60",
                         page.locator("#summarised").inner_text())
        assert [page.locator(f"#layer-{i} svg.heatmap").count() for i in range(1, 8)] == [1, 2, 0, 0, 1, 2, 0]
        assert page.locator(".tok.gap").count() == 1
    finally:
        opened.page.close()


@pytest.mark.parametrize("case", ["no examples", "overflow", "two-token answers"])
def test_edge_cases_render_without_errors(browser, tmp_path, case):
    """A prompt with no example (the prior 1/K everywhere), a float32 run whose output overflows, and
    answers of two tokens with the query's first answer token generated."""
    from superpose import Example, Prompt, Task, TaskSet, build
    from superpose.verify.explain import page_data, render

    tasks = digit_tasks()
    if case == "no examples":
        prompt, dtype, sharpness = Prompt([], query=[3]), "float64", 50.0
    elif case == "overflow":
        prompt, dtype, sharpness = mixed_prompt(tasks, counts=(1, 1, 1)), "float32", 1e38
    else:
        tasks = TaskSet(6, 1, [Task("word", 0, [[0, 1], [2, 3], [4, 5], [1, 1], [0, 0], [0, 0]]),
                               Task("other", 0, [[0, 3], [2, 0], [5, 5], [1, 0], [0, 0], [0, 0]])], answer_length=2)
        prompt = Prompt([Example([0], [0, 1]), Example([3], [1, 0])], [0], query_prefix=[0])
        dtype, sharpness = "float64", 50.0
    model = build(tasks, max_examples=prompt.n_examples, sharpness=sharpness)
    path = tmp_path / "edge.html"
    path.write_text(render(page_data(model, prompt, dtype)), encoding="utf-8")
    opened = Opened(browser, path)
    try:
        assert opened.errors == [] and [c for c in opened.console if c[0] in ("error", "warning")] == []
        assert opened.page.locator("section.layer").count() == 7
        status = opened.page.locator("#status").inner_text()
        if case == "no examples":
            assert status == "within the bound" and "prior 1/K" in opened.page.locator("#shares").inner_text()
        elif case == "two-token answers":
            assert status == "within the bound"
            assert "answer so far 0" in opened.page.locator("#output").inner_text()
            for spec in LAYER_SPECS:
                assert opened.page.locator(f"#layer-{spec.number} svg.heatmap").count() == spec.n_heads(tasks)
        else:
            assert status == "no bound"
            assert "not finite (the model's output overflowed)" in opened.page.locator("#bound").inner_text()
    finally:
        opened.page.close()
