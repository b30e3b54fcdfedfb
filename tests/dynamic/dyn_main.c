/* A dynamically linked payload: libc from the system, a plugin it dlopen()s itself. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
	printf("sqrt(2) = %.6f\n", sqrt(2.0));
	char *s = strdup("dynamic libc works");
	printf("%s (%zu)\n", s, strlen(s));
	free(s);
	if (argc < 2)
		return 0;
	void *plugin = dlopen(argv[1], RTLD_NOW);
	if (!plugin) {
		printf("dlopen failed: %s\n", dlerror());
		return 1;
	}
	int (*answer)(int) = (int (*)(int))dlsym(plugin, "plugin_answer");
	const char *(*name)(void) = (const char *(*)(void))dlsym(plugin, "plugin_name");
	printf("plugin %s says %d\n", name(), answer(6));
	dlclose(plugin);
	return 0;
}
