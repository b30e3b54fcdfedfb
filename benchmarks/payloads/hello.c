/* hello: the smallest useful payload; its wall time under km is km's start-up cost. */
#include <stdio.h>

int main(void)
{
	printf("hello\n");
	return 0;
}
