/* The smallest interesting payload: stdout, stderr and a non-zero exit status. */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("Hello from a %s payload!\n", argc > 1 ? argv[1] : "kontain");
    fprintf(stderr, "a line on stderr\n");
    return 42;
}
