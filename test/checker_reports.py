#!/usr/bin/env python3
"""checker_reports.py - sort the reports of ASan, UBSan and valgrind.

Used by test/lib.sh (checker_reports) under SANITIZE=1 or VALGRIND=1.
Reads the files given: asan.PID and ubsan.PID (the sanitizers' log_path
files), valgrind.PID (memcheck's --log-file), or any other text, such as a
server log, in which it looks for sanitizer reports.

A report is the extension's when UBSan's location is in its sources
(--src), or when, walking out from the innermost frame of the error's
stack, or of the stack that allocated or freed the memory, or made the
uninitialised value, past the sanitizers' runtimes and shared libraries
(the C library, libcurl, OpenSSL, pg_cron), the first frame that is
PostgreSQL's or the extension's (--src, --lib) is the extension's.  Those
are printed in full, one per distinct report, and so are those that only
have the extension further down their stack (PostgreSQL's code called by
the worker, say), which are not counted; the others by their first frames.
The last line of output is the number of distinct reports in the
extension's code, plus one if no server ran under the checker.
"""

import argparse
import os
import re
import sys

ASAN_START = re.compile(
    r'^==\d+==\s*(ERROR: AddressSanitizer|ERROR: LeakSanitizer'
    r'|WARNING: AddressSanitizer)')
ASAN_END = re.compile(r'^==\d+==\s*ABORTING')
UBSAN_START = re.compile(r'^(.*?): runtime error: (.*)$')
FRAME = re.compile(r'^\s+#\d+\s+0x[0-9a-f]+\s+(?:in\s+)?(.*)$')
VG_LINE = re.compile(r'^==(\d+)==\s?(.*)$')
VG_FRAME = re.compile(r'^\s+(?:at|by)\s+0x[0-9A-F]+:\s+(.*)$')
# Lines that continue an error rather than start one.
VG_CONT = re.compile(
    r'^\s*(Address 0x|Uninitialised value was created|Block was alloc\'d)')
RUNTIME_FRAMES = re.compile(
    r'libasan|libubsan|sanitizer_common|asan_|ubsan_|vgpreload_|'
    r'valgrind/|__interceptor_|__asan_|__ubsan_')


OUR_FILES = None  # a regex of "src/NAME.c" for the files of --src


def is_ours(text, src, lib):
    """Does a frame (or UBSan's "FILE:LINE:COL: runtime error") name the
    extension: its library, or one of its source files, by the absolute
    path of the build or by the relative path it was compiled with?"""
    if (src and src in text) or (lib and lib in text) or \
            '/xplenty.so' in text:
        return True
    return bool(OUR_FILES and OUR_FILES.search(text))


def frame_kind(frame, src, lib):
    if is_ours(frame, src, lib):
        return 'ours'
    if 'postgres.bin' in frame or re.search(r'/bin/postgres\b', frame):
        return 'postgres'
    if RUNTIME_FRAMES.search(frame):
        return 'runtime'
    return 'library'   # the C library, libcurl, OpenSSL, pg_cron...


# PostgreSQL's allocators, skipped in an allocation's stack to reach the
# code that asked for the memory ("???" is a static function of Debian's
# stripped binary, AllocSetAlloc say).
PG_ALLOCATORS = re.compile(
    r'^(?:\?\?\?|\(|palloc\w*|repalloc\w*|MemoryContext\w+|AllocSet\w+|'
    r'pstrdup|pnstrdup|psprintf|pvsprintf|\w*StringInfo\w*)')


def stack_blames_us(stack, src, lib, allocation):
    """Walking out from the innermost frame, past the sanitizer runtimes
    and shared libraries (the C library, libcurl, ...): is the first frame
    of PostgreSQL or of the extension one of the extension's?  In the stack
    of an allocation, PostgreSQL's allocators are walked past too."""
    skipped = 0
    for frame in stack:
        kind = frame_kind(frame, src, lib)
        if kind == 'ours':
            return True
        if kind == 'postgres':
            if allocation and skipped < 6 and PG_ALLOCATORS.match(frame):
                skipped += 1
                continue
            return False
    return False


class Report:
    def __init__(self, tool, header, lines, source):
        self.tool = tool
        self.header = header.strip()
        self.lines = lines
        self.source = source
        self.frames = []
        # The stacks: the error's, then those of where the memory was
        # allocated or freed, or where an uninitialised value came from.
        self.stacks = []
        self.allocation = []
        aux = False
        for line in lines:
            m = FRAME.match(line) if tool != 'valgrind' else VG_FRAME.match(
                line)
            if m:
                frame = m.group(1).strip()
                self.frames.append(frame)
                if re.match(r'^\s*(#0\s|at\s)', line) or not self.stacks:
                    self.stacks.append([])
                    self.allocation.append(aux)
                self.stacks[-1].append(frame)
            elif re.search(r'allocated by|freed by|alloc\'d|free\'d|'
                           r'was created by', line):
                aux = True

    def ours(self, src, lib):
        """The extension's: UBSan's location is in its code, or the first
        frame of the error's stack, or of an allocation's, that is not a
        library's is the extension's."""
        if self.tool == 'ubsan' and is_ours(self.header, src, lib):
            return True
        return any(stack_blames_us(st, src, lib, alloc)
                   for st, alloc in zip(self.stacks, self.allocation))

    def through_ours(self, src, lib):
        return any(is_ours(x, src, lib) for x in [self.header] + self.frames)

    def first_frame(self, src=None, lib=None):
        """The first frame in our code, else the first not a runtime's."""
        if src or lib:
            for f in self.frames:
                if is_ours(f, src, lib):
                    return f
        for f in self.frames:
            if not RUNTIME_FRAMES.search(f):
                return f
        return self.frames[0] if self.frames else '(no stack)'

    def key(self, src, lib):
        head = re.sub(r'0x[0-9a-f]+', '0x…', self.header)
        head = re.sub(r'==\d+==', '', head)
        head = re.sub(r'\(pid \d+\)|thread T\d+', '', head)
        head = re.sub(r'size \d+ at', 'size at', head)
        frame = re.sub(r'0x[0-9a-fA-F]+', '', self.first_frame(src, lib))
        return (self.tool, head, frame)


def parse_sanitizer_text(text, source):
    reports = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if ASAN_START.match(line):
            # From "==PID==ERROR: AddressSanitizer: ..." to "==PID==ABORTING".
            body = [line]
            i += 1
            while i < len(lines) and not ASAN_END.match(lines[i]) \
                    and not ASAN_START.match(lines[i]):
                body.append(lines[i])
                i += 1
            reports.append(Report('asan', line, body[1:], source))
            continue
        m = UBSAN_START.match(line)
        if m:
            # The error line, its stack, an empty line, a SUMMARY line.
            body = [line]
            i += 1
            while i < len(lines):
                nxt = lines[i]
                if nxt.startswith('SUMMARY: UndefinedBehaviorSanitizer'):
                    body.append(nxt)
                    i += 1
                    break
                if not (FRAME.match(nxt) or nxt.strip() == '' or
                        nxt.lstrip().startswith('note:')):
                    break
                body.append(nxt)
                i += 1
            reports.append(Report('ubsan', line, body[1:], source))
            continue
        i += 1
    return reports


def parse_valgrind(text, source):
    """Memcheck errors: a block of ==PID== lines between empty ==PID== lines,
    continued by 'Address 0x... is ...' and the like."""
    reports = []
    cur = None
    blank = True
    for raw in text.splitlines():
        m = VG_LINE.match(raw)
        if not m:
            continue  # --gen-suppressions output: kept in the file
        content = m.group(2)
        if content.strip() == '':
            blank = True
            continue
        if blank and not content.startswith(' ') and \
                not VG_CONT.match(content):
            cur = [content]
            reports.append(cur)
        elif cur is not None:
            cur.append(content)
        blank = False
    out = []
    for body in reports:
        header = body[0]
        if header.startswith('Warning:') or header.startswith('HEAP SUMMARY') \
                or header.startswith('Memcheck,') or \
                header.startswith('For lists of') or \
                header.startswith('ERROR SUMMARY'):
            continue
        out.append(Report('valgrind', header, body[1:], source))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--label', default='')
    ap.add_argument('--src', default='')
    ap.add_argument('--lib', default='')
    ap.add_argument('files', nargs='*')
    a = ap.parse_args()
    src = a.src.rstrip('/') + '/' if a.src else ''
    lib = os.path.normpath(a.lib) if a.lib else ''
    global OUR_FILES
    if src and os.path.isdir(src):
        names = sorted(n for n in os.listdir(src) if re.search(r'\.[ch]$', n))
        if names:
            OUR_FILES = re.compile(r'(?:^|[\s(/])src/(?:%s):\d+' % '|'.join(
                re.escape(n) for n in names))

    reports = []
    servers = 0
    for f in a.files:
        if os.path.basename(f) == 'servers':
            # "PID MODE ARGS" for each run of the wrapper; -V is pg_ctl's
            # check of the binary, not a server.
            with open(f) as fh:
                servers += sum(1 for line in fh
                               if line.split()[2:3] not in (['-V'], ['-C']))
            continue
        if not os.path.exists(f):
            continue  # an unmatched glob: a TAP script that left no log
        try:
            with open(f, errors='replace') as fh:
                text = fh.read()
        except OSError as e:
            print(f'checker: cannot read {f}: {e}')
            continue
        name = os.path.basename(f)
        if name.startswith('valgrind.'):
            reports += parse_valgrind(text, f)
        else:
            reports += parse_sanitizer_text(text, f)

    groups = {}
    for r in reports:
        groups.setdefault(r.key(src, lib), []).append(r)
    ours = [g for g in groups.values() if g[0].ours(src, lib)]
    theirs = [g for g in groups.values() if not g[0].ours(src, lib)]
    # Not the extension's, but with the extension further down the stack
    # (the worker's main loop calling PostgreSQL, say): shown in full.
    through = [g for g in theirs if g[0].through_ours(src, lib)]
    theirs = [g for g in theirs if not g[0].through_ours(src, lib)]
    label = a.label
    print(f'checker ({label}): {servers} servers ran checked; '
          f'{len(reports)} reports, {len(ours)} distinct '
          f"in the extension's code, {len(through)} distinct in code it "
          f"called, {len(theirs)} distinct elsewhere")
    if servers == 0:
        print(f'--- NO SERVER RAN UNDER THE CHECKER during {label}: '
              'counted as a failure')
    for g in ours:
        r = g[0]
        files = sorted({os.path.basename(x.source) for x in g})
        print(f'--- IN THE EXTENSION ({r.tool}, {len(g)} times, in '
              f'{", ".join(files[:5])}{" ..." if len(files) > 5 else ""}):')
        print('    ' + r.header)
        for line in r.lines[:60]:
            print('    ' + line)
    for g in through:
        r = g[0]
        files = sorted({os.path.basename(x.source) for x in g})
        print(f'--- in code the extension called, not counted ({r.tool}, '
              f'{len(g)} times, in {", ".join(files[:5])}'
              f'{" ..." if len(files) > 5 else ""}):')
        print('    ' + r.header)
        for line in r.lines[:40]:
            print('    ' + line)
    for g in theirs:
        r = g[0]
        print(f'--- elsewhere ({r.tool}, {len(g)} times, first in '
              f'{os.path.basename(r.source)}): {r.header}')
        for f in r.frames[:4]:
            print('        ' + f)
    print(len(ours) + (1 if servers == 0 else 0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
