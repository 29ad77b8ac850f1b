/*
 * bench_client: create-message throughput and latency of provider/twilio against
 * the simulator. For each slot count (64, 128, 256 by default) it spawns a fresh
 * twilio-sim on 127.0.0.1:0, keeps exactly that many creates in flight until N have
 * completed, and prints creates/s, p50/p99 latency, errors and the number of TCP
 * connections the client opened (equal to the slot count when nothing reconnects).
 *
 *   bench_client [SIM_PATH] [-n N] [-s 64,128,256] [--builtin]
 *
 * SIM_PATH defaults to $TWILIO_SIM_BIN, then ./build/twilio-sim. --builtin answers
 * from a minimal in-process responder on another thread instead, which measures the
 * client's own ceiling.
 *
 * Other programs on the machine move creates/s a lot, so each line also gives the
 * CPU time (user + system) the client spent per create and, against the simulator,
 * the simulator's: figures that depend much less on what else is running.
 */
#include "common/log.h"
#include "provider/twilio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define SID "AC0123456789abcdef0123456789abcdef"
#define TOKEN "bench-token"

/* ---------------------------------------------------------------- builtin responder */

typedef struct bconn {
    uv_tcp_t tcp;
    char buf[65536];
    size_t len;
} bconn_t;

static const char builtin_resp[] =
    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 88\r\n\r\n"
    "{\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\",\"num_segments\":\"1\",\"x\":10}";

static void b_closed(uv_handle_t *h)
{
    free(h->data);
}

static void b_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    bconn_t *c = h->data;
    (void)s;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void b_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void b_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    bconn_t *c = st->data;
    size_t nresp = 0, off = 0;
    (void)b;

    if (n < 0) {
        uv_close((uv_handle_t *)st, b_closed);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    for (;;) {
        char *end = strstr(c->buf + off, "\r\n\r\n");
        size_t clen = 0, total;
        if (end == NULL)
            break;
        for (char *p = c->buf + off; p < end; p++)
            if (strncasecmp(p, "\r\ncontent-length:", 17) == 0)
                clen = strtoul(p + 17, NULL, 10);
        total = (size_t)(end + 4 - (c->buf + off)) + clen;
        if (c->len - off < total)
            break;
        off += total;
        nresp++;
    }
    memmove(c->buf, c->buf + off, c->len - off + 1);
    c->len -= off;
    if (nresp) {
        size_t rl = sizeof(builtin_resp) - 1;
        uv_write_t *w = malloc(sizeof(*w) + nresp * rl);
        char *d = (char *)(w + 1);
        for (size_t i = 0; i < nresp; i++)
            memcpy(d + i * rl, builtin_resp, rl);
        uv_buf_t out = uv_buf_init(d, (unsigned)(nresp * rl));
        if (uv_write(w, st, &out, 1, b_written) != 0)
            free(w);
    }
}

static void b_conn(uv_stream_t *server, int status)
{
    bconn_t *c;
    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        uv_read_start((uv_stream_t *)&c->tcp, b_alloc, b_read);
    } else
        uv_close((uv_handle_t *)&c->tcp, b_closed);
}

typedef struct builtin {
    uv_thread_t thread;
    uv_loop_t loop;
    uv_tcp_t tcp;
    int port;
} builtin_t;

static void builtin_run(void *arg)
{
    builtin_t *b = arg;
    uv_run(&b->loop, UV_RUN_DEFAULT);
}

static int builtin_start(builtin_t *b)
{
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    uv_loop_init(&b->loop);
    uv_tcp_init(&b->loop, &b->tcp);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_bind(&b->tcp, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&b->tcp, 1024, b_conn) != 0)
        return -1;
    uv_tcp_getsockname(&b->tcp, (struct sockaddr *)&ss, &len);
    b->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return uv_thread_create(&b->thread, builtin_run, b);
}

/* ---------------------------------------------------------------- simulator */

typedef struct sim {
    pid_t pid;
    int out_fd;
    int port;
} sim_t;

static int sim_start(sim_t *s, const char *bin, size_t slots)
{
    char conc[32];
    const char *argv[16];
    int n = 0, fds[2];
    posix_spawn_file_actions_t fa;
    char line[256];
    size_t len = 0;

    snprintf(conc, sizeof(conc), "%zu", slots * 4);
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--account-sid";
    argv[n++] = SID;
    argv[n++] = "--auth-token";
    argv[n++] = TOKEN;
    argv[n++] = "--concurrency";
    argv[n++] = conc;
    argv[n++] = "--mps";
    argv[n++] = "1000000";
    argv[n] = NULL;
    if (pipe(fds) != 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&s->pid, bin, &fa, NULL, (char *const *)argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    s->out_fd = fds[0];
    while (len < sizeof(line) - 1) {
        struct pollfd pfd = {.fd = s->out_fd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0 || read(s->out_fd, line + len, 1) != 1 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    if (sscanf(line, "listening on 127.0.0.1:%d", &s->port) != 1) {
        fprintf(stderr, "bench_client: %s did not print \"listening on 127.0.0.1:PORT\" (got \"%s\")\n", bin, line);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        close(s->out_fd);
        return -1;
    }
    return 0;
}

static void sim_stop(sim_t *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    close(s->out_fd);
}

/* ---------------------------------------------------------------- the run */

typedef struct run {
    uv_loop_t *loop;
    twilio_client_t *tc;
    size_t total, sent, done, errors;
    uint64_t *lat;
    int closed;
    char first_error[640];
} run_t;

typedef struct slot {
    run_t *run;
    uint64_t t0;
    size_t idx;
    char to[16];
} slot_t;

static void on_created(const twilio_result_t *res, void *arg);

static void send_next(slot_t *s)
{
    run_t *r = s->run;
    twilio_send_t m = {.to = s->to, .from = "+15005550006", .body = "Benchmark message from herald"};
    int rc;

    s->idx = r->sent++;
    snprintf(s->to, sizeof(s->to), "+1415%07zu", s->idx % 10000000);
    s->t0 = uv_hrtime();
    rc = twilio_message_create(r->tc, &m, on_created, s);
    if (rc != 0) {
        fprintf(stderr, "bench_client: create: %s\n", twilio_strerror(rc));
        exit(1);
    }
}

static void on_created(const twilio_result_t *res, void *arg)
{
    slot_t *s = arg;
    run_t *r = s->run;

    r->lat[r->done++] = uv_hrtime() - s->t0;
    if (res->verdict.outcome != TWILIO_OUTCOME_OK) {
        if (r->errors++ == 0)
            snprintf(r->first_error, sizeof(r->first_error), "HTTP %ld code %d curl %d: %s", res->http_status,
                     res->code, res->curl_code, res->message);
    }
    if (r->sent < r->total)
        send_next(s);
}

/* The first error of the last run, printed by main() after the run's line; "" if none. */
static char first_error[640];

static void end_line(void)
{
    printf("\n");
    if (first_error[0])
        printf("  first error: %s\n", first_error);
    fflush(stdout);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_seconds(int who)
{
    struct rusage ru;

    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

static int bench_one(const char *base, size_t slots, size_t total)
{
    uv_loop_t loop;
    twilio_config_t cfg;
    run_t r;
    slot_t *sl;
    uint64_t t0, t1;
    unsigned long long conns;
    double cpu0, cpu1;

    memset(&cfg, 0, sizeof(cfg));
    cfg.account_sid = SID;
    cfg.auth_token = TOKEN;
    cfg.base_url = base;
    /* No public URL: the simulator would POST status callbacks, which is not what is measured. */
    cfg.max_concurrency = slots;
    cfg.max_queue = slots;
    cfg.timeout_ms = 30000;
    uv_loop_init(&loop);
    memset(&r, 0, sizeof(r));
    r.loop = &loop;
    r.total = total;
    r.lat = calloc(total, sizeof(uint64_t));
    sl = calloc(slots, sizeof(*sl));
    if (twilio_client_new(&loop, &cfg, &r.tc) != 0) {
        fprintf(stderr, "bench_client: twilio_client_new failed\n");
        return -1;
    }
    t0 = uv_hrtime();
    cpu0 = cpu_seconds(RUSAGE_SELF);
    for (size_t i = 0; i < slots && r.sent < total; i++) {
        sl[i].run = &r;
        send_next(&sl[i]);
    }
    while (r.done < total)
        uv_run(&loop, UV_RUN_ONCE);
    t1 = uv_hrtime();
    cpu1 = cpu_seconds(RUSAGE_SELF);
    conns = twilio_client_connections_opened(r.tc);
    twilio_client_close(r.tc, on_closed, &r.closed);
    while (!r.closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "bench_client: loop not empty at the end\n");

    qsort(r.lat, total, sizeof(uint64_t), cmp_u64);
    double secs = (double)(t1 - t0) / 1e9;
    printf("slots %4zu  creates %7zu  %8.0f creates/s  p50 %6.2f ms  p99 %6.2f ms  errors %zu  connections %llu%s"
           "  client cpu %5.1f us/create",
           slots, total, (double)total / secs, (double)r.lat[total / 2] / 1e6,
           (double)r.lat[(size_t)((double)total * 0.99)] / 1e6, r.errors, conns,
           conns == slots ? "" : "  (!= slots)", (cpu1 - cpu0) * 1e6 / (double)total);
    snprintf(first_error, sizeof(first_error), "%s", r.errors ? r.first_error : "");
    free(r.lat);
    free(sl);
    return (r.errors == 0 && conns == slots) ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *bin = getenv("TWILIO_SIM_BIN");
    size_t total = 100000, slots[8] = {64, 128, 256};
    size_t nslots = 3;
    int builtin = 0, rc = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            total = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            char *p = argv[++i];
            nslots = 0;
            while (*p && nslots < 8) {
                slots[nslots++] = strtoul(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (strcmp(argv[i], "--builtin") == 0)
            builtin = 1;
        else if (argv[i][0] != '-')
            bin = argv[i];
        else {
            fprintf(stderr, "usage: bench_client [SIM_PATH] [-n N] [-s 64,128,256] [--builtin]\n");
            return 2;
        }
    }
    if (bin == NULL)
        bin = "./build/twilio-sim";
    if (total == 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    log_current_level = LOG_LEVEL_WARN;
    printf("bench_client: %zu creates per run against %s\n", total, builtin ? "the builtin responder" : bin);
    if (builtin) {
        static builtin_t b;
        char base[64];
        if (builtin_start(&b) != 0)
            return 1;
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", b.port);
        for (size_t i = 0; i < nslots; i++) {
            rc |= bench_one(base, slots[i], total);
            end_line();
        }
        return rc; /* the responder thread dies with the process */
    }
    for (size_t i = 0; i < nslots; i++) {
        sim_t sim;
        char base[64];
        if (sim_start(&sim, bin, slots[i]) != 0)
            return 1;
        double sim0 = cpu_seconds(RUSAGE_CHILDREN);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", sim.port);
        rc |= bench_one(base, slots[i], total);
        sim_stop(&sim);
        printf("  sim cpu %5.1f us/create", (cpu_seconds(RUSAGE_CHILDREN) - sim0) * 1e6 / (double)total);
        end_line();
    }
    return rc;
}
