/*
 * herald sms info: how Twilio will encode and segment a message body, and what
 * the opt-out footer does to it. A batch mode reads one JSON string per line
 * from stdin and prints one result line each, for scripts and the oracle test
 * that compares Herald with Twilio's own calculator.
 */
#include "app/commands.h"
#include "common/buf.h"
#include "compliance/footer.h"
#include "compliance/segments.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bodies (argument or batch line, decoded) larger than this are refused. */
#define SMS_CLI_MAX_BODY (64 * 1024)
/* A batch line may be JSON-escaped: up to 6 bytes per input byte. */
#define SMS_CLI_MAX_LINE (6 * SMS_CLI_MAX_BODY + 16)

typedef struct sms_opts {
    const char *text;
    unsigned flags;
    int footer;              /* --footer given */
    const char *footer_text; /* NULL: the default text */
    footer_policy_t policy;
    int first;
    int json;
    int batch;
} sms_opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: herald sms info TEXT [--smart] [--footer[=TEXT]] [--policy first|always|never]\n"
            "                            [--first|--later] [--json]\n"
            "       herald sms info --batch [--smart]   (stdin: one JSON string per line;\n"
            "                                            stdout: encoding segments characters units)\n"
            "--smart applies Twilio Smart Encoding. --footer appends opt-out text (default \"%s\")\n"
            "when the policy (default first) requires it and the body has none; the message is\n"
            "taken as the contact's first unless --later is given.\n",
            FOOTER_DEFAULT_TEXT);
}

static int parse_args(int argc, char **argv, sms_opts_t *o)
{
    int only_text = 0;

    memset(o, 0, sizeof(*o));
    o->policy = FOOTER_POLICY_FIRST;
    o->first = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (only_text || a[0] != '-' || a[1] == '\0') {
            if (o->text) {
                fprintf(stderr, "herald sms info: one TEXT argument expected (quote it)\n");
                return -1;
            }
            o->text = a;
        } else if (strcmp(a, "--") == 0) {
            only_text = 1;
        } else if (strcmp(a, "--smart") == 0) {
            o->flags |= SMS_SMART_ENCODING;
        } else if (strcmp(a, "--footer") == 0) {
            o->footer = 1;
        } else if (strncmp(a, "--footer=", 9) == 0) {
            o->footer = 1;
            o->footer_text = a + 9;
        } else if (strcmp(a, "--first") == 0) {
            o->first = 1;
        } else if (strcmp(a, "--later") == 0) {
            o->first = 0;
        } else if (strcmp(a, "--policy") == 0 || strncmp(a, "--policy=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || footer_policy_parse(v, &o->policy) != 0) {
                fprintf(stderr, "herald sms info: --policy takes first, always or never\n");
                return -1;
            }
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "herald sms info: unknown option '%s'\n", a);
            return -1;
        }
    }
    if (o->batch ? o->text != NULL || o->footer || o->json : o->text == NULL) {
        fprintf(stderr, o->batch ? "herald sms info: --batch takes no TEXT, --footer or --json\n"
                                 : "herald sms info: TEXT is required\n");
        return -1;
    }
    if (o->footer_text && (o->footer_text[0] == '\0' || strlen(o->footer_text) > FOOTER_MAX_TEXT)) {
        fprintf(stderr, "herald sms info: --footer text must be 1 to %d bytes\n", FOOTER_MAX_TEXT);
        return -1;
    }
    return 0;
}

static void put_utf8(buf_t *b, uint32_t cp, int *err)
{
    unsigned char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (buf_append(b, u, n) != 0)
        *err = 1;
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        *v <<= 4;
        if (c >= '0' && c <= '9')
            *v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            *v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            *v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    return 0;
}

/*
 * Decodes one JSON string literal (the whole of s[0..len)) into out as UTF-8.
 * Lone surrogate escapes are refused: they have no UTF-8 form. Returns 0 or -1.
 */
static int json_string_decode(const char *s, size_t len, buf_t *out)
{
    size_t i = 1;
    int err = 0;

    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return -1;
    len--;
    while (i < len && !err) {
        size_t run = i;
        uint32_t cp, lo;

        while (i < len && s[i] != '\\' && s[i] != '"' && (unsigned char)s[i] >= 0x20)
            i++;
        if (buf_append(out, s + run, i - run) != 0)
            return -1;
        if (i == len)
            break;
        if (s[i] != '\\' || i + 1 >= len)
            return -1;
        switch (s[i + 1]) {
        case '"': case '\\': case '/':
            err = buf_append(out, s + i + 1, 1) != 0;
            i += 2;
            continue;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (i + 6 > len || hex4(s + i + 2, &cp) != 0)
                return -1;
            i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 8 > len || s[i + 2] != '\\' || s[i + 3] != 'u' || hex4(s + i + 4, &lo) != 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            break;
        default:
            return -1;
        }
        put_utf8(out, cp, &err);
        i += 2;
    }
    return err ? -1 : 0;
}

/* Appends s as a JSON string literal (s is valid UTF-8). */
static int json_string_put(buf_t *b, const char *s, size_t len)
{
    int r = buf_puts(b, "\"");

    for (size_t i = 0; i < len && r == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            r = buf_printf(b, "\\%c", c);
        else if (c == '\n')
            r = buf_puts(b, "\\n");
        else if (c == '\r')
            r = buf_puts(b, "\\r");
        else if (c == '\t')
            r = buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7F)
            r = buf_printf(b, "\\u%04x", c);
        else
            r = buf_append(b, &c, 1);
    }
    return r ? r : buf_puts(b, "\"");
}

/* Appends s for a "key: value" line: backslash escapes keep it on one line. */
static int line_string_put(buf_t *b, const char *s, size_t len)
{
    int r = 0;

    for (size_t i = 0; i < len && r == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            r = buf_puts(b, "\\\\");
        else if (c == '\n')
            r = buf_puts(b, "\\n");
        else if (c == '\r')
            r = buf_puts(b, "\\r");
        else if (c == '\t')
            r = buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7F)
            r = buf_printf(b, "\\x%02x", c);
        else
            r = buf_append(b, &c, 1);
    }
    return r;
}

static int run_batch(unsigned flags)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    buf_t text;
    int rc = 0;

    buf_init(&text, SMS_CLI_MAX_BODY);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        sms_info_t info;
        size_t len = (size_t)n;

        if (len > SMS_CLI_MAX_LINE) {
            fprintf(stderr, "herald sms info: batch line longer than %d bytes\n", SMS_CLI_MAX_LINE);
            rc = 1;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        buf_reset(&text);
        if (json_string_decode(line, len, &text) != 0) {
            printf("error bad-json-string\n");
            continue;
        }
        if (sms_analyze(text.data ? text.data : "", text.len, flags, &info) != 0) {
            printf("error invalid-utf8\n");
            continue;
        }
        printf("%s %u %zu %zu\n", sms_encoding_name(info.encoding), info.segments, info.characters,
               info.units);
    }
    free(line);
    buf_close(&text);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "herald sms info: cannot write output\n");
        rc = 1;
    }
    return rc;
}

static int emit_info(buf_t *o, int json, const sms_info_t *in)
{
    if (json)
        return buf_printf(o,
                          "\"encoding\":\"%s\",\"segments\":%u,\"characters\":%zu,\"units\":%zu,"
                          "\"code_points\":%zu,\"over_limit\":%s",
                          sms_encoding_name(in->encoding), in->segments, in->characters, in->units,
                          in->code_points, in->over_limit ? "true" : "false");
    return buf_printf(o,
                      "encoding: %s\nsegments: %u\ncharacters: %zu\nunits: %zu\ncode_points: %zu\n"
                      "over_limit: %s\n",
                      sms_encoding_name(in->encoding), in->segments, in->characters, in->units,
                      in->code_points, in->over_limit ? "yes" : "no");
}

static int emit_footer(buf_t *o, int json, const sms_opts_t *opt, const footer_result_t *fr)
{
    const char *t = json ? "true" : "yes", *f = json ? "false" : "no";

    if (json)
        return buf_printf(o,
                          ",\"footer\":{\"policy\":\"%s\",\"first_message\":%s,\"required\":%s,"
                          "\"already_present\":%s,\"appended\":%s,\"segments_before\":%u,"
                          "\"segments_after\":%u,\"added_segments\":%u,\"encoding_before\":\"%s\","
                          "\"encoding_changed\":%s,\"over_limit\":%s}",
                          footer_policy_name(opt->policy), opt->first ? t : f, fr->required ? t : f,
                          fr->already_present ? t : f, fr->appended ? t : f, fr->segments_before,
                          fr->segments_after, fr->added_segments,
                          sms_encoding_name(fr->encoding_before), fr->encoding_changed ? t : f,
                          fr->over_limit ? t : f);
    return buf_printf(o,
                      "footer_policy: %s\nfirst_message: %s\nfooter_required: %s\n"
                      "footer_already_present: %s\nfooter_appended: %s\nsegments_before: %u\n"
                      "added_segments: %u\nencoding_before: %s\nencoding_changed: %s\n",
                      footer_policy_name(opt->policy), opt->first ? t : f, fr->required ? t : f,
                      fr->already_present ? t : f, fr->appended ? t : f, fr->segments_before,
                      fr->added_segments, sms_encoding_name(fr->encoding_before),
                      fr->encoding_changed ? t : f);
}

static int run_info(const sms_opts_t *opt)
{
    buf_t body, o;
    footer_result_t fr;
    sms_info_t info;
    int rc = 1, r;

    buf_init(&body, SMS_CLI_MAX_BODY + FOOTER_MAX_TEXT + 1);
    buf_init(&o, 4 * (SMS_CLI_MAX_BODY + FOOTER_MAX_TEXT) + 4096);
    if (strlen(opt->text) > SMS_CLI_MAX_BODY) {
        fprintf(stderr, "herald sms info: TEXT longer than %d bytes\n", SMS_CLI_MAX_BODY);
        goto out;
    }
    if (opt->footer) {
        r = footer_apply(opt->text, opt->footer_text, opt->policy, opt->first, opt->flags, &body, &fr);
        if (r != 0) {
            fprintf(stderr, "herald sms info: %s\n", footer_strerror(r));
            goto out;
        }
    } else if (buf_puts(&body, opt->text) != 0) {
        goto out;
    }
    r = sms_analyze(buf_str(&body), body.len, opt->flags, &info);
    if (r != 0) {
        fprintf(stderr, "herald sms info: %s\n", sms_strerror(r));
        goto out;
    }
    r = buf_puts(&o, opt->json ? "{" : "");
    r = r ? r : emit_info(&o, opt->json, &info);
    if (!r && opt->json)
        r = buf_printf(&o, ",\"smart_encoding\":%s", opt->flags & SMS_SMART_ENCODING ? "true" : "false");
    else if (!r)
        r = buf_printf(&o, "smart_encoding: %s\n", opt->flags & SMS_SMART_ENCODING ? "yes" : "no");
    if (!r && opt->footer)
        r = emit_footer(&o, opt->json, opt, &fr);
    if (!r && opt->json) {
        r = buf_puts(&o, ",\"body\":");
        r = r ? r : json_string_put(&o, buf_str(&body), body.len);
        r = r ? r : buf_puts(&o, "}\n");
    } else if (!r && opt->footer) {
        r = buf_puts(&o, "body: ");
        r = r ? r : line_string_put(&o, buf_str(&body), body.len);
        r = r ? r : buf_puts(&o, "\n");
    }
    if (r != 0) {
        fprintf(stderr, "herald sms info: output too large\n");
        goto out;
    }
    if (fwrite(buf_str(&o), 1, o.len, stdout) != o.len || fflush(stdout) != 0) {
        fprintf(stderr, "herald sms info: cannot write output\n");
        goto out;
    }
    rc = 0;
out:
    buf_close(&body);
    buf_close(&o);
    return rc;
}

int cmd_sms(int argc, char **argv)
{
    sms_opts_t opt;

    if (argc < 2 || strcmp(argv[1], "info") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return EXIT_USAGE;
    }
    if (parse_args(argc, argv, &opt) != 0)
        return EXIT_USAGE;
    return opt.batch ? run_batch(opt.flags) : run_info(&opt);
}
