"""Tests of bench/charts.py: `python3 -m unittest discover -s bench -p 'test_*.py'`."""

import contextlib
import io
import os
import tempfile
import unittest
import xml.etree.ElementTree as ET

import charts

SVG = "{http://www.w3.org/2000/svg}"


def write_raw(directory, name, rows):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("cell\tround\tserver\tresult\n")
        for cell, rnd, server, result in rows:
            f.write(f"{cell}\t{rnd}\t{server}\t{result!r}\n")
    return path


def texts(path):
    return [t.text for t in ET.parse(path).getroot().iter(f"{SVG}text")]


def bars(path):
    """{server: [bar width, ...]} in drawing order, from each bar's tooltip."""
    out = {}
    for rect in ET.parse(path).getroot().iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        if title is not None:
            out.setdefault(title.text.split(":")[0], []).append(float(rect.get("width")))
    return out


class ChartsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        quiet = contextlib.redirect_stdout(io.StringIO())
        quiet.__enter__()
        self.addCleanup(quiet.__exit__, None, None, None)
        self.out = os.path.join(self.dir.name, "charts")

    def echo_rows(self):
        rows = []
        for rnd, (ours, peer) in enumerate([(100.0, 50.0), (300.0, 60.0), (200.0, 400.0)]):
            rows.append(("c=100 s=16 d=32", rnd, "peer", {"msgs_per_s": peer, "srv_ns_per_msg": 1000.0}))
            rows.append(("c=100 s=16 d=32", rnd, "ferrule", {"msgs_per_s": ours, "srv_ns_per_msg": 200.0}))
        # A failed run and a disturbed run count for nothing.
        rows.append(("c=100 s=16 d=32", 3, "ferrule", {"error": "loadgen timeout"}))
        rows.append(("c=100 s=16 d=32", 4, "ferrule", {"msgs_per_s": 1e9, "srv_ns_per_msg": 1.0, "foreign_cpu_pct": 50}))
        rows.append(("c=1 s=65536 d=1", 0, "ferrule", {"msgs_per_s": 10.0, "srv_ns_per_msg": 50000.0}))
        rows.append(("c=1 s=65536 d=1", 0, "peer", {"msgs_per_s": 20.0, "srv_ns_per_msg": 40000.0}))
        return rows

    def test_echo_medians_relative_to_the_best_with_ours_first_and_highlighted(self):
        raw = write_raw(self.dir.name, "raw.tsv", self.echo_rows())
        written = charts.main(["--out", self.out, raw])
        self.assertEqual([os.path.basename(p) for p in written], ["echo-throughput.svg", "echo-cpu.svg"])
        throughput = os.path.join(self.out, "echo-throughput.svg")
        labels = texts(throughput)
        # Medians: ferrule 200, peer 60 -> 1.00 and 0.30; the 64 KiB cell: 0.50 and 1.00.
        self.assertIn("1.00  (200 msgs/s)", labels)
        self.assertIn("0.30  (60 msgs/s)", labels)
        self.assertIn("0.50  (10 msgs/s)", labels)
        self.assertIn("100 × 16 B × 32", labels)
        self.assertIn("1 × 64 KiB × 1", labels)
        widths = bars(throughput)
        self.assertEqual(list(widths), ["ferrule", "peer"], "ours first")
        self.assertAlmostEqual(widths["peer"][0] / widths["ferrule"][0], 0.30, places=2)
        root = ET.parse(throughput).getroot()
        self.assertEqual(root.find(f"{SVG}rect").get("fill"), "#ffffff", "explicit background")
        fills = {r.find(f"{SVG}title").text.split(":")[0]: r.get("fill")
                 for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None}
        self.assertEqual(fills["ferrule"], charts.OURS_COLOR)
        self.assertNotEqual(fills["peer"], charts.OURS_COLOR)
        # 200 ns to 50 us spans more than two decades: a log axis, said so.
        cpu = texts(os.path.join(self.out, "echo-cpu.svg"))
        self.assertIn("ns of server CPU per message (log scale)", cpu)
        self.assertIn("200 ns", cpu)
        self.assertIn("50 µs", cpu)

    def test_fanout_deliveries_cpu_and_memory_per_connection(self):
        rows = []
        for rnd in range(3):
            for server, rate, kib in (("ferrule-hub", 2e6, 30_000), ("node-ws", 1e6, 60_000)):
                rows.append(("subs=1000 size=16", rnd, server, {
                    "deliveries_per_s": rate + rnd, "srv_ns_per_delivery": 1e9 / rate, "subs": 1000.0,
                    "srv_rss_start_kib": 10_000, "srv_rss_ready_kib": 10_000 + kib}))
        raw = write_raw(self.dir.name, "fanout.tsv", rows)
        written = charts.main(["--out", self.out, raw])
        self.assertEqual([os.path.basename(p) for p in written],
                         ["fanout-throughput.svg", "fanout-cpu.svg", "fanout-memory.svg"])
        labels = texts(os.path.join(self.out, "fanout-throughput.svg"))
        self.assertIn("1,000 subs × 16 B", labels)
        self.assertIn("0.50  (1 M deliveries/s)", labels)
        memory = texts(os.path.join(self.out, "fanout-memory.svg"))
        # (30,000 KiB * 1024) / 1001 connections.
        self.assertIn(charts.fmt_mem(30_000 * 1024 / 1001), memory)
        self.assertIn("bytes per connection", memory)
        self.assertEqual(list(bars(os.path.join(self.out, "fanout-cpu.svg"))), ["ferrule-hub", "node-ws"])

    def test_files_are_pooled_and_ours_can_be_named(self):
        a = write_raw(self.dir.name, "a.tsv", [("c=1 s=16 d=1", 0, "x", {"msgs_per_s": 10.0}),
                                               ("c=1 s=16 d=1", 0, "y", {"msgs_per_s": 30.0})])
        b = write_raw(self.dir.name, "b.tsv", [("c=1 s=16 d=1", 0, "x", {"msgs_per_s": 20.0}),
                                               ("c=1 s=16 d=1", 0, "y", {"msgs_per_s": 10.0})])
        charts.main(["--out", self.out, "--ours", "y", a, b])
        path = os.path.join(self.out, "echo-throughput.svg")
        self.assertEqual(list(bars(path)), ["y", "x"])
        # Medians over both files: x 15, y 20.
        self.assertIn("0.75  (15 msgs/s)", texts(path))

    def test_disturbed_runs_count_only_where_nothing_else_does_and_the_chart_says_so(self):
        raw = write_raw(self.dir.name, "raw.tsv", [
            ("c=1 s=16 d=1", 0, "ferrule", {"msgs_per_s": 10.0, "foreign_cpu_pct": 1}),
            ("c=1 s=16 d=1", 1, "ferrule", {"msgs_per_s": 99.0, "foreign_cpu_pct": 50}),
            ("c=1 s=16 d=1", 0, "peer", {"msgs_per_s": 20.0, "foreign_cpu_pct": 50})])
        charts.main(["--out", self.out, raw])
        labels = texts(os.path.join(self.out, "echo-throughput.svg"))
        self.assertIn("0.50  (10 msgs/s)", labels, "the quiet run only")
        self.assertIn("1.00  (20 msgs/s)", labels, "the disturbed run, there being no other")
        self.assertIn("1 of the 2 values rest on runs during which other processes used over 10% of a CPU.", labels)

    def test_a_file_that_is_not_a_raw_tsv_is_refused(self):
        path = os.path.join(self.dir.name, "report.md")
        with open(path, "w") as f:
            f.write("# report\n")
        with self.assertRaises(SystemExit) as e:
            charts.main(["--out", self.out, path])
        self.assertIn("not a benchmark raw.tsv", str(e.exception.code))


if __name__ == "__main__":
    unittest.main()
