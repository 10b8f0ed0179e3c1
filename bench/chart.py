"""The output backend of bench/compare: the text tables on stdout, the CSV
files and the chart (gnuplot, else matplotlib, else a note). It formats
results the runner (runner.py) measured and computes nothing but their
ratios and geometric means.
"""

import csv
import os
import shutil
import subprocess

from runner import geomean, geomeans, ratios


def name_width(allocs):
    """Width of the allocator column: the longest name, at least 10."""
    return max([10] + [len(a.name) for a in allocs])


def fmt_ratio(x):
    return "%.2f" % x if x is not None else "-"


def print_table(bench, args_shown, results, allocs, ref_name, reps):
    extra = bench.extra
    print()
    print("== %s: %s  (median of %d reps%s)" % (
        bench.name, " ".join(args_shown), reps,
        "; time ratio from ops/s, fixed-length run" if bench.by_ops else ""))
    w = name_width(allocs)
    head = "%-*s %9s %12s %12s %11s %10s" % (
        w, "allocator", "wall_s", "peak_rss_kb", "ops/s", "time_ratio", "rss_ratio")
    print(head + "".join(" %14s" % e for e in extra))
    rows = []
    ref = results.get(ref_name)
    for a in allocs:
        res = results[a.name]
        if res.error:
            print("%-*s FAIL: %s" % (w, a.name, res.error))
            rows.append({"benchmark": bench.name, "allocator": a.name, "status": "FAIL",
                         "note": res.error})
            continue
        t, r = ratios(bench, res, ref)
        row = {"benchmark": bench.name, "allocator": a.name, "status": "ok",
               "reps": len(res.runs), "wall_s": "%.4f" % res.median("wall"),
               "peak_rss_kb": "%d" % res.median("rss_kb"),
               "ops_per_s": "%.4g" % res.median("ops_s"),
               "time_ratio": fmt_ratio(t), "rss_ratio": fmt_ratio(r)}
        line = "%-*s %9.3f %12d %12.4g %11s %10s" % (
            w, a.name, res.median("wall"), res.median("rss_kb"), res.median("ops_s"),
            fmt_ratio(t), fmt_ratio(r))
        for e in extra:
            v = res.field_median(e)
            row[e] = "%g" % v if v is not None else ""
            line += " %14s" % row[e]
        print(line)
        rows.append(row)
    return rows


def print_geomeans(benches, all_results, allocs, ref_name):
    """The closing table of the geometric means of the ratios to the
    reference; returns its CSV rows."""
    rows = []
    print()
    print("== geometric mean of the ratios to %s" % ref_name)
    w = name_width(allocs)
    print("%-*s %11s %10s  %s" % (w, "allocator", "time_ratio", "rss_ratio", "benchmarks"))
    for name, t, r, cnt in geomeans(benches, all_results, allocs, ref_name):
        print("%-*s %11s %10s  %d of %d" % (w, name, fmt_ratio(t), fmt_ratio(r), cnt,
                                            len(benches)))
        rows.append({"benchmark": "geomean", "allocator": name,
                     "status": "ok" if cnt else "FAIL",
                     "time_ratio": fmt_ratio(t), "rss_ratio": fmt_ratio(r),
                     "note": "over %d of %d benchmarks" % (cnt, len(benches))})
    return rows


def print_builds(benches, all_results, allocs):
    """For every other build of hakmem in the table (an added library named
    hakmem-*, not a variant of hakmem's own): hakmem's time and RSS over
    that build's, per benchmark and as a geometric mean; for
    hakmem-unhardened that is what the hardening costs. Returns CSV rows."""
    hakmem = next((a for a in allocs if a.name == "hakmem"), None)
    builds = [a for a in allocs if hakmem and a.name.startswith("hakmem-")
              and a.path != hakmem.path]
    rows = []
    for other in builds:
        what = ("hardening costs" if other.name == "hakmem-unhardened"
                else "hakmem against %s:" % other.name)
        rows += print_pair(benches, all_results, "hakmem", other.name, what)
    return rows


def print_pair(benches, all_results, name, base, what):
    """name's time and RSS over base's, per benchmark and as a geometric
    mean, closed by the line "WHAT +X % time, +Y % RSS". Returns CSV
    rows."""
    pair = name + "/" + base
    rows = []
    print()
    print("== %s over %s: ratios of the medians (above 1: %s is slower or larger)"
          % (name, base, name))
    print("%-24s %11s %10s" % ("benchmark", "time_ratio", "rss_ratio"))
    tr, rr = [], []
    for b in benches:
        res = all_results[b.name]
        t, r = ratios(b, res[name], res[base])
        print("%-24s %11s %10s" % (b.name, fmt_ratio(t), fmt_ratio(r)))
        rows.append({"benchmark": b.name, "allocator": pair,
                     "status": "ok" if t is not None else "FAIL",
                     "time_ratio": fmt_ratio(t), "rss_ratio": fmt_ratio(r)})
        if t is not None:
            tr.append(t)
            rr.append(r)
    t, r = geomean(tr), geomean(rr)
    print("%-24s %11s %10s  over %d of %d benchmarks" % (
        "geometric mean", fmt_ratio(t), fmt_ratio(r), len(tr), len(benches)))
    rows.append({"benchmark": "geomean", "allocator": pair,
                 "status": "ok" if tr else "FAIL",
                 "time_ratio": fmt_ratio(t), "rss_ratio": fmt_ratio(r),
                 "note": "over %d of %d benchmarks" % (len(tr), len(benches))})
    if t is not None:
        print("%s %+.1f %% time, %+.1f %% RSS (geomean over %d of %d benchmarks)" % (
            what, (t - 1) * 100, (r - 1) * 100, len(tr), len(benches)))
    return rows


def write_csv(path, fields, rows, extrasaction="raise"):
    """rows (dicts) under a header of fields; a missing field is empty."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction=extrasaction)
        w.writeheader()
        w.writerows(rows)


def draw_chart(out_dir, benches, all_results, allocs, ref_name):
    """Time-ratio and RSS-ratio bars per benchmark, one bar per allocator:
    with gnuplot if present, else matplotlib, else a note."""
    names = [b.name for b in benches]
    data = {}  # (bench, alloc) -> (time ratio, rss ratio)
    for b in benches:
        res = all_results[b.name]
        for a in allocs:
            data[(b.name, a.name)] = ratios(b, res[a.name], res.get(ref_name))
    png = os.path.join(out_dir, "compare.png")
    title = "ratio to %s (lower is better)" % ref_name
    if shutil.which("gnuplot"):
        # Two data blocks, time ratios then RSS ratios; '?' marks a failure.
        dat = os.path.join(out_dir, "chart.dat")
        with open(dat, "w") as f:
            for which in (0, 1):
                for n in names:
                    vals = [data[(n, a.name)][which] for a in allocs]
                    f.write(n + " " + " ".join("%.4f" % v if v else "?" for v in vals) + "\n")
                f.write("\n\n")
        def plot(block):
            return ", ".join("'%s' index %d using %d%s title '%s'" % (
                dat, block, k + 2, ":xtic(1)" if k == 0 else "", a.name)
                for k, a in enumerate(allocs))
        gp = os.path.join(out_dir, "chart.gp")
        with open(gp, "w") as f:
            f.write("""\
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) { set terminal pngcairo size 1400,900 } else { set terminal png size 1400,900 }
set output '%s'
set datafile missing '?'
set key outside right
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set grid ytics
set xtics rotate by -25 noenhanced
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dashtype 2
set multiplot layout 2,1 title '%s'
set ylabel 'wall time ratio'
plot %s
set ylabel 'peak RSS ratio'
plot %s
unset multiplot
""" % (png, title, plot(0), plot(1)))
        r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if r.returncode == 0:
            return "chart: %s (gnuplot)" % png
        return "no chart drawn: gnuplot failed: %s" % r.stderr.strip()[:200]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "no chart drawn: neither gnuplot nor python3-matplotlib is installed"
    fig, axes = plt.subplots(2, 1, figsize=(14, 9), sharex=True)
    width = 0.8 / max(1, len(allocs))
    for which, ax, label in ((0, axes[0], "wall time ratio"), (1, axes[1], "peak RSS ratio")):
        for k, a in enumerate(allocs):
            xs = [i + (k - (len(allocs) - 1) / 2) * width for i in range(len(names))]
            ys = [data[(n, a.name)][which] or float("nan") for n in names]
            ax.bar(xs, ys, width, label=a.name)
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].set_title(title)
    axes[1].set_xticks(range(len(names)))
    axes[1].set_xticklabels(names, rotation=25, ha="right")
    fig.tight_layout()
    fig.savefig(png)
    return "chart: %s (matplotlib)" % png
