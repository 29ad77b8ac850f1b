/* herald db: placeholder until the module lands (replaced in this change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_db(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'db' is not built yet\n");
    return 1;
}
