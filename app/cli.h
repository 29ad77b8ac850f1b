/*
 * cli_session_t: what most herald commands need before doing their own work — a uv
 * loop, one Postgres connection (DATABASE_URL or the private cluster, started on
 * first use), the schema migrated, and the org the command acts for.
 *
 * Commands are short-lived and may block between steps, so this offers a
 * synchronous query wrapper that runs the loop until the result is in. Long work
 * (uploads, campaign runs, serve) uses the same loop and db asynchronously.
 */
#ifndef HERALD_APP_CLI_H
#define HERALD_APP_CLI_H
#include "storage/db.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <uv.h>

typedef struct cli_session {
    uv_loop_t loop;
    db_t *db;
    int64_t org_id; /* 0 until cli_session_org() */
    char conninfo[1024];
} cli_session_t;

/*
 * Initialises the loop, connects and applies pending migrations. Returns 0, or -1
 * after printing a one-line reason ("herald: ...") on stderr; on -1 the session
 * needs no close.
 */
__attribute__((warn_unused_result)) int cli_session_open(cli_session_t *s);

/* Closes the connection and the loop (asserts nothing is left open). */
void cli_session_close(cli_session_t *s);

/*
 * Runs one parameterized statement and waits for it. On success returns 0 and a
 * result the caller frees with PQclear(); on failure returns -1 with *err pointing at
 * a one-line reason (static storage, valid until the next call).
 */
__attribute__((warn_unused_result)) int cli_exec(cli_session_t *s, const char *sql, int nparams,
                                                 const char *const *params, PGresult **out,
                                                 const char **err);

/*
 * Resolves the org the command acts for: the --org value if given (must exist), else
 * HERALD_ORG, else the org named "default", created if there is none. Stores it in
 * s->org_id. Returns 0, or -1 after printing a one-line reason.
 */
__attribute__((warn_unused_result)) int cli_session_org(cli_session_t *s, const char *org_opt);

#endif
