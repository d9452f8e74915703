"""A task report as one self-contained HTML page (Jinja2, escaped; the chart inline)."""

from __future__ import annotations

import base64

from jinja2 import Environment, PackageLoader, select_autoescape

from forgeline.tools.report.chart import stage_chart
from forgeline.tools.report.model import TaskReport

__all__ = ["render_html", "templates"]


def templates(package: str) -> Environment:
    """The Jinja2 templates of ``package`` (its ``templates/`` folder), HTML escaped."""
    return Environment(
        loader=PackageLoader(package),
        autoescape=select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
    )


def render_html(report: TaskReport) -> str:
    chart = base64.b64encode(stage_chart(list(report.stages))).decode("ascii")
    template = templates("forgeline.tools.report").get_template("report.html.j2")
    return template.render(r=report, s=report.state, chart=chart)
