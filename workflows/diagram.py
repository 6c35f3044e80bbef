"""The binding state diagram (DESIGN §2, issue 4) as an inline SVG string, computed from `machine`.

Why computed: the workflow page must show where a binding is and how it got there, and that picture must
never drift from the machine that actually runs, so it is drawn from `machine.STATES`/`TRANSITIONS` on
each request instead of by hand. There is no graphviz here, so this is a small layered layout in the
stdlib: column = longest path from `new` over non-loop edges; rows in `machine.STATES` order within a
column, far enough apart that a box's self-loop and its label clear the box below; an edge that skips
columns runs through a free horizontal lane of each column it crosses (never through a box); self-loops
hang below their box; triggers on the same (source, dest) share one edge and
one label; each label goes to the first spot along its edge that covers no box and no other label.
Same input → same string. Styling is by CSS classes: `state` (+ `terminal`, `initial`, and `current` or
`visited` from the path), `edge` (+ `loop`, `taken`, with `data-count`), `edge-label` (+ `taken`); colours
are presentation attributes, i.e. defaults any page stylesheet overrides. All text is escaped; the output
is well-formed XML."""
from __future__ import annotations

import html
import unicodedata
from collections import Counter
from itertools import accumulate

from . import machine

FONT, EFONT, LH = 13, 11, 13          # state font, edge-label font, edge-label line height
BOX_H, DOT, ROW, PAD = 34, 16, 70, 14  # box height, `new` dot size, row pitch, box text padding
CLEAR, LANE, LOOP, MARGIN = 10, 16, 30, 10  # lane clearance from boxes, lane spacing, loop depth, frame
INK, MUTED, GREY, BLUE, PALE, TERM = "#1f2933", "#59636e", "#9aa3ad", "#2f6fdb", "#e3edff", "#eceff2"
FONTS = "system-ui, -apple-system, 'PingFang SC', 'Microsoft YaHei', 'Noto Sans CJK SC', sans-serif"


def _e(text) -> str:
    """Escaped for XML text and attributes; control characters XML cannot carry are dropped."""
    return html.escape("".join(c for c in str(text) if c >= " " or c in "\t\n\r"), quote=True)


def _width(text: str, size: float) -> float:
    return sum(size if unicodedata.east_asian_width(c) in "WF" else size * 0.62 for c in text)


def _groups() -> dict[tuple[str, str], list[str]]:
    """(source, dest) → its triggers, in TRANSITIONS order; a list source becomes one edge per source."""
    out: dict[tuple[str, str], list[str]] = {}
    for t in machine.TRANSITIONS:
        for s in t["source"] if isinstance(t["source"], (list, tuple)) else [t["source"]]:
            triggers = out.setdefault((s, t["dest"]), [])
            if t["trigger"] not in triggers:
                triggers.append(t["trigger"])
    return out


def _columns(groups) -> dict[str, int]:
    """Longest path over non-loop edges; bounded relaxation, so a cycle cannot loop forever."""
    col = dict.fromkeys(machine.STATES, 0)
    for _ in machine.STATES:
        for s, d in groups:
            if s != d and col[d] < col[s] + 1:
                col[d] = col[s] + 1
    return col


def _free(ideal: float, blocked: list[tuple[float, float]]) -> float:
    """The y nearest `ideal` not strictly inside a blocked interval (ties: the upper one)."""
    cands = [ideal] + [b for iv in blocked for b in iv]
    ok = [c for c in cands if not any(lo < c < hi for lo, hi in blocked)]
    return min(ok, key=lambda c: (abs(c - ideal), c))


def _at(a, b, t: float) -> tuple[float, float]:
    """Point at `t` on the horizontal-tangent cubic from a to b (the curve `_d` draws)."""
    return (a[0] + (b[0] - a[0]) * (1.5 * t - 1.5 * t * t + t ** 3),
            a[1] + (b[1] - a[1]) * (3 * t * t - 2 * t ** 3))


def _d(pts) -> str:
    out = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for (ax, ay), (bx, by) in zip(pts, pts[1:]):
        m = (bx - ax) / 2
        out.append(f"L{bx:.1f},{by:.1f}" if ay == by else
                   f"C{ax + m:.1f},{ay:.1f} {bx - m:.1f},{by:.1f} {bx:.1f},{by:.1f}")
    return " ".join(out)


def _overlap(r, q) -> float:
    return max(0, min(r[2], q[2]) - max(r[0], q[0])) * max(0, min(r[3], q[3]) - max(r[1], q[1]))


def _text(x, y, lines, size, cls, fill, bold=()) -> str:
    """Centred (multi-line) text around (x, y), with a white halo so crossing lines stay readable."""
    top = y - len(lines) * LH / 2
    spans = "".join(f'<tspan x="{x:.1f}" y="{top + (i + 0.5) * LH + size * 0.35:.1f}"'
                    + (f' class="taken" font-weight="bold" fill="{BLUE}"' if i in bold else "")
                    + f'>{_e(t)}</tspan>'
                    for i, t in enumerate(lines))
    return (f'<text class="{cls}" text-anchor="middle" font-size="{size}" fill="{fill}"'
            f' stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">{spans}</text>')


def _layout(groups, size, lsize):
    """Columns, box rectangles (x, y, w, h), routed edge points, and the depth of each box's loop."""
    col = _columns(groups)
    stacks = [[s for s in machine.STATES if col[s] == c] for c in range(max(col.values()) + 1)]
    colw = [max(size[s][0] for s in st) for st in stacks]
    gap = [max([100] + [w + 30 for (s, d), (w, _) in lsize.items() if (col[s], col[d]) == (c, c + 1)])
           for c in range(len(stacks))]  # a gap fits the labels of the edges that span only it
    colx = list(accumulate([0.0] + [w + g for w, g in zip(colw, gap)]))
    below = {s: LOOP * 0.75 + 4 + lsize[(s, s)][1] if (s, s) in groups else 0 for s in machine.STATES}
    rect = {}
    for c, st in enumerate(stacks):  # rows ROW apart, or further where a loop and its label hang below a box
        y = 0.0
        for i, s in enumerate(st):
            if i:
                p = st[i - 1]
                y += max(ROW, size[p][1] / 2 + below[p] + CLEAR + size[s][1] / 2)
            rect[s] = (colx[c] + (colw[c] - size[s][0]) / 2, y - size[s][1] / 2, *size[s])
    block = [[(rect[s][1] - CLEAR, rect[s][1] + rect[s][3] + below[s] + CLEAR) for s in st] for st in stacks]
    routes: dict[tuple[str, str], list[list[float]]] = {}
    for s, d in groups:  # lanes: each column crossed gets the free y nearest the line to the target
        if s != d:
            y, y1 = rect[s][1] + rect[s][3] / 2, rect[d][1] + rect[d][3] / 2
            pts = [[rect[s][0] + rect[s][2], y]]
            for c in range(col[s] + 1, col[d]):
                y = _free(y + (y1 - y) / (col[d] - c + 1), block[c])
                block[c].append((y - LANE, y + LANE))
                pts += [[colx[c], y], [colx[c] + colw[c], y]]
            routes[(s, d)] = pts + [[rect[d][0], y1]]
    for s in machine.STATES:  # ports: spread a box's edges along its side, ordered by where they go
        for end, nxt in ((0, 1), (-1, -2)):
            keys = sorted((k for k in routes if k[end] == s), key=lambda k: routes[k][nxt][1])
            step = min(8.0, size[s][1] * 0.6 / max(1, len(keys) - 1))
            for j, k in enumerate(keys):
                routes[k][end][1] += (j - (len(keys) - 1) / 2) * step
    return rect, routes, below


def _place(pts, w, h, placed) -> tuple[float, float]:
    """The first spot along the edge (lanes first, then longer segments) that covers nothing placed."""
    segs = sorted(zip(pts, pts[1:]), key=lambda ab: (ab[0][1] != ab[1][1], -abs(ab[1][0] - ab[0][0])))
    spots = [_at(a, b, t) for a, b in segs for t in (0.5, 0.3, 0.7)]
    box = lambda p: (p[0] - w / 2, p[1] - h / 2, p[0] + w / 2, p[1] + h / 2)  # noqa: E731
    best = min(spots, key=lambda p: sum(_overlap(box(p), q) for q in placed))
    placed.append(box(best))
    return best


def _state(s, rect, name, mark, new_label) -> str:
    x, y, w, h = rect
    terminal, new, cur = s in machine.TERMINAL, s == machine.NEW, mark == "current"
    cls = " ".join(filter(None, ["state", "terminal" * terminal, "initial" * new, mark]))
    fill = BLUE if cur or (new and mark) else INK if new else PALE if mark else TERM if terminal else "#fff"
    stroke = BLUE if mark else INK if new else "#7b8794"
    tip = name if name == s else f"{name} ({s})"
    out = [f'<g class="{cls}" data-state="{_e(s)}"><title>{_e(tip)}</title>'
           f'<rect class="box" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}"'
           f' rx="{h / 2 if new else 6}" fill="{fill}" stroke="{stroke}"'
           f' stroke-width="{2.5 if cur else 1.4}"/>']
    if terminal:  # double border
        out.append(f'<rect class="inner" x="{x + 3:.1f}" y="{y + 3:.1f}" width="{w - 6:.1f}"'
                   f' height="{h - 6:.1f}" rx="4" fill="none" stroke="{"#fff" if cur else stroke}"'
                   ' stroke-width="1"/>')
    out.append(_text(*new_label, [name], EFONT, "name", MUTED) if new else
               f'<text class="name" x="{x + w / 2:.1f}" y="{y + h / 2 + FONT * 0.35:.1f}"'
               f' text-anchor="middle" font-size="{FONT}" fill="{"#fff" if cur else INK}">{_e(name)}</text>')
    return "".join(out) + "</g>"


def svg(*, current: str | None = None, path: list[tuple[str | None, str, str]] = (),
        labels: dict[str, str] | None = None, event_labels: dict[str, str] | None = None) -> str:
    """The diagram; `path` is the history as (from, to, event) in order, from None for the creation."""
    lab = lambda s: (labels or {}).get(s, s)  # noqa: E731
    groups = _groups()
    taken = Counter((s or machine.NEW, d, e) for s, d, e in path)
    visited = {x for s, d, _ in path for x in (s or machine.NEW, d)}
    count = {k: sum(n for (s, d, _), n in taken.items() if (s, d) == k) for k in groups}
    lines = {k: [(event_labels or {}).get(t, t) + (f" ×{taken[(*k, t)]}" if taken[(*k, t)] > 1 else "")
                 for t in v] for k, v in groups.items()}
    lsize = {k: (max(_width(t, EFONT) for t in v) + 6, len(v) * LH) for k, v in lines.items()}
    size = {s: (DOT, DOT) if s == machine.NEW else (_width(lab(s), FONT) + 2 * PAD, BOX_H)
            for s in machine.STATES}
    rect, routes, below = _layout(groups, size, lsize)

    placed = [(x, y, x + w, y + h) for x, y, w, h in rect.values()]  # boxes and labels so far
    x, y, w, h = rect[machine.NEW]
    new_label = (x + w / 2, y + h + 4 + LH / 2)
    nw = _width(lab(machine.NEW), EFONT) / 2
    placed.append((new_label[0] - nw, new_label[1] - LH / 2, new_label[0] + nw, new_label[1] + LH / 2))
    shapes, label_at = {}, {}
    for (s, d), (w, h) in lsize.items():  # self-loops hang below their box, their label under them
        if s == d:
            cx, b = rect[s][0] + rect[s][2] / 2, rect[s][1] + rect[s][3]
            shapes[(s, d)] = (f"M{cx + 10:.1f},{b:.1f} C{cx + 34:.1f},{b + LOOP:.1f} "
                              f"{cx - 34:.1f},{b + LOOP:.1f} {cx - 10:.1f},{b:.1f}")
            label_at[(s, d)] = (cx, b + below[s] - h / 2)
            placed.append((cx - w / 2, b + below[s] - h, cx + w / 2, b + below[s]))
    for k, pts in routes.items():
        shapes[k], label_at[k] = _d(pts), _place(pts, *lsize[k], placed)

    xs = [v for r in placed for v in (r[0], r[2])] + [p[0] for pts in routes.values() for p in pts]
    ys = [v for r in placed for v in (r[1], r[3])] + [p[1] for pts in routes.values() for p in pts]
    x0, y0 = min(xs) - MARGIN, min(ys) - MARGIN
    seq = ([path[0][0] or machine.NEW] + [d for _, d, _ in path] if path
           else [s for s in machine.STATES if s != machine.NEW])
    aria = (" → " if path else " · ").join(lab(s) for s in seq)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="state-diagram" width="100%" role="img"'
           f' viewBox="{x0:.1f} {y0:.1f} {max(xs) - x0 + MARGIN:.1f} {max(ys) - y0 + MARGIN:.1f}"'
           f' aria-label="{_e(aria)}" font-family="{FONTS}"><defs>'
           + "".join(f'<marker id="gj-arrow{n}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9"'
                     f' markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
                     f'<path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
                     for n, c in (("", GREY), ("-taken", BLUE)))
           + "</defs>"]
    order = sorted(groups, key=lambda k: bool(count[k]))  # taken edges drawn last, on top
    for s, d in order:
        on, trig = bool(count[(s, d)]), groups[(s, d)]
        title = f"{lab(s)} → {lab(d)}: " + ", ".join(lines[(s, d)])
        out.append(f'<g class="edge{" loop" * (s == d)}{" taken" * on}" data-source="{_e(s)}"'
                   f' data-dest="{_e(d)}" data-event="{_e(" ".join(trig))}"'
                   + f' data-count="{count[(s, d)]}"' * on
                   + f'><title>{_e(title)}</title><path d="{shapes[(s, d)]}" fill="none"'
                   f' stroke="{BLUE if on else GREY}" stroke-width="{2.2 if on else 1.3}"'
                   f' marker-end="url(#gj-arrow{"-taken" * on})"/></g>')
    for k in order:
        out.append(_text(*label_at[k], lines[k], EFONT, "edge-label" + " taken" * bool(count[k]), MUTED,
                         {i for i, t in enumerate(groups[k]) if taken[(*k, t)]}))
    for s in machine.STATES:
        mark = "current" if s == current else "visited" if s in visited else ""
        out.append(_state(s, rect[s], lab(s), mark, new_label))
    return "\n".join(out + ["</svg>"])
