/* The shared object dyn_main loads at run time. */
int plugin_answer(int x) { return x * 7; }
const char *plugin_name(void) { return "kontain-plugin"; }
