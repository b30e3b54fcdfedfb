/* What a payload gets for instructions only the kernel may run, and for pretending to be
 * the kernel: `int $N`, `out` to the ports km's ring-0 stub uses to report exceptions, a
 * jump into the stub's exception entries, hlt, cli. Linux answers with the signals below
 * (#GP is SIGSEGV; int3 is SIGTRAP); km must answer the same, and never believe a forged
 * exception. Prints one line per attempt. */
#include <stdio.h>
#include <signal.h>
#include <setjmp.h>
#include <string.h>
#include <stdlib.h>
static sigjmp_buf jb; static volatile int got;
static void h(int s, siginfo_t *si, void *u){ got = s; siglongjmp(jb,1); }
#define TRY(name, code) do { got=0; if(!sigsetjmp(jb,1)) { code; } printf("%-12s -> %s\n", name, got?strsignal(got):"no signal"); } while(0)
int main(){
  setvbuf(stdout,0,_IONBF,0); struct sigaction sa; memset(&sa,0,sizeof sa); sa.sa_sigaction=h; sa.sa_flags=SA_SIGINFO|SA_NODEFER;
  for (int s=1;s<32;s++) sigaction(s,&sa,0);
  TRY("int $0", asm volatile("int $0"));
  TRY("int $3", asm volatile("int $3"));
  TRY("int3", asm volatile("int3"));
  TRY("int $13", asm volatile("int $13"));
  TRY("int $14", asm volatile("int $14"));
  TRY("int $32", asm volatile("int $32"));
  TRY("int $0xff", asm volatile("int $0xff"));
  TRY("out 0x8e", asm volatile("outb %al, $0x8e"));
  TRY("out 0x80", asm volatile("outb %al, $0x80"));
  TRY("ud2", asm volatile("ud2"));
  TRY("hlt", asm volatile("hlt"));
  TRY("cli", asm volatile("cli"));
  TRY("jmp stub14", asm volatile("movabs $0xffffff800000703c, %%rax; jmp *%%rax" ::: "rax"));
  return 0;
}
