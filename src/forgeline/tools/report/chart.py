"""The report's chart: time and tokens per stage, two bar panels side by side, drawn
with Pillow as a PNG (the PDF embeds it as an image, the HTML page as a data URL)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

from forgeline.tools.report.model import StageCost

__all__ = ["stage_chart"]

WIDTH, ROW, TOP, PAD = 1200, 44, 70, 24
TIME_COLOUR = (58, 110, 165)
TOKEN_COLOUR = (214, 122, 44)
INK = (40, 40, 40)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType
        return ImageFont.load_default()


def _panel(
    draw: ImageDraw.ImageDraw,
    left: int,
    title: str,
    rows: list[tuple[str, float, str]],
    colour: tuple[int, int, int],
) -> None:
    label_w, width = 130, WIDTH // 2 - 2 * PAD
    bar_w = width - label_w - 110
    draw.text((left, 20), title, fill=INK, font=_font(26))
    top = max((value for _, value, _ in rows), default=0) or 1
    for i, (label, value, text) in enumerate(rows):
        y = TOP + i * ROW
        draw.text((left, y + 8), label, fill=INK, font=_font(20))
        length = int(bar_w * value / top)
        draw.rectangle(
            (left + label_w, y + 6, left + label_w + max(length, 2), y + 34), fill=colour
        )
        draw.text((left + label_w + length + 8, y + 8), text, fill=INK, font=_font(20))


def stage_chart(stages: list[StageCost]) -> bytes:
    """A PNG of seconds and tokens per stage."""
    height = TOP + max(len(stages), 1) * ROW + PAD
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    _panel(
        draw,
        PAD,
        "Time per stage (s)",
        [(s.stage, s.seconds, f"{s.seconds:.1f}") for s in stages],
        TIME_COLOUR,
    )
    _panel(
        draw,
        WIDTH // 2 + PAD,
        "Tokens per stage",
        [(s.stage, float(s.tokens), f"{s.tokens:,}") for s in stages],
        TOKEN_COLOUR,
    )
    if not stages:
        draw.text((PAD, TOP + 8), "no stage has run", fill=INK, font=_font(20))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
