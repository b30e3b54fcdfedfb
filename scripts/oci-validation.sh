#!/bin/bash
# OCI runtime-tools validation suite against an OCI runtime (runc CLI), one test at a time.
#
# usage: scripts/oci-validation.sh RUNTIME [OUTDIR [TEST...]]
#
#   RUNTIME  the runtime command (path or name on PATH), e.g. /usr/sbin/runc, or krun
#   OUTDIR   where results go (default: .cache/oci-validation/<basename of RUNTIME>):
#              <test>.tap     the test's TAP (its stdout)
#              <test>.stderr  its stderr (the "failed to create the container" kind of diagnostics)
#              <test>.calls   every runtime invocation: start time, duration, exit code, argv
#              tally.json     {test: {ok, not_ok, skip, todo, timed_out, exit, status, ...}}
#              totals.json    the totals; summary.txt the printed table
#   TEST     run only these tests (names of validation/ subdirectories, e.g. state create)
#
# The suite (github.com/opencontainers/runtime-tools, from shared/tools) is built once into
# .cache/runtime-tools (git-ignored), rebuilt when the tarball or Go changes: the validation
# executables validation/<t>/<t>.t and a static runtimetest, which each test copies into
# its bundle and runs inside the container. Each test runs from the tree's root with RUNTIME
# set, under a timeout, in its own session, with the runner as child subreaper (as
# containerd-shim is for runc) so that whatever the test or runtime leaves behind is found.
# The tests call the runtime without --root; RUNTIME is pointed at a wrapper that adds
# `--root STATEDIR` (a fresh directory per run) and logs the calls, so after each test the
# containers left in STATEDIR are `delete --force`d, leftover processes killed by pid,
# bundles (under a private TMPDIR) unmounted and removed, and empty test cgroups (cgrouptest,
# testdir) removed.
#
# Environment:
#   OCI_VALIDATION_TIMEOUT=120   seconds per test (then SIGTERM to its process group, SIGKILL 5 s later)
#   OCI_VALIDATION_ROOT=wrap     'none': call RUNTIME as is (no --root; leftover containers are
#                                then only killed by pid, the runtime's state dir is not cleaned)
#   OCI_VALIDATION_BASELINE=FILE a tally.json (e.g. runc's) to compare with: prints tests that are
#                                worse and exits 1 if any
#   OCI_VALIDATION_CACHE=DIR     build cache (default .cache/runtime-tools in the repo)
#   OCI_VALIDATION_REBUILD=1     rebuild the suite
#   OCI_VALIDATION_KEEP=1        keep the work directory (state dir, bundles) for inspection
#
# Exit: 0 the suite ran (tests may have failed: read the tally), 1 worse than the baseline,
# 2 usage, build or harness error. Must run as root (the tests create containers).
# Needs: go (Debian 12's golang-go, 1.19), make, tar, python3, coreutils.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
if [ $# -lt 1 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then usage >&2; exit 2; fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runtime_arg=$1; shift
if ! runtime=$(command -v -- "$runtime_arg"); then
    echo "oci-validation: runtime '$runtime_arg' not found" >&2; exit 2
fi
runtime=$(readlink -f -- "$runtime")
[ -x "$runtime" ] || { echo "oci-validation: $runtime is not executable" >&2; exit 2; }
outdir=${1:-$repo/.cache/oci-validation/$(basename "$runtime")}
[ $# -gt 0 ] && shift
mkdir -p "$outdir"; outdir=$(cd "$outdir" && pwd)

[ "$(id -u)" = 0 ] || { echo "oci-validation: must run as root" >&2; exit 2; }
for tool in go make tar timeout; do
    command -v "$tool" >/dev/null || { echo "oci-validation: '$tool' missing (apt-get install golang-go make tar coreutils)" >&2; exit 2; }
done
PYTHON=${PYTHON:-$(command -v python3)}

# --- the suite's source -----------------------------------------------------------------
tarball=
for d in "$repo/../shared/tools" /work/shared/tools; do
    if [ -f "$d/runtime-tools-validation.tar.gz" ]; then tarball=$(readlink -f "$d/runtime-tools-validation.tar.gz"); break; fi
done
[ -n "$tarball" ] || { echo "oci-validation: runtime-tools-validation.tar.gz not in $repo/../shared/tools nor /work/shared/tools" >&2; exit 2; }

cache=${OCI_VALIDATION_CACHE:-$repo/.cache/runtime-tools}
mkdir -p "$cache"; cache=$(cd "$cache" && pwd)
src=$cache/src
key="$(sha256sum "$tarball" | cut -d' ' -f1) $(go version)"

build() {
    local new=$cache/src.new t0
    rm -rf "$new"; mkdir -p "$new"
    t0=$(date +%s)
    echo "oci-validation: building the suite from $tarball into $src (log: $cache/build.log)" >&2
    {
        tar -xzf "$tarball" -C "$new" &&
        cd "$new" &&
        env GOFLAGS=-mod=vendor GOPROXY=off GOCACHE="$cache/gocache" GOPATH="$cache/gopath" \
            make COMMIT=offline validation-executables &&
        env CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off GOCACHE="$cache/gocache" GOPATH="$cache/gopath" \
            go build -tags "netgo osusergo" -ldflags "-X main.gitCommit=offline -X main.version=$(cat VERSION)" \
            -o runtimetest ./cmd/runtimetest
    } >"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log" >&2; echo "oci-validation: build failed" >&2; return 1; }
    # runtimetest runs inside the container: it must not need a dynamic loader (no PT_INTERP)
    "$PYTHON" - "$new/runtimetest" <<'PY' || { echo "oci-validation: runtimetest is not static" >&2; return 1; }
import struct, sys
d = open(sys.argv[1], 'rb').read()
assert d[:4] == b'\x7fELF' and d[4] == 2
phoff, = struct.unpack_from('<Q', d, 0x20); phentsize, phnum = struct.unpack_from('<HH', d, 0x36)
sys.exit(any(struct.unpack_from('<I', d, phoff + i * phentsize)[0] == 3 for i in range(phnum)))
PY
    rm -rf "$src"; mv "$new" "$src"
    printf '%s\n' "$key" >"$cache/stamp"
    echo "oci-validation: built in $(( $(date +%s) - t0 )) s" >&2
}

(
    flock 9
    if [ "${OCI_VALIDATION_REBUILD:-0}" = 1 ] || [ ! -f "$cache/stamp" ] || [ "$(cat "$cache/stamp")" != "$key" ] \
        || [ ! -x "$src/runtimetest" ] || ! ls "$src"/validation/*/*.t >/dev/null 2>&1; then
        build
    fi
) 9>"$cache/.lock" || exit 2

# --- run ----------------------------------------------------------------------------------
exec "$PYTHON" - "$runtime" "$outdir" "$src" "$@" <<'PY'
import ctypes, json, os, re, shlex, shutil, signal, stat, subprocess, sys, tempfile, time

runtime, outdir, src = sys.argv[1:4]
wanted = sys.argv[4:]
timeout = float(os.environ.get('OCI_VALIDATION_TIMEOUT', '120'))
root_mode = os.environ.get('OCI_VALIDATION_ROOT', 'wrap')
baseline_path = os.environ.get('OCI_VALIDATION_BASELINE', '')
keep = os.environ.get('OCI_VALIDATION_KEEP', '0') == '1'
if root_mode not in ('wrap', 'none'):
    print('oci-validation: OCI_VALIDATION_ROOT must be wrap or none', file=sys.stderr)
    sys.exit(2)

tests = sorted(d for d in os.listdir(os.path.join(src, 'validation'))
               if os.path.isfile(os.path.join(src, 'validation', d, d + '.t')))
if wanted:
    unknown = [w for w in wanted if w not in tests]
    if unknown:
        print('oci-validation: unknown tests %s; known: %s' % (' '.join(unknown), ' '.join(tests)), file=sys.stderr)
        sys.exit(2)
    tests = [t for t in tests if t in wanted]

# become the child subreaper: containers' init processes and anything else the tests orphan
# are reparented here, reaped here, and can be found and killed by pid afterwards
PR_SET_CHILD_SUBREAPER = 36
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    print('oci-validation: warning: PR_SET_CHILD_SUBREAPER failed', file=sys.stderr)
mypid = os.getpid()

work = os.path.realpath(tempfile.mkdtemp(prefix='oci-validation.'))
state_dir = os.path.join(work, 'state')
tmp_dir = os.path.join(work, 'tmp')
bin_dir = os.path.join(work, 'bin')
for d in (state_dir, tmp_dir, bin_dir):
    os.makedirs(d)
# mkdtemp makes 0700: the work dir and TMPDIR must be searchable by the ids a user namespace maps
os.chmod(work, 0o755)
os.chmod(tmp_dir, 0o755)

root_args = ['--root', state_dir] if root_mode == 'wrap' else []
wrapper = os.path.join(bin_dir, os.path.basename(runtime))
with open(wrapper, 'w') as f:
    f.write('''#!/bin/bash
# oci-validation: the runtime under test, with its state in the run's own directory
t0=$(date +%%s.%%N)
%s "$@"
rc=$?
t1=$(date +%%s.%%N)
if [ -n "${OCI_VALIDATION_CALLLOG:-}" ]; then
    printf '%%s %%s rc=%%s %%s\\n' "$t0" "$t1" "$rc" "$*" >>"$OCI_VALIDATION_CALLLOG"
fi
exit $rc
''' % ' '.join(shlex.quote(a) for a in [runtime] + root_args))
os.chmod(wrapper, 0o755)

# results of an earlier run in OUTDIR (only the files this script writes)
all_tests = set(d for d in os.listdir(os.path.join(src, 'validation')) if d != 'util')
for name in os.listdir(outdir):
    base, ext = os.path.splitext(name)
    if (ext in ('.tap', '.stderr', '.calls') and base in all_tests) or \
            name in ('tally.json', 'totals.json', 'summary.txt', 'compare.txt'):
        os.unlink(os.path.join(outdir, name))


# --- processes --------------------------------------------------------------------------
def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def children_of(ppid):
    out = []
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % p) as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(')') + 2:].split()
        if int(fields[1]) == ppid and fields[0] != 'Z':
            out.append(int(p))
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return '?'


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def run(argv, limit, **kw):
    """Run argv in its own session with a time limit, reaping orphans meanwhile.
    Returns (exit code or None when timed out, timed_out)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    try:
        return wait_for(proc, limit)
    except BaseException:
        # interrupted: take the test (its process group, its descendants) down with us
        tree = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_pids(tree + [proc.pid])
        reap()
        raise


def wait_for(proc, limit):
    deadline = time.monotonic() + limit
    timed_out = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if pid != 0:
            continue  # an orphan reparented to us: reaped
        if time.monotonic() > deadline:
            timed_out = True
            tree = descendants(proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            kill_pids(tree, signal.SIGTERM)
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    pid, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    pid = proc.pid
                if pid == proc.pid:
                    break
                reap()
                time.sleep(0.05)
            else:
                tree = descendants(proc.pid) + tree
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                kill_pids(tree + [proc.pid])
                try:
                    os.waitpid(proc.pid, 0)
                except ChildProcessError:
                    pass
            proc.returncode = None
            break
        time.sleep(0.02)
    reap()
    return proc.returncode, timed_out


# --- cleanup after each test ------------------------------------------------------------
def mounts_under(prefix):
    out = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            mp = line.split()[4].encode().decode('unicode_escape')
            if mp == prefix or mp.startswith(prefix + '/'):
                out.append(mp)
    return out


def test_cgroups():
    """Empty cgroups the tests ask runtimes to create: /cgrouptest and testdir/cgrouptest/container."""
    found = []
    base = '/sys/fs/cgroup'
    if not os.path.isdir(base):
        return found
    for ctrl in os.listdir(base):
        top = os.path.join(base, ctrl)
        for dirpath, dirnames, _ in os.walk(top):
            if dirpath.count('/') - top.count('/') >= 4:
                dirnames[:] = []
            for dn in list(dirnames):
                if dn in ('cgrouptest', 'testdir'):
                    found.append(os.path.join(dirpath, dn))
                    dirnames.remove(dn)
    return found


def rm_cgroup_tree(path):
    ok = True
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            ok = False
    return ok


cgroups_before = set(test_cgroups())


def cleanup():
    note = {}
    # containers the test left in our state dir
    if root_mode == 'wrap' and os.path.isdir(state_dir):
        ids = sorted(os.listdir(state_dir))
        if ids:
            note['leftover_containers'] = ids
            for cid in ids:
                run([runtime] + root_args + ['delete', '--force', cid], 30,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            still = sorted(os.listdir(state_dir))
            if still:
                note['undeletable_containers'] = still
                for cid in still:
                    shutil.rmtree(os.path.join(state_dir, cid), ignore_errors=True)
    # processes orphaned to us (container inits, hooks, unshare helpers, ...)
    for attempt in range(3):
        left = children_of(mypid)
        if not left:
            break
        if attempt == 0:
            note['leftover_processes'] = ['%d %s' % (p, cmdline(p)) for p in left]
        kill_pids([p for p in left] + [d for p in left for d in descendants(p)])
        time.sleep(0.2)
        reap()
    # bundles: unmount whatever is mounted under them, then remove
    mps = mounts_under(tmp_dir)
    if mps:
        note['leftover_mounts'] = mps
        for mp in sorted(mps, key=len, reverse=True):
            subprocess.call(['umount', '-l', mp], stderr=subprocess.DEVNULL)
    left = sorted(os.listdir(tmp_dir))
    if left:
        note['leftover_tmp'] = left
        for name in left:
            p = os.path.join(tmp_dir, name)
            if os.path.isdir(p) and not os.path.islink(p):
                subprocess.call(['rm', '-rf', '--one-file-system', p])
            else:
                os.unlink(p)
    # empty test cgroups
    cgs = [c for c in test_cgroups() if c not in cgroups_before]
    if cgs:
        note['leftover_cgroups'] = cgs
        for c in cgs:
            rm_cgroup_tree(c)
    return note


# --- TAP ----------------------------------------------------------------------------------
point_re = re.compile(r'^(not ok|ok)\b(?:\s*\d+)?([^#]*)(?:#\s*(\w+)(.*))?$')


def parse_tap(text):
    r = {'ok': 0, 'not_ok': 0, 'skip': 0, 'todo': 0, 'planned': None, 'bail_out': False,
         'diag_errors': 0, 'failed': []}
    in_yaml, yaml_block = False, []
    for line in text.splitlines():
        if in_yaml:
            if line.strip() == '...':
                in_yaml = False
                if re.search(r'^\s*"?error"?\s*:', '\n'.join(yaml_block), re.M):
                    r['diag_errors'] += 1
            else:
                yaml_block.append(line)
            continue
        if re.match(r'^\s+---\s*$', line):
            in_yaml, yaml_block = True, []
            continue
        m = re.match(r'^1\.\.(\d+)', line)
        if m:
            # some tests print several TAP documents one after the other: add their plans up
            r['planned'] = (r['planned'] or 0) + int(m.group(1))
            continue
        if line.startswith('Bail out!'):
            r['bail_out'] = True
            continue
        m = point_re.match(line)
        if not m:
            continue
        directive = (m.group(3) or '').upper()
        if directive.startswith('SKIP'):
            r['skip'] += 1
        elif directive.startswith('TODO'):
            r['todo'] += 1
        elif m.group(1) == 'ok':
            r['ok'] += 1
        else:
            r['not_ok'] += 1
            if len(r['failed']) < 50:
                r['failed'].append(line[:200])
    return r


def status_of(rec):
    if rec['timed_out']:
        return 'timeout'
    points = rec['ok'] + rec['not_ok'] + rec['skip'] + rec['todo']
    if rec['exit'] != 0 and points == 0:
        return 'error'
    if rec['not_ok'] or rec['bail_out'] or rec['exit'] != 0:
        return 'fail'
    if rec['planned'] is not None and rec['planned'] != points:
        return 'fail'
    if points == 0:
        # tests that report only through YAML diagnostics (hooks, poststart, poststop, prestart_fail, ...)
        return 'fail' if rec['diag_errors'] else 'pass'
    if rec['ok'] == 0:
        return 'skip'
    return 'pass'


# --- main loop ----------------------------------------------------------------------------
class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted('signal %d' % signum)


for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, on_signal)

env = dict(os.environ)
env.update(RUNTIME=wrapper, TMPDIR=tmp_dir)
tally = {}
interrupted = False
t_all = time.monotonic()
width = max([len(t) for t in tests] + [4])
print('oci-validation: %d tests, runtime %s%s, timeout %gs, results in %s' % (
    len(tests), runtime, ' --root ' + state_dir if root_args else '', timeout, outdir), flush=True)
try:
    for name in tests:
        exe = os.path.join(src, 'validation', name, name + '.t')
        env['OCI_VALIDATION_CALLLOG'] = os.path.join(outdir, name + '.calls')
        t0 = time.monotonic()
        with open(os.path.join(outdir, name + '.tap'), 'wb') as out, \
                open(os.path.join(outdir, name + '.stderr'), 'wb') as err:
            code, timed_out = run([exe], timeout, cwd=src, env=env, stdout=out, stderr=err)
        dur = time.monotonic() - t0
        with open(os.path.join(outdir, name + '.tap'), errors='replace') as f:
            rec = parse_tap(f.read())
        rec.update(timed_out=timed_out, exit=code, seconds=round(dur, 1))
        rec.update(cleanup())
        rec['status'] = status_of(rec)
        tally[name] = rec
        print('%-*s %-7s ok %4d  not_ok %3d  skip %3d  todo %2d  exit %-4s %5.1fs%s' % (
            width, name, rec['status'], rec['ok'], rec['not_ok'], rec['skip'], rec['todo'],
            'T/O' if timed_out else code, dur,
            '  [left: %s]' % ', '.join(k[9:] for k in rec if k.startswith('leftover_')) if any(
                k.startswith('leftover_') for k in rec) else ''), flush=True)
except Interrupted as e:
    print('oci-validation: interrupted (%s): cleaning up' % e, file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cleanup()
    interrupted = True
finally:
    reap()
    if keep:
        print('oci-validation: work directory kept: %s' % work)
    else:
        if not mounts_under(work):
            shutil.rmtree(work, ignore_errors=True)

keys = ('ok', 'not_ok', 'skip', 'todo')
totals = {k: sum(r[k] for r in tally.values()) for k in keys}
totals['timed_out'] = sum(1 for r in tally.values() if r['timed_out'])
totals['tests'] = len(tally)
for s in ('pass', 'fail', 'error', 'timeout', 'skip'):
    totals['tests_' + s] = sorted(t for t, r in tally.items() if r['status'] == s)
totals['seconds'] = round(time.monotonic() - t_all, 1)
with open(os.path.join(outdir, 'tally.json'), 'w') as f:
    json.dump(tally, f, indent=1, sort_keys=True)
with open(os.path.join(outdir, 'totals.json'), 'w') as f:
    json.dump(totals, f, indent=1, sort_keys=True)

lines = ['%-*s %-7s %5s %6s %5s %4s %5s' % (width, 'test', 'status', 'ok', 'not_ok', 'skip', 'todo', 'exit')]
for t, r in tally.items():
    lines.append('%-*s %-7s %5d %6d %5d %4d %5s' % (width, t, r['status'], r['ok'], r['not_ok'], r['skip'], r['todo'],
                                                    'T/O' if r['timed_out'] else r['exit']))
lines.append('%-*s %-7s %5d %6d %5d %4d' % (width, 'TOTAL', '', totals['ok'], totals['not_ok'], totals['skip'], totals['todo']))
lines.append('tests: %d; pass %d, fail %d, error %d, timeout %d, skip %d; %.0f s' % (
    totals['tests'], len(totals['tests_pass']), len(totals['tests_fail']), len(totals['tests_error']),
    len(totals['tests_timeout']), len(totals['tests_skip']), totals['seconds']))
for s in ('fail', 'error', 'timeout'):
    if totals['tests_' + s]:
        lines.append('%s: %s' % (s, ' '.join(totals['tests_' + s])))
summary = '\n'.join(lines)
with open(os.path.join(outdir, 'summary.txt'), 'w') as f:
    f.write(summary + '\n')
print(summary)
# the plain closing line
print('oci-validation: %d passed, %d failed, %d skipped' % (totals['ok'], totals['not_ok'], totals['skip']))

if interrupted:
    print('oci-validation: interrupted: the tally covers %d of %d tests' % (len(tally), len(tests)))
    sys.exit(2)
rc = 0
if baseline_path:
    with open(baseline_path) as f:
        base = json.load(f)
    rank = {'pass': 0, 'skip': 1, 'fail': 2, 'error': 3, 'timeout': 4}
    worse = []
    for t, r in tally.items():
        b = base.get(t)
        if b is None:
            continue
        if rank.get(r['status'], 9) > rank.get(b.get('status'), 9) or r['ok'] < b.get('ok', 0) \
                or r['not_ok'] > b.get('not_ok', 0):
            worse.append('%s: %s ok %d not_ok %d (baseline %s ok %d not_ok %d)' % (
                t, r['status'], r['ok'], r['not_ok'], b.get('status'), b.get('ok', 0), b.get('not_ok', 0)))
    text = 'compared with %s: %d tests worse\n%s' % (baseline_path, len(worse), '\n'.join(worse))
    with open(os.path.join(outdir, 'compare.txt'), 'w') as f:
        f.write(text + '\n')
    print(text)
    rc = 1 if worse else 0
sys.exit(rc)
PY
