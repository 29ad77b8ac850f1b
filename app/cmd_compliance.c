/* herald compliance: placeholder until the module lands (replaced in this change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_compliance(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'compliance' is not built yet\n");
    return 1;
}
