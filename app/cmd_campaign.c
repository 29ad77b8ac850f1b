/*
 * herald campaign: create a campaign, upload its audience from CSV, list the rows
 * that were rejected, and show counts by outbox state. The upload itself is the
 * ingest module's (the HTTP upload endpoint runs the same code); this file reads
 * the file, draws the progress and prints the summary.
 *
 * The verbs that run campaigns (start, pause, resume, cancel, run) belong to the
 * scheduler: they are weak references here, so defining
 * `int cmd_campaign_start(int argc, char **argv)` (argv[0] = "start") in another
 * app/cmd_*.c file is all it takes to plug one in; until then they answer
 * "not built yet". `status` is the scheduler's campaign_control_status() when it
 * is linked in, else the plain counts by outbox state below.
 */
#include "app/campaign_spec.h"
#include "app/cli.h"
#include "app/commands.h"
#include "compliance/footer.h"
#include "common/xalloc.h"
#include "ingest/ingest.h"

#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REJECTS_PAGE 5000
#define MAX_DEFAULT_ARGS 64

/* Provided by the scheduler's app/cmd_*.c files when they exist. */
extern int cmd_campaign_start(int argc, char **argv) __attribute__((weak));
extern int cmd_campaign_pause(int argc, char **argv) __attribute__((weak));
extern int cmd_campaign_resume(int argc, char **argv) __attribute__((weak));
extern int cmd_campaign_cancel(int argc, char **argv) __attribute__((weak));
extern int cmd_campaign_run(int argc, char **argv) __attribute__((weak));
/* The scheduler's richer status (rate, ETA); the one here is the fallback. */
extern int campaign_control_status(int argc, char **argv) __attribute__((weak));

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald campaign create --name N --body TEXT (--from E164 | --messaging-service MG...)\n"
            "           [--rate MPS] [--start ISO8601] [--cron \"m h dom mon dow\" --tz Area/City] [--region CC]\n"
            "           [--quiet-hours HH:MM-HH:MM] [--footer-policy first|always|never] [--footer TEXT]\n"
            "           [--default FIELD=VALUE ...] [--price-per-segment N] [--org ID]\n"
            "       herald campaign upload ID FILE.csv|- [--dry-run] [--threads N] [--org ID]\n"
            "       herald campaign rejects ID [--csv] [--limit N] [--org ID]\n"
            "       herald campaign status ID [--json] [--org ID]\n"
            "       herald campaign start|pause|resume|cancel|run ID\n");
}

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past the value. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "herald: %s needs a value\n", name);
        *val = NULL;
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

static int parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return -1;
    v = strtoll(s, &end, 10);
    if (v <= 0)
        return -1;
    *out = v;
    return 0;
}

/* ---- create ---- */

static int bad(const char *fmt, const char *a)
{
    fprintf(stderr, "herald: campaign create: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

/* How the shared validation (app/campaign_spec.c) names each field here. */
static const char *const create_flags[CF_COUNT] = {
    [CF_NAME] = "--name",
    [CF_BODY] = "--body",
    [CF_FROM] = "--from",
    [CF_MG] = "--messaging-service",
    [CF_RATE] = "--rate",
    [CF_START] = "--start",
    [CF_CRON] = "--cron",
    [CF_TZ] = "--tz",
    [CF_REGION] = "--region",
    [CF_QUIET] = "--quiet-hours",
    [CF_FOOTER_POLICY] = "--footer-policy",
    [CF_FOOTER] = "--footer",
    [CF_PRICE] = "--price-per-segment",
    [CF_DEFAULTS] = "--default",
};

/* Turns the --default FIELD=VALUE options into the JSON object the spec takes. */
static int parse_defaults(const char *const *args, int n, json_t *defaults)
{
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(args[i], '=');
        char name[128];
        if (!eq || eq == args[i] || (size_t)(eq - args[i]) >= sizeof(name))
            return bad("--default must be FIELD=VALUE, got '%s'", args[i]);
        memcpy(name, args[i], (size_t)(eq - args[i]));
        name[eq - args[i]] = '\0';
        if (json_object_get(defaults, name))
            return bad("--default: field '%s' given twice", name);
        if (json_object_set_new(defaults, name, json_string(eq + 1)) != 0)
            return bad("--default: value of '%s' is not UTF-8 text", name);
    }
    return 0;
}

static int campaign_create(int argc, char **argv)
{
    static const struct {
        const char *flag;
        campaign_field_t field;
    } flags[] = {
        {"--name", CF_NAME},
        {"--body", CF_BODY},
        {"--from", CF_FROM},
        {"--messaging-service", CF_MG},
        {"--rate", CF_RATE},
        {"--start", CF_START},
        {"--cron", CF_CRON},
        {"--tz", CF_TZ},
        {"--region", CF_REGION},
        {"--quiet-hours", CF_QUIET},
        {"--footer-policy", CF_FOOTER_POLICY},
        {"--footer", CF_FOOTER},
        {"--price-per-segment", CF_PRICE},
    };
    campaign_spec_t spec = {0};
    campaign_spec_error_t serr;
    campaign_insert_t ins = {0};
    json_t *defaults = json_object();
    const char *defs[MAX_DEFAULT_ARGS], *org = NULL, *err;
    int ndefs = 0, rc = EXIT_USAGE, opened = 0, have_ins = 0;
    cli_session_t s;
    PGresult *r = NULL;

    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        for (size_t k = 0; k < sizeof(flags) / sizeof(flags[0]) && !m; k++)
            if ((m = opt_value(argc, argv, &i, flags[k].flag, &v)) > 0)
                spec.v[flags[k].field] = v;
        if (m < 0)
            goto out;
        if (m)
            continue;
        if ((m = opt_value(argc, argv, &i, "--org", &v)) != 0) {
            if (m < 0)
                goto out;
            org = v;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--default", &v)) != 0) {
            if (m < 0)
                goto out;
            if (ndefs >= MAX_DEFAULT_ARGS) {
                rc = bad("at most %s --default options", "64");
                goto out;
            }
            defs[ndefs++] = v;
            continue;
        }
        fprintf(stderr, "herald: campaign create: unknown argument '%s'\n", argv[i]);
        usage(stderr);
        goto out;
    }
    if ((rc = parse_defaults(defs, ndefs, defaults)) != 0)
        goto out;
    spec.defaults = defaults;
    if (campaign_spec_check(&spec, create_flags, &serr) != 0) {
        rc = bad("%s", serr.msg);
        goto out;
    }
    rc = 1;
    if (cli_session_open(&s) != 0)
        goto out;
    opened = 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    campaign_insert_init(&ins, &spec, s.org_id);
    have_ins = 1;
    if (cli_exec(&s, CAMPAIGN_INSERT_SQL, CAMPAIGN_INSERT_NPARAMS, ins.values, &r, &err) != 0) {
        fprintf(stderr, "herald: campaign create: %s\n", err);
        goto out;
    }
    printf("%s\n", PQgetvalue(r, 0, 0));
    rc = 0;
out:
    if (r)
        PQclear(r);
    if (have_ins)
        campaign_insert_free(&ins);
    json_decref(defaults);
    if (opened)
        cli_session_close(&s);
    return rc;
}

/* ---- upload ---- */

typedef struct upload_ui {
    int tty;
    off_t size;         /* of the input file, 0 when unknown (stdin) */
    uint64_t fed;
    struct timespec t0, last;
    ingest_t *ing;
    int phase_printed[3];
    int done;
    char *err;
    atomic_int feeding; /* the reader thread draws the progress while it runs */
} upload_ui_t;

/*
 * The reader thread: the file goes through ingest_feed_fd() here while the loop
 * thread runs the commit, whose COPY follows the parse (see ingest.h).
 */
typedef struct feeder {
    upload_ui_t *ui;
    ingest_t *ing;
    int fd;
    int rc; /* of ingest_feed_fd(): ierr says why */
    ingest_error_t ierr;
} feeder_t;

static void draw(upload_ui_t *ui, const char *what, double frac, long rows, int force);

static void on_read(uint64_t fed, void *arg)
{
    feeder_t *f = arg;

    f->ui->fed = fed;
    draw(f->ui, "reading", f->ui->size ? (double)fed / (double)f->ui->size : -1, ingest_rows_parsed(f->ing), 0);
}

static void *feeder_main(void *arg)
{
    feeder_t *f = arg;

    f->rc = ingest_feed_fd(f->ing, f->fd, on_read, f, &f->ierr);
    if (f->rc == 0)
        draw(f->ui, "reading", f->ui->size ? 1.0 : -1, ingest_rows_parsed(f->ing), 1);
    atomic_store(&f->ui->feeding, 0);
    return NULL;
}

static double secs(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void draw(upload_ui_t *ui, const char *what, double frac, long rows, int force)
{
    struct timespec now;
    double el, since_last, rate, eta = -1;

    clock_gettime(CLOCK_MONOTONIC, &now);
    el = secs(&ui->t0, &now);
    since_last = secs(&ui->last, &now);
    if (!force && since_last < (ui->tty ? 0.2 : 5.0))
        return;
    if (!ui->tty && el < 2.0)
        return;
    ui->last = now;
    rate = el > 0 ? rows / el : 0;
    if (frac > 0.001 && frac <= 1.0)
        eta = el / frac - el;
    if (ui->tty) {
        char bar[31];
        int fill = frac >= 0 ? (int)(frac * 30) : 0;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%-9s [%s] %3.0f%% %10ld rows %8.0f rows/s", what, bar, frac >= 0 ? frac * 100 : 0, rows,
                rate);
        if (eta >= 0)
            fprintf(stderr, "  ETA %4.0fs ", eta);
        else
            fprintf(stderr, "            ");
    } else {
        fprintf(stderr, "herald: %s: %ld rows, %.0f rows/s", what, rows, rate);
        if (frac >= 0)
            fprintf(stderr, ", %.0f%%", frac * 100);
        if (eta >= 0)
            fprintf(stderr, ", ETA %.0fs", eta);
        fputc('\n', stderr);
    }
}

static void on_progress(const ingest_progress_t *p, void *arg)
{
    upload_ui_t *ui = arg;
    double frac = p->bytes_total ? (double)p->bytes / (double)p->bytes_total : -1;

    if (atomic_load(&ui->feeding))
        return; /* the COPY is following the parse: the reader thread shows the progress */
    if (p->phase == INGEST_PHASE_FINALIZE || (p->phase == INGEST_PHASE_LOAD && p->bytes_total && p->bytes >= p->bytes_total)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!ui->tty && secs(&ui->t0, &now) < 2.0)
            return;
        if (!ui->phase_printed[INGEST_PHASE_FINALIZE]) {
            ui->phase_printed[INGEST_PHASE_FINALIZE] = 1;
            if (ui->tty)
                fputc('\n', stderr);
            fprintf(stderr, "herald: queueing: checking earlier uploads, committing...\n");
        }
        return;
    }
    draw(ui, "loading", frac, p->rows, 0);
}

static void on_committed(ingest_t *ing, const ingest_report_t *rep, const char *err, void *arg)
{
    upload_ui_t *ui = arg;

    (void)ing;
    (void)rep;
    if (err)
        ui->err = xstrdup(err);
    ui->done = 1;
}

static void print_summary(const ingest_campaign_t *c, const ingest_report_t *rep, int dry_run)
{
    static const ingest_reason_t invalid_reasons[] = {
        INGEST_R_INVALID_NUMBER, INGEST_R_MISSING_PHONE, INGEST_R_MISSING_FIELD, INGEST_R_BODY_TOO_LONG,
        INGEST_R_BAD_TEXT,       INGEST_R_BAD_REGION,    INGEST_R_BAD_TIMEZONE, INGEST_R_MALFORMED_ROW};
    double total = rep->parse_seconds + rep->commit_seconds;

    if (rep->already_uploaded) {
        printf("already uploaded: this file was uploaded to campaign %" PRId64 " before (upload %" PRId64
               "); nothing queued\n",
               c->campaign_id, rep->previous_upload_id);
        printf("rows: %ld\n", rep->rows);
        return;
    }
    if (dry_run)
        printf("dry run: nothing queued\n");
    else
        printf("upload %" PRId64 " committed to campaign %" PRId64 "\n", rep->upload_id, c->campaign_id);
    printf("rows: %ld\n", rep->rows);
    printf("accepted: %ld\n", rep->accepted);
    printf("invalid: %ld", rep->invalid);
    {
        int first = 1;
        for (size_t i = 0; i < sizeof(invalid_reasons) / sizeof(invalid_reasons[0]); i++)
            if (rep->by_reason[invalid_reasons[i]]) {
                printf("%s%s %ld", first ? " (" : ", ", ingest_reason_name(invalid_reasons[i]),
                       rep->by_reason[invalid_reasons[i]]);
                first = 0;
            }
        printf("%s\n", first ? "" : ")");
    }
    printf("duplicate: %ld\n", rep->duplicate);
    printf("suppressed: %ld\n", rep->suppressed);
    printf("segments: %lld\n", rep->segments);
    printf("first messages (opt-out footer policy '%s'): %ld\n", footer_policy_name(c->footer_policy),
           rep->first_messages);
    printf("estimated cost: $%.2f at $%.4f per segment\n", rep->cost, c->price_per_segment);
    if (rep->finish_utc > 0 && rep->accepted > 0) {
        char when[64];
        time_t t = (time_t)rep->finish_utc;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("estimated finish: %s at %g msg/s%s, within quiet hours\n", when, c->rate_mps > 0 ? c->rate_mps : 1.0,
               c->rate_mps > 0 ? "" : " (no rate set; assumed)");
    }
    printf("time: %.2f s (parse %.2f s, queue %.2f s), %.0f rows/s\n", total, rep->parse_seconds, rep->commit_seconds,
           total > 0 ? rep->rows / total : 0.0);
    if (rep->accepted + rep->invalid + rep->duplicate + rep->suppressed != rep->rows)
        fprintf(stderr, "herald: warning: counts do not add up to the rows read\n");
}

static int campaign_upload(int argc, char **argv)
{
    const char *id_s = NULL, *path = NULL, *org = NULL, *threads = NULL;
    int dry_run = 0, rc = EXIT_USAGE, fd = -1, opened = 0;
    int64_t id;
    cli_session_t s;
    PGresult *camp = NULL;
    ingest_default_t *defs = NULL;
    ingest_campaign_t c;
    ingest_options_t opt = {0};
    ingest_error_t ierr;
    ingest_t *ing = NULL;
    upload_ui_t ui = {0};
    char idb[24], orgb[24];
    const char *err;

    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--org", &v)) != 0) {
            if (m < 0)
                goto out;
            org = v;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--threads", &v)) != 0) {
            if (m < 0)
                goto out;
            threads = v;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "herald: campaign upload: unknown option '%s'\n", argv[i]);
            goto out;
        }
        if (!id_s)
            id_s = argv[i];
        else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "herald: campaign upload: extra argument '%s'\n", argv[i]);
            goto out;
        }
    }
    if (!id_s || !path) {
        usage(stderr);
        goto out;
    }
    if (parse_id(id_s, &id) != 0) {
        fprintf(stderr, "herald: campaign upload: '%s' is not a campaign id\n", id_s);
        goto out;
    }
    if (threads && (atoi(threads) < 1 || atoi(threads) > INGEST_MAX_THREADS)) {
        fprintf(stderr, "herald: campaign upload: --threads must be 1 to %d\n", INGEST_MAX_THREADS);
        goto out;
    }
    rc = 1;
    if (strcmp(path, "-") == 0) {
        fd = STDIN_FILENO;
    } else {
        struct stat st;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "herald: campaign upload: %s: %s\n", path, strerror(errno));
            goto out;
        }
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            ui.size = st.st_size;
    }
    if (cli_session_open(&s) != 0)
        goto out;
    opened = 1;
    if (cli_session_org(&s, org) != 0)
        goto out;
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    snprintf(orgb, sizeof(orgb), "%" PRId64, s.org_id);
    {
        const char *p[2] = {idb, orgb};
        if (cli_exec(&s, INGEST_CAMPAIGN_SQL, 2, p, &camp, &err) != 0) {
            fprintf(stderr, "herald: campaign upload: %s\n", err);
            goto out;
        }
    }
    if (PQntuples(camp) == 0) {
        fprintf(stderr, "herald: campaign upload: no campaign %s in org %s\n", idb, orgb);
        goto out;
    }
    if (ingest_campaign_from_result(camp, &c, &defs, &ierr) != 0) {
        fprintf(stderr, "herald: campaign upload: %s\n", ierr.reason);
        goto out;
    }
    ui.tty = isatty(STDERR_FILENO);
    opt.dry_run = dry_run;
    opt.threads = threads ? atoi(threads) : 2;
    opt.progress = on_progress;
    opt.progress_arg = &ui;
    if (ingest_new(&c, &opt, &ing, &ierr) != 0) {
        fprintf(stderr, "herald: campaign upload: %s\n", ierr.reason);
        goto out;
    }
    ui.ing = ing;
    clock_gettime(CLOCK_MONOTONIC, &ui.t0);
    ui.last = ui.t0;
    /* The commit starts now and its COPY follows the parse, done by the reader thread. */
    if (ingest_commit(ing, s.db, on_committed, &ui) != 0) {
        fprintf(stderr, "herald: campaign upload: cannot start the database work\n");
        goto out;
    }
    {
        feeder_t f = {.ui = &ui, .ing = ing, .fd = fd};
        pthread_t th;
        atomic_store(&ui.feeding, 1);
        if (pthread_create(&th, NULL, feeder_main, &f) != 0) {
            ingest_abort(ing);
            atomic_store(&ui.feeding, 0);
            while (!ui.done)
                uv_run(&s.loop, UV_RUN_ONCE);
            fprintf(stderr, "herald: campaign upload: cannot start a thread\n");
            goto out;
        }
        while (!ui.done)
            uv_run(&s.loop, UV_RUN_ONCE);
        pthread_join(th, NULL);
        if (ui.tty)
            fputc('\n', stderr);
        if (f.rc != 0) {
            ierr = f.ierr; /* a read error has row 0: "PATH: strerror" */
            goto parse_failed;
        }
    }
    if (ui.err) {
        fprintf(stderr, "herald: campaign upload: nothing queued: %s\n", ui.err);
        goto out;
    }
    print_summary(&c, ingest_report(ing), dry_run);
    rc = 0;
    goto out;

parse_failed:
    if (ui.tty)
        fputc('\n', stderr);
    if (ierr.row > 0)
        fprintf(stderr, "herald: campaign upload: nothing queued: %s: row %ld (byte %" PRIu64 "): %s\n", path,
                ierr.row, ierr.byte, ierr.reason);
    else
        fprintf(stderr, "herald: campaign upload: nothing queued: %s: %s\n", path, ierr.reason);
out:
    free(ui.err);
    ingest_free(ing);
    ingest_defaults_free(defs, defs ? c.n_defaults : 0);
    if (camp)
        PQclear(camp);
    if (fd > STDIN_FILENO)
        close(fd);
    if (opened)
        cli_session_close(&s);
    return rc;
}

/* ---- rejects ---- */

static void csv_cell(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static int resolve_campaign(cli_session_t *s, const char *id_s, int64_t *id)
{
    char idb[24], orgb[24];
    const char *p[2] = {idb, orgb}, *err;
    PGresult *r;
    int found;

    if (parse_id(id_s, id) != 0) {
        fprintf(stderr, "herald: campaign: '%s' is not a campaign id\n", id_s);
        return -1;
    }
    snprintf(idb, sizeof(idb), "%" PRId64, *id);
    snprintf(orgb, sizeof(orgb), "%" PRId64, s->org_id);
    if (cli_exec(s, "SELECT 1 FROM campaigns WHERE id = $1::bigint AND org_id = $2::bigint", 2, p, &r, &err) != 0) {
        fprintf(stderr, "herald: campaign: %s\n", err);
        return -1;
    }
    found = PQntuples(r) == 1;
    PQclear(r);
    if (!found) {
        fprintf(stderr, "herald: campaign: no campaign %s in org %s\n", idb, orgb);
        return -1;
    }
    return 0;
}

static int campaign_rejects(int argc, char **argv)
{
    const char *id_s = NULL, *org = NULL, *limit_s = NULL, *err;
    int as_csv = 0, rc = EXIT_USAGE, opened = 0;
    long limit = -1, printed = 0;
    int64_t id;
    cli_session_t s;
    char idb[24], up[24] = "0", row[24] = "0", lim[24];

    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if (strcmp(argv[i], "--csv") == 0) {
            as_csv = 1;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--org", &v)) != 0) {
            if (m < 0)
                goto out;
            org = v;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--limit", &v)) != 0) {
            if (m < 0)
                goto out;
            limit_s = v;
            continue;
        }
        if (id_s || argv[i][0] == '-') {
            fprintf(stderr, "herald: campaign rejects: unexpected argument '%s'\n", argv[i]);
            goto out;
        }
        id_s = argv[i];
    }
    if (!id_s) {
        usage(stderr);
        goto out;
    }
    if (limit_s && ((limit = atol(limit_s)) < 0 || strspn(limit_s, "0123456789") != strlen(limit_s))) {
        fprintf(stderr, "herald: campaign rejects: --limit must be a number\n");
        goto out;
    }
    rc = 1;
    if (cli_session_open(&s) != 0)
        goto out;
    opened = 1;
    if (cli_session_org(&s, org) != 0 || resolve_campaign(&s, id_s, &id) != 0)
        goto out;
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    if (as_csv)
        printf("upload,row,raw_value,reason,detail\n");
    /* Keyset pages, so a million rejects never sit in memory at once. */
    for (;;) {
        PGresult *r;
        const char *p[4] = {idb, up, row, lim};
        int n;
        long want = limit < 0 ? REJECTS_PAGE : (limit - printed < REJECTS_PAGE ? limit - printed : REJECTS_PAGE);
        if (want <= 0)
            break;
        snprintf(lim, sizeof(lim), "%ld", want);
        if (cli_exec(&s,
                     "SELECT upload_id, row_number, COALESCE(raw_value, ''), reason, COALESCE(detail, '') "
                     "FROM campaign_rejects WHERE campaign_id = $1::bigint AND (upload_id, row_number) > "
                     "($2::bigint, $3::bigint) ORDER BY upload_id, row_number LIMIT $4::bigint",
                     4, p, &r, &err) != 0) {
            fprintf(stderr, "herald: campaign rejects: %s\n", err);
            goto out;
        }
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            if (as_csv) {
                for (int k = 0; k < 5; k++) {
                    if (k)
                        putchar(',');
                    csv_cell(PQgetvalue(r, i, k));
                }
                putchar('\n');
            } else {
                printf("row %s: %s%s%s (raw '%s')\n", PQgetvalue(r, i, 1), PQgetvalue(r, i, 3),
                       *PQgetvalue(r, i, 4) ? ": " : "", PQgetvalue(r, i, 4), PQgetvalue(r, i, 2));
            }
        }
        printed += n;
        if (n > 0) {
            snprintf(up, sizeof(up), "%s", PQgetvalue(r, n - 1, 0));
            snprintf(row, sizeof(row), "%s", PQgetvalue(r, n - 1, 1));
        }
        PQclear(r);
        if (n < want)
            break;
    }
    rc = 0;
out:
    if (opened)
        cli_session_close(&s);
    return rc;
}

/* ---- status ---- */

static int campaign_status(int argc, char **argv)
{
    const char *id_s = NULL, *org = NULL, *err;
    int as_json = 0, rc = EXIT_USAGE, opened = 0;
    int64_t id;
    cli_session_t s;
    char idb[24];
    const char *p[1] = {idb};
    PGresult *c = NULL, *st = NULL, *up = NULL;
    json_t *j = NULL, *counts;

    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--org", &v)) != 0) {
            if (m < 0)
                goto out;
            org = v;
            continue;
        }
        if (id_s || argv[i][0] == '-') {
            fprintf(stderr, "herald: campaign status: unexpected argument '%s'\n", argv[i]);
            goto out;
        }
        id_s = argv[i];
    }
    if (!id_s) {
        usage(stderr);
        goto out;
    }
    rc = 1;
    if (cli_session_open(&s) != 0)
        goto out;
    opened = 1;
    if (cli_session_org(&s, org) != 0 || resolve_campaign(&s, id_s, &id) != 0)
        goto out;
    snprintf(idb, sizeof(idb), "%" PRId64, id);
    if (cli_exec(&s, "SELECT name, status FROM campaigns WHERE id = $1::bigint", 1, p, &c, &err) != 0 ||
        cli_exec(&s,
                 "SELECT state, sum(n)::bigint FROM (SELECT state, count(*) AS n FROM outbox "
                 "WHERE campaign_id = $1::bigint GROUP BY state UNION ALL SELECT CASE WHEN status = 'canceled' "
                 "THEN 'canceled' ELSE 'queued' END, herald_unfilled(id) FROM campaigns WHERE id = $1::bigint "
                 "AND cron IS NULL AND herald_unfilled(id) > 0) u GROUP BY state "
                 "ORDER BY herald_state_rank(state), state",
                 1, p, &st, &err) != 0 ||
        cli_exec(&s,
                 "SELECT count(*), COALESCE(sum(rows_total), 0), COALESCE(sum(accepted), 0), "
                 "COALESCE(sum(invalid), 0), COALESCE(sum(duplicate), 0), COALESCE(sum(suppressed), 0), "
                 "COALESCE(sum(segments), 0) FROM campaign_uploads WHERE campaign_id = $1::bigint",
                 1, p, &up, &err) != 0) {
        fprintf(stderr, "herald: campaign status: %s\n", err);
        goto out;
    }
    j = json_object();
    json_object_set_new(j, "id", json_integer(id));
    json_object_set_new(j, "name", json_string(PQgetvalue(c, 0, 0)));
    json_object_set_new(j, "status", json_string(PQgetvalue(c, 0, 1)));
    counts = json_object();
    for (int i = 0; i < PQntuples(st); i++)
        json_object_set_new(counts, PQgetvalue(st, i, 0), json_integer(strtoll(PQgetvalue(st, i, 1), NULL, 10)));
    json_object_set_new(j, "outbox", counts);
    {
        static const char *const names[] = {"uploads", "rows", "accepted", "invalid", "duplicate", "suppressed",
                                            "segments"};
        json_t *u = json_object();
        for (int k = 0; k < 7; k++)
            json_object_set_new(u, names[k], json_integer(strtoll(PQgetvalue(up, 0, k), NULL, 10)));
        json_object_set_new(j, "uploads", u);
    }
    if (as_json) {
        char *out = json_dumps(j, JSON_COMPACT);
        printf("%s\n", out);
        free(out);
    } else {
        const char *k;
        json_t *v;
        printf("campaign %" PRId64 ": %s (%s)\n", id, PQgetvalue(c, 0, 0), PQgetvalue(c, 0, 1));
        json_object_foreach(counts, k, v) printf("%s: %" JSON_INTEGER_FORMAT "\n", k, json_integer_value(v));
        printf("uploads: %s (rows %s, accepted %s, invalid %s, duplicate %s, suppressed %s, segments %s)\n",
               PQgetvalue(up, 0, 0), PQgetvalue(up, 0, 1), PQgetvalue(up, 0, 2), PQgetvalue(up, 0, 3),
               PQgetvalue(up, 0, 4), PQgetvalue(up, 0, 5), PQgetvalue(up, 0, 6));
    }
    rc = 0;
out:
    json_decref(j);
    if (c)
        PQclear(c);
    if (st)
        PQclear(st);
    if (up)
        PQclear(up);
    if (opened)
        cli_session_close(&s);
    return rc;
}

/* ---- dispatch ---- */

int cmd_campaign(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } verbs[] = {
        {"create", campaign_create},   {"upload", campaign_upload},   {"rejects", campaign_rejects},
        {"status", NULL},              {"start", NULL},               {"pause", NULL},
        {"resume", NULL},              {"cancel", NULL},              {"run", NULL},
    };
    int (*sched[6])(int, char **) = {campaign_control_status ? campaign_control_status : campaign_status,
                                     cmd_campaign_start, cmd_campaign_pause, cmd_campaign_resume,
                                     cmd_campaign_cancel, cmd_campaign_run};

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        int (*run)(int, char **) = i >= 3 ? sched[i - 3] : verbs[i].run;
        if (strcmp(argv[1], verbs[i].name) != 0)
            continue;
        if (!run) {
            fprintf(stderr, "herald: campaign %s: not built yet\n", verbs[i].name);
            return 1;
        }
        return run(argc - 1, argv + 1);
    }
    fprintf(stderr, "herald: campaign: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
