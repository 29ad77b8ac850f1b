/*
 * Logging: one line per event on stderr, "ts level [ctx] message".
 * The macros check the level before any argument is evaluated or formatted.
 * Never pass secrets; pass phone numbers through log_mask_phone().
 */
#ifndef HERALD_COMMON_LOG_H
#define HERALD_COMMON_LOG_H
#include <stddef.h>

typedef enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
} log_level_t;

extern log_level_t log_current_level;

/* Sets the level from a name ("error", "warn", "info", "debug"); returns 0, or -1 if unknown. */
int log_set_level_name(const char *name);

/* Formats and writes one line; use the macros below rather than calling this. */
void log_write(log_level_t level, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_at(lvl, ctx, ...) \
    do { if ((lvl) <= log_current_level) log_write((lvl), (ctx), __VA_ARGS__); } while (0)
#define log_error(...) log_at(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
/* Context variants prefix the object, e.g. log_cinfo("campaign 12", "paused"). */
#define log_cerror(ctx, ...) log_at(LOG_LEVEL_ERROR, (ctx), __VA_ARGS__)
#define log_cwarn(ctx, ...)  log_at(LOG_LEVEL_WARN, (ctx), __VA_ARGS__)
#define log_cinfo(ctx, ...)  log_at(LOG_LEVEL_INFO, (ctx), __VA_ARGS__)
#define log_cdebug(ctx, ...) log_at(LOG_LEVEL_DEBUG, (ctx), __VA_ARGS__)

/*
 * Writes a masked copy of a phone number into out (always NUL-terminated):
 * "+14155550199" -> "+1415***0199". Keeps at most the first 5 and last 4
 * characters; inputs of 9 characters or fewer are fully masked. Returns out.
 */
char *log_mask_phone(const char *e164, char *out, size_t outlen);

#endif
