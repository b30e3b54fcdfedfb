/* Allocates and touches N MiB (argv[1]), then says so: a container's memory limit
 * below N ends it (the OOM killer), one above lets it finish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int mib = argc > 1 ? atoi(argv[1]) : 200;
    for (int i = 0; i < mib; i++) {
        char *block = malloc(1 << 20);
        if (!block)
            return 2;
        memset(block, 1, 1 << 20);
    }
    printf("touched %d MiB\n", mib);
    return 0;
}
