/* herald run-due: placeholder until its module lands (replaced by that change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_run_due(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'run-due' is not built yet\n");
    return 1;
}
