/* The demo payload: an ordinary static Linux program, never recompiled for Kontain. */
#include <stdio.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(int argc, char **argv) {
	struct utsname u;
	uname(&u);
	printf("Hello from %s, pid %d, running in its own VM on %s %s\n", argv[0], getpid(),
	       u.sysname, u.release);
	return 0;
}
