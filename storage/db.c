/*
 * The asynchronous PostgreSQL connection (see db.h). libpq runs in non-blocking mode
 * and a uv_poll on its socket tells us when to read (PQconsumeInput, then PQgetResult
 * while not busy) and when to write (send what is queued, PQflush, feed a COPY).
 *
 * Queued operations wait in `pending`; once handed to libpq they move to `inflight`,
 * whose order is the order in which the server answers, so the head of `inflight` is
 * always the owner of the next result. Pipelined kinds (query, prepare, execute, sync)
 * may be in flight together; a script or a COPY needs the pipeline drained and pipeline
 * mode left, and is then alone in flight ("exclusive") until it completes.
 */
#include "storage/db.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* A producer's chunk may not grow past this; it bounds memory per COPY. */
#define COPY_CHUNK_LIMIT (64u * 1024 * 1024)
/* Chunks fed per writable event, so a fast producer cannot starve the loop. */
#define COPY_CHUNKS_PER_EVENT 32

typedef enum db_state {
    DB_CONNECTING,
    DB_READY,
    DB_FAILED, /* connection failed or lost; every operation fails with fail_reason */
    DB_CLOSING,
} db_state_t;

typedef enum op_kind {
    OP_QUERY,
    OP_PREPARE,
    OP_EXEC,
    OP_SYNC,
    OP_SCRIPT,
    OP_COPY,
} op_kind_t;

typedef enum copy_phase {
    COPY_WAIT_START, /* COPY sent, waiting for PGRES_COPY_IN */
    COPY_STREAM,     /* feeding data from the producer */
    COPY_WAIT_RESULT /* end sent (or COPY refused), reading the result */
} copy_phase_t;

typedef struct db_op {
    struct db_op *next;
    op_kind_t kind;
    int internal; /* a Sync added after an operation outside a batch; no callback */
    db_cb cb;
    void *arg;
    char *sql;
    char *name;
    int nparams;
    char **values; /* one block: the pointers, then the strings; freed once sent */
    PGresult *res; /* the result handed to cb: the first error, else the last one */
    char *err;
    db_copy_producer producer;
    void *producer_arg;
    copy_phase_t copy_phase;
    int producer_done;
    int producer_failed;
    int producer_waiting; /* said DB_COPY_WAIT: not asked again until db_copy_resume() */
} db_op_t;

typedef struct op_list {
    db_op_t *head, *tail;
} op_list_t;

/* Heap-allocated so that a new one can replace it when libpq changes sockets. */
typedef struct db_poll {
    uv_poll_t handle;
    db_t *db; /* NULL once detached from its db */
} db_poll_t;

struct db {
    uv_loop_t *loop;
    PGconn *conn;
    db_state_t state;
    db_poll_t *poll;
    int poll_fd;
    int poll_events;
    uv_timer_t timer; /* delivers failures that must not be reported synchronously */
    /*
     * Sends what was queued since the last loop iteration, just before the loop polls.
     * Asking the poll for writability instead cost two epoll_ctl calls (on, then off)
     * and one more trip through the loop for every statement.
     */
    uv_prepare_t kick;
    int open_handles;
    db_connect_cb connect_cb;
    void *connect_arg;
    char *fail_reason;
    op_list_t pending;
    op_list_t inflight;
    size_t nops; /* operations with a callback, queued or in flight */
    int in_batch;
    int in_pipeline;
    int exclusive;       /* a script or COPY is in flight */
    int want_write;      /* libpq holds unsent output */
    char *segment_error; /* first error since the last Sync */
    buf_t chunk;
    db_close_cb close_cb;
    void *close_arg;
};

static const char *const state_names[] = {"connecting", "ready", "failed", "closing"};

static void set_state(db_t *db, db_state_t st)
{
    log_debug("db %p: %s -> %s", (void *)db, state_names[db->state], state_names[st]);
    db->state = st;
}

/* libpq messages end in a newline and may span lines; callbacks get one line. */
static char *one_line(const char *msg)
{
    char *s = xstrdup(msg && *msg ? msg : "unknown error"), *p;
    size_t n;

    for (p = s; *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = ' ';
    n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
    return s;
}

static void list_push(op_list_t *l, db_op_t *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
}

static db_op_t *list_pop(op_list_t *l)
{
    db_op_t *op = l->head;

    if (op) {
        l->head = op->next;
        if (!l->head)
            l->tail = NULL;
        op->next = NULL;
    }
    return op;
}

static int is_pipelined(op_kind_t k)
{
    return k != OP_SCRIPT && k != OP_COPY;
}

static void free_op(db_op_t *op)
{
    free(op->sql);
    free(op->name);
    free(op->values);
    PQclear(op->res);
    free(op->err);
    free(op);
}

/* Runs the callback and frees the operation; the callback may queue more or close db. */
static void complete(db_t *db, db_op_t *op)
{
    if (!op->internal)
        db->nops--;
    if (op->cb)
        op->cb(db, op->res, op->err, op->arg);
    free_op(op);
}

static void fail_ops(db_t *db, const char *reason)
{
    op_list_t all = db->inflight;
    db_op_t *op;

    /* Detach both lists first: callbacks may queue new operations. */
    if (all.tail)
        all.tail->next = db->pending.head;
    else
        all.head = db->pending.head;
    if (db->pending.tail)
        all.tail = db->pending.tail;
    db->inflight.head = db->inflight.tail = NULL;
    db->pending.head = db->pending.tail = NULL;
    db->exclusive = 0;
    free(db->segment_error);
    db->segment_error = NULL;
    while ((op = list_pop(&all))) {
        PQclear(op->res);
        op->res = NULL;
        free(op->err);
        op->err = xstrdup(reason);
        complete(db, op);
    }
}

static void deliver_failure(db_t *db)
{
    db_connect_cb ccb = db->connect_cb;

    if (ccb) {
        db->connect_cb = NULL;
        ccb(db, db->fail_reason, db->connect_arg);
    }
    if (db->state == DB_FAILED)
        fail_ops(db, db->fail_reason);
}

static void pump(db_t *db);

static void on_kick(uv_prepare_t *h)
{
    db_t *db = h->data;

    uv_prepare_stop(h);
    if (db->state == DB_READY)
        pump(db);
}

static void on_timer(uv_timer_t *t)
{
    db_t *db = t->data;

    if (db->state == DB_FAILED)
        deliver_failure(db);
}

static void on_poll_closed(uv_handle_t *h);

/*
 * Closes the watcher at once. libpq closes its socket when the connection fails, and
 * closing a uv_poll later would deregister the fd number from epoll after it may have
 * been reused by another connection on the same loop; closing now, before anything
 * else can open a descriptor, avoids that.
 */
static void drop_poll(db_t *db)
{
    if (!db->poll)
        return;
    db->poll->db = NULL;
    uv_close((uv_handle_t *)&db->poll->handle, on_poll_closed);
    db->poll = NULL;
    db->poll_fd = -1;
    db->poll_events = 0;
    db->open_handles--;
}

/* Marks the connection failed; the callbacks run from the timer (safe in any context). */
static void fail_soon(db_t *db, const char *why)
{
    if (db->state == DB_FAILED || db->state == DB_CLOSING)
        return;
    set_state(db, DB_FAILED);
    db->fail_reason = one_line(why);
    log_debug("db %p: %s", (void *)db, db->fail_reason);
    drop_poll(db);
    uv_timer_start(&db->timer, on_timer, 0, 0);
}

/* Marks the connection failed and runs the callbacks now (only from loop callbacks). */
static void fail_now(db_t *db, const char *why)
{
    if (db->state == DB_FAILED || db->state == DB_CLOSING)
        return;
    fail_soon(db, why);
    uv_timer_stop(&db->timer);
    deliver_failure(db);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches libpq's current socket for events, replacing the watcher if the socket changed. */
static int watch(db_t *db, int events)
{
    int fd = PQsocket(db->conn), rc;

    if (db->poll && db->poll_fd != fd)
        drop_poll(db);
    if (fd < 0)
        return UV_EBADF;
    if (!db->poll) {
        db_poll_t *p = xcalloc(1, sizeof(*p));
        if ((rc = uv_poll_init(db->loop, &p->handle, fd)) < 0) {
            free(p);
            return rc;
        }
        p->db = db;
        p->handle.data = p;
        db->poll = p;
        db->poll_fd = fd;
        db->poll_events = 0;
        db->open_handles++;
    }
    if (events != db->poll_events) {
        if ((rc = uv_poll_start(&db->poll->handle, events, on_poll)) < 0)
            return rc;
        db->poll_events = events;
    }
    return 0;
}

static void on_notice(void *arg, const char *message)
{
    log_debug("db %p: %.*s", arg, (int)strcspn(message, "\n"), message);
}

static void continue_connect(db_t *db);

static void connected(db_t *db)
{
    db_connect_cb ccb = db->connect_cb;

    if (PQsetnonblocking(db->conn, 1) != 0 || !PQenterPipelineMode(db->conn)) {
        fail_now(db, PQerrorMessage(db->conn));
        return;
    }
    PQsetNoticeProcessor(db->conn, on_notice, db);
    db->in_pipeline = 1;
    set_state(db, DB_READY);
    db->connect_cb = NULL;
    if (ccb)
        ccb(db, NULL, db->connect_arg);
    if (db->state == DB_READY)
        pump(db);
}

static void continue_connect(db_t *db)
{
    int rc = 0;
    char msg[128];

    switch (PQconnectPoll(db->conn)) {
    case PGRES_POLLING_READING:
        rc = watch(db, UV_READABLE);
        break;
    case PGRES_POLLING_WRITING:
        rc = watch(db, UV_WRITABLE);
        break;
    case PGRES_POLLING_OK:
        connected(db);
        return;
    default:
        fail_now(db, PQerrorMessage(db->conn));
        return;
    }
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "cannot watch the connection socket: %s", uv_strerror(rc));
        fail_now(db, msg);
    }
}

static int can_send(const db_t *db)
{
    const db_op_t *op = db->pending.head;

    if (!op || db->exclusive)
        return 0;
    return is_pipelined(op->kind) || db->inflight.head == NULL;
}

static int copy_streaming(const db_t *db)
{
    return db->exclusive && db->inflight.head && db->inflight.head->kind == OP_COPY &&
           db->inflight.head->copy_phase == COPY_STREAM;
}

static void update_interest(db_t *db)
{
    int events = UV_READABLE, rc;
    char msg[128];

    if (db->state != DB_READY)
        return;
    if (db->want_write || can_send(db) || (copy_streaming(db) && !db->inflight.head->producer_waiting))
        events |= UV_WRITABLE;
    if ((rc = watch(db, events)) < 0) {
        snprintf(msg, sizeof(msg), "cannot watch the connection socket: %s", uv_strerror(rc));
        fail_now(db, msg);
    }
}

static int send_op(db_t *db, db_op_t *op)
{
    const char *const *v = (const char *const *)op->values;

    switch (op->kind) {
    case OP_QUERY:
        return PQsendQueryParams(db->conn, op->sql, op->nparams, NULL, v, NULL, NULL, 0);
    case OP_PREPARE:
        return PQsendPrepare(db->conn, op->name, op->sql, 0, NULL);
    case OP_EXEC:
        return PQsendQueryPrepared(db->conn, op->name, op->nparams, v, NULL, NULL, 0);
    case OP_SYNC:
        return PQpipelineSync(db->conn);
    case OP_SCRIPT:
    case OP_COPY:
        return PQsendQuery(db->conn, op->sql);
    }
    return 0;
}

/* Hands queued operations to libpq, switching pipeline mode where the kind needs it. */
static void send_pending(db_t *db)
{
    db_op_t *op;

    while (db->state == DB_READY && can_send(db)) {
        op = db->pending.head;
        if (is_pipelined(op->kind) && !db->in_pipeline) {
            if (!PQenterPipelineMode(db->conn)) {
                fail_now(db, PQerrorMessage(db->conn));
                return;
            }
            db->in_pipeline = 1;
        } else if (!is_pipelined(op->kind) && db->in_pipeline) {
            if (!PQexitPipelineMode(db->conn)) {
                fail_now(db, PQerrorMessage(db->conn));
                return;
            }
            db->in_pipeline = 0;
        }
        list_pop(&db->pending);
        if (!send_op(db, op)) {
            if (PQstatus(db->conn) != CONNECTION_OK) {
                list_push(&db->inflight, op);
                fail_now(db, PQerrorMessage(db->conn));
                return;
            }
            /* Refused by libpq itself (e.g. a statement it cannot send): only this op fails. */
            op->err = one_line(PQerrorMessage(db->conn));
            if (!db->segment_error)
                db->segment_error = xstrdup(op->err);
            complete(db, op);
            continue;
        }
        free(op->values);
        op->values = NULL;
        if (!is_pipelined(op->kind))
            db->exclusive = 1;
        list_push(&db->inflight, op);
    }
}

static void flush(db_t *db)
{
    int r;

    if (db->state != DB_READY)
        return;
    r = PQflush(db->conn);
    if (r < 0)
        fail_now(db, PQerrorMessage(db->conn));
    else
        db->want_write = r == 1;
}

/*
 * Feeds the COPY at the head of `inflight` until the socket stops taking data or the
 * work cap. In non-blocking mode PQputCopyData() queues whatever it is given and grows
 * libpq's output buffer to fit, so the producer is asked for more only after a flush
 * has emptied that buffer: memory stays bounded by one chunk plus the socket buffer.
 */
static void copy_pump(db_t *db)
{
    db_op_t *op = db->inflight.head;
    int r;

    for (int i = 0; i < COPY_CHUNKS_PER_EVENT && db->state == DB_READY; i++) {
        if (op->producer_waiting && db->chunk.len == 0) {
            r = PQflush(db->conn);
            if (r < 0)
                goto refused;
            db->want_write = r == 1;
            return;
        }
        if (db->chunk.len > 0) {
            r = PQputCopyData(db->conn, db->chunk.data, (int)db->chunk.len);
            if (r == 0)
                return; /* buffer full: wait for the socket to drain */
            if (r < 0)
                goto refused;
            buf_reset(&db->chunk);
        }
        r = PQflush(db->conn);
        if (r < 0)
            goto refused;
        if (r == 1) {
            db->want_write = 1;
            return; /* the socket is full: resume when it is writable */
        }
        if (op->producer_done) {
            r = PQputCopyEnd(db->conn, op->producer_failed ? "aborted by the data producer" : NULL);
            if (r == 0)
                return;
            if (r < 0)
                goto refused;
            op->copy_phase = COPY_WAIT_RESULT;
            return;
        }
        r = op->producer(db, &db->chunk, op->producer_arg);
        if (r == DB_COPY_WAIT) {
            op->producer_waiting = 1;
            if (db->chunk.len > 0)
                continue; /* send what it gave; it is not asked again before the resume */
            return;
        }
        if (r < 0) {
            op->producer_failed = 1;
            buf_reset(&db->chunk);
        }
        if (r <= 0)
            op->producer_done = 1;
    }
    return;

refused:
    /* The server ended the COPY early (an error is waiting) or the connection broke. */
    if (PQstatus(db->conn) != CONNECTION_OK)
        fail_now(db, PQerrorMessage(db->conn));
    else
        op->copy_phase = COPY_WAIT_RESULT;
    buf_reset(&db->chunk);
}

static void pump(db_t *db)
{
    if (db->state != DB_READY)
        return;
    if (copy_streaming(db))
        copy_pump(db);
    else
        send_pending(db);
    flush(db);
    update_interest(db);
}

/* Files one PGresult under op: an error is kept over anything, otherwise the latest. */
static void keep_result(db_op_t *op, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    if (op->err) {
        PQclear(res);
        return;
    }
    if (st == PGRES_PIPELINE_ABORTED) {
        op->err = xstrdup("pipeline aborted: an earlier statement in the batch failed");
    } else if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
        op->err = one_line(PQresultErrorMessage(res));
    }
    PQclear(op->res);
    op->res = res;
}

static void finish_op(db_t *db)
{
    db_op_t *op = list_pop(&db->inflight);

    if (!is_pipelined(op->kind))
        db->exclusive = 0;
    if (op->err && is_pipelined(op->kind) && !db->segment_error &&
        PQresultStatus(op->res) != PGRES_PIPELINE_ABORTED)
        db->segment_error = xstrdup(op->err);
    complete(db, op);
}

static void finish_sync(db_t *db, PGresult *res)
{
    db_op_t *op = list_pop(&db->inflight);

    if (PQresultStatus(res) != PGRES_PIPELINE_SYNC && !db->segment_error)
        db->segment_error = one_line(PQresultErrorMessage(res));
    PQclear(res);
    op->err = db->segment_error;
    db->segment_error = NULL;
    complete(db, op);
}

/* Reads every complete result and hands each to the operation it belongs to. */
static void read_results(db_t *db)
{
    db_op_t *op;
    PGresult *res;

    while (db->state == DB_READY && (op = db->inflight.head)) {
        if (op->kind == OP_COPY && op->copy_phase == COPY_STREAM)
            return;
        if (PQisBusy(db->conn))
            return;
        res = PQgetResult(db->conn);
        if (op->kind == OP_SYNC) {
            if (!res) {
                fail_now(db, "protocol out of step: no result for a pipeline sync");
                return;
            }
            finish_sync(db, res);
            continue;
        }
        if (op->kind == OP_COPY && op->copy_phase == COPY_WAIT_START && res) {
            op->copy_phase = COPY_WAIT_RESULT;
            if (PQresultStatus(res) == PGRES_COPY_IN) {
                PQclear(res);
                op->copy_phase = COPY_STREAM;
                buf_reset(&db->chunk);
                continue;
            }
        }
        if (res)
            keep_result(op, res);
        else
            finish_op(db);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    db_poll_t *p = h->data;
    db_t *db = p->db;
    char msg[128];

    if (!db)
        return;
    if (status < 0) {
        snprintf(msg, sizeof(msg), "connection socket error: %s", uv_strerror(status));
        fail_now(db, msg);
        return;
    }
    if (db->state == DB_CONNECTING) {
        continue_connect(db);
        return;
    }
    if (db->state != DB_READY)
        return;
    if (events & UV_READABLE) {
        if (!PQconsumeInput(db->conn)) {
            fail_now(db, PQerrorMessage(db->conn));
            return;
        }
        read_results(db);
    }
    pump(db);
    /* libpq reads while it waits to write, so results may be buffered with no event to come. */
    if (db->state == DB_READY && db->inflight.head && !PQisBusy(db->conn)) {
        read_results(db);
        pump(db);
    }
    /* Parsing input can also drop the connection (e.g. on a protocol violation). */
    if (db->state == DB_READY && PQstatus(db->conn) == CONNECTION_BAD)
        fail_now(db, PQerrorMessage(db->conn));
}

static db_op_t *new_op(op_kind_t kind, db_cb cb, void *arg)
{
    db_op_t *op = xcalloc(1, sizeof(*op));

    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    return op;
}

static void copy_params(db_op_t *op, int n, const char *const *values)
{
    size_t total = (size_t)n * sizeof(char *);
    char *p;

    op->nparams = n;
    if (n == 0)
        return;
    for (int i = 0; i < n; i++)
        if (values[i])
            total += strlen(values[i]) + 1;
    op->values = xmalloc(total);
    p = (char *)(op->values + n);
    for (int i = 0; i < n; i++) {
        if (!values[i]) {
            op->values[i] = NULL;
            continue;
        }
        size_t len = strlen(values[i]) + 1;
        memcpy(p, values[i], len);
        op->values[i] = p;
        p += len;
    }
}

static int enqueue(db_t *db, db_op_t *op)
{
    if (db->state == DB_CLOSING) {
        free_op(op);
        return DB_ECLOSED;
    }
    db->nops++;
    list_push(&db->pending, op);
    if (is_pipelined(op->kind) && op->kind != OP_SYNC && !db->in_batch) {
        db_op_t *sync = new_op(OP_SYNC, NULL, NULL);
        sync->internal = 1;
        list_push(&db->pending, sync);
    }
    if (db->state == DB_FAILED)
        uv_timer_start(&db->timer, on_timer, 0, 0);
    else if (db->state == DB_READY)
        uv_prepare_start(&db->kick, on_kick);
    return 0;
}

int db_connect(uv_loop_t *loop, const char *conninfo, db_connect_cb cb, void *arg, db_t **out)
{
    db_t *db;
    int rc;
    char msg[128];

    if (!loop || !conninfo || !cb || !out)
        return DB_EINVAL;
    db = xcalloc(1, sizeof(*db));
    db->loop = loop;
    db->state = DB_CONNECTING;
    db->connect_cb = cb;
    db->connect_arg = arg;
    db->poll_fd = -1;
    buf_init(&db->chunk, COPY_CHUNK_LIMIT);
    uv_timer_init(loop, &db->timer);
    db->timer.data = db;
    uv_prepare_init(loop, &db->kick);
    db->kick.data = db;
    db->open_handles = 2;
    db->conn = PQconnectStart(conninfo);
    if (!db->conn) {
        fail_soon(db, "out of memory starting a connection");
    } else if (PQstatus(db->conn) == CONNECTION_BAD) {
        fail_soon(db, PQerrorMessage(db->conn));
    } else if ((rc = watch(db, UV_WRITABLE)) < 0) {
        snprintf(msg, sizeof(msg), "cannot watch the connection socket: %s", uv_strerror(rc));
        fail_soon(db, msg);
    }
    *out = db;
    return 0;
}

int db_query(db_t *db, const char *sql, int nparams, const char *const *values, db_cb cb, void *arg)
{
    db_op_t *op;

    if (!db || !sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !values))
        return DB_EINVAL;
    op = new_op(OP_QUERY, cb, arg);
    op->sql = xstrdup(sql);
    copy_params(op, nparams, values);
    return enqueue(db, op);
}

int db_prepare(db_t *db, const char *name, const char *sql, db_cb cb, void *arg)
{
    db_op_t *op;

    if (!db || !name || !sql)
        return DB_EINVAL;
    op = new_op(OP_PREPARE, cb, arg);
    op->name = xstrdup(name);
    op->sql = xstrdup(sql);
    return enqueue(db, op);
}

int db_exec_prepared(db_t *db, const char *name, int nparams, const char *const *values, db_cb cb, void *arg)
{
    db_op_t *op;

    if (!db || !name || nparams < 0 || nparams > 65535 || (nparams > 0 && !values))
        return DB_EINVAL;
    op = new_op(OP_EXEC, cb, arg);
    op->name = xstrdup(name);
    copy_params(op, nparams, values);
    return enqueue(db, op);
}

int db_exec_script(db_t *db, const char *sql, db_cb cb, void *arg)
{
    db_op_t *op;

    if (!db || !sql)
        return DB_EINVAL;
    op = new_op(OP_SCRIPT, cb, arg);
    op->sql = xstrdup(sql);
    return enqueue(db, op);
}

int db_copy_in(db_t *db, const char *sql, db_copy_producer producer, void *producer_arg, db_cb cb, void *arg)
{
    db_op_t *op;

    if (!db || !sql || !producer)
        return DB_EINVAL;
    op = new_op(OP_COPY, cb, arg);
    op->sql = xstrdup(sql);
    op->producer = producer;
    op->producer_arg = producer_arg;
    op->copy_phase = COPY_WAIT_START;
    return enqueue(db, op);
}

void db_copy_resume(db_t *db)
{
    db_op_t *op;

    if (!db || db->state != DB_READY || !copy_streaming(db))
        return;
    op = db->inflight.head;
    if (!op->producer_waiting)
        return;
    op->producer_waiting = 0;
    pump(db);
}

uv_loop_t *db_loop(const db_t *db)
{
    return db->loop;
}

int db_batch_begin(db_t *db)
{
    if (!db)
        return DB_EINVAL;
    if (db->state == DB_CLOSING)
        return DB_ECLOSED;
    if (db->in_batch)
        return DB_EBATCH;
    db->in_batch = 1;
    return 0;
}

int db_batch_end(db_t *db, db_cb cb, void *arg)
{
    if (!db)
        return DB_EINVAL;
    if (db->state == DB_CLOSING)
        return DB_ECLOSED;
    if (!db->in_batch)
        return DB_EBATCH;
    db->in_batch = 0;
    return enqueue(db, new_op(OP_SYNC, cb, arg));
}

size_t db_pending(const db_t *db)
{
    return db->nops;
}

static void finish_close(db_t *db)
{
    db_connect_cb ccb = db->connect_cb;

    if (ccb) {
        db->connect_cb = NULL;
        ccb(db, "closed", db->connect_arg);
    }
    fail_ops(db, "closed");
    if (db->conn)
        PQfinish(db->conn);
    buf_close(&db->chunk);
    free(db->fail_reason);
    free(db->segment_error);
    if (db->close_cb)
        db->close_cb(db->close_arg);
    free(db);
}

static void on_handle_closed(db_t *db)
{
    if (--db->open_handles == 0)
        finish_close(db);
}

static void on_poll_closed(uv_handle_t *h)
{
    db_poll_t *p = h->data;

    if (p->db)
        on_handle_closed(p->db);
    free(p);
}

/* The timer's and the kick's. */
static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

void db_close(db_t *db, db_close_cb close_cb, void *arg)
{
    if (!db || db->state == DB_CLOSING)
        return;
    set_state(db, DB_CLOSING);
    db->close_cb = close_cb;
    db->close_arg = arg;
    uv_close((uv_handle_t *)&db->timer, on_timer_closed);
    uv_close((uv_handle_t *)&db->kick, on_timer_closed);
    if (db->poll)
        uv_close((uv_handle_t *)&db->poll->handle, on_poll_closed);
}

const char *db_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case DB_EINVAL:
        return "invalid argument";
    case DB_ECLOSED:
        return "connection is closed";
    case DB_EBATCH:
        return "batch begin/end out of order";
    }
    return "unknown error";
}
