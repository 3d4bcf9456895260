"""Self-contained HTML pages: plotly inlined once, so they open with no network."""

from __future__ import annotations

import html
import re
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs


def html_page(title: str, subtitle: str, sections: list[str]) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#eee}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
        + "".join(sections)
        + "</body></html>"
    )


def section(title: str, body: str) -> str:
    """A titled part of the page; its id (the title's first words, lower case, joined by
    hyphens: `report.html#optimization-history`) links to it."""
    return f"<section id='{anchor(title)}'><h2>{html.escape(title)}</h2>{body}</section>"


def anchor(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.split(":")[0].lower())
    return "-".join(words[:4])


def figure_html(figure: go.Figure, height: int = 420, top: int = 30) -> str:
    """The figure as a page fragment. Axes grow the margins to fit their labels (a long
    parameter name is not cut off at the figure's edge); `top` leaves room above the plot for
    what is drawn there (parallel coordinates' axis titles)."""
    figure.update_layout(height=height, margin=dict(l=60, r=20, t=top, b=50))
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    return figure.to_html(full_html=False, include_plotlyjs=False)


def table_html(header: list[str], rows: list[list[Any]], row_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table id='{row_id}'><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)
