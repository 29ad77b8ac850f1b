/*
 * A fast, strict reader for the one JSON shape the Twilio client parses on every
 * create and fetch: a flat object of strings, integers and nulls (plus a nested
 * "subresource_uris" object). Building a jansson tree for each response cost about
 * as much CPU as the whole libcurl transfer, so the common case is read here in one
 * pass without allocating, and everything unusual is left to jansson.
 *
 * The reader accepts a subset of what jansson accepts, and on that subset gives the
 * same values: it validates the whole text (UTF-8 included, since jansson rejects
 * invalid UTF-8), and gives up — returns 0 — on any construct whose jansson
 * semantics it does not replicate: \u escapes, real numbers, integers too long to be
 * obviously in range, deep nesting, control characters, NUL bytes, a non-object top
 * level, trailing bytes. tests/unit/provider/test_msgjson.c checks the "same values"
 * promise against jansson on generated and mutated documents.
 */
#include "provider/provider_int.h"

#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_INT_DIGITS 18

typedef struct reader {
    const unsigned char *p, *end;
} reader_t;

static const struct {
    const char *name;
    msgjson_key_t key;
} known_keys[] = {
    {"sid", MJ_SID},
    {"account_sid", MJ_ACCOUNT_SID},
    {"messaging_service_sid", MJ_MESSAGING_SERVICE_SID},
    {"to", MJ_TO},
    {"from", MJ_FROM},
    {"status", MJ_STATUS},
    {"error_message", MJ_ERROR_MESSAGE},
    {"date_created", MJ_DATE_CREATED},
    {"date_sent", MJ_DATE_SENT},
    {"direction", MJ_DIRECTION},
    {"num_segments", MJ_NUM_SEGMENTS},
    {"error_code", MJ_ERROR_CODE},
    {"code", MJ_CODE},
    {"message", MJ_MESSAGE},
};

/* Printable ASCII other than '"' and '\\': copied as is inside a string. */
static inline int plain_byte(unsigned c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Whether the eight bytes of w are all plain_byte(), without looking at them one by one. */
static inline int word_plain(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), bslash = w ^ (ONES * '\\');
    uint64_t special = ((w - ONES * 0x20) & ~w) | ((quote - ONES) & ~quote) | ((bslash - ONES) & ~bslash);

    return ((special | w) & HIGHS) == 0;
}

/* Jansson's white space. */
static void skip_ws(reader_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* Length of the valid UTF-8 sequence starting at p (first byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned cp, min;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/*
 * Reads a string at r->p (just after its opening quote) up to and past the
 * closing quote. When dst is not NULL the decoded bytes are stored there, cut at
 * cap - 1 and NUL-terminated, and *full gets the decoded length. Returns 1, or 0
 * to give up.
 */
static int read_string(reader_t *r, char *dst, size_t cap, size_t *full)
{
    size_t n = 0;

    while (r->p < r->end) {
        const unsigned char *q = r->p;
        unsigned c;
        char out;
        size_t k;

        /* Runs of printable ASCII are the bulk of every string: copy them at once. */
        while (r->end - q >= 8) {
            uint64_t w;
            memcpy(&w, q, 8);
            if (!word_plain(w))
                break;
            q += 8;
        }
        while (q < r->end && plain_byte(*q))
            q++;
        if (q > r->p) {
            size_t run = (size_t)(q - r->p);
            if (dst != NULL && n + 1 < cap)
                memcpy(dst + n, r->p, run < cap - 1 - n ? run : cap - 1 - n);
            n += run;
            r->p = q;
            if (q == r->end)
                break;
        }
        c = *r->p;
        if (c == '"') {
            r->p++;
            if (dst != NULL) {
                dst[n < cap ? n : cap - 1] = '\0';
                *full = n;
            }
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (r->end - r->p < 2)
                return 0;
            switch (r->p[1]) {
            case '"':
                out = '"';
                break;
            case '\\':
                out = '\\';
                break;
            case '/':
                out = '/';
                break;
            case 'b':
                out = '\b';
                break;
            case 'f':
                out = '\f';
                break;
            case 'n':
                out = '\n';
                break;
            case 'r':
                out = '\r';
                break;
            case 't':
                out = '\t';
                break;
            default:
                return 0; /* \u and invalid escapes: jansson decides */
            }
            if (dst != NULL && n + 1 < cap)
                dst[n] = out;
            n++;
            r->p += 2;
            continue;
        }
        if (c < 0x80) {
            if (dst != NULL && n + 1 < cap)
                dst[n] = (char)c;
            n++;
            r->p++;
            continue;
        }
        k = utf8_len(r->p, r->end);
        if (k == 0)
            return 0;
        /* Cut like snprintf would: byte by byte, possibly inside a sequence. */
        for (size_t i = 0; i < k; i++, n++)
            if (dst != NULL && n + 1 < cap)
                dst[n] = (char)r->p[i];
        r->p += k;
    }
    return 0;
}

/* Reads an integer; gives up on reals, leading zeros and anything long. */
static int read_integer(reader_t *r, long long *v)
{
    int neg = 0, digits = 0;
    long long x = 0;

    if (r->p < r->end && *r->p == '-') {
        neg = 1;
        r->p++;
    }
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return 0;
    if (*r->p == '0' && r->end - r->p > 1 && r->p[1] >= '0' && r->p[1] <= '9')
        return 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (++digits > MAX_INT_DIGITS)
            return 0;
        x = x * 10 + (*r->p - '0');
        r->p++;
    }
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
        return 0;
    *v = neg ? -x : x;
    return 1;
}

static int read_literal(reader_t *r, const char *lit, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
        return 0;
    r->p += n;
    /* "truex" is one bad token for jansson; let it say so. */
    if (r->p < r->end && ((*r->p >= 'a' && *r->p <= 'z') || (*r->p >= 'A' && *r->p <= 'Z')))
        return 0;
    return 1;
}

static int read_value(reader_t *r, msgjson_field_t *f, int depth);

/* Reads an object or array body after its opening bracket. */
static int read_container(reader_t *r, int object, msgjson_t *top, int depth)
{
    char close = object ? '}' : ']';

    if (depth > MAX_DEPTH)
        return 0;
    skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return 1;
    }
    for (;;) {
        msgjson_field_t *f = NULL;

        skip_ws(r);
        if (object) {
            const unsigned char *k;
            size_t klen;
            if (r->p >= r->end || *r->p != '"')
                return 0;
            r->p++;
            k = r->p;
            if (!read_string(r, NULL, 0, NULL))
                return 0;
            klen = (size_t)(r->p - 1 - k);
            if (top != NULL && memchr(k, '\\', klen) == NULL) {
                for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
                    if (strlen(known_keys[i].name) == klen && memcmp(known_keys[i].name, k, klen) == 0) {
                        f = &top->f[known_keys[i].key];
                        break;
                    }
            } else if (top != NULL) {
                return 0; /* an escaped key might spell a known one */
            }
            skip_ws(r);
            if (r->p >= r->end || *r->p != ':')
                return 0;
            r->p++;
            skip_ws(r);
        }
        if (!read_value(r, f, depth))
            return 0;
        skip_ws(r);
        if (r->p >= r->end)
            return 0;
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        if (*r->p == close) {
            r->p++;
            return 1;
        }
        return 0;
    }
}

/* Reads one value; when f is not NULL records its type and (string, integer) value. */
static int read_value(reader_t *r, msgjson_field_t *f, int depth)
{
    msgjson_field_t scratch;
    long long v;

    if (f == NULL)
        f = &scratch;
    if (r->p >= r->end)
        return 0;
    switch (*r->p) {
    case '"':
        r->p++;
        if (f == &scratch)
            return read_string(r, NULL, 0, NULL);
        f->type = MSGJSON_STRING;
        return read_string(r, f->str, sizeof(f->str), &f->len);
    case '{':
    case '[':
        f->type = MSGJSON_OTHER;
        r->p++;
        return read_container(r, r->p[-1] == '{', NULL, depth + 1);
    case 't':
        f->type = MSGJSON_OTHER;
        return read_literal(r, "true", 4);
    case 'f':
        f->type = MSGJSON_OTHER;
        return read_literal(r, "false", 5);
    case 'n':
        f->type = MSGJSON_OTHER;
        return read_literal(r, "null", 4);
    default:
        if (!read_integer(r, &v))
            return 0;
        f->type = MSGJSON_INTEGER;
        f->integer = v;
        return 1;
    }
}

int msgjson_scan(const char *s, size_t len, msgjson_t *out)
{
    reader_t r;

    if (s == NULL)
        return 0;
    r.p = (const unsigned char *)s;
    r.end = r.p + len;
    for (size_t i = 0; i < MJ_NKEYS; i++)
        out->f[i].type = MSGJSON_ABSENT;
    skip_ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return 0;
    r.p++;
    if (!read_container(&r, 1, out, 1))
        return 0;
    skip_ws(&r);
    return r.p == r.end;
}
