"""The try-it page in a real headless browser (Debian's chromium driven by Playwright; no
browser is ever downloaded) against the whole stack serving a model trained on ML-100K:
search movies by title, rate Star Wars, Jurassic Park and The Princess Bride 5, and see
The Empire Strikes Back among the recommendations, an explanation and similar movies.

With RECSYS_PAGE_SCREENSHOT=docs/try-it.png the test also saves its screenshot there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.redis_server import free_port
from tests.conftest import team_data
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# what works on these machines: no sandbox as root, no GPU, nothing fetched in the background
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RATED = {  # search text → the ML-100K title rated 5
    "star wars": "Star Wars (1977)",
    "jurassic park": "Jurassic Park (1993)",
    "the princess bride": "Princess Bride, The (1987)",
}


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory):
    """(DataSource, TrainingRun) of the default preset on ML-100K (about 20 s to train)."""
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(team_data("ml-100k"), download=None)
    return source, train_and_evaluate(source, PRESETS["user"], tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="module")
def stack(ml100k_run, redis_server):
    settings = {"http_port": free_port()}
    with running_stack(ml100k_run, redis_server.url, gateway_settings=settings) as running:
        yield running


@pytest.fixture
def browser_page(tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), (
        f"{CHROMIUM} is missing: install Debian's chromium (./run test and .ci/run do: "
        "apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # a fresh profile
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def test_rate_three_movies_and_see_the_empire_strikes_back(stack, browser_page, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"http://127.0.0.1:{stack.gateway.service.http.port}/")
    expect(page.locator("#recommend")).to_be_disabled()
    for query, title in RATED.items():
        page.fill("#search-query", query)
        page.click("#search-form button[type=submit]")
        found = page.locator("#search-results li", has_text=title)
        found.get_by_role("button", name="Rate 5").click()
        expect(page.locator("#ratings li", has_text=title)).to_contain_text("5 ★")
    expect(page.locator("#ratings li")).to_have_count(3)

    page.click("#recommend")
    recommendations = page.locator("#recommendations li")
    expect(recommendations.filter(has_text="Empire Strikes Back")).to_have_count(1)
    expect(recommendations).to_have_count(10)
    # the page shows what the API answers: the same titles, in order, and ratings
    catalog = stack.data.items.set_index("title")["item_id"]
    ratings = [pb.Rating(movie_id=int(catalog[title]), rating=5) for title in RATED.values()]
    expected = stack.stub.Recommend(
        pb.RecommendRequest(inline_ratings=pb.InlineRatings(ratings=ratings), k=10)
    )
    shown = recommendations.locator(".title").all_inner_texts()
    assert shown == [item.title for item in expected.items]
    first = expected.items[0]
    expect(recommendations.first).to_contain_text(f"predicted {first.predicted_rating:.2f} ★")

    # the top recommendation explained by the three rated movies, and its nearest movies
    explanation = page.locator("#explanation")
    expect(explanation).to_contain_text(first.title)
    expect(explanation.locator("tbody tr")).to_have_count(3)
    for title in RATED.values():
        expect(explanation).to_contain_text(title)
    expect(page.locator("#similar-summary")).to_contain_text(first.title)
    nearest = stack.stub.SimilarItems(
        pb.SimilarItemsRequest(movie_id=first.movie_id, k=8, metric=pb.METRIC_COSINE)
    )
    similar = page.locator("#similar li .title")
    expect(similar).to_have_text([item.title for item in nearest.items])
    page.select_option("#metric", "METRIC_EUCLIDEAN")
    euclidean = stack.stub.SimilarItems(pb.SimilarItemsRequest(movie_id=first.movie_id, k=8))
    expect(similar).to_have_text([item.title for item in euclidean.items])

    # another recommendation's "Similar": the list follows
    page.select_option("#metric", "METRIC_COSINE")
    empire = recommendations.filter(has_text="Empire Strikes Back")
    empire.get_by_role("button", name="Similar").click()
    expect(page.locator("#similar-summary")).to_contain_text("Empire Strikes Back")
    expect(page.locator("#error")).to_be_hidden()

    screenshot = tmp_path / "try-it.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("RECSYS_PAGE_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["RECSYS_PAGE_SCREENSHOT"])


def test_an_error_of_the_api_is_shown(stack, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"http://127.0.0.1:{stack.gateway.service.http.port}/")
    page.fill("#search-query", "x" * 300)
    page.click("#search-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("400: query must be at most 200 characters")
