"""Pages as a person sees them: headless Chromium renders them, screenshots them, and a probe
script (tests/harness/figure_probe.js) reads every figure off the drawn page.

Screenshots are kept in a temporary folder (HPO_TEST_ARTIFACTS, else <tmp>/hpo-test-artifacts)
so that a person can look at what the test saw. Chromium comes from Debian's `chromium`
package, which tests/setup.sh installs; without it these tests skip, except under CI=true.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ARTIFACTS = Path(
    os.environ.get("HPO_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "hpo-test-artifacts")
)
PROBE = Path(__file__).with_name("figure_probe.js")
SLACK_PX = 3.0  # half a line's width, and rounding


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; tests/setup.sh installs it")
        pytest.skip(message)
    return path


def browse(url: str, screenshot: str, height: int = 1400, check_size: bool = True) -> str:
    """Load `url` with JavaScript, save a screenshot, return the rendered DOM: one Chromium
    start for both (headless Chromium takes --screenshot and --dump-dom together)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=10000",
    ]
    shot = ARTIFACTS / screenshot
    shot.unlink(missing_ok=True)  # the size check below sees this run's file
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [*flags, f"--user-data-dir={profile}", f"--screenshot={shot}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    if check_size:  # a page with content, not a blank one
        assert shot.stat().st_size > 10_000
    return dom


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float

    def inside(self, outer: Box, slack: float = SLACK_PX) -> bool:
        return (
            self.left >= outer.left - slack
            and self.top >= outer.top - slack
            and self.right <= outer.right + slack
            and self.bottom <= outer.bottom + slack
        )

    def overlaps(self, other: Box) -> bool:
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )


@dataclass(frozen=True)
class Mark:
    """A line, a marker or a bar as drawn, and the plot area it belongs in."""

    kind: str
    colour: str | None
    box: Box
    plot: Box | None
    dashed: bool = False


@dataclass(frozen=True)
class Label:
    text: str
    box: Box
    axis: str = ""


@dataclass(frozen=True)
class LegendEntry:
    name: str
    colours: tuple[str, ...]


@dataclass(frozen=True)
class RenderedFigure:
    heading: str
    box: Box
    legend: tuple[LegendEntry, ...]
    marks: tuple[Mark, ...]
    titles: tuple[Label, ...]
    ticks: tuple[Label, ...]
    covers: tuple[Box, ...] = ()  # what is drawn over the figure: plotly's mode bar

    def drawn_colours(self) -> set[str]:
        return {mark.colour for mark in self.marks if mark.colour}

    def ticks_of(self, axis: str) -> list[str]:
        return [tick.text for tick in self.ticks if tick.axis == axis]

    def problems(self, headings: list[Label], integer_axes: set[str]) -> list[str]:
        """What a reader would stumble on, each as a sentence; empty when the figure reads."""
        found = []
        drawn = self.drawn_colours()
        named = {colour for entry in self.legend for colour in entry.colours}
        for entry in self.legend:
            if not entry.name or not set(entry.colours) & drawn:
                found.append(f"legend entry {entry.name!r} {entry.colours}: not drawn")
        if self.legend:
            found += [f"drawn in {colour} and not in the legend" for colour in drawn - named]
        elif len(drawn) > 1:
            found.append(f"{len(drawn)} colours drawn and no legend: {sorted(drawn)}")
        for mark in self.marks:
            if mark.plot is None or not mark.box.inside(mark.plot):
                found.append(f"a {mark.kind} in {mark.colour} leaves its axes: {mark.box}")
        for title in self.titles:
            if not title.box.inside(self.box, slack=1):
                found.append(f"title {title.text!r} is cut off: {title.box} in {self.box}")
            found += [
                f"title {title.text!r} runs into the heading {h.text!r}"
                for h in headings
                if title.box.overlaps(h.box)
            ]
            if any(title.box.overlaps(cover) for cover in self.covers):
                found.append(f"title {title.text!r} lies under the mode bar")
        for tick in self.ticks:
            if not tick.box.inside(self.box, slack=1):
                found.append(f"tick {tick.text!r} ({tick.axis}) is cut off: {tick.box}")
            if tick.axis in integer_axes and not re.fullmatch(r"\d+", tick.text.replace(",", "")):
                found.append(f"tick {tick.text!r} on {tick.axis!r}, a whole-number axis")
        for axis in {tick.axis for tick in self.ticks}:
            labels = self.ticks_of(axis)
            if not _round_ticks(labels):
                found.append(f"ticks on {axis!r} are not round: {labels}")
        return found


def _round_ticks(labels: list[str]) -> bool:
    """Whether evenly spaced numeric tick labels (a linear axis) sit on multiples of a round
    step (1, 2, 2.5 or 5 × 10^k), as 0, 0.5, 1 do and 0.046, 0.248, 0.45 do not. Text labels,
    fewer than three, and uneven ones (a log axis) pass."""
    try:
        values = [float(label.replace(",", "").replace("\u2212", "-")) for label in labels]
    except ValueError:
        return True
    steps = [b - a for a, b in itertools.pairwise(values)]
    if len(steps) < 2 or min(steps) <= 0:
        return True
    mean = sum(steps) / len(steps)
    if max(steps) - min(steps) > 0.05 * mean:
        return True
    magnitude = 10 ** math.floor(math.log10(mean))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs(s - mean))
    return abs(step - mean) <= 0.01 * step and all(
        abs(value / step - round(value / step)) < 1e-6 for value in values
    )


@dataclass(frozen=True)
class RenderedPage:
    headings: list[Label]
    figures: list[RenderedFigure]

    def figure(self, heading_start: str) -> RenderedFigure:
        matches = [f for f in self.figures if f.heading.startswith(heading_start)]
        assert len(matches) == 1, [f.heading for f in self.figures]
        return matches[0]

    def problems(self, integer_axes: set[str]) -> list[str]:
        return [
            f"{figure.heading}: {problem}"
            for figure in self.figures
            for problem in figure.problems(self.headings, integer_axes)
        ]


def render(page: str, screenshot: str, height: int = 1400) -> RenderedPage:
    """Render an HTML page (or an SVG document, placed in one) with the probe, screenshot it
    and return its figures as drawn."""
    if page.lstrip().startswith("<svg"):
        page = f"<!DOCTYPE html><html><body style='margin:8px'>{page}</body></html>"
    probed = page.replace("</body>", f"<script>{PROBE.read_text()}</script></body>", 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.html"
        path.write_text(probed)
        dom = browse(path.as_uri(), screenshot, height=height)
    found = re.search(r'<pre id="figure-probe"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: the page's scripts failed or took too long"
    data = json.loads(html.unescape(found.group(1)))
    return RenderedPage(
        headings=[Label(h["text"], Box(*h["box"])) for h in data["headings"]],
        figures=[_figure(f) for f in data["figures"]],
    )


def _figure(data: dict) -> RenderedFigure:
    return RenderedFigure(
        heading=data["heading"],
        box=Box(*data["box"]),
        legend=tuple(LegendEntry(e["name"], tuple(e["colours"])) for e in data["legend"]),
        marks=tuple(
            Mark(
                m["kind"],
                m["colour"],
                Box(*m["box"]),
                Box(*m["plot"]) if m["plot"] else None,
                m["dashed"],
            )
            for m in data["marks"]
        ),
        titles=tuple(Label(t["text"], Box(*t["box"])) for t in data["titles"]),
        ticks=tuple(Label(t["text"], Box(*t["box"]), t["axis"] or "") for t in data["ticks"]),
        covers=tuple(Box(*cover) for cover in data["covers"]),
    )
