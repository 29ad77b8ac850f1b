/* See itest.h. Uses libpq synchronously: tests may block, the code under test may not. */
#include "itest.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char conninfo[1024];

const char *itest_fresh_db(const char *prefix)
{
    const char *state = getenv("HERALD_TEST_PG_STATE");
    char line[1024], *tab, sql[256], dbname[128];
    FILE *f;
    PGconn *c;
    PGresult *r;

    if (!state || !(f = fopen(state, "r"))) {
        fprintf(stderr, "itest: no fixture cluster (HERALD_TEST_PG_STATE); run through ctest\n");
        exit(1);
    }
    if (!fgets(line, sizeof(line), f) || !(tab = strchr(line, '\t'))) {
        fprintf(stderr, "itest: bad state file %s\n", state);
        exit(1);
    }
    fclose(f);
    tab[strcspn(tab, "\n")] = '\0';
    c = PQconnectdb(tab + 1);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "itest: %s", PQerrorMessage(c));
        exit(1);
    }
    snprintf(dbname, sizeof(dbname), "%s_%ld", prefix, (long)getpid());
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", dbname);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "itest: %s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
    *strstr(tab + 1, "dbname=") = '\0';
    snprintf(conninfo, sizeof(conninfo), "%sdbname=%s", tab + 1, dbname);
    return conninfo;
}
