/* Unix sockets across the root: sockets HOSTDIR ABSTRACT.
 *
 * The test listens on HOSTDIR/stream.sock (SOCK_STREAM) and HOSTDIR/dgram.sock
 * (SOCK_DGRAM), outside the root, and on the abstract names "\0ABSTRACT" (stream) and
 * "\0ABSTRACT-dgram". The payload tries to reach them by absolute and climbing paths, by
 * links out of the root, and with every call that takes an address: connect, bind,
 * sendto, sendmsg (msg_name), sendmmsg. The working directory is /w, so ../../host is
 * one level above the root's top (HOSTDIR itself, if `..` were taken on the host);
 * a socket path has at most 107 bytes, so the long climbs of the other payloads are out. Lines starting "abstract" are about the abstract
 * names, which a chroot does not confine (they live in the network namespace).
 */
#include "escape.h"  /* first: it defines _GNU_SOURCE (struct mmsghdr) */

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *H;

static socklen_t address(struct sockaddr_un *sa, const char *path, int abstract)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (abstract) {
        strncpy(sa->sun_path + 1, path, sizeof sa->sun_path - 2);
        return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
    }
    strncpy(sa->sun_path, path, sizeof sa->sun_path - 1);
    return sizeof *sa;
}

static void try_connect(const char *label, int type, const char *path, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = address(&sa, path, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0)
        die("socket");
    if (say(label, connect(s, (struct sockaddr *)&sa, len)) == 0)
        say(fmt("%s then send", label), send(s, "ESCAPED\n", 8, MSG_NOSIGNAL));
    close(s);
}

static void try_sendto(const char *label, const char *path, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = address(&sa, path, abstract);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    say(label, sendto(s, "ESCAPED\n", 8, 0, (struct sockaddr *)&sa, len));
    close(s);
}

static void try_sendmsg(const char *label, const char *path, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = address(&sa, path, abstract);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct iovec iov = {"ESCAPED\n", 8};
    struct msghdr msg = {.msg_name = &sa, .msg_namelen = len, .msg_iov = &iov,
                         .msg_iovlen = 1};
    say(label, sendmsg(s, &msg, 0));
    close(s);
}

static void try_sendmmsg(const char *label, const char *path, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = address(&sa, path, abstract);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct iovec iov = {"ESCAPED\n", 8};
    struct mmsghdr msgs[2];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 2; i++)
        msgs[i].msg_hdr = (struct msghdr){.msg_name = &sa, .msg_namelen = len,
                                          .msg_iov = &iov, .msg_iovlen = 1};
    long n = syscall(SYS_sendmmsg, s, msgs, 2, 0);
    if (n < 0)
        printf("%s: %s\n", label, ename(errno));
    else
        printf("%s: OK %ld sent\n", label, n);
    close(s);
}

static void try_bind(const char *label, const char *path)
{
    struct sockaddr_un sa;
    socklen_t len = address(&sa, path, 0);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    say(label, bind(s, (struct sockaddr *)&sa, len));
    close(s);
}

int main(int argc, char **argv)
{
    line_buffered();
    if (argc != 3) {
        printf("usage: sockets HOSTDIR ABSTRACT\n");
        return 2;
    }
    H = argv[1];
    const char *abstract = argv[2];
    if (mkdir("/w", 0755) < 0)
        die("mkdir /w");
    make_link(fmt("%s/stream.sock", H), "/w/stream-link");
    make_link(fmt("%s/dgram.sock", H), "/w/dgram-link");
    make_link("../host/stream.sock", "/stream-top");
    make_link(H, "/w/absdir");
    if (chdir("/w") < 0)
        die("chdir");

    /* The paths: the absolute host path, a climb, links out, a link to the directory */
    const char *stream[][2] = {
        {fmt("%s/stream.sock", H), "HOSTDIR/stream.sock"},
        {"../../host/stream.sock", "../../host/stream.sock (climbing)"},
        {"/w/stream-link", "/w/stream-link"},
        {"/stream-top", "/stream-top"},
        {"absdir/stream.sock", "absdir/stream.sock (relative)"},
    };
    for (int i = 0; i < 5; i++)
        try_connect(fmt("connect stream %s", stream[i][1]), SOCK_STREAM, stream[i][0], 0);
    const char *dgram[][2] = {
        {fmt("%s/dgram.sock", H), "HOSTDIR/dgram.sock"},
        {"../../host/dgram.sock", "../../host/dgram.sock (climbing)"},
        {"/w/dgram-link", "/w/dgram-link"},
        {"absdir/dgram.sock", "absdir/dgram.sock (relative)"},
    };
    for (int i = 0; i < 4; i++) {
        try_connect(fmt("connect dgram %s", dgram[i][1]), SOCK_DGRAM, dgram[i][0], 0);
        try_sendto(fmt("sendto %s", dgram[i][1]), dgram[i][0], 0);
        try_sendmsg(fmt("sendmsg %s", dgram[i][1]), dgram[i][0], 0);
        try_sendmmsg(fmt("sendmmsg %s", dgram[i][1]), dgram[i][0], 0);
    }
    /* bind creates the socket file: inside the root (the decoy), never on the host */
    try_bind("bind HOSTDIR/bound.sock", fmt("%s/bound.sock", H));
    try_bind("bind ../../host/bound2.sock (climbing)", "../../host/bound2.sock");
    try_bind("bind absdir/bound3.sock (relative)", "absdir/bound3.sock");
    make_link(fmt("%s/bound4.sock", H), "/w/bound-link");
    try_bind("bind /w/bound-link (a dangling link)", "/w/bound-link");

    /* Abstract names are not paths: only a separate network namespace or Landlock's
     * scoping keeps the payload from the host's listeners. */
    try_connect("abstract connect stream", SOCK_STREAM, abstract, 1);
    const char *dname = fmt("%s-dgram", abstract);
    try_connect("abstract connect dgram", SOCK_DGRAM, dname, 1);
    try_sendto("abstract sendto", dname, 1);
    try_sendmsg("abstract sendmsg", dname, 1);
    try_sendmmsg("abstract sendmmsg", dname, 1);
    return 0;
}
