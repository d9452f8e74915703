"""A task report as PDF, with fpdf2.

fpdf2 is pure Python (Pillow and fontTools are its only native-code dependencies, both
wheels), embeds PNG images and TrueType fonts, and needs no system libraries: WeasyPrint
needs Pango, and reportlab's bitmap charts need its own C renderer. The text is set in
DejaVu Sans when the system has it (any Unicode in a request), else in the built-in
Helvetica with characters outside Latin-1 replaced.
"""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from forgeline.tools.report.chart import stage_chart
from forgeline.tools.report.model import TaskReport

__all__ = ["render_pdf"]

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
)


class _Report(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        self.set_auto_page_break(auto=True, margin=15)
        self.unicode = False
        for folder in FONT_DIRS:
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
            if regular.is_file() and bold.is_file():
                self.add_font("DejaVu", "", str(regular))
                self.add_font("DejaVu", "B", str(bold))
                self.unicode = True
                break
        self.family = "DejaVu" if self.unicode else "Helvetica"

    def clean(self, text: str) -> str:
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(self.family, "B", 13)
        self.cell(0, 8, self.clean(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.family, "", 10)

    def para(self, text: str) -> None:
        self.set_font(self.family, "", 10)
        self.multi_cell(0, 5, self.clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def rows(
        self,
        header: tuple[str, ...],
        body: list[tuple[str, ...]],
        widths: tuple[int, ...] | None = None,
    ) -> None:
        self.set_font(self.family, "", 9)
        with self.table(text_align="LEFT", first_row_as_headings=True, col_widths=widths) as table:
            for values in [header, *body]:
                row = table.row()
                for value in values:
                    row.cell(self.clean(value))


def render_pdf(report: TaskReport) -> bytes:
    state = report.state
    pdf = _Report()
    pdf.set_title(f"forgeline task {report.task_id}")
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 16)
    pdf.cell(0, 10, f"forgeline task {report.task_id}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    when = f"started {report.created_at:%Y-%m-%d %H:%M} UTC" if report.created_at else ""
    pdf.para(f"Status: {state.status}   Branch: {state.branch}   {when}")
    if state.failure:
        pdf.para(f"Reason: {state.failure}")

    pdf.heading("Request")
    pdf.para(state.request)
    pdf.heading("Plan")
    pdf.para(state.plan_summary or "no plan yet")
    for item in state.items.values():
        pdf.para(f"- [{item.status}] {item.item.id}: {item.item.title}")
    if state.architecture is not None:
        pdf.heading("Architecture decision")
        pdf.para(f"{state.architecture.summary}\n({state.architecture.adr_path})")

    pdf.heading("Changes")
    if report.changes:
        pdf.rows(
            ("file", "added", "deleted"),
            [
                (
                    c.path,
                    "?" if c.added is None else str(c.added),
                    "?" if c.deleted is None else str(c.deleted),
                )
                for c in report.changes
            ],
            widths=(6, 1, 1),
        )
    else:
        pdf.para("no files changed")
    for sha, subject in report.commits:
        pdf.para(f"{sha} {subject}")

    pdf.heading("Tests")
    pdf.para(report.test_summary())
    if state.last_test is not None and state.last_test.failing:
        pdf.para("Failing: " + ", ".join(state.last_test.failing))
    pdf.heading("Review")
    pdf.para(report.review_summary())
    if state.last_review is not None:
        for comment in state.last_review.comments:
            pdf.para(f"- {comment}")
    pdf.heading("Deploy")
    pdf.para(report.deploy_summary())

    pdf.heading("Usage and cost")
    pdf.para(report.usage_summary())
    if report.usage:
        pdf.rows(
            ("role", "model", "calls", "tokens in", "tokens out", "cost"),
            [
                (
                    "total" if r.role == "*" else r.role,
                    "" if r.model == "*" else r.model,
                    str(r.calls),
                    f"{r.input_tokens:,}",
                    f"{r.output_tokens:,}",
                    f"${r.cost_usd:.4f}",
                )
                for r in report.usage
            ],
            widths=(2, 3, 1, 2, 2, 2),
        )
    chart = stage_chart(list(report.stages))
    width, height = Image.open(io.BytesIO(chart)).size
    if pdf.will_page_break(14 + pdf.epw * height / width):
        pdf.add_page()  # the chart stays with its heading
    pdf.heading("Time and tokens per stage")
    pdf.image(io.BytesIO(chart), w=pdf.epw, title="stage chart")
    return bytes(pdf.output())
