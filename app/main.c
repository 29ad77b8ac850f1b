/*
 * herald: the command-line entry point. Loads .env, then dispatches to the
 * command handlers in app/cmd_*.c; this is the only place that knows them all.
 */
#include "app/commands.h"
#include "common/env.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"db", cmd_db, "db start|stop|status|migrate|url   manage the database"},
    {"phone", cmd_phone, "phone normalize [--region CC]     stdin numbers -> E.164 with reasons"},
    {"sms", cmd_sms, "sms info TEXT [--smart] [--footer[=TEXT]]  encoding, segments, characters"},
    {"compliance", cmd_compliance, "compliance window E164 [--tz Z] [--at ISO8601] | keyword TEXT"},
    {"org", cmd_org, "org create|key|number|texts ...    orgs, API keys, numbers, HELP/STOP/START texts"},
    {"campaign", cmd_campaign, "campaign create|upload|rejects|start|pause|resume|cancel|run|status ..."},
    {"run-due", cmd_run_due, "run-due                            one pass for a system crontab"},
    {"rules", cmd_rules, "rules load FILE.json | list [--number E164] | test --number E164 --body TEXT | seal"},
    {"inbox", cmd_inbox, "inbox conversations|messages|reply ..."},
    {"suppression", cmd_suppression, "suppression add|remove|list|import ..."},
    {"serve", cmd_serve, "serve                              webhooks + API + scheduler until SIGTERM"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: herald COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  herald %s\n", commands[i].summary);
    fprintf(out, "\nenvironment: DATABASE_URL (unset: private cluster under .herald/pg), "
                 "HERALD_LOG_LEVEL; a .env file in the working directory is read.\n");
}

int main(int argc, char **argv)
{
    int bad_line = 0;
    const char *lvl;

    if (env_load_dotenv(".env", &bad_line) < 0) {
        fprintf(stderr, "herald: .env: malformed line %d\n", bad_line);
        return 1;
    }
    lvl = getenv("HERALD_LOG_LEVEL");
    if (lvl && log_set_level_name(lvl) != 0) {
        fprintf(stderr, "herald: HERALD_LOG_LEVEL: unknown level '%s'\n", lvl);
        return EXIT_USAGE;
    }
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "herald: unknown command '%s' (try 'herald help')\n", argv[1]);
    return EXIT_USAGE;
}
