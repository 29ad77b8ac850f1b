/* herald org: placeholder until its module lands (replaced by that change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_org(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'org' is not built yet\n");
    return 1;
}
