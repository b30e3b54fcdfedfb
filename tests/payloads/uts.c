/* sethostname / setdomainname and what uname and gethostname show afterwards; then
 * the same calls refused once the process is no longer root. Run it in a UTS namespace
 * of its own when it runs natively as root (unshare -u), or it renames the host. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "payload.h"

static void show(void)
{
    struct utsname u;
    char name[128] = "";
    uname(&u);
    gethostname(name, sizeof name);
    printf("uname nodename=%s domainname=%s, gethostname=%s\n", u.nodename, u.domainname,
           name);
}

int main(void)
{
    char long_name[80];
    memset(long_name, 'x', sizeof long_name);
    report("sethostname(kontain-uts)", sethostname("kontain-uts", 11));
    report("setdomainname(example.org)", setdomainname("example.org", 11));
    show();
    report("sethostname(64 bytes)", sethostname(long_name, 64));
    report("sethostname(65 bytes)", sethostname(long_name, 65));
    report("sethostname(-1)", sethostname(long_name, (size_t)-1));
    report("sethostname(bad pointer)", sethostname((const char *)16, 4));
    report("sethostname(empty)", sethostname("", 0));
    show();
    report("setuid(65534)", setuid(65534));
    report("sethostname as nobody", sethostname("nobody", 6));
    report("setdomainname as nobody", setdomainname("nobody", 6));
    return 0;
}
