/* herald serve: placeholder until its module lands (replaced by that change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'serve' is not built yet\n");
    return 1;
}
