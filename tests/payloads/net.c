/* Sockets over loopback, three modes:
 *
 *   net server          listen on 127.0.0.1, an ephemeral port; print "port N", accept one
 *                       client and echo everything it sends until EOF, alternating
 *                       read/write and recv/send.
 *   net client PORT     connect to 127.0.0.1:PORT (the test's Python server), exercise
 *                       socket options and names, sendmsg/recvmsg with 2-element iovecs,
 *                       shutdown.
 *   net socketpair      AF_UNIX socketpairs, stream and datagram, sendmsg/recvmsg.
 *
 * Only deterministic facts are printed after the port line (no ports, no addresses other
 * than 127.0.0.1, no counts of reads, which depend on how TCP splits the stream). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "payload.h"

static int server(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    int one = 1;
    int reuse = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(s, 4) < 0)
        die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(s, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");
    /* The test reads this line to find the port; it is the only varying output. */
    printf("port %d\n", ntohs(addr.sin_port));
    fflush(stdout);
    report("setsockopt SO_REUSEADDR", reuse);
    printf("bound to 127.0.0.1: %s, address length %u\n",
           addr.sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? "yes" : "no", (unsigned)len);

    struct sockaddr_in peer;
    len = sizeof peer;
    int c = accept(s, (struct sockaddr *)&peer, &len);
    if (c < 0)
        die("accept");
    printf("accepted a client from %s, address length %u\n", inet_ntoa(peer.sin_addr),
           (unsigned)len);
    long total = 0;
    int use_recv = 0;
    char buf[4096];
    for (;;) {
        long n = use_recv ? recv(c, buf, sizeof buf, 0) : read(c, buf, sizeof buf);
        if (n < 0)
            die(use_recv ? "recv" : "read");
        if (n == 0)
            break;
        long done = 0;
        while (done < n) {
            long w = use_recv ? send(c, buf + done, n - done, 0)
                              : write(c, buf + done, n - done);
            if (w <= 0)
                die(use_recv ? "send" : "write");
            done += w;
        }
        total += n;
        use_recv = !use_recv;
    }
    printf("client closed its side after %ld bytes\n", total);
    report("close client", close(c));
    report("close listener", close(s));
    return 0;
}

static int client(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    int one = 1, val = 0;
    socklen_t len = sizeof val;
    report("setsockopt SO_REUSEADDR", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    report("getsockopt SO_REUSEADDR", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &val, &len));
    printf("SO_REUSEADDR is on: %s, optlen %u\n", val ? "yes" : "no", (unsigned)len);
    len = sizeof val;
    report("getsockopt SO_TYPE", getsockopt(s, SOL_SOCKET, SO_TYPE, &val, &len));
    printf("SO_TYPE is SOCK_STREAM: %s\n", val == SOCK_STREAM ? "yes" : "no");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    report("getpeername before connect", getpeername(s, (struct sockaddr *)&addr, &len));
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("connect");
    printf("connected\n");
    report("setsockopt TCP_NODELAY", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    val = 0;
    len = sizeof val;
    report("getsockopt TCP_NODELAY", getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &val, &len));
    printf("TCP_NODELAY is on: %s\n", val ? "yes" : "no");
    len = sizeof val;
    report("getsockopt SO_ERROR", getsockopt(s, SOL_SOCKET, SO_ERROR, &val, &len));
    printf("SO_ERROR = %d\n", val);

    struct sockaddr_in peer = {0}, self = {0};
    len = sizeof peer;
    report("getpeername", getpeername(s, (struct sockaddr *)&peer, &len));
    printf("peer is 127.0.0.1:PORT: %s\n", peer.sin_family == AF_INET &&
           peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(peer.sin_port) == port
           ? "yes" : "no");
    len = sizeof self;
    report("getsockname", getsockname(s, (struct sockaddr *)&self, &len));
    printf("local address is 127.0.0.1 with a port: %s\n",
           self.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && self.sin_port != 0 ? "yes" : "no");

    /* one request in two pieces with sendmsg */
    char part1[] = "hello, ", part2[] = "server\n";
    struct iovec out[2] = {{part1, 7}, {part2, 7}};
    struct msghdr msg = {.msg_iov = out, .msg_iovlen = 2};
    report("sendmsg 2 iovecs", sendmsg(s, &msg, 0));

    /* the reply ("hello, client! ...\n", 40 bytes) into two buffers with recvmsg */
    char head[8], tail[64], reply[128];
    long got = 0;
    int flags = 0;
    while (got < 40) {
        struct iovec in[2] = {{head, sizeof head}, {tail, sizeof tail}};
        struct msghdr rmsg = {.msg_iov = in, .msg_iovlen = 2};
        long n = recvmsg(s, &rmsg, 0);
        if (n <= 0) {
            report("recvmsg", n);
            break;
        }
        long first = n < (long)sizeof head ? n : (long)sizeof head;
        memcpy(reply + got, head, first);
        memcpy(reply + got + first, tail, n - first);
        got += n;
        flags |= rmsg.msg_flags;
    }
    print_escaped("reply", reply, got);
    printf("recvmsg flags: %#x\n", flags);

    report("shutdown SHUT_WR", shutdown(s, SHUT_WR));
    signal(SIGPIPE, SIG_IGN);
    errno = 0;
    printf("send after SHUT_WR: %ld %s\n", (long)send(s, "x", 1, 0), errno_name(errno));
    /* the server answers the EOF with a goodbye and closes */
    got = 0;
    for (;;) {
        long n = recv(s, reply + got, sizeof reply - got, 0);
        if (n <= 0) {
            report("recv at the end", n);
            break;
        }
        got += n;
    }
    print_escaped("goodbye", reply, got);
    report("close", close(s));
    return 0;
}

static int pair(void)
{
    int sv[2];
    report("socketpair AF_UNIX SOCK_STREAM", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    char a[] = "first-", b[] = "second";
    struct iovec out[2] = {{a, 6}, {b, 6}};
    struct msghdr msg = {.msg_iov = out, .msg_iovlen = 2};
    report("sendmsg 2 iovecs", sendmsg(sv[0], &msg, 0));
    char x[4] = {0}, y[16] = {0};
    struct iovec in[2] = {{x, sizeof x}, {y, sizeof y}};
    struct msghdr rmsg = {.msg_iov = in, .msg_iovlen = 2};
    long n = report("recvmsg into 4+16", recvmsg(sv[1], &rmsg, 0));
    print_escaped("iov[0]", x, 4);
    print_escaped("iov[1]", y, n > 4 ? n - 4 : 0);
    report("write the other way", write(sv[1], "pong", 4));
    n = report("read", read(sv[0], y, sizeof y));
    print_escaped("data", y, n > 0 ? n : 0);
    report("shutdown SHUT_WR", shutdown(sv[0], SHUT_WR));
    report("recv after peer shutdown", recv(sv[1], y, sizeof y, 0));
    report("MSG_DONTWAIT recv on empty socket", recv(sv[0], y, sizeof y, MSG_DONTWAIT));
    close(sv[0]);
    close(sv[1]);

    report("socketpair AF_UNIX SOCK_DGRAM", socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
    report("send datagram 1", send(sv[0], "one", 3, 0));
    struct iovec two[2] = {{"tw", 2}, {"o!", 2}};
    struct msghdr m2 = {.msg_iov = two, .msg_iovlen = 2};
    report("sendmsg datagram 2", sendmsg(sv[0], &m2, 0));
    memset(y, 0, sizeof y);
    n = report("recv datagram 1 (boundaries kept)", recv(sv[1], y, sizeof y, 0));
    print_escaped("datagram 1", y, n > 0 ? n : 0);
    char small[2];
    struct iovec in2[1] = {{small, 2}};
    struct msghdr r2 = {.msg_iov = in2, .msg_iovlen = 1};
    n = report("recvmsg datagram 2 into 2 bytes", recvmsg(sv[1], &r2, 0));
    printf("MSG_TRUNC set: %s\n", r2.msg_flags & MSG_TRUNC ? "yes" : "no");
    print_escaped("datagram 2 (truncated)", small, n > 0 ? n : 0);
    close(sv[0]);
    close(sv[1]);

    report("socketpair AF_INET (unsupported)", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    report("recv on a non-socket", recv(0, y, 1, 0));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "server") == 0)
        return server();
    if (argc > 2 && strcmp(argv[1], "client") == 0)
        return client(atoi(argv[2]));
    if (argc > 1 && strcmp(argv[1], "socketpair") == 0)
        return pair();
    fprintf(stderr, "usage: net server | net client PORT | net socketpair\n");
    return 2;
}
