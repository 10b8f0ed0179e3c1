"""The runner of bench/compare (and the helpers bench/callgrind-ops shares):
the allocators to preload, one run of a benchmark program with its wall
time and result line, the preload probe, and the one interleaved runner
every section uses: allocator x benchmark x repetition in interleaved
order, with medians of wall time and peak RSS and the checksum check.

Nothing here prints to stdout; progress and failures go to stderr.
Standard library only (Debian 12's python3).
"""

import collections
import math
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

import catalogue

# The one result line of a program: its name, then key=value fields.
RESULT_RE = re.compile(r"^(\S+)((?: [a-z_/]+=\S+)+)$")
# learn_bench's second line: the time of its last quarter of rounds.
TAIL_RE = re.compile(r"^tail: .* tail_s=([0-9.]+)$")
LD_DEBUG_RE = re.compile(r"^\s*\d+:\s")


# The front end's name, the prefix of its messages: compare or callgrind-ops.
PROG = os.path.basename(sys.argv[0])


def die(msg):
    sys.exit(PROG + ": " + msg)


def note(msg):
    print(msg, file=sys.stderr, flush=True)


class Allocator:
    """An allocator to preload, and the variables a variant of it sets."""

    def __init__(self, name, path, extra=None):
        self.name, self.path = name, path  # path None: the system's malloc
        self.extra = extra or {}

    def env(self, base):
        env = dict(base)
        env.pop("LD_PRELOAD", None)
        if self.path:
            env["LD_PRELOAD"] = self.path
        env.update(self.extra)
        return env


def find_soname(soname):
    """Path of a library by soname: the multiarch directory first, then the
    dynamic linker's cache."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for d in ("/usr/lib/" + multiarch, "/lib/" + multiarch, "/usr/lib64", "/usr/lib"):
        path = os.path.join(d, soname)
        if os.path.exists(path):
            return path
    for ldconfig in ("ldconfig", "/sbin/ldconfig"):
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
        except OSError:
            continue
        for line in out.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[0].split()[0] == soname:
                return parts[1].strip()
    return None


def split_lib(spec, who):
    """NAME and PATH of a --lib NAME=PATH or NAME:PATH (split at the first
    '=' or ':', so the path may hold either)."""
    m = re.match(r"^([^=:]+)[=:](.*)$", spec)
    if not m:
        die("%s expects NAME=PATH or NAME:PATH, got %r" % (who, spec))
    return m.group(1), m.group(2)


def allocators(builddir, overrides, variants=()):
    """The allocators to compare, in table order; missing ones are reported
    on stderr and left out. Each variant ("NAME:VAR=VALUE,...") is hakmem
    again with those variables set, listed right after it; then the added
    libraries whose names start with "hakmem-" (other builds of hakmem).
    Other added libraries follow the peers."""
    found = [("hakmem", os.path.join(builddir, "src", ".libs", "libhakmem.so.0"))]
    found.append(("glibc", None))
    for name, soname in catalogue.PEERS:
        found.append((name, find_soname(soname) or soname))
    table = collections.OrderedDict(found)
    builds = []  # added libraries named hakmem-*: other builds of hakmem
    for spec in overrides:
        name, path = split_lib(spec, "--lib")
        if name.startswith("hakmem-") and name not in table:
            builds.append(name)
        table[name] = path
    result = []
    for name, path in table.items():
        if path == "":
            continue  # left out on request
        if path and not os.path.exists(path):
            note(PROG + ": %s not found (%s): skipped" % (name, path))
            continue
        result.append(Allocator(name, path and os.path.abspath(path)))
    hakmem = next((a for a in result if a.name == "hakmem"), None)
    at = result.index(hakmem) + 1 if hakmem else len(result)
    for spec in variants:
        name, sep, assignments = spec.partition(":")
        extra = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
        if not sep or not name or not extra or not hakmem:
            die("--variant expects NAME:VAR=VALUE[,VAR=VALUE...] and hakmem, got %r" % spec)
        result.insert(at, Allocator(name, hakmem.path, extra))
        at += 1
    for name in builds:
        a = next((a for a in result if a.name == name), None)
        if a:
            result.remove(a)
            result.insert(at, a)
            at += 1
    return result


def build_unhardened(builddir):
    """Builds hakmem once more with --disable-hardening (bench/build-unhardened)
    and returns the path of its library."""
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build-unhardened")
    note(PROG + ": building hakmem with --disable-hardening (about a minute)")
    r = subprocess.run(["sh", helper, builddir], stdout=subprocess.PIPE, text=True)
    lines = r.stdout.split()
    if r.returncode != 0 or not lines:
        die("--hardening-cost: %s failed" % helper)
    return lines[-1]


def wait_child(pid, timeout):
    """Waits for child pid, killing it after `timeout` seconds; returns its
    wait status and whether it was killed. A pidfd makes the wait exact (no
    polling delay in the measured time) and the kill safe against pid reuse;
    where the kernel has none, a timer kills instead."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        fd = None
    if fd is not None:
        try:
            killed = not select.select([fd], [], [], timeout)[0]
            if killed:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)
        return os.waitpid(pid, 0)[1], killed
    fired = []
    timer = threading.Timer(timeout, lambda: (fired.append(1), os.kill(pid, signal.SIGKILL)))
    timer.start()
    status = os.waitpid(pid, 0)[1]
    timer.cancel()
    return status, bool(fired)


class Run:
    """One execution: its wall time and its result line.

    The peak RSS is the one the program reports (its VmHWM). The child's
    ru_maxrss from wait4 would be wrong here: the kernel carries the
    high-water mark of the address space a process had before exec into it,
    and a child of vfork or fork starts from this Python process's, so
    every program would show at least Python's own 15 MB.
    """

    def __init__(self, argv, env, timeout):
        self.fields, self.error = {}, None
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=err)
            except OSError as e:
                self.wall, self.stdout, self.stderr = 0.0, "", ""
                self.error = "cannot run: %s" % e.strerror
                return
            status, killed = wait_child(proc.pid, timeout)
            self.wall = time.monotonic() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            self.stdout = out.read().decode(errors="replace")
            self.stderr = err.read().decode(errors="replace")
        if killed:
            self.error = "timeout after %gs" % timeout
        elif proc.returncode < 0:
            self.error = "killed by %s" % signal.Signals(-proc.returncode).name
        elif proc.returncode > 0:
            self.error = "exit status %d" % proc.returncode
        if self.error:
            # The last line of the program's own, past any LD_DEBUG report.
            own = [l for l in self.stderr.splitlines() if l.strip() and not LD_DEBUG_RE.match(l)]
            if own:
                self.error += ": " + own[-1][:120]

    def parse(self, name):
        """Checks the one result line and keeps its key=value fields."""
        if self.error:
            return
        lines = self.stdout.splitlines()
        tail = TAIL_RE.match(lines[-1]) if len(lines) == 2 else None
        if tail:
            lines.pop()
        m = RESULT_RE.match(lines[0]) if len(lines) == 1 else None
        if not m or m.group(1) != name:
            self.error = "unexpected output %r" % self.stdout[:200]
            return
        self.fields = dict(kv.split("=", 1) for kv in m.group(2).split())
        if tail:
            self.fields["tail_s"] = tail.group(1)
        try:
            self.ops_s = float(self.fields["ops/s"])
            self.rss_kb = int(self.fields["peak_rss_kb"])
        except (KeyError, ValueError):
            self.error = "no ops/s or peak_rss_kb in %r" % lines[0]


def probe_preload(prog, args, alloc, base_env, timeout):
    """Checks that the program's malloc and free come from the allocator.

    The dynamic linker reports every symbol binding under LD_DEBUG=bindings,
    so one short run shows which library the program's own calls resolve to.
    Reading /proc/PID/maps during a timed run would race with short runs and
    only show that the library is mapped, not that it is used. A binding is
    fixed by the program, the preload and the libraries alone, so one probe
    per program and allocator speaks for all its timed runs. Returns None
    when the preload is in effect, else the reason why not.
    """
    env = alloc.env(base_env)
    env["LD_DEBUG"] = "bindings"
    env.pop("LD_DEBUG_OUTPUT", None)
    run = Run([prog] + args, env, timeout)
    if run.error:
        return "probe failed: " + run.error
    # The allocator is the last library of a list (hakmem-stdnew's).
    want = os.path.realpath(alloc.path.split()[-1]) if alloc.path else None
    seen = {}
    pat = re.compile(r"binding file (\S+) \[\d+\] to (\S+) \[\d+\]: normal symbol `(malloc|free)'")
    for m in pat.finditer(run.stderr):
        if os.path.realpath(m.group(1)) == os.path.realpath(prog):
            seen.setdefault(m.group(3), set()).add(os.path.realpath(m.group(2)))
    for sym in ("malloc", "free"):
        targets = seen.get(sym)
        if not targets:
            return "preload not verified: no binding of %s seen" % sym
        for t in targets:
            ok = t == want if want else os.path.basename(t).startswith("libc.so")
            if not ok:
                return "preload not in effect: %s bound to %s" % (sym, t)
    return None


class Result:
    """All runs of one allocator on one benchmark."""

    def __init__(self):
        self.runs, self.error = [], None

    def median(self, attr):
        return statistics.median(getattr(r, attr) for r in self.runs)

    def field_median(self, key):
        vals = []
        for r in self.runs:
            try:
                vals.append(float(r.fields[key]))
            except (KeyError, ValueError):
                return None
        return statistics.median(vals) if vals else None


def ratios(bench, res, ref):
    """Time and RSS ratios of one result to the reference's, or Nones."""
    if res.error or not ref or ref.error:
        return None, None
    if bench.by_ops:
        t = ref.median("ops_s") / res.median("ops_s")
    else:
        t = res.median("wall") / ref.median("wall")
    return t, res.median("rss_kb") / ref.median("rss_kb")


def check_checksums(bench, results):
    """Every correct allocator computes the same checksum on a deterministic
    benchmark; one that differs from the others' is marked failed."""
    if not bench.same_checksum:
        return
    sums = collections.Counter()
    for res in results.values():
        if not res.error:
            sums.update(r.fields.get("checksum") for r in res.runs)
    if not sums:
        return
    common = sums.most_common(1)[0][0]
    for res in results.values():
        bad = [r.fields.get("checksum") for r in res.runs if r.fields.get("checksum") != common]
        if not res.error and bad:
            res.error = "checksum %s differs from the others' %s" % (bad[0], common)


def geomeans(benches, all_results, allocs, ref_name):
    """Per allocator: geometric means of the time and RSS ratios over the
    benchmarks where both it and the reference succeeded."""
    out = []
    for a in allocs:
        tr, rr = [], []
        for b in benches:
            res = all_results[b.name]
            t, r = ratios(b, res[a.name], res.get(ref_name))
            if t is not None:
                tr.append(t)
                rr.append(r)
        out.append((a.name, geomean(tr), geomean(rr), len(tr)))
    return out


def geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


class Runner:
    """Runs benchmarks for every section of one invocation: the probes, each
    made once per program and allocator, and the interleaved repetitions.
    Progress lines on stderr carry the seconds since it was made."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.start = time.monotonic()
        self.probes = {}  # (program path, allocator name) -> None or why not

    def elapsed(self):
        return time.monotonic() - self.start

    def probe(self, prog, args, alloc, base_env):
        """probe_preload, once per program and allocator name; a failure is
        reported on stderr when found. Returns None or the reason."""
        key = (prog, alloc.name)
        if key not in self.probes:
            self.probes[key] = probe_preload(prog, args, alloc, base_env, self.timeout)
            if self.probes[key]:
                note("%s: %s under %s: %s" % (PROG, os.path.basename(prog), alloc.name,
                                               self.probes[key]))
        return self.probes[key]

    def interleave(self, bench, allocs, reps, argv_of, base_env, errors, widths=(20, 9)):
        """Runs bench under each allocator reps times, interleaved: repetition
        1 of every allocator, then repetition 2..., so that a drift of the
        machine's speed hits all allocators alike. argv_of(alloc, rep) gives
        the command line, alloc.env(base_env) its environment. An allocator
        with an error (errors[name], its probe's, or a failed run) is not run
        (again); then a checksum differing from the others' fails it too.
        widths are those of the bench and allocator names in the progress
        lines. Returns {allocator name: Result} and every run as (allocator,
        rep, Run) in the order they ran."""
        results = {a.name: Result() for a in allocs}
        for a in allocs:
            results[a.name].error = errors.get(a.name)
        runs = []
        for rep in range(1, reps + 1):
            for a in allocs:
                res = results[a.name]
                if res.error:
                    continue  # a failed allocator is not run again on this benchmark
                note("[%7.1fs] %-*s %-*s rep %d/%d" % (self.elapsed(), widths[0], bench.name,
                                                        widths[1], a.name, rep, reps))
                run = Run(argv_of(a, rep), a.env(base_env), self.timeout)
                run.parse(bench.output)
                runs.append((a, rep, run))
                if run.error:
                    note("%s: %s under %s: FAIL: %s" % (PROG, bench.name, a.name, run.error))
                    res.error = run.error
                else:
                    res.runs.append(run)
        check_checksums(bench, results)
        return results, runs
