/* What the kernel (or km) hands a new process: argc/argv, the environment and the
 * auxiliary vector. Prints only what is the same natively and under km: values, strings
 * and booleans, never stack or load addresses (ASLR moves those). */
#include <elf.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "payload.h"

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

extern char **environ;
extern char _start[];

static Elf64_auxv_t *auxv;  /* the vector itself, as the kernel (or km) laid it out */

/* The raw value from the auxiliary vector (glibc's getauxval(AT_HWCAP) is not the
 * kernel's value but one glibc computes), and what getauxval() says when it agrees. */
static void show(const char *name, unsigned long type)
{
    int found = 0;
    unsigned long v = 0;
    for (Elf64_auxv_t *a = auxv; a->a_type != AT_NULL; a++)
        if (a->a_type == type) {
            v = a->a_un.a_val;
            found = 1;
            break;
        }
    printf("%s = %#lx%s\n", name, v, found ? "" : " (absent)");
}

int main(int argc, char **argv, char **envp)
{
    char **e = envp;
    while (*e)
        e++;
    auxv = (Elf64_auxv_t *)(e + 1);

    printf("argc = %d\n", argc);
    for (int i = 0; i < argc; i++)
        print_escaped("argv[i]", argv[i], (long)strlen(argv[i]));
    printf("argv[argc] is NULL: %s\n", argv[argc] == NULL ? "yes" : "no");

    const char *selected[] = {"KM_TEST_GREETING", "KM_TEST_EMPTY", "KM_TEST_UNSET", "LC_ALL"};
    for (unsigned i = 0; i < sizeof selected / sizeof *selected; i++) {
        const char *v = getenv(selected[i]);
        printf("getenv(%s) = %s%s%s\n", selected[i], v ? "\"" : "", v ? v : "(unset)",
               v ? "\"" : "");
    }
    int envc = 0;
    for (char **e = environ; *e; e++)
        envc++;
    printf("envc = %d\n", envc);
    for (char **e = environ; *e; e++)
        print_escaped("environ", *e, (long)strlen(*e));
    /* The environment strings follow the argument strings on the stack. */
    printf("envp follows argv[]: %s\n", envp == argv + argc + 1 ? "yes" : "no");
    printf("environ == envp: %s\n", environ == envp ? "yes" : "no");
    int ok = 1;
    for (Elf64_auxv_t *a = auxv; a->a_type != AT_NULL; a++)
        if (a->a_type != AT_HWCAP && a->a_type != AT_HWCAP2 && a->a_type < 64 &&
            getauxval(a->a_type) != a->a_un.a_val)
            ok = 0;
    printf("getauxval() agrees with the vector: %s\n", ok ? "yes" : "no");

    show("AT_PAGESZ", AT_PAGESZ);
    show("AT_PHENT", AT_PHENT);
    show("AT_PHNUM", AT_PHNUM);
    show("AT_UID", AT_UID);
    show("AT_EUID", AT_EUID);
    show("AT_GID", AT_GID);
    show("AT_EGID", AT_EGID);
    show("AT_SECURE", AT_SECURE);
    show("AT_CLKTCK", AT_CLKTCK);
    show("AT_HWCAP", AT_HWCAP);
    show("AT_HWCAP2", AT_HWCAP2);
    show("AT_MINSIGSTKSZ", AT_MINSIGSTKSZ);
    show("AT_BASE", AT_BASE);
    show("AT_FLAGS", AT_FLAGS);

    const char *platform = (const char *)getauxval(AT_PLATFORM);
    printf("AT_PLATFORM = %s\n", platform ? platform : "(null)");
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    printf("AT_EXECFN = %s\n", execfn ? execfn : "(null)");
    printf("AT_EXECFN equals argv[0]: %s\n",
           execfn && strcmp(execfn, argv[0]) == 0 ? "yes" : "no");

    const unsigned char *random = (const unsigned char *)getauxval(AT_RANDOM);
    printf("AT_RANDOM is non-null: %s\n", random ? "yes" : "no");
    if (random) {
        unsigned sum = 0;
        for (int i = 0; i < 16; i++)
            sum |= random[i];  /* the 16 bytes must at least be readable */
        printf("AT_RANDOM 16 bytes readable: yes\n");
        (void)sum;
    }

    unsigned long phdr = getauxval(AT_PHDR), entry = getauxval(AT_ENTRY);
    printf("AT_PHDR is non-zero: %s\n", phdr ? "yes" : "no");
    printf("AT_ENTRY is non-zero: %s\n", entry ? "yes" : "no");
    printf("AT_ENTRY == &_start: %s\n", entry == (unsigned long)_start ? "yes" : "no");
    if (phdr) {
        /* The program headers really are there: count the PT_LOADs, find PT_PHDR or the
         * headers' own address. */
        const Elf64_Phdr *ph = (const Elf64_Phdr *)phdr;
        int loads = 0;
        for (unsigned long i = 0; i < getauxval(AT_PHNUM); i++)
            loads += ph[i].p_type == PT_LOAD;
        printf("PT_LOAD segments at AT_PHDR: %d\n", loads);
    }
#if !PAYLOAD_PIE
    /* A non-PIE executable sits at its link-time addresses: these are exact. */
    printf("AT_ENTRY = %#lx\n", entry);
    printf("AT_PHDR = %#lx\n", phdr);
#endif
    printf("flavour = %s\n", PAYLOAD_FLAVOUR);
    return 0;
}
