/*
 * bench_inbox: latency of the CRM inbox API (GET /crm/inbox/conversations with each
 * filter, deep keyset pages, GET .../messages) over loopback HTTP against the real
 * `herald serve`, on an inbox of a million messages in 100,000 conversations.
 *
 *   bench_inbox --herald build/herald [--messages N] [--requests N] [--keep] [--db NAME] [--verbose]
 *               [--log FILE]
 *
 * Uses DATABASE_URL (else the embedded cluster): creates a database of its own,
 * migrates it, and generates with set-based SQL one org of N messages (default
 * 1,000,000) in N/10 conversations, plus a second org a tenth that size whose words
 * are shuffled (so the tenant filter has something to filter): six receiving numbers
 * of unequal traffic, a quarter of the conversations open, 8% unread, twenty tags of
 * Zipf-like frequency (the commonest on half the conversations, the rarest on 0.1%),
 * bodies of 3-13 words drawn log-uniformly from 20,000 words (a few words are in most
 * messages, most words in a handful), activity spread over six months, and messages
 * skewed towards some conversations (the busiest has thousands). Then it starts
 * `herald serve` on 127.0.0.1, and one client on one keep-alive connection sends
 * each kind of request at least --requests times (default 1000), limit 50, with
 * varied parameters and following next_cursor, and prints p50/p95/p99/max in ms and
 * requests/s (one at a time: the reciprocal of the mean). Caches are warm: every
 * kind is run briefly before it is measured.
 *
 * --keep keeps the database (its name is printed); --db NAME reuses one kept before
 * (generating only when it has no bench data); --verbose prints the three slowest
 * requests of each kind; --log FILE writes every timed request (kind, ms, rows, path),
 * one per line, for a closer look at a tail. The load average is printed at the
 * start and the end: other work on the machine skews every figure.
 */
#include "bench/benchdb.h"
#include "common/buf.h"
#include "common/xalloc.h"
#include "storage/db.h"
#include "storage/migrate.h"
#include "storage/pgcluster.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define NTAGS 20
#define NNUMBERS 6
#define VOCAB 20000

/* The 64 commonest words; the others are made from their rank (see word()). */
static const char *const common[64] = {
    "the",      "you",    "to",     "my",     "is",       "and",  "order",   "a",       "i",     "for",
    "it",       "please", "can",    "me",     "when",     "what", "thanks",  "yes",     "no",    "price",
    "delivery", "help",   "on",     "this",   "have",     "how",  "will",    "be",      "of",    "in",
    "store",    "today",  "ok",     "hi",     "need",     "time", "not",     "get",     "your",  "we",
    "do",       "at",     "refund", "size",   "ship",     "call", "back",    "account", "card",  "code",
    "open",     "sale",   "stop",   "info",   "tomorrow", "week", "address", "return",  "color", "great",
    "love",     "wrong",  "late",   "missing"};

/* Tag k (from 1) is on about 0.5 / k^2 of the conversations. */
static const char *const tags[NTAGS] = {"vip",      "pricing", "support",   "lead",      "order",
                                        "refund",   "spanish", "wholesale", "complaint", "feedback",
                                        "delivery", "return",  "b2b",       "event",     "newsletter",
                                        "partner",  "press",   "warranty",  "urgent",    "spam"};

static const char *const numbers[NNUMBERS] = {"+15005550101", "+15005550102", "+15005550103",
                                              "+15005550104", "+15005550105", "+15005550106"};

typedef benchdb_t bench_t;

typedef struct stats {
    const char *name;
    double *ms;
    size_t n, cap;
    long rows;
    double worst_ms[3]; /* the slowest requests, for --verbose */
    char worst[3][1024];
} stats_t;

typedef struct client {
    int fd;
    int port;
    char key[64];
    char *buf;
    size_t cap;
    const char *body;
    size_t body_len;
    int status;
    char cursor[128];
    int rows;
} client_t;

static FILE *req_log; /* --log: every timed request */

/* The buffers here are sized by this file's own text, never by input. */
static void must(int rc)
{
    if (rc != 0)
        abort();
}
#define PUTF(...) must(buf_printf(__VA_ARGS__))

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The word of rank r (1 = commonest). */
static void word(int r, char *out, size_t n)
{
    static const char letters[] = "bcdfghklmn";
    char digits[16];
    size_t i;

    if (r >= 1 && r <= 64) {
        snprintf(out, n, "%s", common[r - 1]);
        return;
    }
    snprintf(digits, sizeof(digits), "%d", r);
    for (i = 0; digits[i] && i + 2 < n; i++)
        out[i] = letters[digits[i] - '0'];
    out[i++] = 'o';
    out[i] = '\0';
}

/* ---- database ---- */

static int script(bench_t *b, const char *what, const char *sql)
{
    double t0 = now_s();

    benchdb_clear(b);
    if (db_exec_script(b->db, sql, benchdb_on_result, b) != 0 || benchdb_wait(b, what) != 0)
        return -1;
    printf("  %-44s %6.1f s\n", what, now_s() - t0);
    fflush(stdout);
    return 0;
}

/* conninfo (key=value or URI) with dbname replaced, as key=value. */
static int with_dbname(const char *conninfo, const char *dbname, char *out, size_t outlen)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    buf_t s;

    if (!opts) {
        fprintf(stderr, "bench_inbox: %s\n", err ? err : "bad conninfo");
        PQfreemem(err);
        return -1;
    }
    buf_init(&s, 8192);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
        if (!v || !*v)
            continue;
        PUTF(&s, "%s%s='", s.len ? " " : "", o->keyword);
        for (const char *p = v; *p; p++)
            PUTF(&s, "%s%c", *p == '\'' || *p == '\\' ? "\\" : "", *p);
        must(buf_puts(&s, "'"));
    }
    PQconninfoFree(opts);
    snprintf(out, outlen, "%s", buf_str(&s));
    buf_close(&s);
    return 0;
}

/* The deterministic API key of an org (so a kept database can be reused). */
static void api_key(const char *org, char out[64])
{
    snprintf(out, 64, "hk_%032ld", 7000000000L + atol(org));
}

static int generate(bench_t *b, const char *org_a, const char *org_b, long na, long ma)
{
    long nb = na / 10, mb = ma / 10;
    char ka[64], kb[64];
    buf_t s, arr, tarr;
    int rc = -1;

    api_key(org_a, ka);
    api_key(org_b, kb);
    buf_init(&s, 1 << 16);
    buf_init(&arr, 4096);
    buf_init(&tarr, 4096);
    for (int i = 0; i < 64; i++)
        PUTF(&arr, "%s'%s'", i ? "," : "", common[i]);
    for (int i = 0; i < NTAGS; i++)
        PUTF(&tarr, "%s'%s'", i ? "," : "", tags[i]);

    PUTF(&s,
         "SET work_mem = '256MB'; SET maintenance_work_mem = '512MB';"
         "CREATE FUNCTION pg_temp.bench_word(r int) RETURNS text LANGUAGE sql IMMUTABLE AS"
         " $$ SELECT CASE WHEN r <= 64 THEN (ARRAY[%s])[r]"
         "   ELSE translate(r::text, '0123456789', 'bcdfghklmn') || 'o' END $$;",
         buf_str(&arr));
    /* Conversations: numbers of unequal traffic, statuses, unread counts, Zipf-like tags. */
    PUTF(&s,
         "CREATE TEMP TABLE bench_conv AS"
         " SELECT %s::bigint AS org_id, g AS n,"
         "   CASE WHEN x < 0.40 THEN '%s' WHEN x < 0.65 THEN '%s' WHEN x < 0.80 THEN '%s'"
         "        WHEN x < 0.90 THEN '%s' WHEN x < 0.97 THEN '%s' ELSE '%s' END AS our_number,"
         "   '+1' || (2000000000 + g)::text AS contact,"
         "   CASE WHEN random() < 0.25 THEN 'open' ELSE 'closed' END AS status,"
         "   CASE WHEN random() < 0.08 THEN 1 + (random() * 4)::int ELSE 0 END AS unread,"
         "   now() - random() * interval '180 days' AS last_at,"
         "   ARRAY(SELECT t FROM unnest(ARRAY[%s]) WITH ORDINALITY u(t, k) WHERE random() < 0.5 / (k * k) "
         "AND g > 0)"
         "     AS tags"
         " FROM generate_series(1, %ld) g, LATERAL (SELECT random() AS x WHERE g > 0) r"
         " UNION ALL"
         " SELECT %s, g, '+15005550201', '+1' || (3000000000 + g)::text,"
         "   CASE WHEN random() < 0.5 THEN 'open' ELSE 'closed' END, CASE WHEN random() < 0.2 THEN 1 ELSE 0 "
         "END,"
         "   now() - random() * interval '90 days',"
         "   ARRAY(SELECT t FROM unnest(ARRAY[%s]) WITH ORDINALITY u(t, k) WHERE random() < 0.5 / (k * k) "
         "AND g > 0)"
         " FROM generate_series(1, %ld) g;",
         org_a, numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], buf_str(&tarr), na,
         org_b, buf_str(&tarr), nb);
    /*
     * Messages: the newest one of each conversation first (its body is the preview),
     * then the rest on conversation 1 + floor(N * random()^2), so a few have thousands.
     * Word ranks are log-uniform over 1..VOCAB (rank r in about 1/(r ln VOCAB) of the
     * draws); org B's ranks are shifted, so its common words are rare in org A.
     */
    PUTF(
        &s,
        "CREATE TEMP TABLE bench_msg AS"
        " SELECT s.org_id, s.n, s.first, l.dir, l.ago,"
        "   (SELECT string_agg(pg_temp.bench_word(w.r), ' ')"
        "      FROM (SELECT CASE WHEN s.org_id = %s THEN x.r ELSE (x.r + 7000) %% %d + 1 END AS r"
        "              FROM (SELECT floor(exp(random() * ln(%d)))::int AS r"
        "                      FROM generate_series(1, 3 + (s.k %% 11)) WHERE s.k > 0) x) w) AS body"
        " FROM (SELECT %s::bigint AS org_id, k AS n, true AS first, k FROM generate_series(1, %ld) k"
        "       UNION ALL SELECT %s, 1 + floor(%ld * random() ^ 2)::int, false, k FROM generate_series(%ld, "
        "%ld) k"
        "       UNION ALL SELECT %s, k - %ld, true, k FROM generate_series(%ld, %ld) k"
        "       UNION ALL SELECT %s, 1 + floor(%ld * random() ^ 2)::int, false, k FROM generate_series(%ld, "
        "%ld) k) s,"
        "   LATERAL (SELECT CASE WHEN random() < 0.7 THEN 'inbound' ELSE 'outbound' END AS dir,"
        "                   CASE WHEN s.first THEN interval '0' ELSE random() * interval '30 days' END AS ago"
        "             WHERE s.k > 0) l;",
        org_a, VOCAB, VOCAB, org_a, na, org_a, na, na + 1, ma, org_b, ma, ma + 1, ma + nb, org_b, nb,
        ma + nb + 1, ma + mb);
    if (script(b, "vocabulary, conversations and bodies", buf_str(&s)) != 0)
        goto out;

    /*
     * The load: secondary indexes are dropped and created again afterwards from their
     * own definitions, and the search documents are computed here, as the triggers of
     * migration 008 would have, in one pass (the triggers are off meanwhile). The rows
     * go in no particular order of activity, as a live table's updates leave them: in
     * list order they would make the planner count every walk of a list index as a
     * sequential read.
     */
    buf_reset(&s);
    PUTF(
        &s,
        "SET work_mem = '256MB'; SET maintenance_work_mem = '512MB';"
        "ALTER TABLE conversations DISABLE TRIGGER USER; ALTER TABLE messages DISABLE TRIGGER USER;"
        /* A superuser can skip the foreign-key checks too (the rows are consistent by construction). */
        "DO $$ BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN"
        "  SET session_replication_role = replica; END IF; END $$;"
        "CREATE TEMP TABLE bench_idx AS SELECT i.indexrelid::regclass::text AS name, "
        "pg_get_indexdef(i.indexrelid) AS def"
        "  FROM pg_index i WHERE i.indrelid IN ('conversations'::regclass, 'messages'::regclass)"
        "   AND NOT i.indisprimary AND NOT i.indisunique;"
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT name FROM bench_idx LOOP EXECUTE 'DROP INDEX ' || "
        "r.name;"
        "  END LOOP; END $$;"
        "INSERT INTO conversations (org_id, our_number, contact_e164, status, unread, last_message_at,"
        "                           last_message_preview, tags, created_at, search, place)"
        " SELECT c.org_id, c.our_number, c.contact, c.status, c.unread, c.last_at, left(f.body, 140), c.tags,"
        "        c.last_at - interval '30 days', d.doc || herald_search_tags(c.org_id, c.tags)"
        "          || herald_search_status_key(c.org_id, c.status),"
        /* The triggers are off for the load: the place keys as 014's trigger makes them. */
        "        herald_place(c.org_id, c.our_number, herald_search_hour(c.last_at), c.unread)"
        "   FROM bench_conv c"
        "   JOIN bench_msg f ON f.org_id = c.org_id AND f.n = c.n AND f.first"
        "   JOIN (SELECT org_id, n, herald_search_words(org_id, string_agg(body, ' ')) AS doc FROM bench_msg"
        "          GROUP BY 1, 2) d ON d.org_id = c.org_id AND d.n = c.n"
        "  ORDER BY random();");
    if (script(b, "conversations (with search documents)", buf_str(&s)) != 0)
        goto out;
    buf_reset(&s);
    PUTF(&s,
         "SET work_mem = '256MB';"
         "INSERT INTO messages (org_id, conversation_id, direction, body, status, created_at)"
         " SELECT m.org_id, c.id, m.dir, m.body,"
         "        CASE WHEN m.dir = 'inbound' THEN 'received' ELSE 'delivered' END,"
         "        c.last_message_at - m.ago"
         "   FROM bench_msg m JOIN conversations c ON c.org_id = m.org_id"
         "    AND c.contact_e164 = '+1' || (CASE WHEN m.org_id = %s THEN 2000000000 ELSE 3000000000 END"
         "                                  + m.n)::text"
         "  ORDER BY 6;",
         org_a);
    if (script(b, "messages", buf_str(&s)) != 0)
        goto out;
    buf_reset(&s);
    PUTF(&s,
         "SET maintenance_work_mem = '512MB';"
         "DO $$ DECLARE r record; BEGIN FOR r IN SELECT def FROM bench_idx LOOP EXECUTE r.def;"
         "  END LOOP; END $$;"
         /* Long threads keep the words of their newest messages only, as the triggers do. */
         "UPDATE conversations SET search = herald_search_rebuild(id) WHERE length(search) > 1000;"
         "ALTER TABLE conversations ENABLE TRIGGER USER; ALTER TABLE messages ENABLE TRIGGER USER;"
         "DO $$ BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN"
         "  SET session_replication_role = DEFAULT; END IF; END $$;"
         "INSERT INTO api_keys (org_id, prefix, key_hash, name)"
         " VALUES (%s, left('%s', 10), sha256('%s'::bytea), 'bench_inbox'),"
         "        (%s, left('%s', 10), sha256('%s'::bytea), 'bench_inbox');"
         "DROP TABLE bench_conv, bench_msg, bench_idx;",
         org_a, ka, ka, org_b, kb, kb);
    if (script(b, "indexes, keys", buf_str(&s)) != 0)
        goto out;
    if (script(b, "vacuum analyze", "VACUUM (ANALYZE) conversations, messages") != 0)
        goto out;
    rc = 0;
out:
    buf_close(&s);
    buf_close(&arr);
    buf_close(&tarr);
    return rc;
}

/* ---- herald serve ---- */

static pid_t start_serve(const char *herald, const char *conninfo, const char *port_file, int *port)
{
    const char *argv[] = {herald, "serve", "--port-file", port_file, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;

    /* The bench itself needs none of these any more: set them for the child. */
    setenv("DATABASE_URL", conninfo, 1);
    setenv("HERALD_LISTEN", "127.0.0.1:0", 1);
    if (!getenv("HERALD_LOG_LEVEL"))
        setenv("HERALD_LOG_LEVEL", "warn", 1);
    unlink(port_file);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, herald, &fa, NULL, (char *const *)argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        fprintf(stderr, "bench_inbox: cannot run %s: %s\n", herald, strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(port_file, "r");
        int st;
        if (f) {
            int ok = fscanf(f, "%d", port) == 1;
            fclose(f);
            if (ok)
                return pid;
        }
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "bench_inbox: herald serve exited (status %d)\n", st);
            return -1;
        }
        usleep(100 * 1000);
    }
    fprintf(stderr, "bench_inbox: herald serve did not write its port file\n");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* ---- HTTP client: one keep-alive connection, one request at a time ---- */

static int client_open(client_t *c)
{
    struct sockaddr_in sa = {0};
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* GET path; fills status, body, rows (objects in "data") and cursor ("" at the end). */
static int client_get(client_t *c, const char *path)
{
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", path, c->key);
    size_t have = 0, head = 0, total = 0;
    const char *p;

    if (n <= 0 || (size_t)n >= sizeof(req) || write(c->fd, req, (size_t)n) != n)
        return -1;
    for (;;) {
        ssize_t r;
        if (have == c->cap) {
            c->cap *= 2;
            c->buf = xrealloc(c->buf, c->cap + 1);
        }
        r = read(c->fd, c->buf + have, c->cap - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        c->buf[have] = '\0';
        if (!head) {
            char *e = strstr(c->buf, "\r\n\r\n");
            char *cl;
            if (!e)
                continue;
            head = (size_t)(e - c->buf) + 4;
            *e = '\0';
            for (cl = c->buf; (cl = strstr(cl, "\r\n")) != NULL; cl += 2)
                if (strncasecmp(cl + 2, "Content-Length:", 15) == 0)
                    break;
            total = head + (cl ? strtoul(cl + 17, NULL, 10) : 0);
            c->status = atoi(c->buf + 9);
            *e = '\r';
        }
        if (head && have >= total)
            break;
    }
    c->buf[total] = '\0';
    c->body = c->buf + head;
    c->body_len = total - head;
    c->rows = 0;
    /* Conversations are compact JSON, messages Postgres's json_build_object() ("id" : 1). */
    for (p = c->body; (p = strstr(p, "{\"id\"")) != NULL; p++)
        c->rows++;
    c->cursor[0] = '\0';
    p = strstr(c->body, "\"next_cursor\":\"");
    if (p) {
        size_t len = strcspn(p + 15, "\"");
        if (len < sizeof(c->cursor)) {
            memcpy(c->cursor, p + 15, len);
            c->cursor[len] = '\0';
        }
    }
    return 0;
}

static void stats_add(stats_t *s, double ms, int rows, const char *path)
{
    for (int i = 0; i < 3; i++) {
        if (ms > s->worst_ms[i]) {
            memmove(&s->worst_ms[i + 1], &s->worst_ms[i], (size_t)(2 - i) * sizeof(double));
            memmove(s->worst[i + 1], s->worst[i], (size_t)(2 - i) * sizeof(s->worst[0]));
            s->worst_ms[i] = ms;
            snprintf(s->worst[i], sizeof(s->worst[i]), "%s", path);
            break;
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->ms = xrealloc(s->ms, s->cap * sizeof(double));
    }
    s->ms[s->n++] = ms;
    s->rows += rows;
}

/*
 * Pages of base (a path with its query string), following next_cursor: pages 1..pages,
 * timing those from timed_from on into s (NULL: none). Returns the pages fetched, or -1.
 */
static int walk(client_t *c, const char *base, int pages, int timed_from, stats_t *s)
{
    char path[1024];
    int got = 0;

    c->cursor[0] = '\0';
    for (int page = 1; page <= pages; page++) {
        double t0;
        if (page > 1 && !c->cursor[0])
            break;
        if (page > 1)
            snprintf(path, sizeof(path), "%s&cursor=%s", base, c->cursor);
        else
            snprintf(path, sizeof(path), "%s", base);
        t0 = now_s();
        if (client_get(c, path) != 0) {
            fprintf(stderr, "bench_inbox: GET %s: connection failed\n", path);
            return -1;
        }
        if (c->status != 200) {
            fprintf(stderr, "bench_inbox: GET %s: %d %.300s\n", path, c->status, c->body);
            return -1;
        }
        if (c->cursor[0] && c->rows != 50) {
            fprintf(stderr, "bench_inbox: GET %s: %d rows on a page that is not the last\n", path, c->rows);
            return -1;
        }
        if (s && page >= timed_from) {
            double ms = (now_s() - t0) * 1e3;
            stats_add(s, ms, c->rows, path);
            if (req_log)
                fprintf(req_log, "%s\t%.3f\t%d\t%s\n", s->name, ms, c->rows, path);
        }
        got++;
    }
    return got;
}

/* ---- the request mixes ---- */

typedef enum kind {
    K_NONE,
    K_STATUS,
    K_TAG,
    K_NUMBER,
    K_Q_COMMON,
    K_Q_MID,
    K_Q_RARE,
    K_UNREAD,
    K_COMBO,
    K_DEEP,
    K_MESSAGES,
    K_COUNT
} kind_t;

static const char *const kind_names[K_COUNT] = {
    "none",       "status",      "tag",    "number",      "q common word",
    "q mid word", "q rare word", "unread", "combination", "deep page (51-60)",
    "messages"};

/* A number's query-string form. */
static const char *enc_number(int i)
{
    static char out[NNUMBERS][20];
    snprintf(out[i], sizeof(out[i]), "%%2B%s", numbers[i] + 1);
    return out[i];
}

/*
 * The i-th request list of kind k: fills base and the number of pages to follow.
 * Parameters cycle through every value (all tags, all numbers, many words), so each
 * kind is measured over its whole range of selectivities.
 */
static void make_base(kind_t k, unsigned i, unsigned seed, char *base, size_t n, int *pages)
{
    const char *L = "/crm/inbox/conversations?limit=50";
    char w[32], w2[32];
    unsigned h = (i + 1) * 2654435761u ^ seed;

    switch (k) {
    case K_NONE:
        snprintf(base, n, "%s", L);
        *pages = 20;
        break;
    case K_STATUS:
        snprintf(base, n, "%s&status=%s", L, i % 4 ? "closed" : "open");
        *pages = 5;
        break;
    case K_TAG:
        snprintf(base, n, "%s&tag=%s", L, tags[i % NTAGS]);
        *pages = 3;
        break;
    case K_NUMBER:
        snprintf(base, n, "%s&number=%s", L, enc_number((int)(i % NNUMBERS)));
        *pages = 3;
        break;
    case K_Q_COMMON: /* ranks 1..40: in 2% to 45% of the messages */
        word(1 + (int)(h % 40), w, sizeof(w));
        snprintf(base, n, "%s&q=%s", L, w);
        *pages = 3;
        break;
    case K_Q_MID: /* ranks 41..4000, log-uniform: in 0.25% to 20% of the conversations */
    {
        double r = 41.0; /* 41 * (4000 / 41)^(u / 1000), without libm */
        for (unsigned u = h % 1000; u > 0; u--)
            r *= 1.0045913;
        word((int)r, w, sizeof(w));
    }
        snprintf(base, n, "%s&q=%s", L, w);
        *pages = 2;
        break;
    case K_Q_RARE: /* ranks 4000..20000: a handful to a few hundred conversations */
        word(4000 + (int)(h % (VOCAB - 4000)), w, sizeof(w));
        snprintf(base, n, "%s&q=%s", L, w);
        *pages = 2;
        break;
    case K_UNREAD:
        snprintf(base, n, "%s&unread=1", L);
        *pages = 5;
        break;
    case K_COMBO:
        word(1 + (int)(h % 20), w, sizeof(w));
        word(41 + (int)(h % 400), w2, sizeof(w2));
        switch (i % 8) {
        case 0:
            snprintf(base, n, "%s&status=open&tag=%s", L, tags[(h >> 8) % NTAGS]);
            break;
        case 1:
            snprintf(base, n, "%s&status=closed&number=%s", L, enc_number((int)((h >> 8) % NNUMBERS)));
            break;
        case 2:
            snprintf(base, n, "%s&tag=%s&unread=1", L, tags[(h >> 8) % 8]);
            break;
        case 3:
            snprintf(base, n, "%s&status=open&q=%s", L, w);
            break;
        case 4:
            snprintf(base, n, "%s&number=%s&q=%s", L, enc_number((int)((h >> 8) % NNUMBERS)), w);
            break;
        case 5:
            snprintf(base, n, "%s&status=open&number=%s&tag=%s", L, enc_number((int)((h >> 8) % NNUMBERS)),
                     tags[(h >> 16) % 6]);
            break;
        case 6:
            snprintf(base, n, "%s&tag=%s&q=%s", L, tags[(h >> 8) % 4], w2);
            break;
        default:
            snprintf(base, n, "%s&q=%s+%s", L, w, w2);
            break;
        }
        *pages = 2;
        break;
    case K_DEEP:
        word(1 + (int)(h % 5), w, sizeof(w));
        switch (i % 6) {
        case 0:
            snprintf(base, n, "%s", L);
            break;
        case 1:
            snprintf(base, n, "%s&status=%s", L, h % 2 ? "open" : "closed");
            break;
        case 2:
            snprintf(base, n, "%s&number=%s", L, enc_number((int)(h % 3)));
            break;
        case 3:
            snprintf(base, n, "%s&tag=%s", L, tags[h % 2]);
            break;
        case 4:
            snprintf(base, n, "%s&q=%s", L, w);
            break;
        default:
            snprintf(base, n, "%s&unread=1", L);
            break;
        }
        *pages = 60;
        break;
    default:
        base[0] = '\0';
        *pages = 0;
        break;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const stats_t *s, double p)
{
    size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return s->ms[i < s->n ? i : s->n - 1];
}

/* Runs kind k until s holds at least want timed requests (or, warm-up, want requests untimed). */
static int run_kind(client_t *c, kind_t k, size_t want, stats_t *s, char (*conv_ids)[24], size_t nconv,
                    unsigned seed)
{
    char base[512];
    int pages;
    size_t untimed = 0;

    for (unsigned i = 0; (s ? s->n : untimed) < want; i++) {
        int got;
        if (k == K_MESSAGES) {
            snprintf(base, sizeof(base), "/crm/inbox/conversations/%s/messages?limit=50",
                     conv_ids[(i * 7919u + seed) % nconv]);
            pages = 3;
            got = walk(c, base, pages, 1, s);
        } else {
            make_base(k, i, seed, base, sizeof(base), &pages);
            got = walk(c, base, pages, k == K_DEEP ? 51 : 1, s);
        }
        if (got < 0)
            return -1;
        untimed += (size_t)got;
        if (i >= want * 4 || (s && i >= 200 && s->n == 0))
            break; /* the lists end before the timed pages: the table says so */
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_t b = {0};
    client_t c = {0};
    stats_t st[K_COUNT] = {{0}};
    char conninfo[4096], bench_ci[4200], err[1024], dbname[64] = "", sql[1024], org_a[32] = "",
                                                    org_b[32] = "";
    char port_file[256], val[256];
    char(*conv_ids)[24] = NULL;
    const char *herald = NULL, *reuse = NULL;
    long messages = 1000000, requests = 1000;
    int keep = 0, verbose = 0, rc = 1, port = 0;
    pid_t serve = -1;
    double la0[3] = {0}, la1[3] = {0}, t0;
    size_t nconv = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--herald") == 0 && i + 1 < argc)
            herald = argv[++i];
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            messages = atol(argv[++i]);
        else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc)
            requests = atol(argv[++i]);
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            reuse = argv[++i];
        else if (strcmp(argv[i], "--keep") == 0)
            keep = 1;
        else if (strcmp(argv[i], "--verbose") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
            if (req_log)
                fclose(req_log);
            req_log = fopen(argv[++i], "w");
            if (!req_log) {
                fprintf(stderr, "bench_inbox: %s: %s\n", argv[i], strerror(errno));
                return 2;
            }
        } else
            herald = NULL, i = argc;
    }
    if (!herald || messages < 1000 || requests < 1) {
        fprintf(stderr, "usage: bench_inbox --herald PATH [--messages N] [--requests N] [--keep] [--db NAME] "
                        "[--verbose] [--log FILE]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    getloadavg(la0, 3);
    printf("load average at start %.2f %.2f %.2f on %ld cores\n", la0[0], la0[1], la0[2],
           sysconf(_SC_NPROCESSORS_ONLN));
    if (storage_conninfo(conninfo, sizeof(conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_inbox: %s\n", err);
        return 1;
    }
    uv_loop_init(&b.loop);
    b.name = "bench_inbox";
    if (benchdb_connect(&b, conninfo) != 0)
        goto out;
    if (reuse) {
        snprintf(dbname, sizeof(dbname), "%s", reuse);
        keep = 1;
    } else {
        snprintf(dbname, sizeof(dbname), "bench_inbox_%ld", (long)getpid());
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
        if (benchdb_query(&b, sql, NULL, 0) != 0)
            goto out;
    }
    if (with_dbname(conninfo, dbname, bench_ci, sizeof(bench_ci)) != 0 || benchdb_connect(&b, bench_ci) != 0)
        goto out;
    if (storage_migrate(b.db, benchdb_on_migrate, &b) != 0 || benchdb_wait(&b, "migrate") != 0)
        goto out;
    if (benchdb_query(&b, "SELECT id FROM orgs WHERE name = 'bench-inbox-a'", org_a, sizeof(org_a)) != 0 ||
        benchdb_query(&b, "SELECT id FROM orgs WHERE name = 'bench-inbox-b'", org_b, sizeof(org_b)) != 0)
        goto out;
    if (!org_a[0] || !org_b[0]) {
        printf("generating %ld messages in %ld conversations (+ %ld in %ld for a second org) into %s\n",
               messages, messages / 10, messages / 10, messages / 100, dbname);
        t0 = now_s();
        if (benchdb_query(&b, "INSERT INTO orgs (name) VALUES ('bench-inbox-a') RETURNING id", org_a,
                          sizeof(org_a)) != 0 ||
            benchdb_query(&b, "INSERT INTO orgs (name) VALUES ('bench-inbox-b') RETURNING id", org_b,
                          sizeof(org_b)) != 0 ||
            generate(&b, org_a, org_b, messages / 10, messages) != 0)
            goto out;
        printf("generated in %.1f s\n", now_s() - t0);
    } else {
        printf("reusing the data in %s\n", dbname);
    }
    if (benchdb_query(
            &b,
            "SELECT format('%s conversations, %s messages; conversations %s, messages %s; shared_buffers %s',"
            " (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages),"
            " pg_size_pretty(pg_total_relation_size('conversations')),"
            " pg_size_pretty(pg_total_relation_size('messages')), current_setting('shared_buffers'))",
            val, sizeof(val)) != 0)
        goto out;
    printf("%s\n", val);

    /* Conversations whose messages are read: random ones, and the busiest few. */
    snprintf(sql, sizeof(sql),
             "(SELECT id FROM conversations WHERE org_id = %s ORDER BY random() LIMIT 990) UNION ALL"
             " (SELECT conversation_id FROM messages WHERE org_id = %s GROUP BY 1 ORDER BY count(*) DESC "
             "LIMIT 10)",
             org_a, org_a);
    if (benchdb_query(&b, sql, NULL, 0) != 0)
        goto out;
    nconv = (size_t)PQntuples(b.res);
    conv_ids = xcalloc(nconv ? nconv : 1, sizeof(*conv_ids));
    for (size_t i = 0; i < nconv; i++)
        snprintf(conv_ids[i], sizeof(conv_ids[i]), "%s", PQgetvalue(b.res, (int)i, 0));
    benchdb_clear(&b);

    snprintf(port_file, sizeof(port_file), "/tmp/bench_inbox_%ld.port", (long)getpid());
    serve = start_serve(herald, bench_ci, port_file, &port);
    if (serve < 0)
        goto out;
    c.port = port;
    c.cap = 1 << 20;
    c.buf = xmalloc(c.cap + 1);
    api_key(org_a, c.key);
    if (client_open(&c) != 0) {
        fprintf(stderr, "bench_inbox: cannot connect to 127.0.0.1:%d\n", port);
        goto out;
    }

    /* Tenant check: org B's key gets a 404 for org A's conversation. */
    {
        api_key(org_b, c.key);
        snprintf(sql, sizeof(sql), "/crm/inbox/conversations/%s/messages", conv_ids[0]);
        /* The server answers 503 until its database pool is up. */
        for (int i = 0; i < 100 && client_get(&c, sql) == 0 && c.status == 503; i++)
            usleep(50 * 1000);
        if (c.status != 404) {
            fprintf(stderr, "bench_inbox: org B reads org A's conversation: %d\n", c.status);
            goto out;
        }
        api_key(org_a, c.key);
    }

    for (int k = 0; k < K_COUNT; k++) {
        st[k].name = kind_names[k];
        if (run_kind(&c, (kind_t)k, k == K_DEEP ? 120 : 100, NULL, conv_ids, nconv, 12345u) != 0 ||
            run_kind(&c, (kind_t)k, (size_t)requests, &st[k], conv_ids, nconv, (unsigned)k * 977u) != 0)
            goto out;
        fprintf(stderr, ".");
    }
    fprintf(stderr, "\n");
    getloadavg(la1, 3);

    printf("\nGET /crm/inbox/... over loopback HTTP/1.1 keep-alive, one request at a time, limit 50\n");
    printf("%-20s %7s %8s %8s %8s %8s %8s %9s\n", "filter", "pages", "rows/pg", "p50 ms", "p95 ms", "p99 ms",
           "max ms", "req/s");
    for (int k = 0; k < K_COUNT; k++) {
        stats_t *s = &st[k];
        double sum = 0;
        if (s->n == 0) {
            printf("%-20s (no page reached)\n", s->name);
            continue;
        }
        qsort(s->ms, s->n, sizeof(double), cmp_double);
        for (size_t i = 0; i < s->n; i++)
            sum += s->ms[i];
        printf("%-20s %7zu %8.1f %8.2f %8.2f %8.2f %8.2f %9.0f\n", s->name, s->n,
               (double)s->rows / (double)s->n, pct(s, 50), pct(s, 95), pct(s, 99), s->ms[s->n - 1],
               (double)s->n / (sum / 1e3));
        for (int i = 0; verbose && i < 3 && s->worst_ms[i] > 0; i++)
            printf("    %8.2f ms  %s\n", s->worst_ms[i], s->worst[i]);
    }
    printf("load average at start %.2f %.2f %.2f, at the end %.2f %.2f %.2f on %ld cores\n", la0[0], la0[1],
           la0[2], la1[0], la1[1], la1[2], sysconf(_SC_NPROCESSORS_ONLN));
    rc = 0;
out:
    if (c.fd > 0)
        close(c.fd);
    if (serve > 0) {
        kill(serve, SIGTERM);
        waitpid(serve, NULL, 0);
        unlink(port_file);
    }
    free(c.buf);
    free(conv_ids);
    for (int k = 0; k < K_COUNT; k++)
        free(st[k].ms);
    if (req_log && fclose(req_log) != 0 && rc == 0) {
        fprintf(stderr, "bench_inbox: --log: %s\n", strerror(errno));
        rc = 1;
    }
    benchdb_clear(&b);
    free(b.err);
    b.err = NULL;
    if (b.db)
        db_close(b.db, NULL, NULL);
    b.db = NULL;
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (dbname[0] && !keep) {
        if (benchdb_connect(&b, conninfo) == 0) {
            snprintf(sql, sizeof(sql), "DROP DATABASE %s", dbname);
            (void)benchdb_query(&b, sql, NULL, 0);
        }
        benchdb_clear(&b);
        if (b.db)
            db_close(b.db, NULL, NULL);
        uv_run(&b.loop, UV_RUN_DEFAULT);
    } else if (dbname[0]) {
        printf("kept database %s (reuse with --db %s)\n", dbname, dbname);
    }
    uv_loop_close(&b.loop);
    return rc;
}
