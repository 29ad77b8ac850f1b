/*
 * db_t: one PostgreSQL connection driven by a libuv loop, never blocking it.
 *
 * Operations are queued in FIFO order and their callbacks run in that order. Queries,
 * prepares and executions of prepared statements are pipelined (libpq pipeline mode):
 * everything queued during one loop iteration is written before any result is read.
 * Scripts (several statements, simple protocol) and COPY FROM STDIN run outside pipeline
 * mode; the connection drains the pipeline first and re-enters it afterwards.
 *
 * Transactions: outside a batch each operation is followed by its own Sync, so each
 * runs in its own implicit transaction (autocommit). Between db_batch_begin() and
 * db_batch_end() the operations share one Sync and so one implicit transaction: if one
 * fails, its callback gets the error, the ones after it get "pipeline aborted", the
 * earlier ones are rolled back, and db_batch_end()'s callback reports the failure.
 *
 * Callbacks never run from inside the call that queued the operation. Every callback
 * runs exactly once: with the result, or with an error when the query fails, the
 * connection fails or is lost, or db_close() cancels it ("closed").
 */
#ifndef HERALD_STORAGE_DB_H
#define HERALD_STORAGE_DB_H
#include "common/buf.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <uv.h>

#define DB_MUSTCHECK __attribute__((warn_unused_result))

/* Synchronous error codes (asynchronous ones arrive as strings in callbacks). */
#define DB_EINVAL (-1)  /* bad argument */
#define DB_ECLOSED (-2) /* db_close() was already called */
#define DB_EBATCH (-3)  /* batch begun twice, or ended without a begin */

typedef struct db db_t;

/* Connection outcome: err is NULL on success, else a one-line reason (borrowed). */
typedef void (*db_connect_cb)(db_t *db, const char *err, void *arg);

/*
 * Outcome of one operation. res is borrowed (valid only during the call) and may be
 * NULL (connection failure, cancellation, batch end); err is NULL on success, else a
 * one-line reason (borrowed). A failed query passes both its result and its error, so
 * PQresultErrorField(res, PG_DIAG_SQLSTATE) can be read.
 */
typedef void (*db_cb)(db_t *db, const PGresult *res, const char *err, void *arg);

/* Called once, after every operation callback, when the memory has been freed. */
typedef void (*db_close_cb)(void *arg);

/*
 * COPY producer: append the next chunk of COPY text-format data (whole or partial rows)
 * to out, which is empty on entry, and return DB_COPY_MORE, DB_COPY_DONE (out may hold
 * a last chunk), or a negative value to abort the COPY (rolled back; the callback gets
 * an error). Called only when the connection can take more, so memory stays bounded by
 * the chunk size the producer chooses.
 */
#define DB_COPY_MORE 1
#define DB_COPY_DONE 0
/* Nothing to give now (out may hold a last chunk to send): not asked again until
 * db_copy_resume() is called, so a producer that waits for data costs nothing. */
#define DB_COPY_WAIT 2
typedef int (*db_copy_producer)(db_t *db, buf_t *out, void *arg);

/*
 * Starts connecting to conninfo (libpq key=value string or URI) on loop and stores
 * the handle in *out. cb runs once with the outcome; operations may be queued before it
 * runs. On failure the handle stays valid and must be closed with db_close().
 * Returns 0, or DB_EINVAL (then *out is untouched and cb never runs).
 */
DB_MUSTCHECK int db_connect(uv_loop_t *loop, const char *conninfo, db_connect_cb cb, void *arg, db_t **out);

/*
 * Queues a parameterized query (one statement, $1..$n). values are NUL-terminated
 * text, NULL for SQL NULL; sql and values are copied, so the caller may free them on
 * return. Results are in text format. Returns 0, DB_EINVAL or DB_ECLOSED.
 */
DB_MUSTCHECK int db_query(db_t *db, const char *sql, int nparams, const char *const *values, db_cb cb,
                          void *arg);

/* Queues preparing statement name from sql (types inferred by the server). Like db_query. */
DB_MUSTCHECK int db_prepare(db_t *db, const char *name, const char *sql, db_cb cb, void *arg);

/* Queues executing prepared statement name with text parameters (copied). Like db_query. */
DB_MUSTCHECK int db_exec_prepared(db_t *db, const char *name, int nparams, const char *const *values,
                                  db_cb cb, void *arg);

/*
 * Queues a script of one or more ';'-separated statements without parameters (simple
 * protocol; runs outside pipeline mode). Unless the script has its own BEGIN/COMMIT
 * or runs inside a transaction the caller opened, it runs as one implicit transaction.
 * cb gets the last statement's result, or the first error.
 */
DB_MUSTCHECK int db_exec_script(db_t *db, const char *sql, db_cb cb, void *arg);

/*
 * Queues a COPY ... FROM STDIN (sql, copied) fed by producer. Runs outside pipeline
 * mode, writing only when the socket is writable. cb gets the COPY's result (its
 * command status is "COPY n") or the error. Returns 0, DB_EINVAL or DB_ECLOSED.
 */
DB_MUSTCHECK int db_copy_in(db_t *db, const char *sql, db_copy_producer producer, void *producer_arg,
                            db_cb cb, void *arg);

/* Asks a producer that answered DB_COPY_WAIT for more. Harmless at any other time. */
void db_copy_resume(db_t *db);

/* The loop the connection runs on. */
uv_loop_t *db_loop(const db_t *db);

/* Starts a batch: operations queued until db_batch_end() share one implicit transaction. */
DB_MUSTCHECK int db_batch_begin(db_t *db);

/*
 * Ends the batch. cb (may be NULL) runs after the callbacks of the batch's operations,
 * with err NULL if the batch committed, else the first error in the batch.
 * Returns 0, DB_EBATCH or DB_ECLOSED.
 */
DB_MUSTCHECK int db_batch_end(db_t *db, db_cb cb, void *arg);

/*
 * Closes the connection: queued and in-flight operations get the error "closed",
 * then close_cb (may be NULL) runs and the memory is freed, on a later loop
 * iteration. db must not be used after this call. Safe from inside a db callback.
 */
void db_close(db_t *db, db_close_cb close_cb, void *arg);

/* Number of operations queued or in flight (useful to decide when a CLI is done). */
size_t db_pending(const db_t *db);

/* Returns a static description of a synchronous DB_E* code. */
const char *db_strerror(int err);

#endif
