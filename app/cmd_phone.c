/*
 * herald phone normalize [--region CC]: reads one number per line on stdin and
 * prints "input<TAB>e164<TAB>valid|invalid:reason<TAB>region" per line. Input is
 * streamed line by line with a fixed buffer (a longer line is cut, and reported
 * too_long); the echoed input is made safe for a one-line, four-field record.
 */
#include "app/commands.h"
#include "common/utf8.h"
#include "compliance/phone.h"

#include <stdio.h>
#include <string.h>

/* Bytes of a line kept; anything beyond is longer than PHONE_INPUT_MAX anyway. */
#define LINE_KEEP 1024

static void usage(FILE *out)
{
    fprintf(out, "usage: herald phone normalize [--region CC]   (default region US)\n"
                 "  reads numbers, one per line, on stdin; prints\n"
                 "  input<TAB>e164<TAB>valid|invalid:reason<TAB>region\n");
}

/*
 * Writes the input with TAB, control bytes and DEL as spaces and bytes that are
 * not well-formed UTF-8 as '?', so a record is always one line of four fields.
 */
static void put_sanitized(const unsigned char *p, size_t n, FILE *out)
{
    size_t i = 0, len;

    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            putc_unlocked(c < 0x20 || c == 0x7f ? ' ' : c, out);
            i++;
        } else if ((len = utf8_seq(p + i, n - i)) != 0) {
            fwrite(p + i, 1, len, out);
            i += len;
        } else {
            putc_unlocked('?', out);
            i++;
        }
    }
}

static void emit(const char *line, size_t n, int cut, const char *region, FILE *out)
{
    phone_result_t res;
    /* A cut line is over the cap: report it as such, not as what its head says. */
    int rc = cut ? PHONE_ETOOLONG : phone_normalize(line, n, region, &res);

    if (cut)
        memset(&res, 0, sizeof(res));
    put_sanitized((const unsigned char *)line, n, out);
    putc_unlocked('\t', out);
    fputs(rc == PHONE_OK ? res.e164 : "", out);
    fputs(rc == PHONE_OK ? "\tvalid\t" : "\tinvalid:", out);
    if (rc != PHONE_OK) {
        fputs(phone_reason(rc), out);
        putc_unlocked('\t', out);
    }
    fputs(res.region, out);
    putc_unlocked('\n', out);
}

static int normalize(const char *region)
{
    static char outbuf[1 << 16];
    char line[LINE_KEEP];
    size_t n = 0;
    int c, cut = 0, pending = 0;

    setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
    while ((c = getc_unlocked(stdin)) != EOF) {
        pending = 1;
        if (c == '\n') {
            if (n > 0 && line[n - 1] == '\r' && !cut)
                n--;
            emit(line, n, cut, region, stdout);
            n = 0;
            cut = 0;
            pending = 0;
            continue;
        }
        if (n < sizeof(line))
            line[n++] = (char)c;
        else
            cut = 1;
    }
    if (pending) {
        if (n > 0 && line[n - 1] == '\r' && !cut)
            n--;
        emit(line, n, cut, region, stdout);
    }
    if (ferror(stdin)) {
        fflush(stdout);
        fprintf(stderr, "herald phone normalize: error reading stdin\n");
        return 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "herald phone normalize: error writing stdout\n");
        return 1;
    }
    return 0;
}

int cmd_phone(int argc, char **argv)
{
    const char *region = "US";
    int i;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "normalize") != 0) {
        fprintf(stderr, "herald phone: unknown subcommand '%s' (try 'herald phone --help')\n", argv[1]);
        return EXIT_USAGE;
    }
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--region") == 0 && i + 1 < argc) {
            region = argv[++i];
        } else if (strncmp(argv[i], "--region=", 9) == 0) {
            region = argv[i] + 9;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "herald phone normalize: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!phone_region_known(region)) {
        fprintf(stderr, "herald phone normalize: unknown region '%s' (use a two-letter code such as US)\n",
                region);
        return EXIT_USAGE;
    }
    return normalize(region);
}
