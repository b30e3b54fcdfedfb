"""The simplest payload: output on both streams and a non-zero exit status."""


def test_hello_prints_and_exits_42_like_native(payloads, flavour, run_both, assert_same):
    exe = payloads.build("hello", flavour)
    runs = run_both([exe])
    assert runs.native.returncode == 42
    assert runs.native.out == "Hello from a kontain payload!\n"
    assert runs.native.err == "a line on stderr\n"
    assert_same(runs.native, runs.km)


def test_hello_sees_its_argument_like_native(payloads, run_both, assert_same):
    exe = payloads.build("hello", "musl")
    runs = run_both([exe, "KVM"])
    assert runs.native.out == "Hello from a KVM payload!\n"
    assert_same(runs.native, runs.km)


def test_payload_found_through_path_like_native(payloads, run_native, run_km, assert_same,
                                                tmp_path):
    """`km NAME` searches PATH like a shell does."""
    exe = payloads.build("hello", "glibc")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "hello-payload").symlink_to(exe)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C"}
    native = run_native(["hello-payload"], env=env)
    under_km = run_km(["hello-payload"], env=env)
    assert native.returncode == 42
    assert_same(native, under_km)
