/* herald phone: placeholder until the module lands (replaced in this change). */
#include "app/commands.h"
#include <stdio.h>
int cmd_phone(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "herald: 'phone' is not built yet\n");
    return 1;
}
