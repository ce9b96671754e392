"""report.html and plots/: what the page holds for typical and awkward runs, and how it behaves in a real browser.

The rendering tests always run. The browser tests open the page in Debian's headless Chromium driven
by Playwright's Python package (no browser download: ``executable_path=/usr/bin/chromium``); they are
skipped, with the reason, only where that binary or the playwright package is missing.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image as PILImage

import gmai_client
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.protocol.metrics import compare, compute_metrics
from gmai_client.results.html.gallery import GALLERY_CAP, gallery_cap, select_gallery
from gmai_client.results.html.paper import FULL_VAL_ITEMS
from gmai_client.results.html.report import REPORT_FILE, asset, write_html_report, write_visual_reports
from gmai_client.results.rundir import SavedConfig
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Record

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SECTIONS = ("headline", "views", "heatmap", "tree", "paper", "gallery", "run")


def run(tmp: Path, models: list, data: str | Path, name: str, **kwargs) -> Path:
    specs = [parse_model_spec(m) if isinstance(m, str) else parse_model_spec(*m) for m in models]
    config = RunConfig.build(specs, data=[str(data)], out=tmp, progress=False, run_name=name, **kwargs)
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, gmai_client.run(config)).result().run_dir


def page(run_dir: Path) -> str:
    return (run_dir / REPORT_FILE).read_text(encoding="utf-8")


def section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}"')
    return html[start : html.index("</section>", start)]


def metrics_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample (300 items), the random baseline and a second seed of it."""
    return run(
        tmp_path_factory.mktemp("runs"), ["random", ("random", {"seed": "3", "label": "random-3"})], "sample", "two"
    )


# --- rendering (always run) ------------------------------------------------------------------


def test_two_model_report_holds_every_section_and_the_numbers_of_metrics_json(two_models: Path) -> None:
    html = page(two_models)
    for sid in SECTIONS:
        assert f'<section id="{sid}"' in html
    models = metrics_json(two_models)["models"]
    headline = section(html, "headline")
    for label, m in models.items():
        row = re.search(rf'<tr data-model="{re.escape(label)}">(.*?)</tr>', headline).group(1)
        assert f'<td class="acc num">{100 * m["overall"]["accuracy"]:.2f}</td>' in row
        assert f'<td class="num">{m["overall"]["n"]}</td>' in row
    # One chart per view, each with a text alternative, and its table.
    views = section(html, "views")
    assert views.count('<svg viewBox="0 0') == 4
    assert views.count('role="img"') == 4 and views.count("<title id=") == 4
    assert views.count("<table") == 4 and 'class="chance"' in views
    assert "random (reference)" in section(html, "heatmap")
    assert section(html, "tree").count('<details class="tree-view">') == 3
    # 300 items of which fewer than 200 problem items would leave no correct ones: both kinds shown.
    gallery = section(html, "gallery")
    assert gallery.count('<article class="card"') == gallery_cap(300) == 60  # one in five, at least 60
    assert gallery.count("data:image/jpeg;base64,") == 60  # thumbnails from the data file
    assert re.search(r'data-wrong="" data-unparsed="" data-errored="" data-correct="0 1"', gallery)
    assert "Which " in gallery  # question text looked up in the data file
    # Not the full VAL split: the paper's figures are withheld, with the reason.
    paper = section(html, "paper")
    assert "4,550" in paper and "GPT-4o" not in paper
    assert "&quot;run_name&quot;: &quot;two&quot;" in section(html, "run")  # config.json, escaped


def test_the_page_is_self_contained(two_models: Path) -> None:
    html = page(two_models)
    assert "default-src 'none'" in html  # the browser itself refuses any fetch
    assert not re.search(r'(?:src|href)\s*=\s*"(?:https?:)?//', html)
    assert not re.search(r"<link[^>]+stylesheet|<script[^>]+src=", html)
    assert not re.search(r"@import|url\(", html)


def test_the_static_assets_are_inlined_and_shipped_as_package_data(two_models: Path) -> None:
    """report.css and report.js are package data: matched by pyproject's globs, so a wheel carries them."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml without a dependency")
    root = Path(__file__).resolve().parent.parent
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gmai_client"]
    html = page(two_models)
    for name in ("report.css", "report.js"):
        assert any((root / "gmai_client" / "data" / name).match(pattern) for pattern in globs)
    # Inlined verbatim (the page fetches nothing).
    assert "<style>" + asset("report.css") in html and "<script>" + asset("report.js") + "</script>" in html


def test_plots_are_written_as_png_and_svg(two_models: Path) -> None:
    plots = sorted(p.name for p in (two_models / "plots").iterdir())
    assert plots == sorted(
        f"accuracy_by_{view}.{fmt}"
        for view in ("clinical_VQA_task", "department", "perceptual_granularity", "modality")
        for fmt in ("png", "svg")
    )
    svg = (two_models / "plots" / "accuracy_by_department.svg").read_text()
    assert "Otolaryngology (ENT)/Head and" in svg  # the long name is wrapped, kept as text
    assert "plots/accuracy_by_department.png" in page(two_models)


def test_the_png_plots_need_no_matplotlib(two_models: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    run_dir = tmp_path / "copy"
    shutil.copytree(two_models, run_dir, ignore=shutil.ignore_patterns("plots"))
    records = gmai_client.read_records(run_dir / "records.jsonl")
    metrics = compute_metrics(records)
    written = write_visual_reports(run_dir, records, metrics, compare(metrics, records))
    assert written[-1] == run_dir / REPORT_FILE
    assert sorted(p.suffix for p in written[:-1]) == [".png"] * 4 + [".svg"] * 4
    with PILImage.open(run_dir / "plots" / "accuracy_by_department.png") as png:
        assert png.width == 1760 and png.height > 400  # every department's band, at twice the SVG's scale
        assert png.getpixel((5, png.height // 2)) in ((255, 255, 255), (246, 247, 249))  # label column, no bar


def test_one_model(tmp_path: Path, small_tsv: Path) -> None:
    run_dir = run(tmp_path, ["random"], small_tsv, "one")
    html = page(run_dir)
    assert "this run has one model with an answer key" in section(html, "heatmap")
    assert section(html, "views").count("<svg") == 4
    assert "Paired comparison" not in html
    assert section(html, "gallery").count('<article class="card"') == 60


def test_ten_models_with_awkward_labels(tmp_path: Path, small_tsv: Path) -> None:
    long = "a-model-label-that-is-much-longer-than-any-column-would-like-it-to-be-" * 2
    models = [("random", {"seed": str(i), "label": f"seed {i}"}) for i in range(8)]
    models += [("random", {"seed": "8", "label": "<b>&'x\""}), ("random", {"seed": "9", "label": long})]
    run_dir = run(tmp_path, models, small_tsv, "ten")
    html = page(run_dir)
    assert "<b>&'x" not in html and "&lt;b&gt;&amp;&#x27;x&quot;" in html  # escaped everywhere
    headline = section(html, "headline")
    assert headline.count("<tr data-model=") == 10
    heat = section(html, "heatmap")
    assert heat.count('<option value="') == 10 and "seed 0 (reference)" in heat
    # Each node of the tree lists ten accuracies.
    assert re.search(r'<span class="accs">(?:<b class="c\d+">[\d.]+</b>){10}</span>', section(html, "tree"))


def test_test_split_without_a_key(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "test.tsv", 40, seed=5, image_size=16, with_answer=False)
    run_dir = run(tmp_path, ["random", ("random", {"seed": "1", "label": "r1"})], data, "nokey")
    html = page(run_dir)
    assert "No answer key for random, r1" in section(html, "headline")
    views = section(html, "views")
    assert "<svg" not in views and "no accuracy to chart" in views and views.count("<table") == 4
    assert "no model with an answer key" in section(html, "heatmap")
    assert "no answer key (TEST predictions only)" in section(html, "paper")
    gallery = section(html, "gallery")
    assert gallery.count('<article class="card"') == 40 and "✓ key" not in gallery
    assert not (run_dir / "plots").exists() or not any((run_dir / "plots").iterdir())


def test_a_selection_of_one_category(tmp_path: Path) -> None:
    run_dir = run(tmp_path, ["random"], "sample", "ophthalmology", select=["department=Ophthalmology"])
    html = page(run_dir)
    views = section(html, "views")
    assert 'By department <span class="count">(1 category)</span>' in views
    assert "selection: department=Ophthalmology" in html
    assert "This run selected department=Ophthalmology" in section(html, "paper")


def fabricated_val(models: tuple[str, ...] = ("model-a", "model-b")) -> list[Record]:
    """FULL_VAL_ITEMS keyed records per model, without running anything."""
    tasks = ("Disease Diagnosis", "Counting", "Bone")
    records = []
    for m, label in enumerate(models):
        for i in range(FULL_VAL_ITEMS):
            correct = (i + m) % 3 == 0
            records.append(
                Record(
                    index=str(i),
                    model=label,
                    status="ok",
                    prediction="A" if correct else "B",
                    letters=("A",) if correct else ("B",),
                    answer=("A",),
                    correct=correct,
                    options=(("A", "x"), ("B", "y"), ("C", "z"), ("D", "w")),
                    task=tasks[i % 3],
                    department="Ophthalmology",
                    granularity="Image Level",
                    modality="Fundus Photography",
                    category=f"leaf {i % 7}",
                )
            )
    return records


def test_published_figures_appear_beside_a_full_val_run(tmp_path: Path) -> None:
    records = fabricated_val()
    metrics = compute_metrics(records)
    config = {"select": [], "limit": None}
    saved = SavedConfig(config=config, data_files=("GMAI-MMBench_VAL.tsv",))
    path = write_html_report(tmp_path, records, metrics, compare(metrics, records), saved=saved)
    paper = section(path.read_text(encoding="utf-8"), "paper")
    assert "Published figures" in paper and "arXiv:2408.03361" in paper and "NeurIPS 2024" in paper
    assert "<td>GPT-4o</td>" in paper and "53.53" in paper  # the paper's VAL overall for GPT-4o
    assert paper.count('class="this-run"') == 2 * 4  # leaderboard + three per-view tables, two models
    assert "Disease Diagnosis (DD)" in paper and "Ophthalmology (O)" in paper and "Box Level (2D Det)" in paper
    assert f"{100 * metrics['model-a'].overall.accuracy:.2f}" in paper
    # The same records under a selection: withheld.
    saved = SavedConfig(config={"data": {"select": ["task=Counting"]}}, data_files=saved.data_files)  # sectioned
    path = write_html_report(tmp_path, records, metrics, None, saved=saved)
    assert "GPT-4o" not in section(path.read_text(encoding="utf-8"), "paper")


def test_gallery_prefers_problem_items_and_keeps_room_for_correct_ones() -> None:
    records = fabricated_val(("m",))[:1000]
    chosen = select_gallery(records, ["m"])
    assert len(chosen) == GALLERY_CAP
    outcome = {r.index: r.correct for r in records}
    wrong = sum(1 for i in chosen if not outcome[i])
    assert wrong == 160 and len(chosen) - wrong == 40
    # Errors come first whatever their index.
    records[-1] = Record(index=records[-1].index, model="m", status="error", prediction=None, error="boom")
    assert records[-1].index in select_gallery(records, ["m"])


# --- in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_report(browser, run_dir: Path):
    """The page loaded from file://, with every console message, page error and request recorded."""
    tab = browser.new_page(viewport={"width": 1280, "height": 1800})
    seen: dict[str, list[str]] = {"console": [], "requests": []}
    tab.on("console", lambda msg: seen["console"].append(f"{msg.type}: {msg.text}"))
    tab.on("pageerror", lambda exc: seen["console"].append(f"pageerror: {exc}"))
    tab.on("request", lambda request: seen["requests"].append(request.url))
    url = (run_dir / REPORT_FILE).resolve().as_uri()
    tab.goto(url)
    tab.wait_for_load_state("load")
    return tab, url, seen


def test_report_in_chromium(browser, two_models: Path, tmp_path: Path) -> None:
    tab, url, seen = open_report(browser, two_models)
    for sid in SECTIONS:
        assert tab.locator(f"#{sid}").is_visible()
    for label, m in metrics_json(two_models)["models"].items():
        shown = tab.locator(f'#headline tr[data-model="{label}"] td.acc').inner_text()
        assert shown == f"{100 * m['overall']['accuracy']:.2f}"

    tab.screenshot(path=str(tmp_path / "report_top.png"))

    # The tree opens on click, without any script involved.
    node = tab.locator("#tree details.tree-view").first
    assert node.evaluate("d => d.open") is False
    node.locator("> summary").click()
    assert node.evaluate("d => d.open") is True
    child = node.locator("ul.tree > li > details").first
    child.locator("> summary").click()
    assert child.evaluate("d => d.open") is True
    tab.locator("#tree").screenshot(path=str(tmp_path / "report_tree.png"))

    # The gallery filter: "wrong" hides the items every model answered correctly.
    cards = tab.locator(".gallery .card")
    total = cards.count()
    correct = tab.locator('.gallery .card[data-wrong=""]')
    assert correct.count() > 0 and correct.first.is_visible()
    tab.locator('#gallery-filters button[data-filter="wrong"]').click()
    assert all(c.is_hidden() for c in correct.all())
    visible = tab.locator(".gallery .card:not([hidden])").count()
    assert 0 < visible == total - correct.count()
    assert tab.locator("#gallery-count").inner_text() == f"{visible} of {total} shown"
    # One model's correct answers only.
    tab.locator('#gallery-filters button[data-filter="correct"]').click()
    tab.locator("#gallery-model").select_option("1")
    shown = tab.locator(".gallery .card:not([hidden])")
    assert shown.count() > 0
    assert all("1" in (card.get_attribute("data-correct") or "").split() for card in shown.all())
    tab.locator("#gallery-model").select_option("any")
    tab.locator('#gallery-filters button[data-filter="all"]').click()
    assert tab.locator(".gallery .card:not([hidden])").count() == total

    tab.locator('#tree button[data-tree="open"]').click()
    assert tab.locator("#tree details:not([open])").count() == 0

    # The heatmap's reference can be changed: the deltas move to the other column.
    first_row = tab.locator("#heatmap table.heat").first.locator("tbody tr").first
    before = first_row.locator("td.hm .d").all_inner_texts()
    tab.locator("#hm-ref").select_option("1")
    after = first_row.locator("td.hm .d").all_inner_texts()
    assert before[0] == "" and after[1] == "" and after[0] != ""

    assert seen["console"] == []
    assert seen["requests"] == [url]  # the page itself, nothing else
    tab.close()


def test_awkward_reports_in_chromium(browser, tmp_path: Path, small_tsv: Path) -> None:
    """A keyless TEST run and a one-model one-category run load without errors or requests."""
    data = write_tsv(tmp_path / "test.tsv", 20, seed=5, image_size=16, with_answer=False)
    runs = [
        run(tmp_path, ["random", ("random", {"seed": "1", "label": "r1"})], data, "nokey"),
        run(tmp_path, ["random"], "sample", "one-cat", select=["department=Ophthalmology"]),
    ]
    for run_dir in runs:
        tab, url, seen = open_report(browser, run_dir)
        assert tab.locator("#gallery .card").count() > 0
        tab.locator('#gallery-filters button[data-filter="unparsed"]').click()
        tab.screenshot(path=str(tmp_path / f"{run_dir.name}.png"))
        assert seen["console"] == [] and seen["requests"] == [url]
        tab.close()


def test_without_javascript_everything_is_shown(browser, two_models: Path) -> None:
    tab = browser.new_page(java_script_enabled=False)
    tab.goto((two_models / REPORT_FILE).resolve().as_uri())
    assert tab.locator("#gallery-filters").is_hidden()  # the buttons would do nothing
    assert tab.locator(".gallery .card:not([hidden])").count() == gallery_cap(300)
    assert tab.locator("#headline table.headline").is_visible() and tab.locator("#views svg").count() == 4
    summary = tab.locator("#tree details.tree-view > summary").first
    summary.click()  # <details> needs no script
    assert summary.locator("..").evaluate("d => d.open") is True
    tab.close()


def test_the_gallery_grows_with_the_run_up_to_its_cap() -> None:
    assert [gallery_cap(n) for n in (10, 300, 500, 1000, 4550)] == [60, 60, 100, 200, GALLERY_CAP]


def test_the_headline_table_fits_a_1400_px_window_and_scrolls_whole_in_a_narrow_one(browser, tmp_path: Path) -> None:
    # Two long labels (an endpoint each): the 15-column headline needs ~1300 px.
    labels = ["openai:gpt-4o@https://my-endpoint.example.com/v1", "vllm:Qwen2.5-VL-72B-Instruct@http://10.0.0.12:8000/v1"]
    run_dir = run(tmp_path, [("random", {"label": label}) for label in labels], "sample", "wide", limit=20)
    widths = {}
    for width in (1400, 900):
        tab = browser.new_page(viewport={"width": width, "height": 900})
        tab.goto((run_dir / REPORT_FILE).resolve().as_uri())
        box = tab.locator("#headline .tablewrap").first
        widths[width] = box.evaluate("e => [e.scrollWidth, e.clientWidth, getComputedStyle(e).overflowX]")
        tab.close()
    scroll, client, _ = widths[1400]
    assert scroll <= client  # every column in view: nothing cut at the right edge
    scroll, client, overflow = widths[900]
    assert scroll > client and overflow == "auto"  # too narrow: the table scrolls in its own box
