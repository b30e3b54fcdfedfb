"""Threads: POSIX threads (mutexes, condition variables, TLS, cancellation, barriers,
detached threads, many threads, exit paths) and futex(2) used directly.

Each payload runs natively and under km; stdout and exit status must be the same. The
payloads (tests/payloads/thr_*.c) print only deterministic facts, and a few lines of the
native output are checked too, so that a broken payload cannot pass by matching itself.
"""

from __future__ import annotations

import pytest
from conftest import FLAVOURS, Flavour

# Threaded payloads are built with musl and with glibc's -pthread.
THREAD_FLAVOURS = {
    "musl": FLAVOURS["musl"],
    "glibc": Flavour("glibc-pthread", "gcc", ("-static", "-O2", "-pthread"), pie=False),
}


@pytest.fixture(params=list(THREAD_FLAVOURS), ids=list(THREAD_FLAVOURS))
def tflavour(request) -> Flavour:
    return THREAD_FLAVOURS[request.param]


@pytest.fixture
def thr_basic(payloads, tflavour):
    return payloads.build("thr_basic", tflavour)


def both(run_both, argv, **kwargs):
    runs = run_both(argv, timeout=60, **kwargs)
    assert not runs.native.timed_out, f"the native run timed out:\n{runs.native.out}"
    return runs


def test_mutex_and_condvar_with_64_threads(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "mutex"])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "counter: 12800 (expected 12800)\n" in out
    assert "turns taken: 64, in id order: yes\n" in out
    assert "queue: consumed 1600 items (expected 1600), sum 24840800 (expected 24840800)" in out
    assert_same(runs.native, runs.km)


def test_thread_local_storage(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "tls"])
    out = runs.native.out
    assert "main's copy after the threads wrote theirs: 7 main\n" in out
    assert "threads keeping their own values: 8/8\n" in out
    assert "tls addresses distinct: yes\n" in out
    assert "key destructor calls: 8, sum 36\n" in out
    assert_same(runs.native, runs.km)


def test_pthread_cancel_at_cancellation_points(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "cancel"])
    out = runs.native.out
    assert "sleeper: canceled=yes cleanup=1\n" in out
    assert "reader: canceled=yes cleanup=1\n" in out
    assert "disabled: cleanup before enabling=0\n" in out
    assert "condvar waiter: canceled=yes cleanup=1\n" in out
    assert_same(runs.native, runs.km)


def test_pthread_barrier(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "barrier"])
    assert "rounds: 40, rounds with exactly one serial thread: 40, bad: 0\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_detached_threads(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "detach"])
    assert "second wave finished: 20\n" in runs.native.out
    assert_same(runs.native, runs.km)


@pytest.mark.slow
def test_256_concurrent_threads(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "many"])
    out = runs.native.out
    assert "threads created: 256, joined: 256\n" in out
    assert "tids recorded: 256, all distinct: yes\n" in out
    assert_same(runs.native, runs.km)


def test_gettid_distinct_per_thread(thr_basic, run_both, assert_same):
    runs = both(run_both, [thr_basic, "gettid"])
    out = runs.native.out
    assert "main: gettid == getpid: yes\n" in out
    assert "tids positive: yes, distinct: yes, none is the pid: yes" in out
    assert_same(runs.native, runs.km)


def test_exit_from_a_non_main_thread(thr_basic, run_both, assert_same):
    """exit(7) in a worker ends the process (main blocked in join, another thread in
    read) with status 7, after running the atexit handler in that thread."""
    runs = both(run_both, [thr_basic, "exit"])
    assert runs.native.returncode == 7
    assert "atexit handler ran in a non-main thread\n" in runs.native.out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("status", [None, "5"], ids=["last-returns", "last-exits-5"])
def test_pthread_exit_from_main(thr_basic, run_both, assert_same, base_env, status):
    """main calls pthread_exit; the other threads go on; the process ends when the last
    one returns (status 0) or calls exit(5)."""
    env = dict(base_env)
    if status:
        env["ME_STATUS"] = status
    runs = both(run_both, [thr_basic, "mainexit"], env=env)
    assert runs.native.returncode == int(status or 0)
    assert "thread 3 runs after main's pthread_exit\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_futex_directly(payloads, tflavour, run_both, assert_same):
    """FUTEX_WAIT (timeouts, EAGAIN), WAIT_BITSET with absolute CLOCK_MONOTONIC and
    CLOCK_REALTIME deadlines, WAKE counts, WAKE_BITSET, REQUEUE, CMP_REQUEUE, WAKE_OP;
    private and shared words, and a shared word mapped at two addresses."""
    runs = both(run_both, [payloads.build("thr_futex", tflavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    for label in ("private", "shared"):
        assert f"{label} WAIT with a 50 ms relative timeout: -1 ETIMEDOUT\n" in out
        assert f"{label} WAKE 2 of 3: 2\n" in out
        assert f"{label} REQUEUE wake 1, move 2: 3\n" in out
        assert f"{label} WAKE_OP wake 1 on A, B=1, wake 1 on B if old B==0: 2\n" in out
    assert "file mapping: WAKE through the first mapping: 1\n" in out
    assert " no\n" not in out and " no," not in out, out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("case", ["counter", "condvar", "mremap", "churn"])
def test_memory_growing_under_running_threads(payloads, tflavour, run_both, assert_same, case):
    """brk and mremap growth never move a page other threads are using: no lost
    increments, no stranded futex waiter, no fault (kontain.mm.space)."""
    program = payloads.build("thr_mem", tflavour)
    for _ in range(3):  # races: a few rounds each
        runs = both(run_both, [program, case])
        assert runs.native.returncode == 0, runs.native.out
        assert_same(runs.native, runs.km)


# ---- vCPUs reused, host threads started ahead: a thread's vCPU runs the next thread
# created, on a spare host thread (kontain.monitor.group) --------------------------------

@pytest.fixture
def thr_pool(payloads, tflavour):
    return payloads.build("thr_pool", tflavour)


def test_a_thread_on_a_reused_vcpu_starts_clean(thr_pool, run_both, assert_same):
    """Threads alternately dirty what a thread owns (signal mask and a pending signal,
    alternate stack, SSE rounding, GS base, TLS; name, nice value, timer slack and CPU
    affinity of its host thread) and check it, 300 times: every new thread has its
    creator's, its own tid and TLS, whatever ran before on its vCPU, and no thread has
    the tid of one before it (Linux hands tids out in turn); threads of a creator that
    changed its name and timer slack inherit those."""
    runs = both(run_both, [thr_pool, "cycles"])
    out = runs.native.out
    assert "cycles: 300, every checked thread started clean: yes\n" in out
    assert "SIGUSR1 handled: 0\n" in out
    assert "threads with the tid of one before them: 0\n" in out
    assert "threads inheriting their creator's name and timer slack: 5/5\n" in out
    assert_same(runs.native, runs.km)


def test_threads_created_while_others_end(thr_pool, run_both, assert_same):
    """4 threads each create and join 100 while 40 detached ones come and go: all run,
    and no two live threads share a tid."""
    runs = both(run_both, [thr_pool, "churn"])
    assert "workers: 440 (expected 440), tids shared by two live threads: 0\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_signal_to_a_thread_on_a_spare_host_thread(thr_pool, run_both, assert_same):
    runs = both(run_both, [thr_pool, "signals"])
    assert "signals taken by the thread they were sent to: 20/20\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_fork_from_a_process_with_spare_host_threads(thr_pool, run_both, assert_same):
    """The child runs threads of its own; the parent goes on running threads after."""
    runs = both(run_both, [thr_pool, "fork"])
    out = runs.native.out
    assert "child 2: 30 threads\nparent 2: child exited 2\n" in out
    assert "threads in the parent: 30\n" in out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("where", ["main", "thread"])
def test_exec_from_a_process_with_spare_host_threads(thr_pool, run_both, assert_same, where):
    """execve (by main, or by another thread) with spare host threads and one thread
    blocked: the new image's threads run."""
    runs = both(run_both, [thr_pool, "exec", where])
    assert f"after exec from {where}: pid is the tid: yes, threads: 40\n" in runs.native.out
    assert_same(runs.native, runs.km)
