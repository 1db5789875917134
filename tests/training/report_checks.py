"""What a run's report.html must hold (training.html_report), read back with the standard HTML parser."""
from html.parser import HTMLParser

SECTIONS = ("summary", "losses", "recall", "calibration", "examples")


class _Page(HTMLParser):
    """Each section's images (their src) and text; every external reference anywhere on the page."""

    def __init__(self):
        super().__init__()
        self.section: str | None = None
        self.images: dict[str, list[str]] = {}
        self.text: dict[str, str] = {}
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.section = attrs.get("id")
            self.images[self.section], self.text[self.section] = [], ""
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith(("data:", "#")):
                self.external.append(attrs[name])
        if tag == "img" and self.section:
            self.images[self.section].append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.section:
            self.text[self.section] += data


def read_report(html: str) -> _Page:
    """Parsed page; asserts the five sections and that nothing is fetched from elsewhere."""
    page = _Page()
    page.feed(html)
    assert tuple(page.images) == SECTIONS
    assert page.external == [] and not {"script", "link", "iframe"} & page.tags and "url(" not in html
    return page


def assert_evaluation_sections(page: _Page, encoders: int, queries: int = 8, top: int = 5) -> None:
    """Recall@K and reliability figures as PNGs, and per encoder `queries` rows of a query plus its top
    works (5, or every work when the set has fewer)."""
    recall = page.images["recall"]
    assert len(recall) == 2 and all(s.startswith("data:image/png;base64,") for s in recall)
    assert "R@1" in page.text["recall"] and "service" in page.text["recall"]
    assert len(page.images["calibration"]) == 1 and "ECE" in page.text["calibration"]
    thumbs = page.images["examples"]
    assert len(thumbs) == encoders * queries * (1 + top)
    assert all(s.startswith("data:image/jpeg;base64,") for s in thumbs)
    assert page.text["examples"].count("query ·") == encoders * queries
