"""Reads a report.html as a browser would not need to: its sections, images, links."""

import html.parser

# What the issue asks a report to show, in reading order (not read from ctdist.report).
SECTIONS = ["run", "data", "training", "metrics", "baselines", "confusion", "calibration",
            "gallery"]


class Page(html.parser.HTMLParser):
  """Section ids, <img> sources, <figure> count, tags that would fetch or run something,
  and the links a reader may follow (<a href>, fetched only when clicked)."""

  def __init__(self, text: str):
    super().__init__()
    self.sections, self.images, self.figures, self.external, self.scripts = [], [], 0, [], 0
    self.links = []
    self.feed(text)

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "section":
      self.sections.append(attrs.get("id"))
    elif tag == "img":
      self.images.append(attrs.get("src", ""))
    elif tag == "figure":
      self.figures += 1
    elif tag == "script":
      self.scripts += 1
    for key in ("src", "href"):
      value = attrs.get(key) or ""
      if value and not value.startswith(("data:", "#")):
        (self.links if tag == "a" and key == "href" else self.external).append(value)


def check_self_contained(text: str) -> Page:
  """Every section, images only as data: URIs, nothing fetched, no script; links only to
  files beside the report (the model card)."""
  page = Page(text)
  assert page.sections == SECTIONS, page.sections
  assert page.external == [] and page.scripts == 0, (page.external, page.scripts)
  assert all("/" not in link and ":" not in link for link in page.links), page.links
  assert page.images and all(s.startswith("data:image/png;base64,") for s in page.images)
  return page
