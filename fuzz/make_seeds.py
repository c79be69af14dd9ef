#!/usr/bin/env python3
"""make_seeds.py - write the hand-made seed inputs into fuzz/seeds/.

Run from anywhere: python3 fuzz/make_seeds.py.  The seeds are committed;
this script says where each one comes from and makes them again.
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# The Run Job answer of the API documentation, trailing commas and all
# (from shared/seeds/000_709c0fe5f81c1d2f.txt), and the same made valid.
JOB_DOC = """{
  "id": 157,
  "status": "completed",
  "variables": {},
  "owner_id": 1,
  "progress": 1,
  "outputs_count": 2,
  "outputs": [
    {
      "component_name": "destination1",
      "created_at": "2013-03-04T07:17:51Z",
      "id": 521,
      "name": "projected_results",
      "records_count": 10415234,
      "updated_at": "2013-03-04T07:17:51Z",
      "url": "https://api.xplenty.com/xplenation/api/jobs/299/outputs/521",
    },
    {
      "component_name": "destination2",
      "created_at": "2013-03-04T07:14:44Z",
      "id": 522,
      "name": "projected_results2",
      "records_count": 423,
      "updated_at": "2013-03-04T07:14:44Z",
      "url": "https://api.xplenty.com/xplenation/api/jobs/299/outputs/522",
    },
  ],
  "started_at": "2012-12-30T14:21:29Z",
  "created_at": "2012-12-30T14:21:18Z",
  "failed_at": null,
  "updated_at": "2012-12-30T14:29:29Z",
  "cluster_id": 52,
  "package_id": 434,
  "errors": "",
  "url": "https://api.xplenty.com/xplenation/api/jobs/157",
  "runtime_in_seconds": 417,
  "completed_at": "2012-12-30T14:29:29Z"
}
"""
JOB_VALID = re.sub(r",(\s*[\]}])", r"\1", JOB_DOC)

ANSWER = {
    "job-doc-trailing-commas.json": JOB_DOC.encode(),
    "job-valid.json": JOB_VALID.encode(),
    "job-list.json": ("[" + JOB_VALID + "," + JOB_VALID + "]").encode(),
    "error-422.json": b'{"message": "Validation Failed", "errors": '
                      b'["cluster_id is missing", {"field": "package_id"}]}',
    "error-429.json": b'{"message": "Rate Limit Exceeded"}',
    "error-502.html": b"<html>\r\n<head><title>502 Bad Gateway</title></head>"
                      b"\r\n<body>\tnginx</body>\r\n</html>\r\n",
    "empty": b"",
    "zero-byte.json": b'{"id": 1}\x00',
    "invalid-utf8.json": b'{"message": "caf\xc3 \xff\xfe"}',
    "overlong-utf8.json": b'{"message": "\xc0\xaf \xe0\x80\xaf"}',
    "utf8-surrogate.json": b'{"message": "\xed\xa0\x80"}',
    "utf8-valid.json": '{"message": "caf\u00e9 \u20ac \U0001f600",'
                       ' "e": "\\u00e9\\ud83d\\ude00"}'.encode(),
    "escapes.json": b'{"s": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041"}',
    "huge-numbers.json": b'{"id": 123456789012345678901234567890, '
                         b'"a": 9223372036854775807, "b": 9223372036854775808, '
                         b'"c": -1e-16383, "d": 1.5e308, "e": 1e131071, '
                         b'"f": -0.0, "g": 1E+2}',
    "nest-10000-arrays.json": b"[" * 10000 + b"]" * 10000,
    "nest-3000-objects.json": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "time.txt": b"2012-12-30T14:21:29Z",
    "time-fraction.txt": b"2013-03-04T07:17:51.123456+00:00",
}

HEADERS = {
    "201-created": b"HTTP/1.1 201 Created\r\n"
                   b"Content-Type: application/vnd.xplenty+json; version=2\r\n"
                   b"X-RateLimit-Limit: 5000\r\n"
                   b"X-RateLimit-Remaining: 4999\r\n"
                   b"Content-Length: 512\r\n\r\n",
    "429-retry-after": b"HTTP/1.1 429 Too Many Requests\r\n"
                       b"Retry-After: 3600\r\n"
                       b"X-RateLimit-Limit: 5000\r\n"
                       b"X-RateLimit-Remaining: 0\r\n"
                       b"Content-Type: application/json\r\n\r\n",
    "link-next-prev": b"HTTP/1.1 200 OK\r\n"
                      b'Link: <https://api.xplenty.com/acme/api/jobs?offset=40'
                      b'&limit=20>; rel="next", <https://api.xplenty.com/acme/'
                      b'api/jobs?offset=0&limit=20>; rel="prev"\r\n\r\n',
    "100-continue": b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nx-ratelimit-remaining: 42\r\n"
                    b"LINK:\t<x>; rel=\"next\"\n\r\n",
    "http2-lowercase": b"HTTP/2 200\r\nx-ratelimit-limit:100\r\n"
                       b"x-ratelimit-remaining:   7\r\n\r\n",
    "huge-number": b"X-RateLimit-Remaining: 99999999999999999999999\r\n"
                   b"X-RateLimit-Limit: 9223372036854775807\r\n"
                   b"X-RateLimit-Limit: -5\r\n",
    "long-line": b"Link: <" + b"x" * 1100 + b">\r\n",
    "nul-in-header": b"Link: <a>\x00; rel=\"next\"\r\n"
                     b"X-RateLimit-Remaining: 1\x002\r\n",
    "bare-names": b"Link\r\nLink:\r\nX-RateLimit-Remaining\r\n:\r\n\r\n",
}


def body(kb, *pieces):
    """fuzz_body input: a max_response_size and (size, count) pieces."""
    out = struct.pack("<I", kb - 1)
    for size, count in pieces:
        out += struct.pack("<HH", size, count - 1)
    return out


BODY = {
    "default-limit-small": body(10240, (512, 1)),
    "default-limit-pieces": body(10240, (16384, 3), (100, 1), (0, 1)),
    "default-limit-exceeded": body(10240, (16384, 641)),
    "smallest-limit": body(1, (1000, 1), (24, 1), (1, 1)),
    "largest-limit": body(1024 * 1024, (16384, 2)),
}

ARGS = {
    "name-day": b"\x00DAY",
    "name-underscore": b"\x00_x1",
    "name-digit-first": b"\x001abc",
    "name-255": b"\x00" + b"a" * 255,
    "name-256": b"\x00" + b"a" * 256,
    "url-default": b"\x01https://api.xplenty.com",
    "url-mock": b"\x01http://127.0.0.1:58080/",
    "url-file": b"\x01file:///etc/passwd",
    "url-query": b"\x01https://x/?a=1",
    "account-acme": b"\x02acme",
    "account-dotdot": b"\x02../x",
    "vars-simple": b'\x03{"DAY": "2026-12-03", "LIMIT": "10"}',
    "vars-doc": b'\x03{"current_time": "CurrentTime()", '
                b'"MY_STRING_VAR": "\'some string\'"}',
    "vars-bad": b'\x03{"1bad": "x", "n": 1, "o": {}, "a": [1], "": "e"}',
    "vars-escaped-name": b'\x03{"\\u0041B": "x", "a\\u00e9": "y"}',
}


# fuzz_quick_json: the JSON answers of fuzz_answer, the answers that
# sql/run_job.sql compares with jsonb_in (regress-N.json, in its order),
# and the quick reader's edge cases: keys given twice, escapes and
# surrogate pairs, numbers near its limits, white space, its deepest
# nesting, tokens PostgreSQL refuses.
QUICK = {name: ANSWER[name] for name in (
    "escapes.json",
    "job-valid.json",
    "job-list.json",
    "huge-numbers.json",
    "utf8-valid.json",
    "utf8-surrogate.json",
    "job-doc-trailing-commas.json",
    "error-422.json",
)}
def many_members():
    """Over 32 members (past the insertion sort), one key given twice."""
    keys = ["k19", "k13", "k5", "k39", "k3", "k11", "k28", "k14", "k18",
            "k36", "k9", "k2", "k1", "k24", "k10", "k33", "k27", "k31",
            "k21", "k29", "k38", "k20", "k12", "k26", "k25", "k32", "k7",
            "k22", "k6", "k7", "k17", "k16", "k35", "k0", "k4", "k30",
            "k23", "k8", "k34", "k37", "k15"]
    members = ", ".join('"%s": %d' % (k, i) for i, k in enumerate(keys))
    return ("{" + members + ', "id": 157}').encode()


QUICK.update({
    "bad-tokens.json": b'[truex, nul, "a\x01b"]',
    "duplicate-keys.json":
        b'{"a": 1, "a": 2, "b": [true, false, null], "": {}}',
    "nest-64.json": b"[" * 64 + b"]" * 64,
    "nest-65.json": b"[" * 65 + b"]" * 65,
    "numbers.json": b"[0, -0, 1.5, -12.250, 123456789012345678, "
                    b"1234567890123456789, 1e5, 01, 1.]",
    "regress-1.json":
        b'{"id": 157, "s": "tab\\there \\"q\\" \\\\ \\/ '
        b'\\b\\f\\n\\r", "u": "\\u00e9\\u4e2d\\ud83d\\ude00", '
        b'"raw": "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"}',
    "regress-2.json":
        b'{"id": 1, "b": 1, "a": 2, "b": 3, "aa": [], "": {}, "id": 157}',
    "regress-3.json":
        b'{"id": 157, "n": [0, -0, 7, -42, 1.5, -12.250, 0.0, 10000, '
        b'123456789012345678, 1234567890123456789, -999999999999999999, '
        b'12345678901234567890123456789.123456789]}',
    "regress-4.json":
        b'{"id": 157, "n": 1234567890123456789012345678901234567890.5}',
    "regress-5.json":
        b'{"id": 157, "a": [[[]], {"x": {"y": [null, true, false]}}], '
        b'"e": [], "o": {}}',
    "regress-6.json": b' \n\t{ "id" : 157 , "k"\r\n: [ 1 , 2 ] }\n ',
    "regress-7.json": many_members(),
    "unicode-escapes.json":
        b'["\\ud83d\\ude00", "\\u00e9\\u4e2d", '
        b'"\\"\\\\\\/\\b\\f\\n\\r\\t", "\\ud800x", "\\udc00"]',
    "whitespace.json": b' \t\r\n[ {"k" :\n"v" } , [ ] ]\n ',
})


def write(target, seeds):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("fuzz_answer", ANSWER)
write("fuzz_headers", HEADERS)
write("fuzz_body", BODY)
write("fuzz_args", ARGS)
write("fuzz_quick_json", QUICK)
