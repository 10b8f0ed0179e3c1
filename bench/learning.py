"""The learning section of bench/compare (--learning): each learn_bench
workload, and tiny_hot and random_mixed for the overhead, under the
variants of hakmem the catalogue lists (the learner, balanced, the fixed
values it chooses among, fast, minimal) and the peers, through the same
interleaved runner as the main table; then one learning run with
HAKMEM_STATS=1, whose "hakmem: learn" lines say what the learner chose.
"""

import collections
import os
import re

from catalogue import LEARN_FIXED, LEARN_KNOBS, LEARN_VARIANTS
from chart import fmt_ratio, write_csv
from runner import Allocator, Run, note


LEARN_LINE_RE = re.compile(r"^hakmem: learn (\w+) (.*)$", re.M)


def parse_learning(text):
    """The learner's lines of a HAKMEM_STATS=1 report: per decision, its
    "key value" fields (phase, value, epochs, transitions, events,
    events_to_freeze), its candidates' fields (rating, epochs, cost_ns,
    chosen) and the lines themselves."""
    out = collections.OrderedDict()
    for m in LEARN_LINE_RE.finditer(text):
        d = out.setdefault(m.group(1), {"cands": collections.OrderedDict(), "lines": []})
        d["lines"].append(m.group(0))
        words = m.group(2).split()
        target = d
        if words[:1] == ["candidate"] and len(words) > 1:
            target = d["cands"].setdefault(words[1], {})
            words = words[2:]
        while words:
            if words[0] == "chosen":
                target["chosen"] = True
                words = words[1:]
            else:
                target[words[0]] = words[1] if len(words) > 1 else ""
                words = words[2:]
    return out


def learned_value(d):
    """The value a decision settled on: its chosen candidate, else (in
    LEARN) the value it runs now."""
    return next((v for v, c in d["cands"].items() if c.get("chosen")), d.get("value", "?"))


def describe_learned(learned):
    """One cell: each decision the workload exercised, with its value and
    how many events it took to freeze first."""
    if isinstance(learned, str):
        return learned
    parts = []
    for name, d in learned.items():
        if d.get("epochs", "0") == "0":
            continue
        text = "%s=%s %s" % (name, learned_value(d), d.get("phase", "?"))
        etf = d.get("events_to_freeze", "0")
        text += ", first frozen after %s events" % etf if etf != "0" else ", never frozen"
        parts.append(text)
    return ", ".join(parts) or "nothing learned"


def fastest_fixed(results, knob):
    """The fixed variant and value of one learned decision with the least
    median wall time, or (None, None)."""
    ok = [(results[v].median("wall"), v, val) for v, val in LEARN_KNOBS[knob]
          if not results[v].error and results[v].runs]
    if not ok:
        return None, None
    _, v, val = min(ok)
    return v, val


def print_learning_table(bench, args_shown, results, variants, learned, reps):
    """The table of one workload, and the learner's report lines under it;
    returns the CSV rows."""
    print()
    print("== learning: %s: %s  (median of %d reps)" % (
        bench.name[len("learn/"):], " ".join(args_shown), reps))
    fixed = [(results[v].median("wall"), v) for v in LEARN_FIXED
             if not results[v].error and results[v].runs]
    best = min(fixed)[1] if fixed else None
    bal = results["balanced"]
    tails = [(results[v].field_median("tail_s"), v) for v in LEARN_FIXED
             if not results[v].error and results[v].runs and results[v].field_median("tail_s")]
    best_tail = min(tails)[1] if tails else None
    print("time_ratio, rss_ratio: to balanced; best_ratio: to the fastest fixed variant (%s)"
          % (best or "none"))
    if best_tail:
        print("tail_s: the last quarter of the rounds, after learning; tail_best: to the "
              "fastest fixed variant there (%s)" % best_tail)
    print("%-14s %9s %12s %11s %10s %10s %8s %9s  %s" % (
        "variant", "wall_s", "peak_rss_kb", "time_ratio", "best_ratio", "rss_ratio",
        "tail_s", "tail_best", "learned"))
    rows = []
    for v in variants:
        res = results[v.name]
        row = {"workload": bench.name[len("learn/"):], "variant": v.name}
        if res.error:
            print("%-14s FAIL: %s" % (v.name, res.error))
            row.update(status="FAIL", note=res.error)
            rows.append(row)
            continue
        wall, rss = res.median("wall"), res.median("rss_kb")
        t = wall / bal.median("wall") if not bal.error else None
        r = rss / bal.median("rss_kb") if not bal.error else None
        b = wall / results[best].median("wall") if best else None
        tail = res.field_median("tail_s")
        tb = tail / results[best_tail].field_median("tail_s") if tail and best_tail else None
        cell = ""
        row.update(status="ok", reps=len(res.runs), wall_s="%.4f" % wall,
                   peak_rss_kb="%d" % rss, ops_per_s="%.4g" % res.median("ops_s"),
                   time_ratio=fmt_ratio(t), best_ratio=fmt_ratio(b), rss_ratio=fmt_ratio(r),
                   best_fixed=best or "", tail_s="%.4f" % tail if tail else "",
                   tail_best_ratio=fmt_ratio(tb))
        if v.name == "learning" and learned is not None:
            cell = describe_learned(learned)
            if isinstance(learned, str):
                row["note"] = learned
            else:
                for knob, d in learned.items():
                    if d.get("epochs", "0") == "0":
                        continue
                    row[knob] = learned_value(d)
                    for k in ("phase", "events_to_freeze", "transitions", "events", "epochs"):
                        row["%s_%s" % (knob, k)] = d.get(k, "")
                    if knob in LEARN_KNOBS:
                        row["%s_fastest_fixed" % knob] = fastest_fixed(results, knob)[1] or ""
        print("%-14s %9.3f %12d %11s %10s %10s %8s %9s  %s" % (
            v.name, wall, rss, fmt_ratio(t), fmt_ratio(b), fmt_ratio(r),
            "%.3f" % tail if tail else "-", fmt_ratio(tb), cell))
        rows.append(row)
    if learned is not None and not isinstance(learned, str):
        for knob, d in learned.items():
            if d.get("epochs", "0") == "0":
                print("  %s: not exercised (%s events)" % (knob, d.get("events", "?")))
                continue
            for line in d["lines"]:
                print("  " + line)
            if knob in LEARN_KNOBS:
                v, val = fastest_fixed(results, knob)
                if v:
                    got = learned_value(d)
                    print("  %s: learned %s, fastest fixed %s (%s): %s" % (
                        knob, got, val, v, "same" if got == str(val) else "DIFFERENT"))
    return rows


def run_learning(runner, benches, hakmem, peers, prog_dir, base_env, opts, reps):
    """The learning section: every workload under each hakmem variant and
    each peer, interleaved; then one learning run with HAKMEM_STATS=1 for
    the learner's report. Writes learning.csv and learning-runs.csv."""
    env0 = {k: v for k, v in base_env.items() if not k.startswith("HAKMEM_")}
    variants = [Allocator(name, hakmem.path, extra) for name, extra in LEARN_VARIANTS]
    variants += peers
    rows, run_rows = [], []
    for b in benches:
        prog = os.path.join(prog_dir, b.prog)
        argv = [prog] + [x.format(seed=opts.seed) for x in b.args(opts.quick)]
        # The variants are hakmem's library: its probe speaks for them.
        errors = {v.name: runner.probe(prog, b.probe, v if v in peers else hakmem, base_env)
                  for v in variants}
        results, runs = runner.interleave(b, variants, reps, lambda v, rep: argv, env0,
                                          errors, widths=(24, 13))
        run_rows += [{"workload": b.name[len("learn/"):], "variant": v.name, "rep": rep,
                      "wall_s": "%.4f" % run.wall, "result": run.error or run.stdout.strip()}
                     for v, rep, run in runs]
        learned = None
        if not results["learning"].error:
            note("[%7.1fs] %-24s %-13s HAKMEM_STATS=1" % (runner.elapsed(), b.name, "learning"))
            env = variants[0].env(env0)
            env["HAKMEM_STATS"] = "1"
            run = Run(argv, env, opts.timeout)
            if run.error:
                learned = "stats run failed: " + run.error
            else:
                learned = parse_learning(run.stderr)
                if not learned:
                    learned = "no 'hakmem: learn' lines in the HAKMEM_STATS=1 report"
        rows += print_learning_table(b, [b.prog] + argv[1:], results, variants, learned, reps)
    fields = ["workload", "variant", "status", "reps", "wall_s", "peak_rss_kb", "ops_per_s",
              "time_ratio", "best_ratio", "rss_ratio", "best_fixed", "tail_s", "tail_best_ratio"]
    for knob in LEARN_KNOBS:
        fields += [knob] + ["%s_%s" % (knob, k) for k in (
            "phase", "events_to_freeze", "transitions", "events", "epochs", "fastest_fixed")]
    fields.append("note")
    path = os.path.join(opts.out, "learning.csv")
    runs_path = os.path.join(opts.out, "learning-runs.csv")
    write_csv(path, fields, rows, extrasaction="ignore")
    write_csv(runs_path, ["workload", "variant", "rep", "wall_s", "result"], run_rows)
    print()
    print("learning tables: %s, runs: %s" % (path, runs_path))
