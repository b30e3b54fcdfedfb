/*
 * kontain/snapshot.h: ask km for a snapshot from inside the payload.
 *
 * km's snapshot hypercall is a system call with a number Linux never uses
 * (KM_SNAPSHOT_HYPERCALL). It returns 0 in the original once the snapshot is written
 * (with KM_SNAPSHOT_LIVE; without it the original ends, exit status 0), 1 when the
 * payload runs again from the snapshot (`km FILE`), and -errno if it failed: EBUSY
 * when the process cannot be saved (km says why on its diagnostics stream),
 * ENOSYS when not running under km.
 *
 * Header only, no library: copy it beside your program or add km's include directory
 * (include/ in the km tree) to the compiler's search path.
 */
#ifndef KONTAIN_SNAPSHOT_H
#define KONTAIN_SNAPSHOT_H

#define KM_SNAPSHOT_HYPERCALL 0x4B4D0001L
#define KM_SNAPSHOT_LIVE 1L

/* flags: KM_SNAPSHOT_LIVE or 0; label: shown by tools (may be 0); path: where the
   snapshot goes (0: km --snapshot, default ./kmsnap). */
static inline long km_snapshot(long flags, const char *label, const char *path)
{
    long ret;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(KM_SNAPSHOT_HYPERCALL), "D"(flags), "S"(label), "d"(path),
                       "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

#endif
