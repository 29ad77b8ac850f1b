/*
 * herald suppression: the do-not-message list of the acting org. Every change
 * writes a consent event (channel "cli" or "import", the acting user as actor) in
 * the same statement as the list change, so the history a TCPA dispute asks for
 * is never out of step with the list. Import takes a CSV (first column, or the
 * "phone"-like column of a header row) or one number per line.
 */
#include "app/cli.h"
#include "app/commands.h"
#include "compliance/phone.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char add_sql[] =
    "WITH e AS (INSERT INTO consent_events (org_id, e164, kind, channel, actor)"
    "           VALUES ($1, $2, 'opt_out', $3, $4) RETURNING id)"
    " INSERT INTO suppression (org_id, e164, reason, consent_event_id) SELECT $1, $2, $5, id FROM e"
    " ON CONFLICT (org_id, e164) DO UPDATE SET consent_event_id = EXCLUDED.consent_event_id";
static const char remove_sql[] =
    "WITH e AS (INSERT INTO consent_events (org_id, e164, kind, channel, actor)"
    "           VALUES ($1, $2, 'opt_in', $3, $4) RETURNING id)"
    " DELETE FROM suppression WHERE org_id = $1 AND e164 = $2 AND EXISTS (SELECT 1 FROM e)";

static int usage(void)
{
    fprintf(stderr, "usage: herald suppression add E164 [--region CC] [--org ID]\n"
                    "       herald suppression remove E164 [--region CC] [--org ID]\n"
                    "       herald suppression list [--org ID]\n"
                    "       herald suppression import FILE|- [--region CC] [--org ID]\n");
    return EXIT_USAGE;
}

static void actor_of(char *out, size_t n)
{
    const char *u = getenv("USER");
    snprintf(out, n, "cli:%s", u && *u ? u : "unknown");
}

/* Applies one change; returns 0, or -1 after printing why. */
static int change(cli_session_t *s, int add, const char *raw, const char *region, const char *channel)
{
    phone_result_t ph;
    char org[24], actor[96];
    const char *p[5];
    const char *err;
    PGresult *r;

    if (phone_normalize(raw, strlen(raw), region, &ph) != PHONE_OK) {
        fprintf(stderr, "herald: '%s': not a valid phone number\n", raw);
        return -1;
    }
    snprintf(org, sizeof(org), "%lld", (long long)s->org_id);
    actor_of(actor, sizeof(actor));
    p[0] = org;
    p[1] = ph.e164;
    p[2] = channel;
    p[3] = actor;
    p[4] = strcmp(channel, "import") == 0 ? "import" : "manual";
    if (cli_exec(s, add ? add_sql : remove_sql, add ? 5 : 4, p, &r, &err) != 0) {
        fprintf(stderr, "herald: suppression: %s\n", err);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* The first field of a CSV line (quotes removed). */
static void first_field(const char *line, char *out, size_t n)
{
    size_t o = 0;
    int q = 0;

    while (*line == ' ' || *line == '\t')
        line++;
    if (*line == '"') {
        q = 1;
        line++;
    }
    for (; *line && o + 1 < n; line++) {
        if (q && *line == '"') {
            if (line[1] == '"') {
                out[o++] = '"';
                line++;
                continue;
            }
            break;
        }
        if (!q && (*line == ',' || *line == '\r' || *line == '\n'))
            break;
        out[o++] = *line;
    }
    while (o > 0 && isspace((unsigned char)out[o - 1]))
        o--;
    out[o] = '\0';
}

static int import_file(cli_session_t *s, const char *path, const char *region)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char line[4096], field[512];
    long lineno = 0, added = 0, bad = 0;

    if (!f) {
        fprintf(stderr, "herald: cannot open %s\n", path);
        return 1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *l = line;
        lineno++;
        if (lineno == 1 && (unsigned char)l[0] == 0xEF && (unsigned char)l[1] == 0xBB && (unsigned char)l[2] == 0xBF)
            l += 3;
        first_field(l, field, sizeof(field));
        if (!field[0])
            continue;
        if (lineno == 1 && !strpbrk(field, "0123456789"))
            continue; /* header row */
        if (change(s, 1, field, region, "import") == 0)
            added++;
        else
            bad++;
    }
    if (f != stdin)
        fclose(f);
    printf("imported %ld, invalid %ld\n", added, bad);
    return bad && !added ? 1 : 0;
}

int cmd_suppression(int argc, char **argv)
{
    const char *org = NULL, *region = NULL, *arg = NULL;
    cli_session_t s;
    int rc = 1;

    if (argc < 2)
        return usage();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--org") == 0 && i + 1 < argc)
            org = argv[++i];
        else if (strcmp(argv[i], "--region") == 0 && i + 1 < argc)
            region = argv[++i];
        else if (!arg && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
            arg = argv[i];
        else
            return usage();
    }
    if ((strcmp(argv[1], "list") == 0) != (arg == NULL))
        return usage();
    if (strcmp(argv[1], "add") && strcmp(argv[1], "remove") && strcmp(argv[1], "list") && strcmp(argv[1], "import"))
        return usage();
    if (cli_session_open(&s) != 0)
        return 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    if (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "remove") == 0) {
        int add = strcmp(argv[1], "add") == 0;
        if (change(&s, add, arg, region, "cli") == 0) {
            printf("%s\n", add ? "suppressed" : "removed");
            rc = 0;
        }
    } else if (strcmp(argv[1], "import") == 0) {
        rc = import_file(&s, arg, region);
    } else {
        char orgs[24];
        const char *p[1] = {orgs};
        const char *err;
        PGresult *r;
        snprintf(orgs, sizeof(orgs), "%lld", (long long)s.org_id);
        if (cli_exec(&s,
                     "SELECT e164, reason, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                     " FROM suppression WHERE org_id = $1 ORDER BY created_at, e164",
                     1, p, &r, &err) != 0) {
            fprintf(stderr, "herald: suppression: %s\n", err);
            goto out;
        }
        for (int i = 0; i < PQntuples(r); i++)
            printf("%s\t%s\t%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        PQclear(r);
        rc = 0;
    }
out:
    cli_session_close(&s);
    return rc;
}
