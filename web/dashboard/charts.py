"""Server-drawn SVG bar charts for the overview (no JavaScript, no chart library to ship): one bar pair a
bucket, transitions and failures, scaled to the largest value; each bar has a <title> for its figure."""
from __future__ import annotations

from markupsafe import Markup, escape

W, H, PAD, LABEL = 720, 160, 24, 16  # px in the viewBox


def bars(buckets: list[tuple[str, int, int]], *, title: str, first: str, second: str) -> Markup:
    """`buckets`: (label, first value, second value) in order; labels shown every few buckets."""
    n = max(len(buckets), 1)
    top = max([max(a, b) for _, a, b in buckets] + [1])
    step = (W - PAD) / n
    width = max(step / 2 - 1, 1)
    out = [f'<svg class="chart" viewBox="0 0 {W} {H + LABEL}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<text x="0" y="10">{top}</text><line x1="{PAD}" y1="{H}" x2="{W}" y2="{H}" stroke="#c6ced8"/>']
    every = max(n // 8, 1)
    for i, (label, a, b) in enumerate(buckets):
        x = PAD + i * step
        for j, (value, css, name) in enumerate(((a, "bar", first), (b, "bar fail", second))):
            h = (H - 14) * value / top
            out.append(f'<rect class="{css}" x="{x + j * width:.1f}" y="{H - h:.1f}" width="{width:.1f}" '
                       f'height="{h:.1f}"><title>{escape(label)} {escape(name)}: {value}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{x:.1f}" y="{H + 12}">{escape(label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
