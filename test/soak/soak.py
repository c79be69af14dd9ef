#!/usr/bin/env python3
"""soak.py - the driver of test/soak/soak.sh (see there, and the "Soak"
section of test/RELIABILITY.md).  It expects a running cluster with the
extension created and a running mock, both started by soak.sh.

What it does:
  1. installs the mock's random fault rules (FAULTS below);
  2. queues N requests, {"REQ": "soak-<i>"} for cluster 52 and one of
     NPKG packages, in batches of one transaction each: a warm-up batch
     (N/20, at most 1,000), drained before anything else and followed by
     a look at the idle worker's memory, then batches of --batch, the
     next whenever fewer than half a batch are still queued;
  3. meanwhile, as the share of requests in a final state passes each
     point of CHAOS, kills the worker with SIGKILL (the postmaster then
     reinitializes, as after any crash), restarts the server with
     pg_ctl restart -m fast or -m immediate, or has the mock refuse
     connections for a few seconds (POST /_mock/down);
  4. samples the worker's memory (/proc/PID/status, smaps_rollup) and
     open descriptors (/proc/PID/fd) every second;
  5. once no request is queued, submitting, checking or waiting, checks
     every row against the mock's ledger (/_mock/post_outcomes: what
     became of each POST /jobs; /_mock/jobs?compact=1: the jobs it
     created), the server log and the samples, prints a summary and
     writes it, the samples and the events to --out.

What is provable, and checked:
  - none lost: exactly the N requests queued are in the table;
  - every row final: submitted, failed or unknown;
  - each POST that reached the mock was a send the worker claimed
    (POSTs <= attempts);
  - a request is POSTed again only after an answer that says no job was
    created (429, 502, 503: the worker retries those blindly, by design)
    or after a check found no job: so the POSTs not refused with 429, 502
    or 503 number at most 1, or, for a row with resent_after_check, at
    most checks + 1;
  - the mock created exactly one job for each submitted request, and it
    is the row's job_id; none for a failed request; at most one for an
    unknown one; none for variables no request has; job_ids distinct;
  - the server log shows no crash but the kills (no signal 6 or 11, no
    PANIC, no failed Assert);
  - the worker's memory and descriptors do not grow: idle after the
    drain against idle after a warm-up batch, its exact palloc heap
    (pg_log_backend_memory_contexts) and its RssAnon once glibc has
    given back what it keeps of freed memory (malloc_trim, called with
    gdb); its RssAnon at the same age after start, first incarnation
    against last; its descriptors other than sockets and relation files,
    first tenth of the drain against last; its sockets against
    max_in_flight.  RssAnon, Pss and VmRSS over time, and in the first
    and last tenth, are reported (see check_memory for why they are not
    compared as they are).
"""

import argparse
import calendar
import collections
import csv
import http.client
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

CLUSTER = 52
NPKG = 1000             # packages the requests are spread over; see below
PENDING = ("queued", "submitting", "checking", "waiting")
FINAL = ("submitted", "failed", "unknown")
# Answers after which the worker may send again without a check: they say
# that no job was created.  The mock's rules below never create a job and
# then answer one of these (that would be an API breaking its contract).
SAFE_OUTCOMES = {"none:429", "none:502", "none:503"}
PG_BIN = "/usr/lib/postgresql/15/bin"

# Why NPKG packages: a check lists the package's jobs created from 5
# minutes before the first send to 5 minutes after the last, at most 10
# pages of 100 (job_check.c); a package that gets more than 1000 jobs in
# that window cannot be checked and the request ends 'unknown'.  At several hundred requests a second,
# 1000 packages keep each one well under that.


def post_rule(p, **kw):
    return dict(method="POST", path="^/jobs$", times=-1, probability=p, **kw)


def list_rule(p, **kw):
    return dict(method="GET", path="^/jobs$", times=-1, probability=p, **kw)


def poll_rule(p, **kw):
    return dict(method="GET", path="^/jobs/[0-9]+$", times=-1,
                probability=p, **kw)


# The random faults.  The first matching rule whose draw hits applies, so
# a later rule's real chance is a little below its probability.  The
# request timeout is 2 s (soak.sh), so "slow 2500 ms" and "hang" are
# timeouts after sending.
FAULTS = [
    # POST /jobs, refused: no job, and the answer says so (retried blindly)
    post_rule(0.002, status=429, comment="429, no job"),
    post_rule(0.03, status=503, comment="503, no job"),
    post_rule(0.01, status=502, comment="502, no job"),
    # POST /jobs, no job, but the answer does not say so (checked, resent)
    post_rule(0.01, status=500, comment="500, no job"),
    post_rule(0.01, action="close", comment="close, no job"),
    post_rule(0.005, action="reset", comment="reset, no job"),
    post_rule(0.003, action="garbage", comment="garbage, no job"),
    post_rule(0.002, action="hang", hang_s=5, comment="hang, no job"),
    # POST /jobs, job created, answer lost (checked, adopted)
    post_rule(0.01, create=True, status=500, comment="500 after creating"),
    post_rule(0.005, create=True, status=504, comment="504 after creating"),
    post_rule(0.01, create=True, action="close", comment="close after creating"),
    post_rule(0.005, create=True, action="reset", comment="reset after creating"),
    post_rule(0.01, create=True, action="partial",
              comment="half the 201, then close"),
    post_rule(0.005, create=True, action="garbage",
              comment="garbage after creating"),
    post_rule(0.005, create=True, status=201,
              body="<html>502 Bad Gateway</html>",
              comment="201 whose body is not a job"),
    post_rule(0.004, create=True, delay_ms=2500,
              comment="slow 2500 ms after creating: a timeout"),
    # POST /jobs, job created and answered, slowly
    post_rule(0.03, create=True, delay_ms=300, comment="slow 300 ms 201"),
    # GET /jobs (the checks)
    list_rule(0.003, status=429, comment="check: 429"),
    list_rule(0.05, status=503, comment="check: 503"),
    list_rule(0.02, status=500, comment="check: 500"),
    list_rule(0.02, action="close", comment="check: close"),
    list_rule(0.01, action="garbage", comment="check: garbage"),
    list_rule(0.01, status=200, body="this is not JSON",
              comment="check: 200 not JSON"),
    list_rule(0.01, create=True, action="partial", comment="check: partial"),
    list_rule(0.05, create=True, delay_ms=500, comment="check: slow 500 ms"),
    # GET /jobs/:id (following jobs)
    poll_rule(0.05, status=503, comment="poll: 503"),
    poll_rule(0.02, action="close", comment="poll: close"),
    poll_rule(0.01, status=200, body="not a job", comment="poll: not JSON"),
    poll_rule(0.05, create=True, delay_ms=300, comment="poll: slow 300 ms"),
]

# (share of requests final, event, argument).  No worker restart after
# 0.60, so the worker that runs from there drains the last 40% in one
# incarnation: that is where memory growth would show.
CHAOS = [
    (0.06, "kill", None),
    (0.12, "mock_down", 4),
    (0.18, "restart", "fast"),
    (0.24, "kill", None),
    (0.30, "restart", "immediate"),
    (0.36, "mock_down", 5),
    (0.42, "kill", None),
    (0.48, "restart", "fast"),
    (0.54, "restart", "immediate"),
    (0.60, "kill", None),
    (0.70, "mock_down", 3),
]


def now():
    return time.time()


class Soak:
    def __init__(self, a):
        self.a = a
        self.t0 = now()
        self.events = []
        self.samples = []
        self.mock_samples = []
        self.progress_log = []
        self.lines = []
        self.checks = []
        self.clk_tck = os.sysconf("SC_CLK_TCK")

    # -- output ------------------------------------------------------------
    def say(self, text=""):
        print(text, flush=True)
        self.lines.append(text)

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))
        self.say("%s %s%s" % ("ok  " if ok else "FAIL", name,
                              (": " + detail) if detail else ""))

    def elapsed(self):
        return now() - self.t0

    def event(self, kind, **kw):
        e = dict(t=round(self.elapsed(), 1), kind=kind, **kw)
        self.events.append(e)
        print("   [%7.1f s] %s %s" % (e["t"], kind,
              json.dumps({k: v for k, v in kw.items()})), flush=True)
        return e

    # -- PostgreSQL --------------------------------------------------------
    def psql_once(self, sql, timeout=300):
        cmd = ["psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", self.a.work, "-p", str(self.a.pg_port),
               "-U", "postgres", "-d", self.a.db, "-c", sql]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, "", "timeout"
        return r.returncode == 0, r.stdout, r.stderr

    def psql(self, sql, timeout=300, patience=180):
        deadline = now() + patience
        while True:
            ok, out, err = self.psql_once(sql, timeout)
            if ok:
                return out
            if now() > deadline:
                raise RuntimeError("psql failed: %s: %s" % (sql[:80], err))
            time.sleep(0.3)

    def pg_ctl(self, *args):
        cmd = ["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl",
               "-D", self.a.data, "-l", self.a.server_log, "-w", "-t", "300"]
        return subprocess.run(cmd + list(args), capture_output=True,
                              text=True)

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.a.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def worker_pid(self):
        """The xplenty worker of our postmaster, from /proc (other
        clusters on the machine may run one too)."""
        pm = self.postmaster_pid()
        if pm is None:
            return None
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if not f.read().startswith(b"postgres: xplenty worker"):
                        continue
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == pm:
                    return int(d)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def wait_for_worker(self, not_pid=None, timeout=120):
        deadline = now() + timeout
        while now() < deadline:
            pid = self.worker_pid()
            if pid and pid != not_pid:
                ok, out, _ = self.psql_once("SELECT 1", timeout=10)
                if ok and out.strip() == "1":
                    return pid
            time.sleep(0.2)
        raise RuntimeError("no xplenty worker within %d s" % timeout)

    def status_counts(self):
        out = self.psql("SELECT status, count(*) FROM xplenty_queue "
                        "GROUP BY status")
        c = {}
        for line in out.splitlines():
            if line:
                s, n = line.split("|")
                c[s] = int(n)
        return c

    # -- the mock ----------------------------------------------------------
    def mock(self, method, path, body=None, timeout=120, patience=60):
        deadline = now() + patience
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1",
                                                  self.a.mock_port,
                                                  timeout=timeout)
                data = None if body is None else json.dumps(body).encode()
                conn.request(method, path, body=data,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                conn.close()
                if r.status >= 400:
                    raise RuntimeError("mock %s %s: %d %s" % (
                        method, path, r.status, raw[:200]))
                return json.loads(raw) if raw else None
            except (OSError, http.client.HTTPException):
                if now() > deadline:
                    raise
                time.sleep(0.2)

    # -- sampling ----------------------------------------------------------
    def proc_sample(self, pid):
        s = {}
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    s[k] = int(v.split()[0])
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    p = line.split()
                    if p and p[0] in ("Pss:", "Pss_Anon:", "Private_Dirty:"):
                        s[p[0][:-1]] = int(p[1])
        except OSError:
            pass
        fds = os.listdir("/proc/%d/fd" % pid)
        socks = datafiles = others = 0
        data = os.path.realpath(self.a.data) + "/"
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue                # closed since the listing
            if target.startswith("socket:"):
                socks += 1
            elif target.startswith(data):
                datafiles += 1          # relations PostgreSQL keeps open
            else:
                others += 1
        s["fds"] = socks + datafiles + others
        s["sockets"] = socks
        s["datafiles"] = datafiles
        s["otherfds"] = others
        with open("/proc/%d/stat" % pid) as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        s["age"] = round(uptime - start_ticks / self.clk_tck, 1)
        return s

    def sample(self, final, counts=None):
        counts = counts or {}
        pid = self.worker_pid()
        if pid:
            try:
                s = self.proc_sample(pid)
                s.update(t=round(self.elapsed(), 1), pid=pid, final=final,
                         queued=counts.get("queued", 0),
                         checking=counts.get("checking", 0))
                self.samples.append(s)
            except (OSError, ValueError, IndexError):
                pass
        try:
            s = self.proc_sample(self.a.mock_pid)
            self.mock_samples.append(dict(t=round(self.elapsed(), 1),
                                          rss=s["VmRSS"], fds=s["fds"]))
        except (OSError, ValueError, IndexError):
            pass

    def log_memory_contexts(self):
        """Have the worker log its memory contexts (the totals are read
        from the server log at the end); returns the time asked."""
        pid = self.worker_pid()
        if pid:
            self.psql_once("SELECT pg_log_backend_memory_contexts(%d)" % pid,
                           timeout=10)
        return pid

    def memctx_totals(self):
        """[(t, pid, total bytes, used bytes)] from the server log's
        "Grand total" lines of pg_log_backend_memory_contexts."""
        out = []
        pat = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \w+ "
                         r"\[(\d+)\] LOG:  Grand total: (\d+) bytes in \d+ "
                         r"blocks; \d+ free \(\d+ chunks\); (\d+) used")
        with open(self.a.server_log, errors="replace") as f:
            for line in f:
                m = pat.match(line)
                if m:
                    # soak.sh sets log_timezone = 'UTC'
                    t = calendar.timegm(time.strptime(m.group(1)[:19],
                                                      "%Y-%m-%d %H:%M:%S"))
                    t += float("0" + m.group(1)[19:])
                    out.append((round(t - self.t0, 1), int(m.group(2)),
                                int(m.group(3)), int(m.group(4))))
        return out

    def idle_snapshot(self, label, final):
        """Wait until nothing is pending and the worker has been idle a
        moment, then record its palloc totals and /proc figures."""
        deadline = now() + self.a.timeout
        while now() < deadline:
            c = self.status_counts()
            if not any(c.get(s, 0) for s in PENDING):
                break
            time.sleep(0.5)
        time.sleep(3)
        pid = self.worker_pid()
        asked = self.elapsed()
        self.log_memory_contexts()
        time.sleep(2)
        tot = [x for x in self.memctx_totals() if x[1] == pid and
               x[0] >= asked - 1]
        snap = dict(label=label, t=round(asked, 1), pid=pid, final=final,
                    palloc_total=tot[-1][2] if tot else None,
                    palloc_used=tot[-1][3] if tot else None)
        try:
            snap.update({k: v for k, v in self.proc_sample(pid).items()
                         if k in ("RssAnon", "VmRSS", "Pss_Anon", "fds",
                                  "otherfds", "age")})
        except (OSError, TypeError):
            pass
        # What glibc keeps of freed memory is in RssAnon too; malloc_trim
        # gives it back, so that what is left is what is in use (palloc,
        # libcurl, OpenSSL).  The worker is idle in epoll_wait, never
        # inside malloc, when gdb stops it for the call.
        try:
            r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex",
                                "call (int) malloc_trim(0)"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                snap["RssAnon_trimmed"] = self.proc_sample(pid)["RssAnon"]
        except (OSError, subprocess.TimeoutExpired, TypeError):
            pass
        self.idle.append(snap)
        self.event("idle_snapshot", **{k: v for k, v in snap.items()
                                        if k != "t"})

    # -- enqueuing ---------------------------------------------------------
    def batch_done(self, lo):
        out = self.psql("SELECT count(*) FROM xplenty_queue WHERE "
                        "variables @> '{\"REQ\": \"soak-%d\"}'" % lo)
        return int(out.strip()) == 1

    def enqueue(self, lo, hi):
        """Queue requests lo..hi in one transaction, exactly once even if
        the connection is lost (a crash) around the commit."""
        sql = ("SELECT count(xplenty_enqueue_job(%d, 1 + (i %% %d), "
               "jsonb_build_object('REQ', 'soak-' || i))) "
               "FROM generate_series(%d, %d) i" % (CLUSTER, NPKG, lo, hi))
        t = now()
        while True:
            ok, out, err = self.psql_once(sql)
            if ok and out.strip() == str(hi - lo + 1):
                break
            time.sleep(0.5)
            if self.batch_done(lo):
                break
            self.event("enqueue_retry", lo=lo, error=err.strip()[:120])
        self.event("enqueue", lo=lo, hi=hi, seconds=round(now() - t, 2))

    # -- chaos -------------------------------------------------------------
    def do_chaos(self, kind, arg, counts):
        t = now()
        in_flight = counts.get("submitting", 0)
        if kind == "kill":
            pid = self.worker_pid()
            os.kill(pid, signal.SIGKILL)
            new = self.wait_for_worker(not_pid=pid)
            self.event("kill", pid=pid, submitting=in_flight,
                       checking=counts.get("checking", 0), new_pid=new,
                       seconds=round(now() - t, 1))
        elif kind == "restart":
            pid = self.worker_pid()
            r = self.pg_ctl("-m", arg, "restart")
            if r.returncode != 0:
                raise RuntimeError("pg_ctl restart -m %s: %s" % (
                    arg, r.stderr))
            new = self.wait_for_worker(not_pid=pid)
            self.event("restart", mode=arg, old_pid=pid, new_pid=new,
                       submitting=in_flight, seconds=round(now() - t, 1))
        elif kind == "mock_down":
            self.mock("POST", "/_mock/down", {"seconds": arg})
            time.sleep(0.5)
            refused = False
            try:
                c = http.client.HTTPConnection("127.0.0.1",
                                               self.a.mock_port, timeout=2)
                c.request("GET", "/_mock/ping")
                c.getresponse().read()
            except ConnectionRefusedError:
                refused = True
            except (OSError, http.client.HTTPException):
                pass
            self.event("mock_down", seconds=arg, refused=refused,
                       submitting=in_flight)
            self.mock_up_at = t + arg + 0.5
        return now()

    # -- the run -----------------------------------------------------------
    def run(self):
        a = self.a
        n = a.n
        batch = a.batch or min(10000, max(n // 10, 1))
        nbatches = (n + batch - 1) // batch
        warm = max(min(1000, n // 20), 1)
        self.idle = []
        self.mock("POST", "/_mock/reset", {})
        self.mock("POST", "/_mock/faults", FAULTS)
        self.say("soak: N=%d in %d batches of %d, %d packages, "
                 "max_in_flight %d, %d fault rules" % (
                     n, nbatches, batch, NPKG, a.in_flight, len(FAULTS)))
        self.mock_up_at = 0
        enqueued = 0
        next_chaos = 0
        last_chaos_end = 0
        last_sample = 0
        last_memctx = 0
        last_report = now()
        t_first_final = None
        t_drained = None
        done_at = None
        while True:
            counts = self.status_counts()
            final = sum(counts.get(s, 0) for s in FINAL)
            pending = sum(counts.get(s, 0) for s in PENDING)
            if now() - last_sample >= 1:
                self.sample(final, counts)
                last_sample = now()
            if now() - last_memctx >= 5:
                self.log_memory_contexts()
                last_memctx = now()
            if now() - last_report >= 10:
                self.progress_log.append(dict(t=round(self.elapsed(), 1),
                                              final=final, **counts))
                print("   [%7.1f s] %d/%d final  %s" % (
                    self.elapsed(), final, n, json.dumps(counts)),
                    flush=True)
                last_report = now()

            # The next batch, unless the chaos due before it has not run.
            nb = enqueued // batch
            chaos_owed = next_chaos < len(CHAOS) and \
                CHAOS[next_chaos][0] < nb / nbatches
            if enqueued == 0:
                # A warm-up batch, drained before anything else, then a
                # look at the idle worker's memory to compare the end with.
                self.enqueue(1, warm)
                enqueued = warm
                self.idle_snapshot("after the warm-up", warm)
                continue
            if enqueued < n and not chaos_owed and \
                    counts.get("queued", 0) < batch / 2:
                if t_first_final is None:
                    # The drain is timed from here, after the warm-up.
                    t_first_final = self.elapsed()
                hi = min(enqueued + batch, n)
                self.enqueue(enqueued + 1, hi)
                enqueued = hi
                continue

            if next_chaos < len(CHAOS) and \
                    final >= CHAOS[next_chaos][0] * n and \
                    now() - last_chaos_end >= 3 and now() >= self.mock_up_at:
                _, kind, arg = CHAOS[next_chaos]
                last_chaos_end = self.do_chaos(kind, arg, counts)
                next_chaos += 1
                continue

            if enqueued >= n and pending == 0 and final >= n and \
                    next_chaos >= len(CHAOS):
                t_drained = self.elapsed()
                break
            if self.elapsed() > a.timeout:
                self.say("TIMEOUT after %d s: %s" % (a.timeout,
                                                     json.dumps(counts)))
                break
            time.sleep(0.5)
        # A few samples of the idle worker after the drain.
        for _ in range(5):
            time.sleep(1)
            self.sample(n)
        if t_drained is not None:
            self.idle_snapshot("after the drain", n)
        self.t_drained = t_drained
        self.t_first_final = t_first_final
        self.warm = warm
        self.verify(n, t_drained)
        return self.finish()

    # -- verification ------------------------------------------------------
    def rows(self):
        out = self.psql("COPY (SELECT id, status, variables->>'REQ', "
                        "package_id, job_id, resent_after_check, attempts, "
                        "checks, last_error FROM xplenty_queue ORDER BY id) "
                        "TO STDOUT WITH (FORMAT csv)", timeout=600)
        rows = []
        for r in csv.reader(io.StringIO(out)):
            rows.append(dict(id=int(r[0]), status=r[1], req=r[2],
                             package_id=int(r[3]),
                             job_id=int(r[4]) if r[4] else None,
                             resent=r[5] == "t", attempts=int(r[6]),
                             checks=int(r[7]), last_error=r[8]))
        return rows

    @staticmethod
    def err_class(e):
        if not e:
            return "(none)"
        e = re.sub(r'"[^"]*"', '"…"', e)
        e = re.sub(r"\d+", "N", e)
        return e[:120]

    def verify(self, n, t_drained):
        a = self.a
        self.say()
        self.say("== figures")
        rows = self.rows()
        outcomes = self.mock("GET", "/_mock/post_outcomes", timeout=600)
        jobs = self.mock("GET", "/_mock/jobs?compact=1", timeout=600)
        faults = self.mock("GET", "/_mock/faults")
        stats = self.mock("GET", "/_mock/stats?brief=1")

        kinds = collections.Counter(e["kind"] for e in self.events)
        restarts = collections.Counter(e.get("mode") for e in self.events
                                       if e["kind"] == "restart")
        drain = (t_drained - self.t_first_final) if t_drained and \
            self.t_first_final is not None else None
        rest = n - self.warm
        self.say("requests: %d (a warm-up of %d, drained first, then %d); "
                 "those %d drained in %s s (first batch queued to last "
                 "final) -> %s requests/s, chaos included" % (
                     n, self.warm, rest, rest,
                     "%.0f" % drain if drain else "-",
                     "%.0f" % (rest / drain) if drain else "-"))
        busy = [x for x in self.progress_log if x.get("queued", 0) > 100]
        if busy and drain:
            b = busy[-1]
            self.say("until the queue last held more than 100 requests "
                     "(%.0f s in): %d final, %.0f requests/s; the last %d, "
                     "mostly checks, took %.0f s more" % (
                         b["t"] - self.t_first_final, b["final"],
                         (b["final"] - self.warm) /
                         max(b["t"] - self.t_first_final, 1),
                         n - b["final"], t_drained - b["t"]))
        rates = []
        for p, q in zip(self.progress_log, self.progress_log[1:]):
            if q["t"] > p["t"]:
                rates.append((q["final"] - p["final"]) / (q["t"] - p["t"]))
        if rates:
            self.say("drain rate per 10 s window: min %.0f, median %.0f, "
                     "max %.0f requests/s" % (min(rates),
                                              statistics.median(rates),
                                              max(rates)))
        self.say("chaos: %d SIGKILLs of the worker, %d restarts -m fast, %d "
                 "-m immediate, %d times the mock refused connections" % (
                     kinds["kill"], restarts["fast"], restarts["immediate"],
                     kinds["mock_down"]))
        for e in self.events:
            if e["kind"] in ("kill", "restart", "mock_down"):
                self.say("  %7.1f s  %s" % (e["t"], json.dumps(
                    {k: v for k, v in e.items() if k != "t"})))
        self.say("mock: %d API requests, %d POST /jobs, %d jobs created, "
                 "%d faults applied" % (stats["requests"],
                                        stats["run_job_posts"],
                                        stats["jobs_created"],
                                        stats["faults_applied"]))
        for f in faults:
            self.say("  %6d  %s" % (f["hits"], f.get("comment", "")))

        status = collections.Counter(r["status"] for r in rows)
        self.say("rows by status: %s" % json.dumps(dict(status)))
        classes = collections.Counter((r["status"],
                                       self.err_class(r["last_error"]))
                                      for r in rows)
        self.say("rows by status and last_error class:")
        for (s, c), k in sorted(classes.items(), key=lambda x: -x[1]):
            self.say("  %6d  %-9s %s" % (k, s, c))
        resent = [r for r in rows if r["resent"]]
        adopted = [r for r in rows
                   if "found by a check" in (r["last_error"] or "")]
        self.say("resent_after_check: %d rows; adopted after a check: %d "
                 "rows; rows checked at least once: %d" % (
                     len(resent), len(adopted),
                     sum(1 for r in rows if r["checks"] > 0)))
        self.say("attempts per row: %s" % json.dumps(dict(sorted(
            collections.Counter(r["attempts"] for r in rows).items()))))

        # -- the checks ---------------------------------------------------
        self.say()
        self.say("== checks")
        expected = {"soak-%d" % i for i in range(1, n + 1)}
        reqs = [r["req"] for r in rows]
        self.check("none lost: the %d requests queued are all in the table, "
                   "once each" % n,
                   len(rows) == n and set(reqs) == expected and
                   len(set(reqs)) == len(reqs),
                   "%d rows, %d distinct, %d missing, %d unexpected" % (
                       len(rows), len(set(reqs)), len(expected - set(reqs)),
                       len(set(reqs) - expected)))
        pending = [r for r in rows if r["status"] not in FINAL]
        self.check("every request in a final state (submitted, failed, "
                   "unknown)", not pending and t_drained is not None,
                   "%d pending" % len(pending))
        self.check("chaos done: >= 3 SIGKILLs, >= 2 restarts -m fast and -m "
                   "immediate, >= 2 mock downs that refused connections",
                   kinds["kill"] >= 3 and restarts["fast"] >= 2 and
                   restarts["immediate"] >= 2 and
                   sum(1 for e in self.events if e["kind"] == "mock_down"
                       and e.get("refused")) >= 2)

        key = {}
        for r in rows:
            key[r["id"]] = json.dumps({"REQ": r["req"]}, sort_keys=True,
                                      separators=(",", ":"),
                                      ensure_ascii=False)
        post_hist = collections.Counter()
        too_many_posts, unsafe_bad, literal = [], [], []
        for r in rows:
            o = outcomes.get(key[r["id"]], [])
            post_hist[len(o)] += 1
            unsafe = [x for x in o if x not in SAFE_OUTCOMES]
            if len(o) > r["attempts"]:
                too_many_posts.append((r["id"], r["attempts"], o))
            limit = r["checks"] + 1 if r["resent"] else 1
            if len(unsafe) > limit:
                unsafe_bad.append((r["id"], r["resent"], r["checks"], o))
            if len(o) > 1 and not r["resent"]:
                literal.append(o)
        self.say("POST /jobs per request: %s" % json.dumps(
            dict(sorted(post_hist.items()))))
        lit_kinds = collections.Counter(x for o in literal for x in o[:-1])
        self.say("requests POSTed more than once without resent_after_check: "
                 "%d; what the earlier POSTs got: %s" % (
                     len(literal), json.dumps(dict(lit_kinds))))
        self.check("each POST that reached the API was a send the worker "
                   "claimed (POSTs <= attempts)", not too_many_posts,
                   "%d rows over; e.g. %s" % (len(too_many_posts),
                                              too_many_posts[:3]))
        self.check("POSTed again only after a 429/502/503 or a check that "
                   "found no job (other POSTs <= 1, or <= checks + 1 with "
                   "resent_after_check)", not unsafe_bad,
                   "%d rows over; e.g. %s" % (len(unsafe_bad),
                                              unsafe_bad[:3]))

        jobs_by_key = collections.defaultdict(list)
        for j in jobs:
            jobs_by_key[json.dumps(j["variables"], sort_keys=True,
                                   separators=(",", ":"),
                                   ensure_ascii=False)].append(j)
        sub_bad, failed_bad, unknown_bad, ledger_bad = [], [], [], []
        for r in rows:
            js = jobs_by_key.get(key[r["id"]], [])
            if r["status"] == "submitted":
                if len(js) != 1 or js[0]["id"] != r["job_id"] or \
                        js[0]["package_id"] != r["package_id"]:
                    sub_bad.append((r["id"], r["job_id"],
                                    [j["id"] for j in js]))
            elif r["status"] == "failed":
                if js:
                    failed_bad.append((r["id"], r["last_error"],
                                       [j["id"] for j in js]))
            elif r["status"] == "unknown":
                if len(js) > 1:
                    unknown_bad.append((r["id"], [j["id"] for j in js]))
            created = sum(1 for x in outcomes.get(key[r["id"]], [])
                          if x.startswith("created:"))
            if created != len(js):
                ledger_bad.append((r["id"], created, len(js)))
        self.check("each submitted request: exactly one job was created "
                   "for it, and it is the row's job_id", not sub_bad,
                   "%d rows wrong; e.g. %s" % (len(sub_bad), sub_bad[:5]))
        self.check("no job was created for a failed request", not failed_bad,
                   "%d rows wrong; e.g. %s" % (len(failed_bad),
                                               failed_bad[:5]))
        self.check("at most one job for an unknown request", not unknown_bad,
                   "%d rows wrong; e.g. %s" % (len(unknown_bad),
                                               unknown_bad[:5]))
        ids = [r["job_id"] for r in rows if r["job_id"] is not None]
        self.check("the job_ids are distinct", len(ids) == len(set(ids)),
                   "%d job_ids, %d distinct" % (len(ids), len(set(ids))))
        ours = set(key.values())
        strays = [k for k in jobs_by_key if k not in ours]
        self.check("no job for variables that no request has", not strays,
                   "%d; e.g. %s" % (len(strays), strays[:3]))
        self.check("the mock's ledger agrees with its jobs (created: "
                   "outcomes = jobs, per request)", not ledger_bad,
                   "%d rows; e.g. %s" % (len(ledger_bad), ledger_bad[:3]))

        self.check_log(kinds["kill"])
        self.check_memory(t_drained)
        if n >= 20000:
            unfired = [f.get("comment") for f in faults if f["hits"] == 0]
            self.check("every fault rule fired at least once", not unfired,
                       "; ".join(unfired))
            self.check("both recoveries were exercised: jobs adopted after a "
                       "check, and requests resent after a check",
                       adopted and resent,
                       "%d adopted, %d resent" % (len(adopted), len(resent)))

    def check_log(self, kills):
        with open(self.a.server_log, errors="replace") as f:
            log = f.read()
        sig9 = len(re.findall(r"terminated by signal 9", log))
        bad = re.findall(r".*(?:terminated by signal (?:6|11|7)|PANIC|"
                         r"TRAP:|server process .* was terminated by "
                         r"exception).*", log)
        found = [int(x) for x in re.findall(
            r"xplenty worker found (\d+) requests that may have been sent",
            log)]
        gave_up = len(re.findall(r"xplenty worker gave up", log))
        unknown = len(re.findall(r"xplenty worker cannot tell whether", log))
        errors = collections.Counter(
            re.sub(r"\d+", "N", m)[:100] for m in
            re.findall(r"\b(?:ERROR|FATAL):  (.*)", log))
        self.say("server log: %d 'terminated by signal 9', worker recovery "
                 "found %s requests left submitting (%d recoveries), %d "
                 "'gave up', %d 'cannot tell'" % (
                     sig9, sum(found), len(found), gave_up, unknown))
        for m, k in errors.most_common(8):
            self.say("  %5d  ERROR/FATAL: %s" % (k, m))
        self.check("the server log shows no crash but the SIGKILLs (no "
                   "signal 6/7/11, PANIC or failed Assert)",
                   not bad and sig9 == kills,
                   "%d signal 9 for %d kills; %s" % (sig9, kills, bad[:3]))

    def check_memory(self, t_drained):
        """Memory and descriptors; see the module docstring.

        The worker's heap holds what is in flight (a check's answer is a
        page of 100 jobs, some 50 kB, against 1 kB for a POST's), so
        RssAnon follows the mix of work: it is compared only between
        samples of the same mix ("sending": requests queued; "checks
        only": nothing queued, checks pending), and the exact palloc
        totals are compared between two idle moments, after the warm-up
        and after the drain."""
        s = [x for x in self.samples if x.get("RssAnon") is not None]
        if not s or t_drained is None:
            self.check("worker memory sampled", False)
            return
        t_a = self.t_first_final or 0
        span = t_drained - t_a
        warm = 5        # seconds after a worker starts

        def phase(x):
            if x.get("queued", 0) > 0:
                return "sending"
            return "checks only" if x.get("checking", 0) > 0 else "idle"

        def mx(xs, k):
            return max(x[k] for x in xs) if xs else None

        def med(xs, k):
            return statistics.median(x[k] for x in xs) if xs else None

        self.say()
        self.say("== worker memory and descriptors (kB; RssAnon is the "
                 "worker's private heap, RssShmem the shared buffers it "
                 "has touched)")
        # 1. palloc totals at the two idle moments.
        for snap in self.idle:
            self.say("  idle %-17s pid %s, %d requests final: palloc %s "
                     "bytes (%s used), RssAnon %s (%s after malloc_trim), "
                     "VmRSS %s, fds %s" % (
                         snap["label"], snap["pid"], snap["final"],
                         snap.get("palloc_total"), snap.get("palloc_used"),
                         snap.get("RssAnon"), snap.get("RssAnon_trimmed"),
                         snap.get("VmRSS"), snap.get("fds")))
        if len(self.idle) == 2 and all(x.get("palloc_total")
                                       for x in self.idle):
            a, b = self.idle
            self.check("palloc heap of the idle worker after the drain <= "
                       "after the warm-up + 1 MB (pg_log_backend_memory_"
                       "contexts)", b["palloc_total"] <= a["palloc_total"] +
                       (1 << 20), "%d -> %d bytes, %d -> %d requests final" % (
                           a["palloc_total"], b["palloc_total"], a["final"],
                           b["final"]))
        else:
            self.check("idle palloc totals read", False,
                       json.dumps(self.idle))
        if len(self.idle) == 2 and all(x.get("RssAnon_trimmed")
                                       for x in self.idle):
            a, b = self.idle
            self.check("RssAnon of the idle worker after malloc_trim, after "
                       "the drain <= after the warm-up + 1 MB (all it has "
                       "allocated: palloc, libcurl, OpenSSL)",
                       b["RssAnon_trimmed"] <= a["RssAnon_trimmed"] + 1024,
                       "%d -> %d kB" % (a["RssAnon_trimmed"],
                                        b["RssAnon_trimmed"]))
        else:
            self.say("  (no malloc_trim figures: is gdb installed?)")
        tot = [x for x in self.memctx_totals() if t_a <= x[0] <= t_drained]
        if tot:
            self.say("  palloc totals sampled every 5 s during the drain: "
                     "%d, min %d, median %d, max %d bytes" % (
                         len(tot), min(x[2] for x in tot),
                         statistics.median(x[2] for x in tot),
                         max(x[2] for x in tot)))

        # 2. The first and the last tenth of the drain, same mix of work.
        warm_s = [x for x in s if x["age"] >= warm and x["t"] <= t_drained]
        first = [x for x in warm_s if t_a <= x["t"] <= t_a + span / 10]
        last = [x for x in warm_s if t_drained - span / 10 <= x["t"]]
        if len(first) < 3:
            # A short run: its first tenth saw no worker older than warm.
            first = warm_s[:max(3, len(warm_s) // 10)]
            self.say("  (fewer than 3 warm samples in the first 10%%: the "
                     "first %d warm samples stand for it)" % len(first))
        for name, xs in (("first 10%", first), ("last 10%", last)):
            for ph in ("sending", "checks only"):
                ys = [x for x in xs if phase(x) == ph]
                if ys:
                    self.say("  %-9s %-11s %3d samples  RssAnon median %6d "
                             "max %6d  Pss_Anon max %6s  VmRSS max %6d  "
                             "RssShmem max %6d  fds max %3d (sockets %d, "
                             "relation files %d, other %d)" % (
                                 name, ph, len(ys), med(ys, "RssAnon"),
                                 mx(ys, "RssAnon"), mx(ys, "Pss_Anon"),
                                 mx(ys, "VmRSS"), mx(ys, "RssShmem"),
                                 mx(ys, "fds"), mx(ys, "sockets"),
                                 mx(ys, "datafiles"), mx(ys, "otherfds")))
        fs = [x for x in first if phase(x) == "sending"]
        ls = [x for x in last if phase(x) == "sending"]
        if len(fs) >= 3 and len(ls) >= 3:
            self.check("worker heap (RssAnon) while sending, last 10% of the "
                       "drain <= first 10% + 10% + 1 MB (medians)",
                       med(ls, "RssAnon") <= med(fs, "RssAnon") * 1.1 + 1024,
                       "%.0f -> %.0f kB" % (med(fs, "RssAnon"),
                                            med(ls, "RssAnon")))
        else:
            self.say("  (fewer than 3 samples while sending in the first or "
                     "the last tenth: not compared)")
        self.say("  (RssAnon follows the work in flight, a check's answer "
                 "being some 50 times a POST's, and keeps what glibc keeps "
                 "of freed memory: so only samples of the same mix are "
                 "compared, and the idle moments above are the exact test)")
        self.check("descriptors other than sockets and relation files: last "
                   "10% <= first 10% + 4 (medians)",
                   first and last and
                   med(last, "otherfds") <= med(first, "otherfds") + 4,
                   "median %s -> %s, max %s -> %s" % (
                       med(first, "otherfds"), med(last, "otherfds"),
                       mx(first, "otherfds"), mx(last, "otherfds")))
        self.check("open sockets never above max_in_flight + 8 (libcurl's "
                   "connections are capped at max_in_flight)",
                   mx(s, "sockets") <= self.a.in_flight + 8,
                   "max %d sockets; relation files max %d; %d descriptors "
                   "in all at most" % (mx(s, "sockets"), mx(s, "datafiles"),
                                       mx(s, "fds")))

        # 3. Incarnations of the worker, at the same age.
        inc = collections.OrderedDict()
        for x in s:
            inc.setdefault(x["pid"], []).append(x)
        lives = [xs for pid, xs in inc.items() if xs[-1]["age"] >= 10 and
                 (not self.idle or pid != self.idle[0]["pid"])]
        age = min([xs[-1]["age"] for xs in lives] + [30])
        self.say("  incarnations (pid: samples, age span s, RssAnon at age "
                 "~%.0f s, RssAnon max, fds max, requests final during it):"
                 % age)
        at_age = []
        # The warm-up's worker idled and was malloc_trim'med early in its
        # life: it is shown, not compared.
        warm_pid = self.idle[0]["pid"] if self.idle else None
        for pid, xs in inc.items():
            near = min(xs, key=lambda x: abs(x["age"] - age))
            close = abs(near["age"] - age) <= 3
            if close and pid != warm_pid:
                at_age.append((pid, near["RssAnon"], phase(near)))
            self.say("    %6d: %4d, %6.1f-%6.1f, %6s, %6d, %3d, %d" % (
                pid, len(xs), xs[0]["age"], xs[-1]["age"],
                near["RssAnon"] if close else "-", mx(xs, "RssAnon"),
                mx(xs, "fds"), xs[-1]["final"] - xs[0]["final"]))
        if len(at_age) >= 2:
            f, l = at_age[0], at_age[-1]
            self.check("worker heap at the same age after start: last "
                       "incarnation <= first under load + 10%% + 1 MB (age "
                       "%.0f s)" % age,
                       l[1] <= f[1] * 1.10 + 1024,
                       "%d kB (%s) -> %d kB (%s)" % (f[1], f[2], l[1], l[2]))

        # 4. Within the longest incarnation: reported, phase by phase.
        longest = max(inc.values(), key=lambda xs: xs[-1]["final"] -
                      xs[0]["final"])
        for ph in ("sending", "checks only"):
            xs = [x for x in longest if x["age"] >= warm and
                  x["t"] <= t_drained and phase(x) == ph]
            if len(xs) < 4:
                continue
            k = max(len(xs) // 10, 2)
            self.say("  longest incarnation (pid %d), %s: %d samples, RssAnon "
                     "median of the first tenth %.0f, of the last %.0f, max "
                     "%d kB, over %d requests final" % (
                         xs[0]["pid"], ph, len(xs), med(xs[:k], "RssAnon"),
                         med(xs[-k:], "RssAnon"), mx(xs, "RssAnon"),
                         xs[-1]["final"] - xs[0]["final"]))
        if self.mock_samples:
            self.say("  mock: VmRSS %d -> %d kB, fds max %d" % (
                self.mock_samples[0]["rss"], self.mock_samples[-1]["rss"],
                max(x["fds"] for x in self.mock_samples)))

    # -- the end -----------------------------------------------------------
    def finish(self):
        passed = sum(1 for c in self.checks if c[1])
        failed = len(self.checks) - passed
        self.say()
        self.say("%d passed, %d failed" % (passed, failed))
        out = self.a.out
        os.makedirs(out, exist_ok=True)
        try:
            with open(os.path.join(out, "build.txt")) as f:
                build = f.read()
        except OSError:
            build = ""
        with open(os.path.join(out, "summary.txt"), "w") as f:
            f.write(build + "\n".join(self.lines) + "\n")
        with open(os.path.join(out, "events.json"), "w") as f:
            json.dump(dict(events=self.events, progress=self.progress_log,
                           mock=self.mock_samples, faults=FAULTS,
                           chaos=CHAOS, idle=getattr(self, "idle", []),
                           palloc=self.memctx_totals()), f, indent=1)
        cols = ["t", "pid", "age", "final", "VmRSS", "VmHWM", "RssAnon",
                "RssFile", "RssShmem", "Pss", "Pss_Anon", "Private_Dirty",
                "fds", "sockets", "datafiles", "otherfds", "queued",
                "checking"]
        with open(os.path.join(out, "samples.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.samples)
        return 0 if failed == 0 else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--mock-port", type=int, required=True)
    p.add_argument("--mock-pid", type=int, required=True)
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--server-log", required=True)
    p.add_argument("--out", required=True)
    soak = Soak(p.parse_args())
    try:
        return soak.run()
    except Exception as e:          # report what we have, then fail
        import traceback
        traceback.print_exc()
        soak.check("the soak ran to its end", False, repr(e))
        return soak.finish() or 1


if __name__ == "__main__":
    sys.exit(main())
