"""Memory: a big malloc, big mmaps given back on munmap, brk, mremap and mprotect."""

import pytest

GIB_KIB = 1 << 20  # ru_maxrss is in KiB


@pytest.mark.slow
def test_malloc_512mib_touched_page_by_page_matches_native(payloads, flavour, run_both,
                                                           assert_same):
    runs = run_both([payloads.build("malloc_big", flavour)], timeout=120)
    assert runs.native.returncode == 0, runs.native.out
    assert "checksum matches: yes" in runs.native.out
    assert "wrong pages: 0, last byte ok: yes" in runs.native.out
    assert_same(runs.native, runs.km)


@pytest.mark.slow
def test_mmap_1gib_eight_times_matches_native_and_memory_is_given_back(
        payloads, run_both, assert_same):
    """Eight rounds of mmap 1 GiB / touch every page / munmap: km's peak RSS must stay
    near one round's worth, not grow to 8 GiB. (One flavour: each km round takes
    seconds.)"""
    runs = run_both([payloads.build("mmap_big", "musl")], timeout=240)
    assert runs.native.returncode == 0, runs.native.out
    assert runs.native.out.count("zero-filled yes, wrong 0, munmap 0") == 8
    assert_same(runs.native, runs.km)
    assert runs.native.maxrss_kib < 2.5 * GIB_KIB
    assert runs.km.maxrss_kib < 2.5 * GIB_KIB, (
        f"km's peak RSS was {runs.km.maxrss_kib / GIB_KIB:.2f} GiB (native "
        f"{runs.native.maxrss_kib / GIB_KIB:.2f} GiB): munmap does not give memory back")


def test_brk_grows_to_64mib_and_shrinks_like_native(payloads, flavour, run_both,
                                                    assert_same):
    runs = run_both([payloads.build("brk", flavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "grew in 64 steps of 1 MiB, failures 0, wrong pages 0" in out
    assert "shrink to start: ok, break == initial: yes" in out
    assert_same(runs.native, runs.km)


def test_mremap_grow_shrink_and_fixed_match_native(payloads, flavour, run_both,
                                                   assert_same):
    runs = run_both([payloads.build("mremap", flavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "grow with MREMAP_MAYMOVE: ok, moved: yes" in out
    assert "MREMAP_FIXED lands at the target: yes" in out
    assert "contents kept: no" not in out
    assert_same(runs.native, runs.km)


def test_mprotect_read_only_and_prot_none_match_native(payloads, flavour, run_both,
                                                       assert_same):
    runs = run_both([payloads.build("mprotect", flavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "read-only page reads back: yes" in out
    assert "contents kept across PROT_NONE: yes" in out
    assert_same(runs.native, runs.km)


@pytest.mark.parametrize("mode", ["write", "prot-none-read"])
def test_access_to_protected_page_kills_with_sigsegv_like_native(payloads, flavour, mode,
                                                                 run_both, assert_same):
    """A write to a read-only page (or a read of a PROT_NONE one) is fatal: km ends
    itself with the same SIGSEGV, so its parent sees what a native run shows."""
    runs = run_both([payloads.build("mprotect", flavour), mode])
    assert runs.native.returncode == -11
    assert runs.native.out.endswith("...\n")  # the line before the faulting access
    assert_same(runs.native, runs.km)


def test_reservations_cost_no_memory(payloads, run_both, assert_same):
    """PROT_NONE and MAP_NORESERVE reservations as large as Linux allows (64 GiB, then
    a 5 GiB shared one, a 1 TiB read-write one touched here and there, by the payload,
    by read(2), by a futex), and parts of a reservation committed later."""
    program = payloads.build("reserve", "musl")
    runs = run_both([program], timeout=120)
    assert "1 TiB MAP_NORESERVE: ok\n  touched" in runs.native.out, runs.native.out
    assert "mprotect 1 GiB of it: 0, 9\n" in runs.native.out
    assert_same(runs.native, runs.km)


def test_2mib_pages_split_and_dropped_under_every_change_match_native(
        payloads, flavour, run_both, assert_same):
    """Large anonymous mappings (2 MiB guest pages once touched) under mprotect and
    munmap of one page inside, MAP_FIXED over part, MADV_DONTNEED, mremap, fork and
    threads: the payload sees what it sees natively."""
    runs = run_both([payloads.build("huge_slots", flavour)])
    out = runs.native.out
    assert runs.native.returncode == 0, out
    assert "guard page: read faults 1, write faults 1, neighbours wrong 0" in out
    assert "child: inherited wrong 0, own writes wrong 0, hole faults 1" in out
    assert "4 threads on fresh slots: wrong 0" in out
    assert_same(runs.native, runs.km)
