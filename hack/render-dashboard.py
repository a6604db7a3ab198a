#!/usr/bin/env python3
"""Renders the Grafana dashboard of the chart as an SVG picture, from a real Prometheus.

There is no Grafana on this machine, so this draws the dashboard itself: the panels where the
JSON places them (24-column grid), each panel's own PromQL queries run against the Prometheus
given (range queries over the last --minutes, instant ones at the end), with the panel's unit,
thresholds, value mappings and legend format. Covered panel types: row, stat, timeseries,
bargauge, state-timeline, nodeGraph. It is a picture of what the dashboard shows, not a
pixel copy of Grafana.

  hack/render-dashboard.py --prometheus http://127.0.0.1:9090 --out dashboard.svg [--minutes 10]

Also prints one line per panel to stdout: `<series>\t<points>\t<type>\t<title>`, so a test can
check that every panel had data.
"""
import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape

ROOT = __file__.rsplit("/hack/", 1)[0]
DEFAULT_DASHBOARD = f"{ROOT}/charts/datashare/files/dashboards/datashare.json"

WIDTH = 1440  # px for 24 columns
COL = WIDTH / 24
ROW_H = 30  # px per grid unit of height
PAD = 6
BG, PANEL_BG, BORDER, TEXT, MUTED, GRID = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#ff9830", "#96d98d",
           "#ffcb7d"]
NAMED = {"green": "#73bf69", "yellow": "#fade2a", "red": "#f2495c", "orange": "#ff9830", "blue": "#5794f2",
         "purple": "#b877d9", "text": TEXT}


def color(name):
    return NAMED.get(name, name or TEXT)


class Prometheus:
    def __init__(self, url, end, minutes, scrape_s):
        self.url = url.rstrip("/")
        self.end = end
        self.start = end - minutes * 60
        self.step = max(1, int(minutes * 60 / 240))
        rate = max(4 * scrape_s, self.step + scrape_s)
        self.vars = {
            "__rate_interval": f"{rate}s", "__interval": f"{self.step}s", "__interval_ms": str(self.step * 1000),
            "__range": f"{minutes * 60}s", "__range_s": str(minutes * 60), "namespace": ".*", "policy": ".*",
        }

    def expand(self, expr):
        # ${name} and $name, longest names first ($__rate_interval before $__range).
        for name in sorted(self.vars, key=len, reverse=True):
            expr = expr.replace("${" + name + "}", self.vars[name]).replace("$" + name, self.vars[name])
        return expr

    def _get(self, path, params):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def range(self, expr):
        data = self._get("/api/v1/query_range", {"query": self.expand(expr), "start": self.start, "end": self.end,
                                                  "step": self.step})
        return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data["result"]]

    def instant(self, expr):
        data = self._get("/api/v1/query", {"query": self.expand(expr), "time": self.end})
        if data["resultType"] != "vector":
            return []
        return [(s["metric"], [(float(s["value"][0]), float(s["value"][1]))]) for s in data["result"]]


def legend(fmt, metric, expr):
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
    if metric:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
    return expr.strip().split("\n")[0][:60]


def fmt_value(v, unit):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "no data"
    if unit == "percentunit":
        return f"{v * 100:.0f}%"
    if unit == "s":
        if v == 0:
            return "0 s"
        if abs(v) < 1e-3:
            return f"{v * 1e6:.0f} µs"
        if abs(v) < 1:
            return f"{v * 1e3:.0f} ms"
        if abs(v) < 120:
            return f"{v:.1f} s"
        return f"{v / 60:.1f} min"
    suffix = {"reqps": " req/s", "ops": " ops/s", "eps": " /s", "cps": " /s"}.get(unit, "")
    for div, mark in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{mark}{suffix}"
    if v == int(v):
        return f"{int(v)}{suffix}"
    return f"{v:.2f}{suffix}" if abs(v) >= 0.01 else f"{v:.3g}{suffix}"


def threshold_color(defaults, v):
    steps = (defaults.get("thresholds") or {}).get("steps") or []
    c = TEXT
    for s in steps:
        if s.get("value") is None or (v is not None and v >= s["value"]):
            c = color(s.get("color"))
    return c


def mapped(defaults, v):
    for m in defaults.get("mappings") or []:
        if m.get("type") == "value":
            key = str(int(v)) if v is not None and v == int(v) else str(v)
            if key in m.get("options", {}):
                o = m["options"][key]
                return o.get("text", key), color(o.get("color"))
    return None, None


class Svg:
    def __init__(self):
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, fill=TEXT, anchor="start", weight="normal"):
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}" '
                 f'font-weight="{weight}">{escape(str(s))}</text>')

    def rect(self, x, y, w, h, fill, stroke="none", rx=0):
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}" '
                 f'stroke="{stroke}" rx="{rx}"/>')

    def line(self, x1, y1, x2, y2, stroke, width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                 f'stroke-width="{width}"{d}/>')


def counts(series):
    """What a panel drew: its number of series and of points, for the summary lines."""
    return len(series), sum(len(s[2]) for s in series)


def label_width(series, w):
    """Room for the longest series name left of the bars, within 40 % of the panel."""
    return min(max([6.5 * len(s[0]) + 16 for s in series] + [60]), w * 0.4)


def no_data(svg, x, y, w, h):
    svg.text(x + w / 2, y + h / 2, "no data", size=14, fill=MUTED, anchor="middle")


def series_of(prom, panel, instant_only=False):
    out = []
    for t in panel.get("targets", []):
        if not t.get("expr"):
            continue
        instant = instant_only or t.get("instant") or t.get("range") is False
        result = prom.instant(t["expr"]) if instant else prom.range(t["expr"])
        for metric, points in result:
            out.append((legend(t.get("legendFormat"), metric, t["expr"]), metric, points, t.get("refId", "")))
    return out


def draw_stat(svg, prom, panel, x, y, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    series = series_of(prom, panel, instant_only=True)
    v = series[0][2][-1][1] if series and series[0][2] else None
    svg.text(x + w / 2, y + h / 2 + 14, fmt_value(v, defaults.get("unit")), size=34,
             fill=threshold_color(defaults, v), anchor="middle", weight="bold")
    return counts(series)


def draw_bargauge(svg, prom, panel, x, y, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    series = series_of(prom, panel, instant_only=True)
    lo, hi = defaults.get("min", 0), defaults.get("max")
    if hi is None:
        hi = max([s[2][-1][1] for s in series if s[2]] + [1])
    n = max(len(series), 1)
    bar_h = min(26, (h - 10) / n - 6)
    label_w = label_width(series, w)
    for i, (name, _, points, _) in enumerate(series):
        v = points[-1][1] if points else 0
        by = y + 6 + i * (bar_h + 6)
        svg.text(x + 6, by + bar_h * 0.7, name, size=11, fill=MUTED)
        bx, bw = x + label_w, w - label_w - 80
        svg.rect(bx, by, bw, bar_h, "#22252b")
        frac = 0 if hi == lo else min(max((v - lo) / (hi - lo), 0), 1)
        svg.rect(bx, by, bw * frac, bar_h, threshold_color(defaults, v))
        svg.text(bx + bw + 8, by + bar_h * 0.7, fmt_value(v, defaults.get("unit")), size=12,
                 fill=threshold_color(defaults, v))
    return counts(series)


def axes(svg, prom, x, y, w, h, lo, hi, unit):
    for i in range(5):
        gy = y + h - h * i / 4
        svg.line(x, gy, x + w, gy, GRID, dash="2,3")
        svg.text(x - 4, gy + 4, fmt_value(lo + (hi - lo) * i / 4, unit), size=9, fill=MUTED, anchor="end")
    for i in range(5):
        t = prom.start + (prom.end - prom.start) * i / 4
        svg.text(x + w * i / 4, y + h + 12, time.strftime("%H:%M", time.gmtime(t)), size=9, fill=MUTED,
                 anchor="middle")


def legend_rows(svg, entries, x, y, w):
    cx, cy = x, y
    for name, c in entries:
        width = 16 + 6.2 * len(name) + 14
        if cx + width > x + w and cx > x:
            cx, cy = x, cy + 14
        svg.rect(cx, cy - 8, 10, 3, c)
        svg.text(cx + 14, cy - 3, name, size=10, fill=MUTED)
        cx += width


def draw_timeseries(svg, prom, panel, x, y, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit")
    series = series_of(prom, panel)
    legend_h = 16 + 14 * (len(series) // 3)
    px, py, pw, ph = x + 62, y + 8, w - 74, h - 28 - legend_h
    values = [v for s in series for _, v in s[2] if not math.isnan(v) and not math.isinf(v)]
    lo = defaults.get("min", min(values + [0]))
    hi = defaults.get("max", max(values + [lo]) * 1.05)
    if hi <= lo:  # nothing but zeros (or no data): an axis of 0..1 rather than of rounding noise
        hi = lo + 1
    axes(svg, prom, px, py, pw, ph, lo, hi, unit)
    entries = []
    for i, (name, _, points, _) in enumerate(series):
        c = PALETTE[i % len(PALETTE)]
        pts = [(px + pw * (t - prom.start) / (prom.end - prom.start), py + ph - ph * (v - lo) / (hi - lo))
               for t, v in points if not math.isnan(v) and not math.isinf(v)]
        if pts:
            svg.add(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="'
                    + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        entries.append((name, c))
    if not series:
        no_data(svg, x, y, w, h)
    legend_rows(svg, entries, x + 8, y + h - legend_h + 10, w - 16)
    return counts(series)


def draw_state_timeline(svg, prom, panel, x, y, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    series = series_of(prom, panel)
    n = max(len(series), 1)
    label_w = label_width(series, w)
    row_h = min(34, (h - 30) / n)
    for i, (name, _, points, _) in enumerate(series):
        ry = y + 6 + i * row_h
        svg.text(x + 6, ry + row_h * 0.6, name, size=11, fill=MUTED)
        bx, bw = x + label_w, w - label_w - 10
        for j, (t, v) in enumerate(points):
            t2 = points[j + 1][0] if j + 1 < len(points) else prom.end
            text, c = mapped(defaults, v)
            x1 = bx + bw * (t - prom.start) / (prom.end - prom.start)
            x2 = bx + bw * (t2 - prom.start) / (prom.end - prom.start)
            svg.rect(x1, ry, x2 - x1 + 0.5, row_h * 0.8, c or threshold_color(defaults, v))
        if points:
            text, _ = mapped(defaults, points[-1][1])
            svg.text(bx + 6, ry + row_h * 0.55, text or fmt_value(points[-1][1], defaults.get("unit")), size=11,
                     fill="#111")
    if not series:
        no_data(svg, x, y, w, h)
    return counts(series)


def draw_node_graph(svg, prom, panel, x, y, w, h):
    frames = {}
    for t in panel.get("targets", []):
        frames[t.get("refId")] = [m for m, _ in prom.instant(t["expr"])]
    nodes = sorted({m["id"] for m in frames.get("nodes", []) if "id" in m})
    edges = [m for m in frames.get("edges", []) if "source" in m and "target" in m]
    owners = sorted({e["source"] for e in edges} | (set(nodes) - {e["target"] for e in edges}))
    consumers = sorted({e["target"] for e in edges} - set(owners))
    pos = {}
    for col, names in ((0.2, owners), (0.75, consumers)):
        for i, name in enumerate(names):
            pos[name] = (x + w * col, y + 20 + (h - 40) * (i + 0.5) / max(len(names), 1))
    mode_color = {"event": "#73bf69", "hybrid": "#8ab8ff", "sync": "#ff9830"}
    svg.add('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8e8e8e"/></marker></defs>')
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["source"]], pos[e["target"]]
        c = mode_color.get(e.get("mainstat"), MUTED)
        svg.add(f'<line x1="{x1 + 70:.1f}" y1="{y1:.1f}" x2="{x2 - 70:.1f}" y2="{y2:.1f}" stroke="{c}" '
                f'stroke-width="2" marker-end="url(#arrow)"/>')
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        svg.text(mx, my - 4, f'{e.get("mainstat", "")} · {e.get("secondarystat", "")}', size=11, fill=c,
                 anchor="middle")
    for name, (nx, ny) in pos.items():
        svg.rect(nx - 70, ny - 14, 140, 28, "#22252b", stroke="#5794f2", rx=14)
        svg.text(nx, ny + 4, name, size=10, anchor="middle")
    if not edges:
        no_data(svg, x, y, w, h)
    return len(edges), len(nodes)


DRAW = {"stat": draw_stat, "bargauge": draw_bargauge, "timeseries": draw_timeseries,
        "state-timeline": draw_state_timeline, "nodeGraph": draw_node_graph}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True, help="base URL of the Prometheus to query")
    ap.add_argument("--dashboard", default=DEFAULT_DASHBOARD)
    ap.add_argument("--out", required=True, help="SVG file to write")
    ap.add_argument("--minutes", type=float, default=10, help="time range ending now (default 10)")
    ap.add_argument("--scrape-interval", type=int, default=1, help="seconds, for $__rate_interval (default 1)")
    args = ap.parse_args()

    with open(args.dashboard) as f:
        dash = json.load(f)
    prom = Prometheus(args.prometheus, time.time(), args.minutes, args.scrape_interval)
    panels = dash.get("panels", [])
    height = max((p["gridPos"]["y"] + p["gridPos"]["h"]) for p in panels) * ROW_H + 60
    svg = Svg()
    svg.rect(0, 0, WIDTH, height, BG)
    svg.text(12, 28, dash.get("title", "dashboard"), size=18, weight="bold")
    svg.text(WIDTH - 12, 28, f"last {args.minutes:g} min to {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             " · rendered by hack/render-dashboard.py from Prometheus", size=11, fill=MUTED, anchor="end")
    failures = 0
    for p in panels:
        g = p["gridPos"]
        x, y, w, h = g["x"] * COL + PAD / 2, 44 + g["y"] * ROW_H + PAD / 2, g["w"] * COL - PAD, g["h"] * ROW_H - PAD
        kind, title = p.get("type"), p.get("title", "")
        if kind == "row":
            svg.text(x + 2, y + 20, title, size=15, weight="bold")
            continue
        svg.rect(x, y, w, h, PANEL_BG, stroke=BORDER, rx=3)
        svg.text(x + 8, y + 18, title, size=12, weight="bold")
        draw = DRAW.get(kind)
        if draw is None:
            svg.text(x + w / 2, y + h / 2, f"({kind} not drawn)", size=12, fill=MUTED, anchor="middle")
            print(f"0\t0\t{kind}\t{title}")
            continue
        try:
            n, points = draw(svg, prom, p, x, y + 24, w, h - 28)
        except Exception as e:  # a broken query shows in the picture and fails the run
            failures += 1
            svg.text(x + w / 2, y + h / 2, f"query failed: {e}"[:90], size=11, fill="#f2495c", anchor="middle")
            print(f"render-dashboard: panel \"{title}\": {e}", file=sys.stderr)
            n, points = 0, 0
        print(f"{n}\t{points}\t{kind}\t{title}")
    with open(args.out, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
                f'viewBox="0 0 {WIDTH} {height}" font-family="Inter, Helvetica, Arial, sans-serif">\n')
        f.write("\n".join(svg.parts))
        f.write("\n</svg>\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
