/*
 * Schema migrations: the SQL files under storage/migrations/, compiled into the binary
 * (storage_migrations[]), applied in order over a db_t and recorded in the table
 * schema_migrations(version, name, checksum, applied_at).
 */
#ifndef HERALD_STORAGE_MIGRATE_H
#define HERALD_STORAGE_MIGRATE_H
#include "common/embed.h"
#include "storage/db.h"

#include <stddef.h>

/* The embedded migrations, sorted by file name; the table ends with a NULL name. */
extern const herald_embedded_t storage_migrations[];

typedef struct storage_migrate_report {
    size_t n_known;           /* migrations in the list */
    size_t n_applied;         /* applied by this run (before the error, if any) */
    const int *versions;      /* [n_applied], in the order applied */
    const char *const *names; /* [n_applied] */
} storage_migrate_report_t;

/*
 * Outcome of a run. report and err are borrowed for the duration of the call; err is
 * NULL on success, else a one-line reason naming the migration at fault.
 */
typedef void (*storage_migrate_cb)(db_t *db, const storage_migrate_report_t *report, const char *err,
                                   void *arg);

/* Applies storage_migrations[]; see storage_migrate_list(). */
DB_MUSTCHECK int storage_migrate(db_t *db, storage_migrate_cb cb, void *arg);

/*
 * Applies the migrations of list (borrowed until cb runs; NULL-name terminated, sorted,
 * names start with their version number: "001_initial.sql") that are not yet recorded
 * in schema_migrations. Each runs in its own transaction together with its
 * schema_migrations row, so a failing one is rolled back and stops the run while the
 * earlier ones stay applied. The whole run holds a session advisory lock, so
 * concurrent runs (other processes included) are serialized. A recorded migration
 * whose SQL checksum (SHA-256) differs from the list's is an error. The SQL must not
 * contain its own BEGIN/COMMIT. cb runs once, asynchronously.
 * Returns 0, or DB_EINVAL / DB_ECLOSED (then cb never runs).
 */
DB_MUSTCHECK int storage_migrate_list(db_t *db, const herald_embedded_t *list, storage_migrate_cb cb,
                                      void *arg);

/* Writes the lowercase hex SHA-256 of data (65 bytes with the NUL) into out. */
void storage_sha256_hex(const void *data, size_t len, char out[65]);

#endif
