#!/usr/bin/env python3
"""mock_xplenty.py - a local stand-in for the Xplenty API v2, for the tests.

The real API (https://api.xplenty.com/{account}/api/) cannot be reached from
the test machines, so every test talks to this server instead.  It imitates
the calls the extension uses (see /work/shared/API.md), validates requests
the way the real service would, and lets a test inject failures through a
separate control API.  Python 3.11 standard library only.

Usage:
    mock_xplenty.py [--port P] [--host 127.0.0.1] [--account acme]
                    [--api-key KEY] [--port-file FILE] [--first-job-id 1000]
                    [--rate-limit 5000] [--rate-window SECONDS]
                    [--log-file FILE] [--seed N]

--port 0 (the default) picks a free port.  Once the socket listens, the
port is written to --port-file (temp file + rename, so a reader never sees
half a number) and "mock listening on HOST:PORT" is printed on stdout.
The API key defaults to test-api-key.  SIGTERM and SIGINT stop
the server cleanly; the port file is then removed if it is still ours.
Nothing is logged per request unless --log-file is given (one line per
answer: epoch time, client, method, path, status or fault action).
--seed seeds the random draws of fault rules with a "probability" (by
default they are seeded from the system); the threads serving connections
still interleave as they will, so a seed makes a run alike, not identical.

HTTP: HTTP/1.1 keep-alive, every answer written in one piece with a
Content-Length (TCP_NODELAY, so no Nagle stalls); "Connection: close" and
HTTP/1.0 without keep-alive are honoured; Expect: 100-continue and chunked
request bodies work; HEAD is answered like GET without the body.  Header
parsing is done here rather than by http.server (three times faster).

API (under /{account}/api; checks applied in this order)
  1. Accept must be application/vnd.xplenty+json with version=2 (any
     spacing around ';' and '='); else 406.
  2. HTTP Basic auth, user = the API key, password empty; else 401 with
     WWW-Authenticate: Basic realm="Xplenty".
  3. The credit: every authenticated call except GET /rate_limit_status
     spends one and carries X-RateLimit-Limit / X-RateLimit-Remaining.
     With none left: 429 {"message": "Rate Limit Exceeded"}.  Calls refused
     by 1 and 2 cost nothing (they cannot be charged to a user).
  4. Unknown account or route (or method): 404 {"message": "Item not found."}.
  5. POST/PUT/DELETE with a non-empty body need Content-Type
     application/json (a charset parameter is fine); else 415.
  Errors are {"message": ...}; 422s add "errors": [...].

  POST /jobs            run a job: body {"cluster_id": int>0, "package_id":
                        int>0, "variables": {str: str}, "dynamic_variables":
                        {str: str}}; anything else (other keys, nulls, wrong
                        types, bad JSON) is a 422.  201 and the job, status
                        idle, ids sequential from --first-job-id.
  GET /jobs/:id         the job (include=log_summary adds "log_summary").
  DELETE /jobs/:id      terminate: 200 and the job as pending_stoppage; it
                        becomes stopping after stop_delay/2 and stopped after
                        stop_delay.  Already pending_stoppage or stopping: 200,
                        unchanged.  CHOICE: a job already in a terminal state
                        (completed, failed, stopped) gets 422 {"message":
                        "Job is not running", "errors": [...]}.
  GET /jobs             list; status (a status or all), sort (created or
                        updated), direction (asc or desc, default desc), since
                        (ISO time, updated_at >= since), package_id, offset
                        (default 0), limit (default 20, 1..100).  A bad value
                        is a 422.  Link header with rel="next" / rel="prev".
  GET /jobs/:id/variables   the job's variables, a flat object.
  GET /jobs/:id/log     {"body": log text, "url": ...}.
  GET /rate_limit_status    {"limit": n, "remaining": n}; costs nothing.

The job: the fields of API.md, times as 2026-12-03T10:00:00Z, "variables" =
variables merged with dynamic_variables (the latter win), url =
http://HOST:PORT/ACCOUNT/api/jobs/ID.  Its state is computed lazily from the
wall clock and the timeline it got when created (the package's if one is
configured, else the global one; later config changes do not touch existing
jobs).  Default: idle at 0 s, running at 0.2 s (started_at set, progress
grows linearly), completed at 1.0 s (progress 1.0, completed_at, one output,
runtime_in_seconds).  A timeline is [[status, seconds after creation], ...]
with offsets that do not decrease, e.g. [["idle", 0], ["queued", 0.1],
["running", 0.3], ["failed", 2.0]]; a failed job has failed_at and a
non-empty errors.  stop_delay defaults to 0.5 s.

Faults.  A rule is a JSON object:
  {"method": "POST", "path": "^/jobs$", "package_id": 434, "times": 1,
   "skip": 0, "create": false, "delay_ms": 0, "action": "respond",
   "status": 503, "body": ..., "headers": {"Retry-After": "2"},
   "hang_s": 60, "probability": 1.0, "comment": "free text"}
Every key is optional.  It is checked against every API request: method,
the regex "path" searched in the path after /{account}/api (query string
excluded), and package_id against a JSON body's package_id.  Rules are kept
in order and the first matching one with times left fires (times: default 1,
-1 = forever); "skip": n lets n matching requests through first.
"probability" (0..1, default 1) makes a matching rule fire only with that
chance: a draw that misses passes the request on to the next rules as if
this one did not match, and spends neither times nor skip (skip is counted
before the draw).  A list of rules with "times": -1 and small
probabilities is a server that fails at random in many ways at once; the
chance that a later rule fires is its probability times the chances that
every earlier matching rule missed.
Unless "create" is true the fault replaces all normal processing (nothing is
created, no credit spent).  With "create" the real handler runs first, so a
job IS created, and the fault then decides what reaches the client.
"delay_ms" sleeps before acting.  Actions:
  respond  (default) send status (default 500, or with "create" and no status
           the normal answer), "body" (a string is sent raw as text/plain,
           anything else JSON-encoded; default {"message": reason}) and
           "headers" (which may override Content-Type, e.g. to send the
           seed document's not-quite-JSON as application/json).
  close    close the connection without an answer.
  reset    close with SO_LINGER 0, so the client gets a TCP RST.
  partial  status line and headers promising a longer body than is sent
           (half of the normal answer with "create", else of "body"), then
           close.
  garbage  bytes that are not HTTP ("body" if a string), then close.
  hang     never answer; close when the client goes away, after "hang_s"
           (default 60) seconds, or at shutdown.
With "create", every action but respond is "the job was created but its
answer was lost": close, reset, partial, garbage and hang after the job
exists, and respond with a 5xx status (or a 201 whose "body" is not a job).

Down.  A server that refuses connections cannot be a listening one, so
POST /_mock/down {"seconds": s} answers, then closes the listening socket
and shuts down every open connection (a request being answered loses its
answer), so that for s seconds connecting gets ECONNREFUSED; then it
listens again on the same port, with its jobs, statistics, faults and
config as they were.  (Use a fixed --port outside the ephemeral range if
the down time is long, so that no outgoing connection takes the port
meanwhile; binding is retried for 30 s.)  "drop_connections": false keeps
the open connections, which go on being served.

Size.  The soak (test/soak/) keeps 100,000 jobs and more: GET /jobs looks
only at the package's jobs (with package_id) created at or after since
minus the longest a job has kept changing after its creation, found by
bisection, and a job that has reached the last event of its timeline in a
final status keeps its view and that view's JSON; the answers are the
same as a scan of every job would give (checked against the scan on
5,040 queries).  At the end of the soak, 100,000 jobs with their kept
views, the request log and the post outcomes, the mock's VmRSS was 551 MB.

Control API (no auth, JSON in and out; 400 on a bad request):
  GET  /_mock/ping      {"ok": true, "port": n}.
  POST /_mock/reset     forget faults, request log, statistics (and post
                        outcomes), jobs, config;
                        refill credits.  Body (optional): {"keep_jobs": true}
                        keeps the jobs (and the id sequence); {"first_job_id":
                        n} restarts ids at n (default --first-job-id).
  POST /_mock/faults    append a rule or a list of rules; answers the list.
  GET  /_mock/faults    rules with the times left and hits so far.
  DELETE /_mock/faults  remove all rules.
  GET  /_mock/requests  the API request log (the last 50,000 requests),
                        optional ?since=SEQ (entries with seq > SEQ):
                        seq, time (epoch seconds), method, path, query,
                        headers (lower-case names, Authorization included),
                        body (text), json (parsed or null), status (null if no
                        answer was sent), fault ({"index", "action",
                        "status"} or null), job_id (job created or null).
  GET  /_mock/stats     requests, run_job_posts, jobs_created, by_package
                        (jobs created per package), posts_by_package,
                        posts_by_variables (POST /jobs per canonical JSON of
                        the merged variables: sort_keys, separators ",", ":",
                        ensure_ascii false), faults_applied, downs (times
                        /_mock/down was done), credits_remaining.
                        ?brief=1 leaves out posts_by_variables (large after
                        100,000 requests).
  GET  /_mock/post_outcomes   for every POST /jobs, by the same key as
                        posts_by_variables, in arrival order, what became of
                        it: "created:" or "none:" (whether a job was
                        created) then the status written to the client, or
                        the fault action that sent none (close, reset,
                        partial, garbage, hang), or "lost" (the answer could
                        not be written: the client left, or a down dropped
                        the connection).  E.g. ["none:503", "created:close"].
                        Kept for every POST since the last reset.
  POST /_mock/down      {"seconds": s, "drop_connections": true}: refuse
                        connections for s seconds (see Down above);
                        answers {"ok": true, "seconds": s} before it goes.
  GET/POST /_mock/config  {"timeline": [["idle", 0], ["running", 0.2], ...],
                        "package_timelines": {"434": [...] or null to drop},
                        "rate_limit": n (also refills unless credits_remaining
                        is given), "credits_remaining": n, "rate_window": s,
                        "stop_delay": s}; answers the whole config.
  GET  /_mock/jobs      every job with its current computed state;
                        ?compact=1: only id, package_id, cluster_id,
                        variables and created (epoch seconds), which is much
                        cheaper for 100,000 jobs.
  GET  /_mock/jobs/:id  one job.
  POST /_mock/jobs/:id  force fields: "status" takes effect now (the rest of
                        the timeline is dropped), "timeline" replaces the rest
                        of it with offsets from now, "errors" is the text
                        shown while the job is failed; other fields override
                        what is shown (e.g. "progress", "outputs").
"""

import argparse
import base64
import bisect
import collections
import functools
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

STATUSES = ("idle", "pending", "queued", "running", "completed", "failed",
            "pending_stoppage", "stopping", "stopped")
TERMINAL = ("completed", "failed", "stopped")
DEFAULT_TIMELINE = [["idle", 0], ["running", 0.2], ["completed", 1.0]]
DEFAULT_STOP_DELAY = 0.5
ACTIONS = ("respond", "close", "reset", "partial", "garbage", "hang")
RULE_KEYS = {"method", "path", "package_id", "times", "skip", "create",
             "delay_ms", "status", "body", "headers", "action", "hang_s",
             "probability", "comment"}
RUN_JOB_KEYS = {"cluster_id", "package_id", "variables", "dynamic_variables"}
MAX_BODY = 8 << 20          # larger request bodies get a 413
MAX_LOG = 50000             # request log entries kept
API_PATH = re.compile(r"^/([^/]+)/api(/.*)?$")
JOB_PATH = re.compile(r"^/jobs/(\d+)(/variables|/log)?$")
STOP = threading.Event()    # set at shutdown: ends hangs and delays


def iso(t):
    """Format epoch seconds the way the API does: 2026-12-03T10:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_iso(text):
    """Parse an ISO-8601 time (Z, offset or naive UTC) to epoch seconds."""
    text = text.strip().replace(" ", "+")   # an unescaped '+' in a query
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    d = datetime.fromisoformat(text)
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_timeline(tl):
    """Validate [[status, seconds], ...]; return it as a list of tuples."""
    if not isinstance(tl, list) or not tl:
        raise ValueError("timeline must be a non-empty list of "
                         "[status, seconds]")
    out, last = [], 0.0
    for e in tl:
        if not (isinstance(e, list) and len(e) == 2 and e[0] in STATUSES
                and is_num(e[1]) and e[1] >= 0):
            raise ValueError("bad timeline entry %r" % (e,))
        if e[1] < last:
            raise ValueError("timeline offsets must not decrease")
        last = float(e[1])
        out.append((e[0], last))
    return out


class ApiError(Exception):
    """An error answer: status, message, optional errors list and headers."""

    def __init__(self, status, message, errors=None, headers=None):
        super().__init__(message)
        self.status, self.message = status, message
        self.errors, self.headers = errors, headers or {}

    def payload(self):
        p = {"message": self.message}
        if self.errors is not None:
            p["errors"] = self.errors
        return p


def not_found():
    return ApiError(404, "Item not found.")


class Job:
    """A job: its events, (status, epoch time), drive everything shown.

    The events come from the timeline at creation; terminating or forcing a
    status drops the events still in the future and appends new ones.  The
    view is recomputed for the current time on every read, so no thread is
    needed to move jobs along.
    """

    def __init__(self, jid, cluster_id, package_id, variables, created,
                 timeline, url):
        self.id, self.cluster_id, self.package_id = jid, cluster_id, package_id
        self.variables, self.created, self.url = variables, created, url
        self.events = [(s, created + off) for s, off in timeline]
        if self.events[0][1] > created:
            self.events.insert(0, ("idle", created))
        self.planned_end = self._planned_end()
        self.overrides = {}
        self.fail_text = None           # forced "errors", shown when failed
        # The view of a job that has reached the last of its events in a
        # final status no longer changes: it is kept, with its JSON, so
        # that listing 100,000 finished jobs costs little.  force() and
        # terminate() drop it.
        self._final = None              # [view, json text or None]

    def _planned_end(self):
        """When progress would reach 1.0: at the completion if one is
        planned, else as if the last event came half-way through."""
        ends = [t for s, t in self.events if s == "completed"]
        if ends:
            return ends[0]
        runs = [t for s, t in self.events if s == "running"]
        last = self.events[-1][1]
        return last + (last - runs[0]) if runs else last

    def _replace_future(self, now, new_events):
        self._final = None
        self.events = [e for e in self.events if e[1] <= now] or \
            self.events[:1]
        self.events.extend(new_events)

    def status(self, now):
        return self.reached(now)[-1][0]

    def reached(self, now):
        return [e for e in self.events if e[1] <= now] or self.events[:1]

    def terminate(self, now, stop_delay):
        """DELETE /jobs/:id; see the module docstring for the choices."""
        st = self.status(now)
        if st in TERMINAL:
            raise ApiError(422, "Job is not running",
                           ["job %d is already %s" % (self.id, st)])
        if st in ("pending_stoppage", "stopping"):
            return
        # The epsilons keep the answer itself pending_stoppage even with a
        # stop_delay of 0.
        self._replace_future(now, [
            ("pending_stoppage", now),
            ("stopping", now + max(stop_delay / 2, 0.001)),
            ("stopped", now + max(stop_delay, 0.002))])

    def force(self, fields, now):
        """POST /_mock/jobs/:id: apply forced status, timeline and fields."""
        fields = dict(fields)
        if "timeline" in fields:
            tl = check_timeline(fields.pop("timeline"))
            self._replace_future(now, [(s, now + off) for s, off in tl])
            self.planned_end = self._planned_end()
        if "status" in fields:
            st = fields.pop("status")
            if st not in STATUSES:
                raise ValueError("unknown status %r" % (st,))
            self._replace_future(now, [(st, now)])
        if "errors" in fields:
            self.fail_text = str(fields.pop("errors"))
        self.overrides.update(fields)
        self._final = None

    def view(self, now, log_summary=False):
        """The job as the API shows it at time now."""
        if self._final is not None and not log_summary:
            return dict(self._final[0])
        reached = self.reached(now)
        st, since = reached[-1]
        run = next((i for i, e in enumerate(reached) if e[0] == "running"),
                   None)
        started = reached[run][1] if run is not None else None
        end = since if st in TERMINAL else now
        if st == "completed":
            progress = 1.0
        elif started is None:
            progress = 0.0
        else:
            # Progress grows while running and freezes when the job moves
            # on (terminated, failed...); only completion makes it 1.0.
            left = reached[run + 1][1] if run + 1 < len(reached) else now
            span = max(self.planned_end - started, 0.001)
            progress = round(min(0.99, (left - started) / span), 2)
        outputs = []
        if st == "completed":
            oid = self.id * 10 + 1
            outputs.append({
                "id": oid, "name": "output1", "records_count": 100,
                "component_name": "destination1", "created_at": iso(since),
                "updated_at": iso(since),
                "url": "%s/outputs/%d" % (self.url, oid)})
        errors = ""
        if st == "failed":
            errors = self.fail_text or (
                "Job %d of package %d failed: simulated failure (mock)"
                % (self.id, self.package_id))
        v = {
            "id": self.id,
            "status": st,
            "variables": dict(self.variables),
            "owner_id": 1,
            "progress": progress,
            "outputs_count": len(outputs),
            "outputs": outputs,
            "started_at": iso(started) if started is not None else None,
            "created_at": iso(self.created),
            "failed_at": iso(since) if st == "failed" else None,
            "updated_at": iso(since),
            "completed_at": iso(since) if st == "completed" else None,
            "cluster_id": self.cluster_id,
            "package_id": self.package_id,
            "errors": errors,
            "runtime_in_seconds":
                int(round(end - started)) if started is not None else 0,
            "url": self.url,
        }
        v.update(self.overrides)
        if log_summary:
            v["log_summary"] = "\n".join(self.log_lines(now)[-3:])
        elif st in TERMINAL and len(reached) == len(self.events):
            self._final = [dict(v), None]
        return v

    def view_json(self, now):
        """json.dumps(self.view(now)), kept once the view is final."""
        if self._final is None:
            v = self.view(now)
            if self._final is None:
                return json.dumps(v)
        if self._final[1] is None:
            self._final[1] = json.dumps(self._final[0])
        return self._final[1]

    def updated(self, now):
        return self.reached(now)[-1][1]

    def log_lines(self, now):
        lines = ["%s job %d (package %d, cluster %d) created" % (
            iso(self.created), self.id, self.package_id, self.cluster_id)]
        for s, t in self.reached(now):
            lines.append("%s job %d is %s" % (iso(t), self.id, s))
        if self.status(now) == "failed":
            lines.append("%s ERROR %s" % (iso(self.updated(now)),
                                          self.view(now)["errors"]))
        return lines


class State:
    """Everything the threads share, behind one lock."""

    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.RLock()
        self.base = None                # http://HOST:PORT/ACCOUNT/api
        self.rng = random.Random(opts.seed)
        self.reset({})

    def reset(self, body):
        with self.lock:
            self.faults, self.seq = [], 0
            self.log = collections.deque(maxlen=MAX_LOG)
            if not body.get("keep_jobs"):
                self.jobs = {}
                # GET /jobs looks through these instead of every job: all
                # jobs and each package's, in creation order, with keys
                # that do not decrease (the creation times, kept monotonic
                # if the clock steps back) for bisecting on "since".
                self.job_list, self.job_keys = [], []
                self.pkg_index = {}
                self.max_span = 0.0     # longest last event - created
                self.next_id = int(body.get("first_job_id",
                                            self.opts.first_job_id))
            self.post_outcomes = {}
            self.downs = 0
            self.timeline = check_timeline(DEFAULT_TIMELINE)
            self.package_timelines = {}
            self.stop_delay = DEFAULT_STOP_DELAY
            self.rate_limit = self.opts.rate_limit
            self.rate_window = self.opts.rate_window
            self.credits = self.rate_limit
            self.window_start = time.time()
            self.stats = {"requests": 0, "run_job_posts": 0,
                          "jobs_created": 0, "by_package": {},
                          "posts_by_package": {}, "posts_by_variables": {},
                          "faults_applied": 0}

    # -- rate limit --------------------------------------------------------
    def _refill_if_due(self):
        if self.rate_window > 0 and \
                time.time() - self.window_start >= self.rate_window:
            self.credits, self.window_start = self.rate_limit, time.time()

    def credit_status(self):
        with self.lock:
            self._refill_if_due()
            return self.rate_limit, self.credits

    def spend(self):
        """Spend a credit; (spent?, limit, remaining)."""
        with self.lock:
            self._refill_if_due()
            if self.credits <= 0:
                return False, self.rate_limit, 0
            self.credits -= 1
            return True, self.rate_limit, self.credits

    # -- request log and statistics ----------------------------------------
    def record(self, method, path, query, headers, body, parsed, run_job):
        """Log an API request and count it; return its log entry."""
        text = body.decode("utf-8", "replace")
        with self.lock:
            self.seq += 1
            rec = {"seq": self.seq, "time": round(time.time(), 6),
                   "method": method, "path": path, "query": query,
                   "headers": headers, "body": text, "json": parsed,
                   "status": None, "fault": None, "job_id": None}
            self.log.append(rec)        # a deque: the oldest fall off
            self.stats["requests"] += 1
            if run_job:
                self.stats["run_job_posts"] += 1
                if isinstance(parsed, dict):
                    bump(self.stats["posts_by_package"],
                         str(parsed.get("package_id")))
                    bump(self.stats["posts_by_variables"],
                         canonical(merged_variables(parsed)))
        return rec

    def update(self, rec, **fields):
        with self.lock:
            rec.update(fields)

    def note_post(self, rec):
        """Record what became of a POST /jobs; see /_mock/post_outcomes."""
        parsed = rec["json"]
        if not isinstance(parsed, dict):
            return
        key = canonical(merged_variables(parsed))
        with self.lock:
            if rec["status"] is not None:
                sent = str(rec["status"])
            elif rec["fault"] and rec["fault"]["action"] != "respond":
                sent = rec["fault"]["action"]
            else:
                sent = "lost"
            label = ("created:" if rec["job_id"] is not None else "none:") \
                + sent
            self.post_outcomes.setdefault(key, []).append(
                sys.intern(label))

    # -- faults ------------------------------------------------------------
    def add_faults(self, rules):
        rules = [make_rule(r) for r in
                 (rules if isinstance(rules, list) else [rules])]
        with self.lock:
            self.faults.extend(rules)
            return self.list_faults()

    def list_faults(self):
        with self.lock:
            return [dict(r["spec"], times=r["times"], skip=r["skip"],
                         hits=r["hits"], index=i)
                    for i, r in enumerate(self.faults)]

    def match_fault(self, method, rest, parsed):
        """Find, count down and return (index, rule) of the rule to apply."""
        with self.lock:
            for i, r in enumerate(self.faults):
                if r["times"] == 0:
                    continue
                if r["method"] and r["method"] != method:
                    continue
                if not r["re"].search(rest):
                    continue
                if r["package_id"] is not None and not (
                        isinstance(parsed, dict)
                        and parsed.get("package_id") == r["package_id"]):
                    continue
                if r["skip"] > 0:
                    r["skip"] -= 1
                    continue
                if r["probability"] < 1.0 and \
                        self.rng.random() >= r["probability"]:
                    continue
                if r["times"] > 0:
                    r["times"] -= 1
                r["hits"] += 1
                self.stats["faults_applied"] += 1
                return i, r
        return None

    # -- config and jobs ---------------------------------------------------
    def get_config(self):
        with self.lock:
            return {"timeline": [list(e) for e in self.timeline],
                    "package_timelines": {
                        k: [list(e) for e in v]
                        for k, v in self.package_timelines.items()},
                    "rate_limit": self.rate_limit,
                    "credits_remaining": self.credits,
                    "rate_window": self.rate_window,
                    "stop_delay": self.stop_delay}

    def set_config(self, body):
        unknown = set(body) - {"timeline", "package_timelines", "rate_limit",
                               "credits_remaining", "rate_window",
                               "stop_delay"}
        if unknown:
            raise ValueError("unknown config keys: %s" % sorted(unknown))
        # Check everything before changing anything.
        timeline = check_timeline(body["timeline"]) \
            if "timeline" in body else None
        pkgs = body.get("package_timelines") or {}
        if not isinstance(pkgs, dict):
            raise ValueError("package_timelines must be an object")
        pkgs = {str(k): None if v is None else check_timeline(v)
                for k, v in pkgs.items()}
        for key in ("rate_limit", "credits_remaining"):
            if key in body and not (is_int(body[key]) and body[key] >= 0):
                raise ValueError("%s must be an integer >= 0" % key)
        for key in ("rate_window", "stop_delay"):
            if key in body and not (is_num(body[key]) and body[key] >= 0):
                raise ValueError("%s must be a number >= 0" % key)
        with self.lock:
            if timeline:
                self.timeline = timeline
            for pkg, tl in pkgs.items():
                if tl is None:
                    self.package_timelines.pop(pkg, None)
                else:
                    self.package_timelines[pkg] = tl
            if "rate_limit" in body:
                self.rate_limit = self.credits = body["rate_limit"]
            if "credits_remaining" in body:
                self.credits = body["credits_remaining"]
            for key in ("rate_window", "stop_delay"):
                if key in body:
                    setattr(self, key, float(body[key]))
            self.window_start = time.time()
            return self.get_config()

    def create_job(self, cluster_id, package_id, variables):
        now = time.time()
        with self.lock:
            jid = self.next_id
            self.next_id += 1
            tl = self.package_timelines.get(str(package_id), self.timeline)
            job = Job(jid, cluster_id, package_id, variables, now, tl,
                      "%s/jobs/%d" % (self.base, jid))
            self.jobs[jid] = job
            key = max(now, self.job_keys[-1]) if self.job_keys else now
            self.job_list.append(job)
            self.job_keys.append(key)
            keys, jobs = self.pkg_index.setdefault(package_id, ([], []))
            keys.append(max(now, keys[-1]) if keys else now)
            jobs.append(job)
            self.note_span(job)
            self.stats["jobs_created"] += 1
            bump(self.stats["by_package"], str(package_id))
            return job.view(now)

    def note_span(self, job):
        """Keep max_span covering how long after its creation any job's
        updated_at can be: a job created before since - max_span cannot
        have been updated at or after since."""
        with self.lock:
            self.max_span = max(self.max_span,
                                job.events[-1][1] - job.created)

    def job(self, jid):
        job = self.jobs.get(jid)
        if job is None:
            raise not_found()
        return job


def make_rule(spec):
    """Check a fault rule from the control API; return its working form."""
    if not isinstance(spec, dict):
        raise ValueError("a fault rule must be a JSON object")
    unknown = set(spec) - RULE_KEYS
    if unknown:
        raise ValueError("unknown fault keys: %s" % sorted(unknown))
    action = spec.get("action", "respond")
    if action not in ACTIONS:
        raise ValueError("action must be one of %s" % (ACTIONS,))
    for key in ("times", "skip", "package_id", "status"):
        if spec.get(key) is not None and not is_int(spec[key]):
            raise ValueError("%s must be an integer" % key)
    for key in ("delay_ms", "hang_s"):
        if spec.get(key) is not None and not is_num(spec[key]):
            raise ValueError("%s must be a number" % key)
    probability = spec.get("probability", 1)
    if probability is None:
        probability = 1
    if not is_num(probability) or not 0 <= probability <= 1:
        raise ValueError("probability must be a number from 0 to 1")
    for key in ("method", "path"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError("%s must be a string" % key)
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("headers must be an object")
    return {"spec": dict(spec),
            "method": (spec.get("method") or "").upper() or None,
            "re": re.compile(spec.get("path") or ""),
            "package_id": spec.get("package_id"),
            "times": spec.get("times", 1), "skip": spec.get("skip", 0),
            "hits": 0, "create": bool(spec.get("create")),
            "delay": (spec.get("delay_ms") or 0) / 1000.0,
            "status": spec.get("status"), "has_body": "body" in spec,
            "body": spec.get("body"), "action": action,
            "headers": {str(k): str(v) for k, v in headers.items()},
            "hang_s": spec.get("hang_s") or 60,
            "probability": float(probability)}


def reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def bump(counter, key):
    counter[key] = counter.get(key, 0) + 1


def merged_variables(body):
    out = {}
    for key in ("variables", "dynamic_variables"):
        if isinstance(body.get(key), dict):
            out.update(body[key])
    return out


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def reject_constant(name):
    raise ValueError("%s is not JSON" % name)


@functools.lru_cache(maxsize=64)
def accept_ok(value):
    """Accept: application/vnd.xplenty+json; version=2, any spacing."""
    for item in (value or "").split(","):
        parts = [p.strip() for p in item.split(";")]
        if parts[0].lower() != "application/vnd.xplenty+json":
            continue
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        if params.get("version") == "2":
            return True
    return False


@functools.lru_cache(maxsize=64)
def auth_ok(value, key):
    """Basic auth with the API key as user and an empty password."""
    scheme, _, cred = (value or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        raw = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
    except ValueError:
        return False
    user, _, password = raw.partition(":")
    return user == key and password == ""


def int_param(params, name, default, lo, hi=None):
    raw = params.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        v = None
    if v is None or v < lo or (hi is not None and v > hi):
        rng = "%d..%d" % (lo, hi) if hi is not None else ">= %d" % lo
        raise ApiError(422, "Validation failed",
                       ["%s must be an integer %s" % (name, rng)])
    return v


class Headers(dict):
    """Request headers by lower-case name; repeated ones joined by ", "."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class Handler(BaseHTTPRequestHandler):
    """One connection; each request is answered by dispatch()."""

    protocol_version = "HTTP/1.1"
    server_version = "MockXplenty/1.0"
    sys_version = ""
    timeout = 600                       # idle keep-alive connections

    def setup(self):
        super().setup()
        # Headers and body go out in one write, and Nagle must not hold the
        # next answer back behind the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def parse_request(self):
        """Parse the request line and headers.

        This replaces BaseHTTPRequestHandler's version, whose header parsing
        goes through the email package and costs about a third of the time
        of a whole request; the keep-alive and Expect rules are the same.
        """
        self.command, self.request_version = None, "HTTP/1.0"
        self.close_connection = True
        self.requestline = str(self.raw_requestline,
                               "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, None, "bad request line %r" % words[:3])
            return False
        self.command, self.path, self.request_version = words
        headers = Headers()
        for _ in range(101):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, None, "header line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            line = line.decode("iso-8859-1")
            name, sep, value = line.partition(":")
            if not sep or line[0] in " \t":    # no obsolete line folding
                self.send_error(400, None, "bad header line %r" % line[:80])
                return False
            name, value = name.strip().lower(), value.strip()
            old = dict.get(headers, name)
            headers[name] = value if old is None else old + ", " + value
        else:
            self.send_error(431, None, "too many headers")
            return False
        self.headers = headers
        conn = headers.get("connection", "").lower()
        self.close_connection = "close" in conn or (
            self.request_version == "HTTP/1.0" and "keep-alive" not in conn)
        if headers.get("expect", "").lower() == "100-continue" and \
                self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, fmt, *args):
        self.server.log_line("%s %s" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    @property
    def state(self):
        return self.server.state

    # -- reading and writing ---------------------------------------------
    def read_body(self):
        """The request body (Content-Length or chunked); None if broken."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n",
                                                             b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY:
            return None
        data = self.rfile.read(n) if n else b""
        return data if len(data) == n else None

    def send(self, status, payload, headers=None, rec=None):
        """Write a whole answer in one go; log its status in rec."""
        ctype = "application/json; charset=utf-8"
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body, ctype = payload.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            body = json.dumps(payload).encode("utf-8")
        hdrs = {"date": ("Date", self.server.date()),
                "server": ("Server", self.server_version),
                "content-type": ("Content-Type", ctype),
                "content-length": ("Content-Length", str(len(body)))}
        for k, v in (headers or {}).items():
            hdrs[k.lower()] = (k, v)
        if hdrs.get("connection", ("", ""))[1].lower() == "close":
            self.close_connection = True
        if self.close_connection:
            hdrs["connection"] = ("Connection", "close")
        if status in (204, 304):
            body = b""
            hdrs.pop("content-length", None)
        head = "HTTP/1.1 %d %s\r\n%s\r\n\r\n" % (
            status, reason(status),
            "\r\n".join("%s: %s" % kv for kv in hdrs.values()))
        self.wfile.write(head.encode("latin-1") +
                         (b"" if self.command == "HEAD" else body))
        if rec is not None:
            self.state.update(rec, status=status)
        self.server.log_line("%s %s %s -> %d" % (
            self.address_string(), self.command, self.path, status))

    # -- dispatching -----------------------------------------------------
    def dispatch(self):
        try:
            url = urlsplit(self.path)
            body = self.read_body()
            if body is None:
                self.close_connection = True
                self.send(400, {"message": "Bad request body"})
            elif url.path == "/_mock" or url.path.startswith("/_mock/"):
                self.control(url.path, url.query, body)
            else:
                self.api(url.path, url.query, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:                          # a bug in the mock
            traceback.print_exc()
            self.close_connection = True
            try:
                self.send(500, {"message": "mock internal error"})
            except OSError:
                pass

    def api(self, path, query, body):
        m = API_PATH.match(path)
        rest = (m.group(2) or "/") if m else None
        if rest and len(rest) > 1:
            rest = rest.rstrip("/")
        # The body is parsed once, strictly (no NaN), for the log, the
        # fault rules and POST /jobs; None when it is empty or not JSON.
        try:
            parsed = json.loads(body.decode("utf-8"),
                                parse_constant=reject_constant)
        except ValueError:
            parsed = None
        run_job = self.command == "POST" and rest == "/jobs"
        rec = self.state.record(self.command, path, query,
                                dict(self.headers), body, parsed, run_job)
        try:
            fault = None
            if rest is not None:
                fault = self.state.match_fault(self.command, rest,
                                               rec["json"])
            if fault and not fault[1]["create"]:
                return self.apply_fault(fault, rec, None)
            answer = self.handle_api(m, rest, query, body, rec)
            if fault:
                return self.apply_fault(fault, rec, answer)
            self.send(*answer, rec=rec)
        finally:
            if run_job:
                self.state.note_post(rec)

    def handle_api(self, m, rest, query, body, rec):
        """The real API's behaviour: (status, payload, headers)."""
        hdrs = {}
        try:
            if not accept_ok(self.headers.get("Accept")):
                raise ApiError(406, "Not Acceptable: send Accept: "
                               "application/vnd.xplenty+json; version=2")
            if not auth_ok(self.headers.get("Authorization"),
                           self.server.opts.api_key):
                raise ApiError(401, "Unauthorized: bad or missing API key",
                               headers={"WWW-Authenticate":
                                        'Basic realm="Xplenty"'})
            if rest == "/rate_limit_status" and self.command == "GET":
                limit, left = self.state.credit_status()
                hdrs.update({"X-RateLimit-Limit": str(limit),
                             "X-RateLimit-Remaining": str(left)})
                return 200, {"limit": limit, "remaining": left}, hdrs
            ok, limit, left = self.state.spend()
            hdrs.update({"X-RateLimit-Limit": str(limit),
                         "X-RateLimit-Remaining": str(left)})
            if not ok:
                raise ApiError(429, "Rate Limit Exceeded")
            if m is None or m.group(1) != self.server.opts.account:
                raise not_found()
            if self.command in ("POST", "PUT", "DELETE") and body:
                ctype = self.headers.get("Content-Type", "")
                if ctype.split(";")[0].strip().lower() != "application/json":
                    raise ApiError(415, "Unsupported Media Type: send "
                                   "Content-Type: application/json")
            status, payload, extra = self.route(rest, query, body, rec)
            hdrs.update(extra)
            return status, payload, hdrs
        except ApiError as e:
            hdrs.update(e.headers)
            return e.status, e.payload(), hdrs

    def route(self, rest, query, body, rec):
        """Answer a checked request: (status, payload, extra headers)."""
        cmd, now, st = self.command, time.time(), self.state
        cmd = "GET" if cmd == "HEAD" else cmd
        if rest == "/jobs" and cmd == "POST":
            return 201, self.run_job(body, rec), {}
        if rest == "/jobs" and cmd == "GET":
            return self.list_jobs(query)
        m = JOB_PATH.match(rest)
        if not m:
            raise not_found()
        jid, sub = int(m.group(1)), m.group(2)
        with st.lock:
            job = st.job(jid)
            if cmd == "GET" and sub is None:
                inc = dict(parse_qsl(query)).get("include", "")
                return 200, job.view(now, "log_summary" in inc.split(",")), {}
            if cmd == "DELETE" and sub is None:
                job.terminate(now, st.stop_delay)
                st.note_span(job)
                return 200, job.view(now), {}
            if cmd == "GET" and sub == "/variables":
                return 200, dict(job.variables), {}
            if cmd == "GET" and sub == "/log":
                return 200, {"body": "\n".join(job.log_lines(now)) + "\n",
                             "url": job.url + "/log"}, {}
        raise not_found()

    def run_job(self, body, rec):
        """POST /jobs: validate strictly, then create the job."""
        errors = []
        data = rec["json"]
        if not body.strip():
            data = {}
        elif data is None and body.strip() != b"null":
            errors.append("the request body is not valid JSON")
        elif not isinstance(data, dict):
            errors.append("the request body must be a JSON object")
        if isinstance(data, dict):
            for key in sorted(set(data) - RUN_JOB_KEYS):
                errors.append("unknown parameter: %s" % key)
            for key in ("cluster_id", "package_id"):
                if key not in data:
                    errors.append("%s is required" % key)
                elif not (is_int(data[key]) and data[key] > 0):
                    errors.append("%s must be a positive integer" % key)
            for key in ("variables", "dynamic_variables"):
                if key in data and not (
                        isinstance(data[key], dict) and
                        all(isinstance(v, str) for v in data[key].values())):
                    errors.append("%s must be an object whose values are "
                                  "strings" % key)
        if errors:
            raise ApiError(422, "Validation failed", errors)
        view = self.state.create_job(data["cluster_id"], data["package_id"],
                                     merged_variables(data))
        self.state.update(rec, job_id=view["id"])
        return view

    def list_jobs(self, query):
        """GET /jobs with filters, sorting, paging and a Link header."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        bad = []
        status = params.get("status", "all")
        if status != "all" and status not in STATUSES:
            bad.append("status must be all or one of %s" % ", ".join(STATUSES))
        sort = params.get("sort", "created")
        if sort not in ("created", "updated"):
            bad.append("sort must be created or updated")
        direction = params.get("direction", "desc")
        if direction not in ("asc", "desc"):
            bad.append("direction must be asc or desc")
        since = None
        if "since" in params:
            try:
                since = parse_iso(params["since"])
            except ValueError:
                bad.append("since must be an ISO-8601 time")
        if bad:
            raise ApiError(422, "Validation failed", bad)
        package_id = int_param(params, "package_id", None, 1)
        offset = int_param(params, "offset", 0, 0)
        limit = int_param(params, "limit", 20, 1, 100)
        now = time.time()
        st = self.state
        with st.lock:
            # Only jobs that can pass "since" are looked at: see note_span.
            if package_id is not None:
                keys, jobs = st.pkg_index.get(package_id, ((), ()))
            else:
                keys, jobs = st.job_keys, st.job_list
            start = 0
            if since is not None:
                start = bisect.bisect_left(keys, since - st.max_span - 1e-3)
            rows = []
            for job in itertools.islice(jobs, start, None):
                upd = job.updated(now)
                if status != "all" and job.status(now) != status:
                    continue
                if since is not None and upd < since:
                    continue
                if package_id is not None and job.package_id != package_id:
                    continue
                key = job.created if sort == "created" else upd
                rows.append(((key, job.id), job))
            rows.sort(key=lambda r: r[0], reverse=(direction == "desc"))
            # The same text json.dumps(list of views) would make.
            page = ("[" + ", ".join(job.view_json(now) for _, job in
                                    rows[offset:offset + limit]) +
                    "]").encode("utf-8")
        links, extra = [], {}
        if offset + limit < len(rows):
            links.append((offset + limit, "next"))
        if offset > 0:
            links.append((max(0, offset - limit), "prev"))
        if links:
            keep = [(k, v) for k, v in pairs if k not in ("offset", "limit")]
            extra["Link"] = ", ".join(
                '<%s/jobs?%s>; rel="%s"' % (
                    self.state.base,
                    urlencode(keep + [("offset", o), ("limit", limit)]), rel)
                for o, rel in links)
        return 200, page, extra

    # -- faults ----------------------------------------------------------
    def apply_fault(self, fault, rec, answer):
        index, rule = fault
        action = rule["action"]
        self.state.update(rec, fault={"index": index, "action": action,
                                      "status": rule["status"]})
        if rule["delay"]:
            STOP.wait(rule["delay"])
        if action == "respond":
            if answer is not None and rule["status"] is None:
                status, payload, hdrs = answer
            else:
                status = rule["status"] or 500
                payload = {"message": reason(status)}
                hdrs = {}
                if rule["has_body"]:
                    b = rule["body"]
                    payload = b.encode("utf-8") if isinstance(b, str) \
                        else json.dumps(b).encode("utf-8")
                    if isinstance(b, str):
                        hdrs["Content-Type"] = "text/plain; charset=utf-8"
            hdrs = dict(hdrs, **rule["headers"])
            return self.send(status, payload, hdrs, rec)
        self.close_connection = True
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            os.close(self.connection.detach())      # RST, no FIN first
        elif action == "partial":
            status = rule["status"] or (answer[0] if answer else 200)
            body = answer[1] if answer and not rule["has_body"] else \
                rule["body"] if rule["has_body"] else \
                {"message": "this answer is cut short"}
            body = body if isinstance(body, str) else json.dumps(body)
            body = body.encode("utf-8")
            sent = body[:len(body) // 2]
            head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\n\r\n" % (
                        status, reason(status),
                        max(len(body), len(sent) + 64)))
            self.wfile.write(head.encode("latin-1") + sent)
        elif action == "garbage":
            b = rule["body"] if isinstance(rule["body"], str) else \
                "\x00\x17\xfe garbage, not HTTP at all \xff\r\n\r\n"
            self.wfile.write(b.encode("latin-1", "replace"))
        elif action == "hang":
            self.hang(rule["hang_s"])
        self.server.log_line("%s %s %s -> fault %s" % (
            self.address_string(), self.command, self.path, action))

    def hang(self, limit):
        """Wait without answering until the client leaves or time is up."""
        deadline = time.time() + limit
        sock = self.connection
        while time.time() < deadline and not STOP.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return                  # the client closed
                except OSError:
                    return
                STOP.wait(0.2)      # it sent more; keep ignoring it

    # -- control API -----------------------------------------------------
    def control(self, path, query, body):
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return self.send(400, {"message": "body is not valid JSON"})
        st, cmd = self.state, self.command
        try:
            if path == "/_mock/ping":
                return self.send(200, {"ok": True,
                                       "port": self.server.server_port})
            if path == "/_mock/reset" and cmd == "POST":
                if not isinstance(data, dict):
                    raise ValueError("reset takes a JSON object")
                st.reset(data)
                return self.send(200, {"ok": True})
            if path == "/_mock/faults":
                if cmd == "POST":
                    return self.send(200, st.add_faults(data))
                if cmd == "DELETE":
                    with st.lock:
                        st.faults = []
                    return self.send(200, [])
                if cmd == "GET":
                    return self.send(200, st.list_faults())
            if path == "/_mock/requests" and cmd == "GET":
                since = int(dict(parse_qsl(query)).get("since", 0))
                with st.lock:
                    out = [dict(r) for r in st.log if r["seq"] > since]
                return self.send(200, out)
            if path == "/_mock/stats" and cmd == "GET":
                brief = dict(parse_qsl(query)).get("brief", "0") not in \
                    ("", "0", "false")
                with st.lock:
                    stats = st.stats
                    if brief:
                        stats = {k: v for k, v in stats.items()
                                 if k != "posts_by_variables"}
                    out = json.loads(json.dumps(stats))
                    st._refill_if_due()
                    out["credits_remaining"] = st.credits
                    out["downs"] = st.downs
                return self.send(200, out)
            if path == "/_mock/post_outcomes" and cmd == "GET":
                with st.lock:
                    out = json.dumps(st.post_outcomes,
                                     ensure_ascii=False).encode("utf-8")
                return self.send(200, out)
            if path == "/_mock/down" and cmd == "POST":
                if not isinstance(data, dict) or set(data) - {
                        "seconds", "drop_connections"}:
                    raise ValueError("down takes {\"seconds\": s, "
                                     "\"drop_connections\": bool}")
                secs = data.get("seconds")
                if not is_num(secs) or not 0 < secs <= 3600:
                    raise ValueError("seconds must be a number in (0, 3600]")
                self.send(200, {"ok": True, "seconds": secs})
                self.wfile.flush()
                # Only once the answer is out: the serve loop goes down.
                self.server.request_down(float(secs),
                                         data.get("drop_connections", True)
                                         is not False)
                return None
            if path == "/_mock/config":
                if cmd == "POST":
                    if not isinstance(data, dict):
                        raise ValueError("config takes a JSON object")
                    return self.send(200, st.set_config(data))
                if cmd == "GET":
                    return self.send(200, st.get_config())
            now = time.time()
            if path == "/_mock/jobs" and cmd == "GET":
                compact = dict(parse_qsl(query)).get("compact", "0") not in \
                    ("", "0", "false")
                with st.lock:
                    if compact:
                        out = json.dumps([
                            {"id": j.id, "package_id": j.package_id,
                             "cluster_id": j.cluster_id,
                             "variables": j.variables,
                             "created": round(j.created, 6)}
                            for _, j in sorted(st.jobs.items())],
                            ensure_ascii=False).encode("utf-8")
                    else:
                        out = [j.view(now) for _, j in sorted(st.jobs.items())]
                return self.send(200, out)
            m = re.match(r"^/_mock/jobs/(\d+)$", path)
            if m and cmd in ("GET", "POST"):
                with st.lock:
                    job = st.jobs.get(int(m.group(1)))
                    if job is None:
                        return self.send(404, {"message": "Item not found."})
                    if cmd == "POST":
                        if not isinstance(data, dict):
                            raise ValueError("force takes a JSON object")
                        job.force(data, now)
                        st.note_span(job)
                    return self.send(200, job.view(now))
        except (ValueError, TypeError, re.error) as e:
            return self.send(400, {"message": str(e)})
        self.send(404, {"message": "no such control call"})


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256        # many clients connecting at once

    def __init__(self, addr, opts):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)
        self.opts = opts
        self.state = State(opts)
        self._log = open(opts.log_file, "a", buffering=1) \
            if opts.log_file else None
        self._log_lock = threading.Lock()
        self._date = (0, "")
        self._conns = set()             # open client connections
        self._conns_lock = threading.Lock()
        self._down = None               # (seconds, drop) asked for

    def track(self, conn, is_open):
        with self._conns_lock:
            if is_open:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def request_down(self, seconds, drop):
        with self._conns_lock:
            self._down = (seconds, drop)

    def serve(self, poll_interval=0.2):
        """serve_forever, but able to stop listening for a while (see
        /_mock/down): the listening socket is replaced, so the loop selects
        on whichever one is current."""
        while True:
            with self._conns_lock:
                down, self._down = self._down, None
            if down:
                self.go_down(*down)
            ready, _, _ = select.select([self], [], [], poll_interval)
            if ready:
                self._handle_request_noblock()
            self.service_actions()

    def go_down(self, seconds, drop):
        """Refuse connections for seconds, then listen again on the same
        address; the state is untouched."""
        with self.state.lock:
            self.state.downs += 1
        self.log_line("down for %g s" % seconds)
        self.socket.close()
        if drop:
            with self._conns_lock:
                conns = list(self._conns)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        STOP.wait(seconds)
        deadline = time.time() + 30
        while True:
            self.socket = socket.socket(self.address_family,
                                        self.socket_type)
            try:
                self.server_bind()
                self.server_activate()
                break
            except OSError:
                self.socket.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.log_line("up again")

    def date(self):
        """The Date header, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    def log_line(self, text):
        if self._log:
            with self._log_lock:
                self._log.write("%.3f %s\n" % (time.time(), text))

    def handle_error(self, request, client_address):
        """Clients that vanish are normal here; only bugs are printed."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Mock Xplenty API v2 server")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--account", default="acme")
    p.add_argument("--api-key", default="test-api-key")
    p.add_argument("--port-file")
    p.add_argument("--first-job-id", type=int, default=1000)
    p.add_argument("--rate-limit", type=int, default=5000)
    p.add_argument("--rate-window", type=float, default=0,
                   help="refill the credits every so many seconds (0: never)")
    p.add_argument("--log-file")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the fault rules' random draws")
    opts = p.parse_args(argv)

    try:
        server = MockServer((opts.host, opts.port), opts)
    except OSError as e:
        sys.exit("mock: cannot listen on %s:%d: %s" % (opts.host, opts.port,
                                                        e))
    port = server.server_address[1]
    host = opts.host if ":" not in opts.host else "[%s]" % opts.host
    server.state.base = "http://%s:%d/%s/api" % (host, port, opts.account)
    if opts.port_file:
        write_port_file(opts.port_file, port)
    print("mock listening on %s:%d" % (host, port), flush=True)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        STOP.set()
        server.server_close()
        if opts.port_file:
            try:
                with open(opts.port_file) as f:
                    if f.read().strip() == str(port):
                        os.unlink(opts.port_file)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
