#!/usr/bin/env python3
"""SVG charts of the side-by-side benchmarks' raw results.

Reads the raw.tsv files that ../shared/bench/peers/bench.sh (echo) and fanout.sh (fan-out) write
into their --outdir (columns: cell, round, server, result as a Python dict literal), takes the
median over rounds for each (cell, server), and writes:

  echo-throughput.svg    messages/s per cell, relative to the best server in the cell
  echo-cpu.svg           server CPU ns per message per cell
  echo-handshakes.svg    handshake cycles/s per cell, relative to the best (runs with --handshakes)
  fanout-throughput.svg  deliveries/s per cell, relative to the best server in the cell
  fanout-cpu.svg         server CPU ns per delivery per cell
  fanout-memory.svg      server memory (RSS growth) per connection per cell

(each only when the files hold results for it). With --markdown it prints, instead, one Markdown
table per benchmark: per cell, ours beside the best other server in throughput and the lowest
other in server CPU, with the ratios and the load generator's CPU. Several files are pooled: their rounds of the
same (cell, server) all count. Runs that failed are left out, and so are runs that other processes
disturbed (foreign CPU above --max-foreign, as the echo benchmark's report counts them) where the
(cell, server) has undisturbed ones; a chart says how many of its values rest on disturbed runs.

    python3 bench/charts.py --out bench/charts /tmp/ws-bench-*/raw.tsv /tmp/ws-fanout-*/raw.tsv

Python 3 standard library only.
"""

import argparse
import ast
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

# ------------------------------------------------------------------------------------- reading


def parse_cell(label):
    """A cell label of either benchmark -> (kind, sort-free key tuple, display label)."""
    if label.startswith("handshakes"):
        c = int(label.split("c=")[1])
        return "hs", (c,), f"handshakes, {c} at a time"
    kv = dict(tok.split("=", 1) for tok in label.split())
    if "subs" in kv:
        subs, size = int(kv["subs"]), int(kv["size"])
        return "fanout", (subs, size), f"{subs:,} subs × {fmt_bytes(size)}"
    c, s, d = int(kv["c"]), int(kv["s"]), int(kv["d"])
    return "echo", (c, s, d), f"{c} × {fmt_bytes(s)} × {d}"


def read_raw(paths, max_foreign):
    """Rows of every file -> (cells in first-seen order per kind, servers in first-seen order,
    {(kind, key): label}, {(kind, key, server): [result, ...]}, {(kind, key, server) whose results
    are all disturbed}): the runs that did not fail, undisturbed ones where there are any."""
    cells, servers, labels, runs, disturbed = {}, [], {}, {}, {}
    for path in paths:
        with open(path) as f:
            header = f.readline().rstrip("\n").split("\t")
            if header[:4] != ["cell", "round", "server", "result"]:
                sys.exit(f"{path}: not a benchmark raw.tsv (header {header})")
            for n, line in enumerate(f, start=2):
                line = line.rstrip("\n")
                if not line:
                    continue
                try:
                    label, _round, server, result = line.split("\t", 3)
                    kind, key, text = parse_cell(label)
                    result = ast.literal_eval(result)
                except (ValueError, KeyError, IndexError, SyntaxError) as e:
                    sys.exit(f"{path}:{n}: cannot read the row ({e})")
                cells.setdefault(kind, [])
                if key not in cells[kind]:
                    cells[kind].append(key)
                labels[(kind, key)] = text
                if server not in servers:
                    servers.append(server)
                if "error" in result:
                    continue
                quiet = result.get("foreign_cpu_pct", 0) <= max_foreign
                (runs if quiet else disturbed).setdefault((kind, key, server), []).append(result)
    only_disturbed = set(disturbed) - set(runs)
    for k in only_disturbed:
        runs[k] = disturbed[k]
    return cells, servers, labels, runs, only_disturbed


def median_of(results, value):
    """Median over rounds of value(result), None where no round has it."""
    vals = []
    for r in results:
        try:
            v = value(r)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            v = None
        if v is not None:
            vals.append(float(v))
    return statistics.median(vals) if vals else None


def rss_per_conn(r):
    """Server RSS growth per connection in bytes, from the loadgen's readings before connecting
    and with every connection open and quiet (fan-out: N subscribers + 1 publisher)."""
    conns = float(r["subs"]) + 1 if "subs" in r else float(r["conns"])
    return (float(r["srv_rss_ready_kib"]) - float(r["srv_rss_start_kib"])) * 1024 / conns


def table(cells, servers, runs, kind, value):
    """[(cell key, {server: median})] for the cells of `kind` where some server has a value."""
    rows = []
    for key in cells.get(kind, []):
        row = {s: median_of(runs.get((kind, key, s), []), value) for s in servers}
        row = {s: v for s, v in row.items() if v is not None}
        if row:
            rows.append((key, row))
    return rows


# ------------------------------------------------------------------------------------- formats


def fmt_bytes(n):
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB" if n < 1024 * 1024 else f"{n // (1024 * 1024)} MiB"
    return f"{n} B"


def fmt_si(v):
    """3 significant digits with k / M / G."""
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            x = v / div
            return f"{x:.3g}{suffix}" if x < 1000 else f"{x:.0f}{suffix}"
    return f"{v:.3g}" if v < 1000 else f"{v:.0f}"


def fmt_ns(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g} ms"
    if v >= 1e3:
        return f"{v / 1e3:.3g} µs"
    return f"{v:.3g} ns"


def fmt_mem(v):
    if v >= 1024 * 1024:
        return f"{v / 1024 / 1024:.3g} MiB"
    if v >= 1024:
        return f"{v / 1024:.3g} KiB"
    return f"{v:.0f} B"


# ------------------------------------------------------------------------------------- drawing

FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"
INK, MUTED, GRID, BACKGROUND = "#1f2328", "#59636e", "#d1d9e0", "#ffffff"
OURS_COLOR = "#d4570f"
# Peers: distinct, quieter hues that all stay readable on white.
PEER_COLORS = ["#4c78a8", "#72b7b2", "#9d7bb8", "#8c9a6a", "#b07aa1", "#7f7f7f", "#bab0ac", "#5f8fbf"]

BAR_H, BAR_GAP, GROUP_GAP = 14, 3, 16
LEFT, BARS_W, RIGHT = 180, 470, 175
TOP_TITLE, LEGEND_ROW = 58, 22


def colors_for(servers, ours):
    peers = iter(PEER_COLORS * (1 + len(servers) // len(PEER_COLORS)))
    return {s: OURS_COLOR if s == ours else next(peers) for s in servers}


def legend_rows(servers, width):
    """The legend's entries laid out in rows that fit `width`: [[(x, server), ...], ...]."""
    rows, row, x = [], [], 0
    for s in servers:
        w = 22 + 7.2 * len(s) + 18
        if row and x + w > width:
            rows.append(row)
            row, x = [], 0
        row.append((x, s))
        x += w
    if row:
        rows.append(row)
    return rows


class Scale:
    """Maps a value to a bar length in [0, BARS_W]: linear from 0, or log10 when the values span
    more than two decades (a 64 KiB message costs a hundred times a 16-byte one)."""

    def __init__(self, values, relative=False, unit=1):
        """`unit`: the linear axis's ticks fall on round multiples of it (1024 for bytes)."""
        values = [v for v in values if v > 0]
        self.relative = relative
        hi = max(values) if values else 1.0
        lo = min(values) if values else 1.0
        self.log = not relative and hi / lo > 100
        if relative:
            self.lo, self.hi = 0.0, 1.0
        elif self.log:
            self.lo = 10 ** math.floor(math.log10(lo))
            self.hi = 10 ** math.ceil(math.log10(hi))
        else:
            unit = unit if hi >= unit else 1
            self.lo, self.hi = 0.0, nice_ceiling(hi / unit) * unit

    def __call__(self, v):
        if v <= 0:
            return 0.0
        if self.log:
            t = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return max(0.0, min(1.0, t)) * BARS_W

    def ticks(self):
        if self.relative:
            return [0, 0.25, 0.5, 0.75, 1.0]
        if self.log:
            out, p = [], self.lo
            while p <= self.hi * 1.0001:
                out.append(p)
                p *= 10
            return out
        step = self.hi / 5
        return [step * i for i in range(6)]


def nice_ceiling(v):
    """The smallest 1, 2, 2.5 or 5 x 10^n >= v."""
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= v * 0.9999:
            return m * p
    return 10 * p


def chart(path, title, subtitle, axis_title, rows, labels, servers, ours, scale, tick_fmt, bar_text):
    """Grouped horizontal bars: one group per cell, one bar per server (legend order); the
    subtitle's lines ("\n") under the title.
    rows = [(cell key, {server: value})]; bar_text(cell key, server, value) -> text after the bar."""
    servers = [s for s in servers if any(s in r for _, r in rows)]
    colors = colors_for(servers, ours)
    width = LEFT + BARS_W + RIGHT
    legend = legend_rows(servers, width - 40)
    subtitle = subtitle.split("\n")
    top = TOP_TITLE + 16 * (len(subtitle) - 1)
    y0 = top + len(legend) * LEGEND_ROW + 12
    group_h = len(servers) * (BAR_H + BAR_GAP) - BAR_GAP
    height = y0 + len(rows) * (group_h + GROUP_GAP) - GROUP_GAP + 58

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="12" fill="{INK}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="{BACKGROUND}"/>',
        f'<text x="20" y="26" font-size="16" font-weight="600">{escape(title)}</text>',
    ] + [f'<text x="20" y="{45 + 16 * i}" fill="{MUTED}">{escape(line)}</text>' for i, line in enumerate(subtitle)]
    for i, row in enumerate(legend):
        y = top + i * LEGEND_ROW
        for x, s in row:
            weight = ' font-weight="700"' if s == ours else ""
            out.append(f'<rect x="{20 + x}" y="{y}" width="14" height="14" rx="2" fill="{colors[s]}"/>')
            out.append(f'<text x="{20 + x + 20}" y="{y + 11}"{weight}>{escape(s)}</text>')

    bottom = y0 + len(rows) * (group_h + GROUP_GAP) - GROUP_GAP
    for t in scale.ticks():
        x = LEFT + scale(t) if t > 0 or not scale.log else LEFT
        out.append(f'<line x1="{x:.1f}" y1="{y0 - 6}" x2="{x:.1f}" y2="{bottom + 4}" stroke="{GRID}" stroke-width="1"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" fill="{MUTED}">{escape(tick_fmt(t))}</text>')
    out.append(f'<text x="{LEFT + BARS_W / 2}" y="{bottom + 38}" text-anchor="middle" fill="{MUTED}">'
               f"{escape(axis_title)}</text>")

    y = y0
    for key, row in rows:
        label = labels[key]
        out.append(f'<text x="{LEFT - 10}" y="{y + group_h / 2 + 4:.1f}" text-anchor="end" font-weight="600">'
                   f"{escape(label)}</text>")
        for s in servers:
            v = row.get(s)
            if v is None:
                out.append(f'<text x="{LEFT + 4}" y="{y + BAR_H - 3}" fill="{MUTED}" font-style="italic">'
                           f"{escape(s)}: no result</text>")
            else:
                w = max(scale(v), 1.0)
                text = escape(bar_text(key, s, v))
                out.append(f'<rect x="{LEFT}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colors[s]}">'
                           f"<title>{escape(s)}: {text}</title></rect>")
                weight = ' font-weight="700"' if s == ours else ""
                out.append(f'<text x="{LEFT + w + 5:.1f}" y="{y + BAR_H - 3}"{weight}>{text}</text>')
            y += BAR_H + BAR_GAP
        y += GROUP_GAP - BAR_GAP
    out.append(f'<line x1="{LEFT}" y1="{y0 - 6}" x2="{LEFT}" y2="{bottom + 4}" stroke="{MUTED}" stroke-width="1"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def relative_chart(path, title, unit, rows, labels, servers, ours, rounds, note=""):
    """Throughput relative to the best server of each cell, the absolute rate after the bar."""
    absolute = dict(rows)
    relative = [(key, {s: v / max(row.values()) for s, v in row.items()}) for key, row in rows]
    return chart(path, title, f"Medians of {rounds}; 1.00 = the best server in the cell. Higher is better.{note}",
                 f"{unit} relative to the best server in the cell", relative, labels, servers, ours,
                 Scale([], relative=True), lambda t: f"{t:.2f}",
                 lambda key, s, v: f"{v:.2f}  ({fmt_si(absolute[key][s])} {unit})")


def absolute_chart(path, title, subtitle, axis, rows, labels, servers, ours, value_fmt, unit=1, note=""):
    scale = Scale([v for _, r in rows for v in r.values()], unit=unit)
    axis += " (log scale)" if scale.log else ""
    return chart(path, title, subtitle + note, axis, rows, labels, servers, ours, scale, value_fmt,
                 lambda key, s, v: value_fmt(v))


# ------------------------------------------------------------------------------------- main

# Each chart: file, cells of which benchmark, the value of one run, how it is drawn (relative to the
# best server in the cell, CPU time, or memory), title, and the unit (rate, or what CPU is per).
CHARTS = [
    ("echo-throughput.svg", "echo", lambda r: r["msgs_per_s"], "relative", "Echo: messages per second", "msgs/s"),
    ("echo-handshakes.svg", "hs", lambda r: r["handshakes_per_s"], "relative",
     "Handshakes: connect, upgrade and close cycles per second", "cycles/s"),
    ("echo-cpu.svg", "echo", lambda r: r["srv_ns_per_msg"], "cpu", "Echo: server CPU per message", "message"),
    ("echo-memory.svg", "echo", rss_per_conn, "memory", "Echo: server memory per connection", None),
    ("fanout-throughput.svg", "fanout", lambda r: r["deliveries_per_s"], "relative",
     "Fan-out: deliveries per second (one message reaching one subscriber)", "deliveries/s"),
    ("fanout-cpu.svg", "fanout", lambda r: r["srv_ns_per_delivery"], "cpu", "Fan-out: server CPU per delivery",
     "delivery"),
    ("fanout-memory.svg", "fanout", rss_per_conn, "memory", "Fan-out: server memory per connection",
     None),
]


def rounds_text(runs):
    counts = sorted({len(v) for v in runs.values()})
    if not counts:
        return "no rounds"
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{n} round{'s' if counts[-1] != 1 else ''}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See bench/README.md.")
    ap.add_argument("raw", nargs="+", help="raw.tsv files of bench.sh or fanout.sh (pooled)")
    ap.add_argument("--out", default="bench/charts", help="directory for the SVGs (default bench/charts)")
    ap.add_argument("--ours", action="append", default=[],
                    help="the server to highlight and put first; repeat it to name one per benchmark "
                         "(default: the first whose name starts with 'ferrule', else the first in the files)")
    ap.add_argument("--max-foreign", type=float, default=10.0,
                    help="leave out runs during which other processes used more than this %% of a CPU "
                         "(default 10, as the benchmark's report)")
    ap.add_argument("--markdown", action="store_true",
                    help="print Markdown tables (ours against the best other per cell) instead of charts")
    args = ap.parse_args(argv)

    cells, all_servers, labels, runs, disturbed = read_raw(args.raw, args.max_foreign)
    if not all_servers:
        sys.exit("no results in the files given")
    unknown = [s for s in args.ours if s not in all_servers]
    if unknown:
        sys.exit(f"--ours {unknown[0]}: no such server (servers: {', '.join(all_servers)})")

    def ours_first(kinds):
        """The servers with results of these kinds, ours first, then the peers in file order."""
        servers = [s for s in all_servers if any(k[0] in kinds and k[2] == s for k in runs)]
        ours = next((s for s in args.ours if s in servers), None)
        ours = ours or next((s for s in servers if s.startswith("ferrule")), servers[0] if servers else None)
        return ours, [ours] + [s for s in servers if s != ours] if ours else []

    if args.markdown:
        for kind, kinds in (("echo", ("echo", "hs")), ("hs", ("echo", "hs")), ("fanout", ("fanout",))):
            ours, servers = ours_first(kinds)
            if ours:
                print_markdown(kind, cells, servers, ours, runs, labels_of(labels, kind), disturbed)
        return []

    os.makedirs(args.out, exist_ok=True)
    written = []
    for name, kind, value, style, title, unit in CHARTS:
        kinds = ("fanout",) if kind == "fanout" else ("echo", "hs")
        ours, servers = ours_first(kinds)
        rows = table(cells, servers, runs, kind, value)
        if not rows:
            continue
        rounds = rounds_text({k: v for k, v in runs.items() if k[0] in kinds})
        path, cell_labels = os.path.join(args.out, name), labels_of(labels, kind)
        n, note = sum((kind, key, s) in disturbed for key, row in rows for s in row), ""
        if n:
            note = (f"\n{n} of the {sum(len(row) for _, row in rows)} values rest on runs during which other "
                    f"processes used over {args.max_foreign:g}% of a CPU.")
        if style == "relative":
            relative_chart(path, title, unit, rows, cell_labels, servers, ours, rounds, note)
        elif style == "cpu":
            absolute_chart(
                path, title, f"Server process CPU (all threads, user + system) over the measured window, per {unit}; "
                f"medians of {rounds}. Lower is better.", f"ns of server CPU per {unit}", rows, cell_labels, servers,
                ours, fmt_ns, note=note)
        else:
            absolute_chart(
                path, title, f"Growth of the server's resident memory with every connection open and quiet, per "
                f"connection; medians of {rounds}. Lower is better.", "bytes per connection", rows, cell_labels,
                servers, ours, fmt_mem, 1024, note)
        written.append(path)

    if not written:
        sys.exit("nothing to chart: no echo or fan-out results in the files given")
    for path in written:
        print(path)
    return written


# (throughput key, its unit, CPU key, its unit) per kind of cell.
MARKDOWN = {
    "echo": ("msgs_per_s", "msgs/s", "srv_ns_per_msg", "ns/msg"),
    "hs": ("handshakes_per_s", "cycles/s", None, None),
    "fanout": ("deliveries_per_s", "deliveries/s", "srv_ns_per_delivery", "ns/delivery"),
}


def is_ours(server, ours):
    """Whether `server` is ours or a variant of ours (`ferrule-channels` beside `ferrule`): the
    tables compare against the other libraries only."""
    return server == ours or server.startswith(ours.split("-")[0] + "-")


def print_markdown(kind, cells, servers, ours, runs, cell_labels, disturbed):
    """One table: per cell, ours against the best other library's throughput and the lowest other
    library's CPU (variants of ours, named like it, are left out), with the ratios (ours : other) and the load generator's CPU in our runs."""
    rate_key, rate_unit, cpu_key, cpu_unit = MARKDOWN[kind]
    rates = dict(table(cells, servers, runs, kind, lambda r: r[rate_key]))
    cpus = dict(table(cells, servers, runs, kind, lambda r: r[cpu_key])) if cpu_key else {}
    lg = dict(table(cells, servers, runs, kind, lambda r: r["cpu_pct"]))
    if not any(ours in row for row in rates.values()):
        return
    head = f"| cell | {ours} {rate_unit} | best other | ratio |"
    rule = "|---|---|---|---|"
    if cpu_key:
        head += f" {ours} {cpu_unit} | lowest other | CPU ratio |"
        rule += "---|---|---|"
    print(head + " generator CPU |")
    print(rule + "---|")
    for key in cells.get(kind, []):
        row = rates.get(key, {})
        if ours not in row:
            continue
        mark = " (disturbed runs)" if (kind, key, ours) in disturbed else ""
        others = {s: v for s, v in row.items() if not is_ours(s, ours)}
        line = f"| {cell_labels[key]}{mark} | {fmt_si(row[ours])} |"
        if others:
            best = max(others, key=others.get)
            line += f" {fmt_si(others[best])} ({best}) | {row[ours] / others[best]:.2f}x |"
        else:
            line += " | |"
        if cpu_key:
            crow = cpus.get(key, {})
            cothers = {s: v for s, v in crow.items() if not is_ours(s, ours)}
            if ours in crow and cothers:
                low = min(cothers, key=cothers.get)
                line += f" {fmt_ns(crow[ours])} | {fmt_ns(cothers[low])} ({low}) | {crow[ours] / cothers[low]:.2f}x |"
            else:
                line += f" {fmt_ns(crow[ours]) if ours in crow else ''} | | |"
        g = lg.get(key, {}).get(ours)
        print(line + (f" {g:.0f}% |" if g is not None else " |"))
    print()


def labels_of(labels, kind):
    return {key: text for (k, key), text in labels.items() if k == kind}


if __name__ == "__main__":
    main()
