"""The paused state: every thread of a running payload stopped at a known point, its
CPU state read (and writable), then resumed, the payload none the wiser.

The driver runs inside a km process of its own (the paused state is km's internal seam
for snapshots and the gdb stub): a Python script launches the payload with
kontain.monitor.launch, runs it on its main thread, and pauses and resumes it from
another.
"""

from __future__ import annotations

import sys
import textwrap

from conftest import REPO, Flavour, run

DRIVER = textwrap.dedent("""
    import _thread, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from kontain.machine import cpustate
    from kontain.monitor.launch import LaunchSpec, launch
    from kontain.syscalls.registry import all_handlers

    def finish(outcome):
        os._exit(128 + outcome.signal if outcome.signal else outcome.status)

    launched = launch(LaunchSpec(sys.argv[2], [b"3"]), all_handlers(), finish)
    group = launched.proc.group

    def drive():
        deadline = time.monotonic() + 30
        while len(group.all()) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)  # waiting for the payload to start its threads
        for round in range(5):
            assert group.pause(timeout=20), "pause did not complete"
            threads = group.all()
            assert threads and all(t.parked for t in threads), "a thread is not parked"
            for t in threads:
                state = cpustate.capture(t.vcpu, t.regs)
                rip, rsp, _flags = t.user_context()
                assert 0 < rip < 1 << 47 and 0 < rsp < 1 << 47, hex(rip)
                assert state.fs_base, "every thread has its TLS"
            print(f"paused {len(threads)} threads", flush=True)
            group.resume()

    _thread.start_new_thread(drive, ())
    launched.run()
""")


def test_pause_inspect_resume(payloads, tmp_path):
    program = payloads.build("thr_spin", Flavour("glibc-pthread", "gcc",
                                                 ("-static", "-O2", "-pthread"), pie=False))
    (tmp_path / "driver.py").write_text(DRIVER)
    result = run([sys.executable, str(tmp_path / "driver.py"), str(REPO), str(program)],
                 timeout=120)
    assert result.returncode == 0, result.out + result.err
    assert result.out.count("paused 4 threads") == 5, result.out + result.err
    assert result.out.endswith("threads done: yes\n"), result.out + result.err
