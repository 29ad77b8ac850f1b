/*
 * The embedded private PostgreSQL cluster (see pgcluster.h): finding the binaries,
 * creating the directories with the right owner, running initdb and pg_ctl as a child
 * process whose output goes to the cluster's log, and telling whether it runs.
 *
 * initdb and postgres refuse to run as root, so as root the data directory belongs to
 * an unprivileged user and the tools run through runuser; the checks up front turn the
 * usual ways that fails (a parent folder the user cannot enter, a socket path too long
 * for sun_path) into one clear sentence instead of a log to dig through.
 */
#include "storage/pgcluster.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#define SOCKET_FILE "/.s.PGSQL.5432"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return PGCLUSTER_EFAIL;
}

/* out = a + b; returns -1 if it does not fit. */
static int join(char *out, size_t outlen, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la + lb + 1 > outlen)
        return -1;
    memcpy(out, a, la);
    memcpy(out + la, b, lb + 1);
    return 0;
}

static int is_executable(const char *dir, const char *prog)
{
    char d[PATH_MAX], path[PATH_MAX];

    return join(d, sizeof(d), dir, "/") == 0 && join(path, sizeof(path), d, prog) == 0 &&
           access(path, X_OK) == 0;
}

static int find_bindir(pgcluster_t *c)
{
    const char *env = getenv("PG_BIN");
    FILE *p;

    if (env && *env) {
        snprintf(c->bindir, sizeof(c->bindir), "%s", env);
        return is_executable(c->bindir, "initdb") ? 0 : -1;
    }
    snprintf(c->bindir, sizeof(c->bindir), "/usr/lib/postgresql/15/bin");
    if (is_executable(c->bindir, "initdb"))
        return 0;
    c->bindir[0] = '\0';
    if ((p = popen("pg_config --bindir 2>/dev/null", "r")) != NULL) {
        if (!fgets(c->bindir, sizeof(c->bindir), p))
            c->bindir[0] = '\0';
        pclose(p);
        c->bindir[strcspn(c->bindir, "\n")] = '\0';
    }
    return c->bindir[0] && is_executable(c->bindir, "initdb") ? 0 : -1;
}

/* FNV-1a: only needs to spread paths over socket directory names. */
static uint64_t path_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int pgcluster_init(pgcluster_t *c, const char *dir, char *err, size_t errlen)
{
    char cwd[PATH_MAX];
    struct passwd *pw;
    size_t max_sock = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

    memset(c, 0, sizeof(*c));
    if (!dir) {
        if (!getcwd(cwd, sizeof(cwd)))
            return fail(err, errlen, "cannot get the current directory: %s", strerror(errno));
        dir = cwd;
    }
    if (strchr(dir, '\'') || strchr(dir, '\\'))
        return fail(err, errlen,
                    "the path %s contains a quote or backslash; run herald elsewhere "
                    "or set DATABASE_URL",
                    dir);
    if ((size_t)snprintf(c->base, sizeof(c->base), "%s/.herald/pg", dir) >= sizeof(c->base) - 32)
        return fail(err, errlen, "the path %s is too long", dir);
    if (join(c->data, sizeof(c->data), c->base, "/data") < 0 ||
        join(c->log, sizeof(c->log), c->base, "/postgres.log") < 0 ||
        join(c->run, sizeof(c->run), c->base, "/run") < 0)
        return fail(err, errlen, "the path %s is too long", dir);
    if (strlen(c->run) + strlen(SOCKET_FILE) > max_sock)
        snprintf(c->run, sizeof(c->run), "/tmp/herald-pg-%016llx", (unsigned long long)path_hash(c->base));
    if (find_bindir(c) < 0)
        return fail(err, errlen,
                    "PostgreSQL binaries not found (tried PG_BIN, "
                    "/usr/lib/postgresql/15/bin, pg_config --bindir); install postgresql-15 "
                    "or set DATABASE_URL");
    if (geteuid() == 0) {
        if (!(pw = getpwnam("postgres")) && !(pw = getpwnam("nobody")))
            return fail(err, errlen,
                        "running as root needs a 'postgres' or 'nobody' user to "
                        "own the embedded cluster");
        snprintf(c->owner, sizeof(c->owner), "%s", pw->pw_name);
        c->owner_uid = pw->pw_uid;
        c->owner_gid = pw->pw_gid;
    } else {
        c->owner_uid = geteuid();
        c->owner_gid = getegid();
    }
    return 0;
}

const char *pgcluster_state_name(pgcluster_state_t st)
{
    switch (st) {
    case PGCLUSTER_RUNNING:
        return "running";
    case PGCLUSTER_STOPPED:
        return "stopped";
    case PGCLUSTER_NOT_INITIALISED:
        break;
    }
    return "not initialised";
}

/* A pid file may outlive a crash and its pid be reused, so check what runs under it. */
static int is_postmaster(long pid)
{
    char path[64], comm[64] = "";
    FILE *f;

    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    if (!(f = fopen(path, "r")))
        return 1;
    if (!fgets(comm, sizeof(comm), f))
        comm[0] = '\0';
    fclose(f);
    return strncmp(comm, "postgres", 8) == 0 || comm[0] == '\0';
}

pgcluster_state_t pgcluster_status(const pgcluster_t *c, long *pid)
{
    char path[PATH_MAX + 32];
    FILE *f;
    long p = 0;

    if (pid)
        *pid = 0;
    snprintf(path, sizeof(path), "%s/PG_VERSION", c->data);
    if (access(path, F_OK) != 0)
        return PGCLUSTER_NOT_INITIALISED;
    snprintf(path, sizeof(path), "%s/postmaster.pid", c->data);
    if (!(f = fopen(path, "r")))
        return PGCLUSTER_STOPPED;
    if (fscanf(f, "%ld", &p) != 1)
        p = 0;
    fclose(f);
    if (!is_postmaster(p))
        return PGCLUSTER_STOPPED;
    if (pid)
        *pid = p;
    return PGCLUSTER_RUNNING;
}

/* Appends ' quoted, with \ and ' escaped, as libpq conninfo values need. */
static size_t put_quoted(char *out, size_t outlen, size_t n, const char *v)
{
    if (n < outlen)
        out[n] = '\'';
    n++;
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\') {
            if (n < outlen)
                out[n] = '\\';
            n++;
        }
        if (n < outlen)
            out[n] = *v;
        n++;
    }
    if (n < outlen)
        out[n] = '\'';
    return n + 1;
}

int pgcluster_url(const pgcluster_t *c, char *out, size_t outlen)
{
    const char *tail = " dbname=herald user=herald";
    size_t n;

    if (outlen < 6)
        return PGCLUSTER_ENOSPACE;
    memcpy(out, "host=", 5);
    n = 5;
    if (strcspn(c->run, " '\\") == strlen(c->run)) {
        size_t l = strlen(c->run);
        if (n + l < outlen)
            memcpy(out + n, c->run, l);
        n += l;
    } else {
        n = put_quoted(out, outlen, n, c->run);
    }
    if (n + strlen(tail) + 1 > outlen)
        return PGCLUSTER_ENOSPACE;
    memcpy(out + n, tail, strlen(tail) + 1);
    return 0;
}

/* The last lines of the log, joined on one line, for error messages. */
static void log_tail(const pgcluster_t *c, char *out, size_t outlen)
{
    char buf[2048], *lines[3] = {NULL, NULL, NULL}, *p, *save = NULL;
    int fd = open(c->log, O_RDONLY | O_CLOEXEC);
    off_t end;
    ssize_t n;
    size_t used = 0;

    out[0] = '\0';
    if (fd < 0)
        return;
    end = lseek(fd, 0, SEEK_END);
    if (end > (off_t)sizeof(buf) - 1)
        lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (p = strtok_r(buf, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
        lines[0] = lines[1];
        lines[1] = lines[2];
        lines[2] = p;
    }
    for (int i = 0; i < 3; i++) {
        if (!lines[i] || used + 4 >= outlen)
            continue;
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? " | " : "", lines[i]);
    }
}

/* Runs bindir/prog with args as the owner (runuser as root), output appended to the log. */
static int run_tool(const pgcluster_t *c, const char *prog, const char *const *args, char *err, size_t errlen)
{
    char path[PATH_MAX + 32], tail[1024];
    const char *argv[32];
    int argc = 0, status, fd;
    pid_t pid;

    snprintf(path, sizeof(path), "%s/%s", c->bindir, prog);
    if (c->owner[0]) {
        argv[argc++] = "runuser";
        argv[argc++] = "-u";
        argv[argc++] = c->owner;
        argv[argc++] = "--";
    }
    argv[argc++] = path;
    for (; *args && argc < 31; args++)
        argv[argc++] = *args;
    argv[argc] = NULL;

    fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return fail(err, errlen, "cannot open %s: %s", c->log, strerror(errno));
    pid = fork();
    if (pid < 0) {
        close(fd);
        return fail(err, errlen, "cannot start %s: %s", prog, strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        /* The owner may not be able to enter our working directory. */
        if (chdir("/") != 0 || devnull < 0 || dup2(devnull, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        if (c->owner[0]) {
            execv("/usr/sbin/runuser", (char *const *)argv);
            execv("/sbin/runuser", (char *const *)argv);
            execvp("runuser", (char *const *)argv);
        } else {
            execv(path, (char *const *)argv);
        }
        _exit(127);
    }
    close(fd);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return fail(err, errlen, "waiting for %s: %s", prog, strerror(errno));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    log_tail(c, tail, sizeof(tail));
    if (WIFEXITED(status))
        return fail(err, errlen, "%s failed (exit %d); %s: %s", prog, WEXITSTATUS(status), c->log, tail);
    return fail(err, errlen, "%s was killed by signal %d; %s: %s", prog, WTERMSIG(status), c->log, tail);
}

static int can_traverse(const pgcluster_t *c, const struct stat *st)
{
    gid_t groups[64];
    int ngroups = 64;

    if (st->st_uid == c->owner_uid)
        return (st->st_mode & S_IXUSR) != 0;
    if (st->st_gid == c->owner_gid)
        return (st->st_mode & S_IXGRP) != 0;
    if (c->owner[0] && getgrouplist(c->owner, c->owner_gid, groups, &ngroups) >= 0) {
        for (int i = 0; i < ngroups; i++)
            if (groups[i] == st->st_gid)
                return (st->st_mode & S_IXGRP) != 0;
    }
    return (st->st_mode & S_IXOTH) != 0;
}

/* Checks that the owner can reach path: every existing ancestor must be searchable. */
static int check_traversable(const pgcluster_t *c, const char *path, char *err, size_t errlen)
{
    char p[PATH_MAX], *slash;
    struct stat st;

    snprintf(p, sizeof(p), "%s", path);
    while ((slash = strrchr(p, '/')) != NULL) {
        *slash = '\0';
        if (p[0] == '\0')
            break;
        if (stat(p, &st) != 0)
            continue;
        if (!can_traverse(c, &st))
            return fail(err, errlen,
                        "%s (mode %04o) is not traversable by user %s, who must own the embedded "
                        "cluster; chmod o+x it, run herald elsewhere, or set DATABASE_URL",
                        p, (unsigned)(st.st_mode & 07777), c->owner);
    }
    return 0;
}

static int make_dir(const pgcluster_t *c, const char *path, mode_t mode, int owned, char *err, size_t errlen)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return fail(err, errlen, "cannot create %s: %s", path, strerror(errno));
    if (owned && c->owner[0] && chown(path, c->owner_uid, c->owner_gid) != 0)
        return fail(err, errlen, "cannot give %s to user %s: %s", path, c->owner, strerror(errno));
    if (owned && chmod(path, mode) != 0)
        return fail(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
    return 0;
}

static int make_dirs(const pgcluster_t *c, char *err, size_t errlen)
{
    char herald[PATH_MAX];
    int fd;

    snprintf(herald, sizeof(herald), "%.*s", (int)(strlen(c->base) - 3), c->base);
    if (make_dir(c, herald, 0755, 0, err, errlen) < 0 || make_dir(c, c->base, 0755, 0, err, errlen) < 0 ||
        make_dir(c, c->data, 0700, 1, err, errlen) < 0 || make_dir(c, c->run, 0700, 1, err, errlen) < 0)
        return PGCLUSTER_EFAIL;
    /* The server appends to the log as the owner, so the owner must own it. */
    if ((fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0)
        return fail(err, errlen, "cannot create %s: %s", c->log, strerror(errno));
    close(fd);
    if (c->owner[0] && chown(c->log, c->owner_uid, c->owner_gid) != 0)
        return fail(err, errlen, "cannot give %s to user %s: %s", c->log, c->owner, strerror(errno));
    return 0;
}

/* Serializes start/stop between herald processes; returns the lock fd or -1. */
static int lock_cluster(const pgcluster_t *c, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    int fd;

    snprintf(path, sizeof(path), "%s/lock", c->base);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            fail(err, errlen, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Creates the database "herald" if missing; libpq blocks here, which is fine at CLI time. */
static int ensure_database(const pgcluster_t *c, char *err, size_t errlen)
{
    char conninfo[PATH_MAX + 64], *q;
    PGconn *conn;
    PGresult *r = NULL;
    int rc = PGCLUSTER_EFAIL;

    if (pgcluster_url(c, conninfo, sizeof(conninfo)) != 0)
        return fail(err, errlen, "socket path too long");
    q = strstr(conninfo, " dbname=herald");
    memcpy(q, " dbname=postgres", strlen(" dbname=postgres"));
    memcpy(q + strlen(" dbname=postgres"), " user=herald", strlen(" user=herald") + 1);
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fail(err, errlen, "cannot connect to the embedded cluster: %.*s",
             (int)strcspn(PQerrorMessage(conn), "\n"), PQerrorMessage(conn));
        goto out;
    }
    r = PQexec(conn, "SELECT 1 FROM pg_database WHERE datname = 'herald'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail(err, errlen, "checking for the database: %s", PQerrorMessage(conn));
        goto out;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        r = PQexec(conn, "CREATE DATABASE herald");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fail(err, errlen, "creating the database herald: %.*s", (int)strcspn(PQerrorMessage(conn), "\n"),
                 PQerrorMessage(conn));
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(r);
    PQfinish(conn);
    return rc;
}

int pgcluster_start(pgcluster_t *c, int *was_running, char *err, size_t errlen)
{
    char opts[PATH_MAX + 128];
    int lock = -1, rc = PGCLUSTER_EFAIL;
    pgcluster_state_t st;

    if (was_running)
        *was_running = 0;
    if (c->owner[0] && check_traversable(c, c->data, err, errlen) < 0)
        return PGCLUSTER_EFAIL;
    if (make_dirs(c, err, errlen) < 0 || (lock = lock_cluster(c, err, errlen)) < 0)
        goto out;
    st = pgcluster_status(c, NULL);
    if (st == PGCLUSTER_RUNNING) {
        if (was_running)
            *was_running = 1;
        rc = 0;
        goto out;
    }
    if (st == PGCLUSTER_NOT_INITIALISED) {
        const char *args[] = {"--no-sync",        "-D", c->data, "-U", "herald", "--auth=trust", "-E", "UTF8",
                              "--locale=C.UTF-8", NULL};
        if (run_tool(c, "initdb", args, err, errlen) < 0)
            goto out;
    }
    snprintf(opts, sizeof(opts), "-c listen_addresses='' -c unix_socket_directories='%s'", c->run);
    {
        const char *args[] = {"-D", c->data, "-l", c->log, "-w", "-t", "30", "-o", opts, "start", NULL};
        if (run_tool(c, "pg_ctl", args, err, errlen) < 0)
            goto out;
    }
    rc = ensure_database(c, err, errlen);
out:
    if (lock >= 0)
        close(lock);
    return rc;
}

int pgcluster_stop(pgcluster_t *c, int *was_running, char *err, size_t errlen)
{
    const char *args[] = {"-D", c->data, "-m", "fast", "-w", "-t", "60", "stop", NULL};
    int lock, rc = 0;

    if (was_running)
        *was_running = 0;
    if (pgcluster_status(c, NULL) != PGCLUSTER_RUNNING)
        return 0;
    if ((lock = lock_cluster(c, err, errlen)) < 0)
        return PGCLUSTER_EFAIL;
    if (pgcluster_status(c, NULL) == PGCLUSTER_RUNNING) {
        if (was_running)
            *was_running = 1;
        rc = run_tool(c, "pg_ctl", args, err, errlen);
    }
    close(lock);
    return rc;
}

int storage_conninfo(char *out, size_t outlen, char *err, size_t errlen)
{
    const char *url = getenv("DATABASE_URL");
    pgcluster_t *c;
    int rc;

    if (url && *url) {
        if (strlen(url) >= outlen)
            return fail(err, errlen, "DATABASE_URL is too long");
        memcpy(out, url, strlen(url) + 1);
        return 0;
    }
    c = malloc(sizeof(*c));
    if (!c)
        abort();
    if ((rc = pgcluster_init(c, NULL, err, errlen)) == 0 &&
        (rc = pgcluster_start(c, NULL, err, errlen)) == 0 && (rc = pgcluster_url(c, out, outlen)) != 0)
        fail(err, errlen, "the embedded cluster's conninfo does not fit");
    free(c);
    return rc;
}
