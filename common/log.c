/*
 * Logging for every module: a level checked before formatting (see log.h),
 * one line per event with a UTC timestamp, and the phone-number mask that
 * keeps full numbers out of logs.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

log_level_t log_current_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_set_level_name(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            log_current_level = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_write(log_level_t level, const char *ctx, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", ts.tv_nsec / 1000000L,
                          level_names[level]);
    if (ctx != NULL && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] ", ctx);
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
    }
    /* One fputs per line keeps lines from interleaving between threads. */
    line[sizeof(line) - 2] = '\0';
    n = strlen(line);
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, stderr);
}

char *log_mask_phone(const char *e164, char *out, size_t outlen)
{
    size_t len = e164 ? strlen(e164) : 0;

    if (outlen == 0)
        return out;
    if (len <= 9) {
        snprintf(out, outlen, "***");
        return out;
    }
    snprintf(out, outlen, "%.5s***%s", e164, e164 + len - 4);
    return out;
}
