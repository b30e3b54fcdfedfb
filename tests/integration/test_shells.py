"""Shells under km: `km /bin/busybox sh -c SCRIPT` (and script files) and Debian's
bash-static running a non-trivial script, compared with the same shells run natively.

A shell exercises everything processes need at once: fork for pipelines, subshells and
command substitution, execve of applets (busybox re-executes itself through
/proc/self/exe) and of the dynamic binaries in /usr/bin, wait4 and $?, SIGCHLD, signals
sent to itself with kill $$, and descriptors set up by redirections and inherited.
Each test is small, so that a failure points at one feature.
"""

import os
import textwrap

import pytest

BUSYBOX = "/bin/busybox"
BASH = "/bin/bash-static"


@pytest.fixture(scope="module", autouse=True)
def shells_present():
    if not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"{BUSYBOX} is missing: install busybox-static", pytrace=False)


def sh(run_both, assert_same, script, *args, status=0, **kwargs):
    """busybox sh -c SCRIPT sh ARGS..., natively and under km: same output and status."""
    runs = run_both([BUSYBOX, "sh", "-c", textwrap.dedent(script), "sh", *args], **kwargs)
    assert runs.native.returncode == status, (runs.native.describe() + "\n"
                                              + runs.native.out + runs.native.err)
    assert_same(runs.native, runs.km)
    return runs.native.out


# ---- busybox sh -c ----------------------------------------------------------------------


def test_sh_pipelines(run_both, assert_same):
    out = sh(run_both, assert_same, """
        echo hello world | tr a-z A-Z
        printf 'pear\\napple\\nfig\\napple\\n' | sort | uniq -c | sort -rn | head -n 2
        seq 1 100 | awk '{ s += $1 } END { print "sum", s }'
        echo one two three | wc -w
        false | true; echo "false|true: $?"
        true | false; echo "true|false: $?"
        set -o pipefail; false | true; echo "pipefail: $?"
        """)
    assert out.startswith("HELLO WORLD\n")
    assert "sum 5050\n" in out


def test_sh_pipeline_into_a_dynamic_binary(run_both, assert_same):
    """/usr/bin/tr and /usr/bin/sort are dynamic (ld.so runs under km); /bin/sh is dash."""
    out = sh(run_both, assert_same, """
        echo 'dynamic binaries in a pipeline' | /usr/bin/tr a-z A-Z | /usr/bin/sort
        /bin/sh -c 'echo "dash says $((6 * 7))"; exit 4'; echo "dash exited $?"
        """)
    assert out == "DYNAMIC BINARIES IN A PIPELINE\ndash says 42\ndash exited 4\n"


def test_sh_command_substitution(run_both, assert_same):
    out = sh(run_both, assert_same, """
        x=$(echo inner)
        echo "x=$x"
        echo "nested: $(echo a $(echo b $(echo c)))"
        echo "backticks: `echo old style`"
        n=$(seq 1 5 | wc -l); echo "lines: $n"
        echo "status inside: $(false; echo $?)"
        y=$(exit 7); echo "assignment status: $?"
        echo "arithmetic: $(( $(echo 6) * $(echo 7) ))"
        """)
    assert "nested: a b c\n" in out
    assert "assignment status: 7\n" in out
    assert "arithmetic: 42\n" in out


def test_sh_subshells(run_both, assert_same):
    out = sh(run_both, assert_same, """
        x=outer
        (x=inner; echo "in the subshell: $x")
        echo "after it: $x"
        (cd /; pwd)
        (exit 3); echo "subshell exit: $?"
        ( (echo deeply nested) )
        { echo group; echo "no fork"; } | cat
        echo "pid in subshell is the shell's \\$\\$: $( (echo $$) )" | sed "s/$$/SAME/"
        """)
    assert "in the subshell: inner\nafter it: outer\n/\nsubshell exit: 3\n" in out
    assert "SAME" in out


def test_sh_loops_and_case(run_both, assert_same):
    out = sh(run_both, assert_same, """
        for f in alpha beta gamma; do echo "for: $f"; done
        i=0; while [ $i -lt 5 ]; do i=$((i + 1)); [ $i -eq 2 ] && continue; echo "while: $i"; done
        until [ $i -le 0 ]; do i=$((i - 2)); done; echo "until: $i"
        for w in x y stop z; do case $w in stop) break ;; x|y) echo "case: $w" ;; esac; done
        printf 'l1\\nl2\\nl3\\n' | while read -r line; do echo "read: $line"; done
        for i in $(seq 3); do for j in a b; do printf '%s%s ' $i $j; done; done; echo
        """)
    assert "until: -1\n" in out
    assert "1a 1b 2a 2b 3a 3b \n" in out


def test_sh_redirections(run_both, assert_same, tmp_path):
    out = sh(run_both, assert_same, """
        rm -f out.txt err.txt both.txt
        echo first > out.txt
        echo second >> out.txt
        cat < out.txt
        wc -l < out.txt
        ls /no/such/dir 2> err.txt; echo "ls status $?, err lines $(wc -l < err.txt)"
        { echo to-stdout; echo to-stderr >&2; } > both.txt 2>&1
        sort both.txt
        { echo visible; echo hidden >&2; } 2>/dev/null
        exec 3> fd3.txt; echo "through fd 3" >&3; exec 3>&-; cat fd3.txt
        exec 4< out.txt; read -r l <&4; echo "read from fd 4: $l"; exec 4<&-
        echo "noclobber:"; set -C; (echo x > out.txt) 2>/dev/null || echo "refused"; set +C
        """)
    assert out.startswith("first\nsecond\n2\n")
    assert "to-stderr\nto-stdout\n" in out
    assert "read from fd 4: first\n" in out


def test_sh_background_jobs_and_wait(run_both, assert_same):
    # Whether ash reports the killed job ("Terminated" on stderr) depends on when it
    # reaps it, natively too (3 runs in 5 with the kill 0.1 s after the start): stderr
    # may hold that line or nothing, in either run.
    runs = run_both([BUSYBOX, "sh", "-c", textwrap.dedent("""
        for i in 1 2 3 4; do (echo "job $i" > job.$i) & done
        wait
        cat job.1 job.2 job.3 job.4
        (exit 7) & p=$!
        wait $p; echo "wait \\$!: $?"
        sleep 5 & q=$!
        sleep 0.5; kill $q; wait $q; echo "killed job: $?"
        (sleep 0.05; exit 2) & wait; echo "plain wait: $?"
        echo $! | grep -q '^[0-9][0-9]*$' && echo "\\$! is a pid"
        """), "sh"])
    assert runs.native.returncode == 0, runs.native.describe() + runs.native.err
    assert_same(runs.native, runs.km, stderr=False)
    for run in (runs.native, runs.km):
        assert run.err in ("", "Terminated\n"), run.err
    assert runs.native.out.startswith(
        "job 1\njob 2\njob 3\njob 4\nwait $!: 7\nkilled job: 143\n")


def test_sh_trap_on_signal_sent_with_kill(run_both, assert_same):
    out = sh(run_both, assert_same, """
        trap 'echo caught USR1' USR1
        kill -USR1 $$
        echo after USR1
        trap 'echo bye from EXIT' EXIT
        trap 'echo caught TERM; exit 3' TERM
        kill -TERM $$
        echo not reached
        """, status=3)
    assert out == "caught USR1\nafter USR1\ncaught TERM\nbye from EXIT\n"


def test_sh_ignored_signal_inherited_by_children(run_both, assert_same):
    """trap '' SIG ignores it in the shell and in what it runs (kept across exec)."""
    out = sh(run_both, assert_same, """
        trap '' USR1
        sh -c 'kill -USR1 $$; echo child survived USR1'
        trap - USR1
        sh -c 'kill -USR1 $$; echo not reached'; echo "status $?"
        """)
    assert out == "child survived USR1\nstatus 138\n"


def test_sh_exit_codes(run_both, assert_same):
    out = sh(run_both, assert_same, """
        true; echo "true: $?"
        false; echo "false: $?"
        sh -c 'exit 42'; echo "sh -c exit 42: $?"
        no_such_command_xyz 2>/dev/null; echo "not found: $?"
        ./ 2>/dev/null; echo "a directory: $?"
        sh -c 'kill -9 $$'; echo "SIGKILLed: $?"
        sh -c 'kill -TERM $$'; echo "SIGTERMed: $?"
        ! true; echo "negated: $?"
        if grep -q zzz /dev/null; then echo yes; else echo "grep found nothing: $?"; fi
        exit 5
        """, status=5)
    assert "sh -c exit 42: 42\nnot found: 127\na directory: 126\n" in out
    assert "SIGKILLed: 137\nSIGTERMed: 143\n" in out


def test_sh_functions(run_both, assert_same):
    out = sh(run_both, assert_same, """
        greet() { echo "hello, $1 ($# args)"; return 3; }
        greet world extra; echo "returned $?"
        fact() { if [ "$1" -le 1 ]; then echo 1; else echo $(( $1 * $(fact $(( $1 - 1 ))) )); fi; }
        echo "6! = $(fact 6)"
        count() { local n=0; for a in "$@"; do n=$((n + 1)); done; echo $n; }
        echo "count: $(count a 'b c' d)"
        piped() { while read -r x; do echo "<$x>"; done; }
        printf '1\\n2\\n' | piped
        """)
    assert "returned 3\n6! = 720\ncount: 3\n<1>\n<2>\n" in out


def test_sh_here_documents(run_both, assert_same):
    out = sh(run_both, assert_same, """
        name=world
        cat <<EOF
        hello $name
        sum $((1 + 2))
        cmd $(echo substituted)
        EOF
        cat <<'EOF'
        not expanded: $name $(echo x)
        EOF
        tr a-z A-Z <<EOF | sed 's/^/piped: /'
        shout
        EOF
        while read -r a b; do echo "$b $a"; done <<EOF
        1 one
        2 two
        EOF
        """)
    assert "hello world\nsum 3\ncmd substituted\nnot expanded: $name $(echo x)\n" in out
    assert "piped: SHOUT\none 1\ntwo 2\n" in out


def test_sh_exec_replaces_the_shell_keeping_its_pid(run_both, assert_same):
    out = sh(run_both, assert_same, """
        echo before
        p=$$
        exec /bin/busybox sh -c "[ \\$\\$ = $p ] && echo same pid after exec; exit 9"
        echo not reached
        """, status=9)
    assert out == "before\nsame pid after exec\n"


# ---- script files -----------------------------------------------------------------------


SCRIPT = """\
#!/bin/busybox sh
# A script run from a file: arguments, functions, a loop over a pipeline, a here-doc.
echo "script name: $(basename "$0"), $# arguments: $*"
total=0
add() { total=$((total + $1)); }
for n in "$@"; do add "$n"; done
echo "total: $total"
seq 1 4 | while read -r i; do echo "square $i: $((i * i))"; done
cat <<EOF > generated.txt
generated by $(basename "$0")
EOF
cat generated.txt
[ -x "$0" ] && echo "executable: yes"
exit $((total % 256))
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.sh"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


def test_sh_script_file(script, run_both, assert_same):
    runs = run_both([BUSYBOX, "sh", script, "3", "4", "5"])
    assert runs.native.returncode == 12
    assert "total: 12\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_shebang_script_as_the_payload(script, run_both, assert_same):
    """`km ./script.sh`: km runs the #! interpreter (busybox) as the payload."""
    runs = run_both(["./script.sh", "10", "20"], cwd=script.parent)
    assert runs.native.returncode == 30
    assert "script name: script.sh, 2 arguments: 10 20\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_sh_runs_a_script_file_as_a_command(script, run_both, assert_same):
    out = sh(run_both, assert_same, """
        ./script.sh 1 2; echo "script exited $?"
        PATH=.:$PATH script.sh 5; echo "through PATH: $?"
        """, cwd=script.parent)
    assert "script exited 3\n" in out
    assert "through PATH: 5\n" in out


# ---- bash -------------------------------------------------------------------------------


BASH_SCRIPT = r"""
set -u
shopt -s extglob

# Recursion through command substitution.
fib() {
    local n=$1
    if (( n < 2 )); then echo "$n"; return; fi
    echo $(( $(fib $((n - 1))) + $(fib $((n - 2))) ))
}
echo "fib 9 = $(fib 9)"

# Indexed arrays.
fruits=(banana apple "passion fruit" cherry)
fruits+=(date)
echo "${#fruits[@]} fruits; the third is '${fruits[2]}'; last: ${fruits[-1]}"
sorted=$(printf '%s\n' "${fruits[@]}" | sort)
mapfile -t sorted_array <<< "$sorted"
echo "sorted: ${sorted_array[*]}"
echo "slice: ${fruits[@]:1:2}"
unset 'fruits[1]'
echo "indices after unset: ${!fruits[*]}"

# Associative arrays.
declare -A colour=([banana]=yellow [apple]=red [cherry]=red)
colour[date]=brown
for k in $(printf '%s\n' "${!colour[@]}" | sort); do
    printf '%-8s %s\n' "$k" "${colour[$k]}"
done
reds=0; for v in "${colour[@]}"; do [[ $v == red ]] && ((reds++)); done
echo "red ones: $reds"

# [[ =~ ]] and BASH_REMATCH.
for s in "2024-01-31" "not a date" "1999-12-01"; do
    if [[ $s =~ ^([0-9]{4})-([0-9]{2})-([0-9]{2})$ ]]; then
        echo "date: year ${BASH_REMATCH[1]} month ${BASH_REMATCH[2]}"
    else
        echo "no match: '$s'"
    fi
done
[[ "file.tar.gz" == *.@(gz|bz2) ]] && echo "extglob matched"

# Arithmetic.
(( x = 7 * 6, y = x % 5, z = x ** 2 ))
echo "x=$x y=$y z=$z hex=$((16#ff)) shift=$((1 << 10)) ternary=$(( x > 40 ? 1 : 0 ))"
let "x += 8"; echo "let: $x"

# Here-docs and here-strings.
cat <<EOF
here-doc: fib 7 is $(fib 7), ${#fruits[@]} fruits left
EOF
read -r first rest <<< "one two three"; echo "first=$first rest=$rest"
cat <<-'EOF'
	indented, not expanded: $x
	EOF

# Pipelines and PIPESTATUS.
printf '%s\n' c a b a | sort | uniq -c | sed 's/^ *//' | tr '\n' ';'; echo
true | false | true; echo "PIPESTATUS: ${PIPESTATUS[*]}"

# Process substitution (/dev/fd/N).
diff <(printf '1\n2\n3\n') <(printf '1\n3\n') | head -n 2
while read -r line; do echo "from <(): $line"; done < <(seq 3 -1 1)
paste -d, <(seq 1 3) <(seq 4 6)

# Strings.
path=/usr/local/lib/libexample.so.1
echo "${path##*/} ${path%/*} ${path/lib/LIB} ${path//lib/L} ${#path}"
printf -v padded '%05d' 42; echo "padded: $padded"
word=Kontain; echo "${word,,} ${word^^} ${word:1:3}"

# Subshells, BASHPID, traps, wait.
( echo "subshell has its own BASHPID: $([[ $BASHPID != $$ ]] && echo yes)" )
trap 'echo "trapped USR1"' USR1
kill -USR1 $$
for i in 1 2 3; do (sleep 0.0$i; exit $i) & done
codes=0; for j in 1 2 3; do wait -n; codes=$((codes + $?)); done
echo "sum of background exit codes: $codes"
coproc_out=$( { echo ping; } | { read -r m; echo "$m-pong"; } ); echo "$coproc_out"

# A real coprocess, both directions.
coproc CALC { while read -r a b; do echo $((a * b)); done; }
echo "6 7" >&"${CALC[1]}"; read -r product <&"${CALC[0]}"; echo "coproc: $product"
eval "exec ${CALC[1]}>&-"; wait "$CALC_PID"; echo "coproc exited: $?"

# Limits: shown, lowered in a subshell, the lower one enforced there.
echo "ulimit -n: $(ulimit -n) hard $(ulimit -Hn)"
( ulimit -n 64; echo "lowered: $(ulimit -n)"; exec 70>/dev/null ) 2>/dev/null \
    || echo "descriptor 70 refused under ulimit -n 64"
( ulimit -v 1048576; echo "ulimit -v: $(ulimit -v)" )
( ulimit -c 0; echo "ulimit -c: $(ulimit -c)" )

# Traps: ERR, EXIT in a subshell, a signal ignored then restored.
( trap 'echo "ERR trapped at line $LINENO"' ERR; false; true )
( trap 'echo "EXIT trap ran"' EXIT; echo "subshell body" )
trap '' TERM; kill -TERM $$; echo "TERM ignored"; trap - TERM

# Functions with local, nameref and return codes.
counter() { local -n ref=$1; ref=$((ref + 1)); }
c=41; counter c; echo "nameref: $c"
check() { return $(( $1 % 3 )); }
check 5; echo "return: $?"
exit 17
"""


@pytest.mark.parametrize("bash", [BASH, "/bin/bash"], ids=["bash-static", "bash"])
def test_bash_runs_a_nontrivial_script(run_both, assert_same, tmp_path, bash):
    """The same script in bash-static and Debian's dynamically linked bash: arrays,
    arithmetic, here-docs, pipelines, process substitution, traps, coproc, ulimit."""
    if not os.access(bash, os.X_OK):
        pytest.fail(f"{bash} is missing: install bash-static", pytrace=False)
    script = tmp_path / "script.bash"
    script.write_text(BASH_SCRIPT)
    runs = run_both([bash, script], timeout=120)
    out = runs.native.out
    assert runs.native.returncode == 17, runs.native.describe() + "\n" + out + runs.native.err
    for expected in ["fib 9 = 34\n", "5 fruits; the third is 'passion fruit'; last: date\n",
                     "red ones: 2\n", "date: year 2024 month 01\n", "no match: 'not a date'\n",
                     "x=42 y=2 z=1764 hex=255 shift=1024 ternary=1\n", "from <(): 3\n",
                     "1,4\n2,5\n3,6\n", "trapped USR1\n", "sum of background exit codes: 6\n",
                     "ping-pong\n", "nameref: 42\n", "return: 2\n", "coproc: 42\n",
                     "coproc exited: 0\n", "descriptor 70 refused under ulimit -n 64\n",
                     "ulimit -v: 1048576\n", "ERR trapped at line", "EXIT trap ran\n",
                     "TERM ignored\n"]:
        assert expected in out
    assert_same(runs.native, runs.km)


def test_bash_static_command_line_features(run_both, assert_same):
    """bash -c with a pipeline, a here-string, process substitution and $BASH_VERSION."""
    if not os.access(BASH, os.X_OK):
        pytest.fail(f"{BASH} is missing: install bash-static", pytrace=False)
    runs = run_both([BASH, "-c", 'cat <(echo "$1") - <<< "$2" | tr a-z A-Z; '
                     '[[ -n $BASH_VERSION ]] && echo version set; exit ${#3}',
                     "bash", "first", "second", "four"])
    assert runs.native.returncode == 4
    assert runs.native.out == "FIRST\nSECOND\nversion set\n"
    assert_same(runs.native, runs.km)
