"""An HTML reader for the report tests: every tag, link, image, and marked figure of a page."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Attributes through which a page can make a browser fetch something.
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "data", "poster", "background",
             "cite", "longdesc", "manifest", "ping", "xlink:href"}
FETCHING_TAGS = {"script", "link", "iframe", "frame", "object", "embed", "base", "audio",
                 "video", "source", "track", "applet"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Page:
    tags: list[tuple[str, dict]] = field(default_factory=list)
    urls: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attr, value)
    images: list[tuple[str, str]] = field(default_factory=list)  # (section id, src)
    # (section id, key, JSON value, shown text) of every element marked data-figure
    figures: list[tuple[str, str, str, str]] = field(default_factory=list)
    check_rows: list[tuple[str, str]] = field(default_factory=list)  # (row class, text)
    styles: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    text: list[str] = field(default_factory=list)


class ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._section: str | None = None
        self._figure: list | None = None
        self._in_style = False
        self._in_summary = False
        self._row: list | None = None
        self._tables: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.append((tag, a))
        if "id" in a:
            self.page.ids.add(a["id"])
        for k, v in a.items():
            if k in URL_ATTRS:
                self.page.urls.append((tag, k, v))
        if tag == "section":
            self._section = a.get("id")
            self._in_summary = a.get("id") == "summary"
        if tag == "img":
            self.page.images.append((self._section or "", a.get("src", "")))
        if "data-figure" in a:
            self._figure = [self._section, a["data-figure"], a.get("data-value", ""), ""]
        if tag == "style":
            self._in_style = True
        if tag == "table":
            self._tables.append(a.get("class", ""))
        if (tag == "tr" and self._in_summary and self._tables
                and self._tables[-1].split() == ["checks"] and a.get("class")):
            self._row = [a["class"], ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._figure is not None:
            self._figure[3] = self._figure[3].strip()
            self.page.figures.append(tuple(self._figure))
            self._figure = None
        if tag == "style":
            self._in_style = False
        if tag == "tr" and self._row is not None:
            self.page.check_rows.append((self._row[0], " ".join(self._row[1].split())))
            self._row = None
        if tag == "table" and self._tables:
            self._tables.pop()
        if tag == "section":
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        self.page.text.append(data)
        if self._figure is not None:
            self._figure[3] += data
        if self._in_style:
            self.page.styles.append(data)
        if self._row is not None:
            self._row[1] += data


def parse(html: str) -> Page:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser.page


def decode_image(src: str) -> bytes:
    """The bytes of a data: URI image; raises when it is not a decodable PNG or SVG."""
    head, _, payload = src.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ValueError(f"not a base64 data: image URI: {head[:40]!r}")
    data = base64.b64decode(payload, validate=True)
    mime = head[len("data:"):-len(";base64")]
    if mime == "image/png":
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("PNG data URI without a PNG signature")
    elif mime == "image/svg+xml":
        root = ET.fromstring(data)
        if not root.tag.endswith("svg"):
            raise ValueError(f"SVG data URI whose root is {root.tag!r}")
    else:
        raise ValueError(f"unexpected image type {mime!r}")
    return data


def lookup(trace: dict, key: str) -> object:
    """``figures.num_requests`` or ``offloadable_fraction.345792`` inside a trace's JSON."""
    node: object = trace
    parts = key.split(".")
    while parts:
        # An argument key may hold a dot itself (hit=0.3): the longest part that exists.
        for n in range(len(parts), 0, -1):
            part = ".".join(parts[:n])
            if isinstance(node, dict) and part in node:
                node, parts = node[part], parts[n:]
                break
        else:
            raise KeyError(key)
    return node


def json_value(text: str) -> object:
    return json.loads(text)
