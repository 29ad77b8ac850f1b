/*
 * Form and query-string decoding. Decoding never makes a string longer, so each
 * name and value is decoded straight into one arena block the size of the input;
 * the parameter array is sized by counting separators first. One pass, no
 * reallocation, bounded by the limits the caller passes.
 */
#include "http/form.h"

#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes src[0..n) into dst; returns the decoded length or a negative error with *bad set. */
static long decode(const char *src, size_t n, char *dst, size_t *bad)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '+') {
            dst[o++] = ' ';
        } else if (c == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)src[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)src[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *bad = i;
                return HTTP_FORM_EPERCENT;
            }
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0) {
                *bad = i;
                return HTTP_FORM_ENUL;
            }
            dst[o++] = (char)c;
            i += 2;
        } else if (c == 0) {
            *bad = i;
            return HTTP_FORM_ENUL;
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return (long)o;
}

static int fail(http_form_t *out, http_form_error_t *err, int code, size_t offset)
{
    out->params = NULL;
    out->count = 0;
    if (err) {
        err->offset = offset;
        err->reason = http_form_strerror(code);
    }
    return code;
}

int http_form_parse(const char *data, size_t len, const http_form_limits_t *lim, http_arena_t *arena,
                    http_form_t *out, http_form_error_t *err)
{
    size_t max_fields = lim && lim->max_fields ? lim->max_fields : 256;
    size_t max_field = lim && lim->max_field_len ? lim->max_field_len : 64 * 1024;
    size_t max_input = lim && lim->max_input ? lim->max_input : 1024 * 1024;

    out->params = NULL;
    out->count = 0;
    if (len > max_input)
        return fail(out, err, HTTP_FORM_ETOOLONG, max_input);
    if (len == 0)
        return 0;

    size_t pairs = 1;
    for (size_t i = 0; i < len; i++)
        pairs += data[i] == '&';
    if (pairs > max_fields) {
        /* Empty pairs do not count, so only refuse once the real count is known. */
        size_t real = 0;
        for (size_t i = 0, start = 0; i <= len; i++) {
            if (i == len || data[i] == '&') {
                real += i > start;
                start = i + 1;
            }
        }
        if (real > max_fields)
            return fail(out, err, HTTP_FORM_ETOOMANY, 0);
        pairs = real;
    }

    http_param_t *params = http_arena_alloc(arena, pairs * sizeof(*params));
    /* Each field gets its own NUL, and a missing "=" an empty value: len + 2 per pair at most. */
    char *text = http_arena_alloc(arena, len + 2 * pairs + 1);
    size_t n = 0, t = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && data[i] != '&')
            continue;
        if (i > start) {
            const char *pair = data + start;
            size_t plen = i - start;
            const char *eq = memchr(pair, '=', plen);
            size_t nlen = eq ? (size_t)(eq - pair) : plen;
            size_t vlen = eq ? plen - nlen - 1 : 0;
            size_t bad = 0;
            if (nlen > 3 * max_field || vlen > 3 * max_field)
                return fail(out, err, HTTP_FORM_ETOOLONG, start);
            char *name = text + t;
            long dn = decode(pair, nlen, name, &bad);
            if (dn < 0)
                return fail(out, err, (int)dn, start + bad);
            t += (size_t)dn + 1;
            char *value = text + t;
            long dv = eq ? decode(eq + 1, vlen, value, &bad) : (value[0] = '\0', 0);
            if (dv < 0)
                return fail(out, err, (int)dv, start + nlen + 1 + bad);
            t += (size_t)dv + 1;
            if ((size_t)dn > max_field || (size_t)dv > max_field)
                return fail(out, err, HTTP_FORM_ETOOLONG, start);
            params[n].name = name;
            params[n].name_len = (size_t)dn;
            params[n].value = value;
            params[n].value_len = (size_t)dv;
            n++;
        }
        start = i + 1;
    }
    out->params = params;
    out->count = n;
    return 0;
}

const char *http_form_get(const http_form_t *f, const char *name)
{
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->params[i].name, name) == 0)
            return f->params[i].value;
    return NULL;
}

size_t http_form_count(const http_form_t *f, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < f->count; i++)
        n += strcmp(f->params[i].name, name) == 0;
    return n;
}

long http_form_encode(const char *s, char *dst, size_t dstlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == '*';
        size_t need = plain || c == ' ' ? 1 : 3;
        if (o + need + 1 > dstlen)
            return -1;
        if (plain) {
            dst[o++] = (char)c;
        } else if (c == ' ') {
            dst[o++] = '+';
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (dstlen == 0)
        return -1;
    dst[o] = '\0';
    return (long)o;
}

const char *http_form_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case HTTP_FORM_EPERCENT:
        return "malformed percent-encoding";
    case HTTP_FORM_ETOOMANY:
        return "too many fields";
    case HTTP_FORM_ETOOLONG:
        return "field or input too long";
    case HTTP_FORM_ENUL:
        return "NUL byte in a field";
    default:
        return "unknown form error";
    }
}
