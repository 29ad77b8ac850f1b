/* .env loader (see env.h): lets a newcomer keep settings in one file beside the data. */
#include "common/env.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int env_load_dotenv(const char *path, int *err_line)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0, set = 0;

    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line), *eq, *key, *val;
        size_t vlen;

        lineno++;
        if (*s == '\0' || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        eq = strchr(s, '=');
        if (eq == NULL || eq == s)
            goto bad;
        *eq = '\0';
        key = trim(s);
        for (char *k = key; *k; k++)
            if (!(isalnum((unsigned char)*k) || *k == '_'))
                goto bad;
        val = trim(eq + 1);
        vlen = strlen(val);
        if (vlen >= 2 && (val[0] == '"' || val[0] == '\'') && val[vlen - 1] == val[0]) {
            val[vlen - 1] = '\0';
            val++;
        }
        if (getenv(key) == NULL) {
            setenv(key, val, 0);
            set++;
        }
    }
    fclose(f);
    return set;
bad:
    fclose(f);
    if (err_line)
        *err_line = lineno;
    return -1;
}
