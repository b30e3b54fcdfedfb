/* A symlink race: race MODE HOSTDIR.
 *
 * One thread keeps swapping /w/race (atomically, by rename) between /w/inside, a file in
 * the root, and links out of it (absolute, relative, climbing); the main thread opens
 * /w/race over and over, to read it (MODE read) or to append to it, creating it if the
 * link dangles (MODE write), or chmods it to 0644, the mode /w/inside already has (MODE
 * chmod). Resolved inside the root the outside targets do not exist, so every read gives
 * "INSIDE\n" or ENOENT, and every write or chmod lands in the root. The test checks the
 * host canary is untouched. The lines printed do not depend on the timing.
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define ATTEMPTS 400

static atomic_int started, stop;
static const char *outside[3];

static void *swapper(void *arg)
{
    (void)arg;
    atomic_store(&started, 1);
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        const char *target = i % 2 ? outside[(i / 2) % 3] : "/w/inside";
        unlink("/w/race.tmp");
        if (symlink(target, "/w/race.tmp") < 0 || rename("/w/race.tmp", "/w/race") < 0)
            die("swap");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc != 3 || (strcmp(argv[1], "read") && strcmp(argv[1], "write")
                      && strcmp(argv[1], "chmod"))) {
        printf("usage: race read|write|chmod HOSTDIR\n");
        return 2;
    }
    int writing = !strcmp(argv[1], "write"), chmodding = !strcmp(argv[1], "chmod");
    const char *H = argv[2];
    outside[0] = fmt("%s/canary", H);
    outside[1] = fmt("%s%s/canary", UP, H);
    outside[2] = "../../host/canary";  /* from /w: one level above the root's top */
    if (mkdir("/w", 0755) < 0)
        die("mkdir /w");
    make_file("/w/inside", "INSIDE\n");
    if (chmod("/w/inside", 0644) < 0)
        die("chmod");
    make_link("/w/inside", "/w/race");

    pthread_t thread;
    if (pthread_create(&thread, NULL, swapper, NULL))
        die("pthread_create");
    while (!atomic_load(&started))
        sched_yield();

    int foreign = 0, errors = 0;
    for (int i = 0; i < ATTEMPTS; i++) {
        if (chmodding) {
            if (chmod("/w/race", 0644) < 0 && errno != ENOENT)
                errors++;
            continue;
        }
        int fd = writing ? open("/w/race", O_WRONLY | O_CREAT | O_APPEND, 0644)
                         : open("/w/race", O_RDONLY);
        if (fd < 0) {
            if (errno != ENOENT)
                errors++;
            continue;
        }
        if (writing) {
            if (write(fd, "W", 1) != 1)
                errors++;
        } else {
            char buf[64];
            long n = read(fd, buf, sizeof buf);
            if (n != 7 || memcmp(buf, "INSIDE\n", 7)) {
                foreign++;
                printf("read something else: ");
                print_bytes(buf, n < 0 ? 0 : n);
                printf("\n");
            }
        }
        close(fd);
    }
    atomic_store(&stop, 1);
    pthread_join(thread, NULL);
    printf("race %s: %d attempts\n", argv[1], ATTEMPTS);
    printf("race %s: errors other than ENOENT: %d\n", argv[1], errors);
    if (!writing && !chmodding)
        printf("race read: reads of anything but the inside file: %d\n", foreign);
    return 0;
}
