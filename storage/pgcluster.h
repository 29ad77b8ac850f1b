/*
 * The embedded private PostgreSQL cluster used when DATABASE_URL is unset: a data
 * directory under <dir>/.herald/pg, reachable only over a unix socket, with trust
 * authentication for the role "herald" and a database "herald".
 *
 * These functions run child processes (initdb, pg_ctl) and wait for them: they are for
 * CLI commands, never for code running on the event loop. Errors fill a caller-supplied
 * one-line message.
 */
#ifndef HERALD_STORAGE_PGCLUSTER_H
#define HERALD_STORAGE_PGCLUSTER_H
#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#define PGCLUSTER_MUSTCHECK __attribute__((warn_unused_result))

#define PGCLUSTER_EFAIL (-1)    /* the operation failed; see the message */
#define PGCLUSTER_ENOSPACE (-2) /* an output buffer was too small */

typedef enum pgcluster_state {
    PGCLUSTER_NOT_INITIALISED,
    PGCLUSTER_STOPPED,
    PGCLUSTER_RUNNING,
} pgcluster_state_t;

typedef struct pgcluster {
    char base[PATH_MAX];   /* <dir>/.herald/pg */
    char data[PATH_MAX];   /* base/data */
    char run[PATH_MAX];    /* socket directory: base/run, or /tmp/herald-pg-<hash> */
    char log[PATH_MAX];    /* base/postgres.log */
    char bindir[PATH_MAX]; /* PostgreSQL binaries */
    char owner[64];        /* user the server runs as when we are root; "" otherwise */
    uid_t owner_uid;
    gid_t owner_gid;
} pgcluster_t;

/*
 * Fills c for the cluster under dir (NULL: the current directory) without touching the
 * disk: finds the binaries (PG_BIN, /usr/lib/postgresql/15/bin, then pg_config --bindir),
 * picks the owning user when running as root (postgres, else nobody) and the socket
 * directory (under /tmp when base/run would exceed the unix socket path limit).
 * Returns 0 or PGCLUSTER_EFAIL with err filled.
 */
PGCLUSTER_MUSTCHECK int pgcluster_init(pgcluster_t *c, const char *dir, char *err, size_t errlen);

/*
 * Initialises the cluster on first use (initdb, then the database "herald") and starts
 * it; an already running cluster is left alone (*was_running = 1; may be NULL).
 * Serialized against concurrent herald processes with a lock file.
 * Returns 0 or PGCLUSTER_EFAIL with err naming the step and the end of the log.
 */
PGCLUSTER_MUSTCHECK int pgcluster_start(pgcluster_t *c, int *was_running, char *err, size_t errlen);

/* Stops the cluster (fast shutdown); a stopped one is fine (*was_running = 0). */
PGCLUSTER_MUSTCHECK int pgcluster_stop(pgcluster_t *c, int *was_running, char *err, size_t errlen);

/* Reports the state and, when running, the postmaster pid (else 0). Never fails. */
pgcluster_state_t pgcluster_status(const pgcluster_t *c, long *pid);

/* Writes the conninfo "host=... dbname=herald user=herald". Returns 0 or PGCLUSTER_ENOSPACE. */
PGCLUSTER_MUSTCHECK int pgcluster_url(const pgcluster_t *c, char *out, size_t outlen);

/* Returns "running", "stopped" or "not initialised". */
const char *pgcluster_state_name(pgcluster_state_t st);

/*
 * The conninfo every herald command uses: DATABASE_URL when set and non-empty, else
 * that of the embedded cluster under the current directory, started if need be.
 * Returns 0, or a negative code with err filled.
 */
PGCLUSTER_MUSTCHECK int storage_conninfo(char *out, size_t outlen, char *err, size_t errlen);

#endif
