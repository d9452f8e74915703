"""A task report as one self-contained HTML page (Jinja2, escaped; the chart inline)."""

from __future__ import annotations

import base64

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    select_autoescape,
)

from forgeline.tools.report.chart import stage_chart
from forgeline.tools.report.model import TaskReport

__all__ = ["render_html", "templates"]


def templates(package: str, override: str | None = None) -> Environment:
    """The Jinja2 templates of ``package`` (its ``templates/`` folder), HTML escaped; a
    template of the same name in the directory ``override`` is taken first."""
    loader: BaseLoader = PackageLoader(package)
    if override is not None:
        loader = ChoiceLoader([FileSystemLoader(override), loader])
    return Environment(
        loader=loader,
        autoescape=select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
    )


def render_html(report: TaskReport) -> str:
    chart = base64.b64encode(stage_chart(list(report.stages))).decode("ascii")
    template = templates("forgeline.tools.report").get_template("report.html.j2")
    return template.render(r=report, s=report.state, chart=chart)
