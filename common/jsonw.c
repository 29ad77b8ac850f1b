/* JSON strings written into a buf_t the way jansson's compact dump writes them (jsonw.h). */
#include "common/jsonw.h"

#include "common/utf8.h"

#include <string.h>

int jsonw_string(buf_t *b, const char *s, size_t n)
{
    if (!utf8_valid(s, n))
        return JSONW_EUTF8;
    return jsonw_string_utf8(b, s, n);
}

int jsonw_int(buf_t *b, long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    return buf_append(b, tmp + i, sizeof(tmp) - i);
}

int jsonw_string_utf8(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0, i;
    int rc;

    rc = buf_append(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6] = {'\\', 0, '0', '0', 0, 0};
        size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc |= buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
            break;
        }
        rc |= buf_append(b, esc, elen);
    }
    rc |= buf_append(b, s + run, n - run);
    rc |= buf_append(b, "\"", 1);
    return rc ? BUF_ETOOBIG : 0;
}

void jsonw_key(jsonw_obj_t *w, const char *key)
{
    if (!w->first)
        w->rc |= buf_append(w->b, ",", 1);
    w->first = 0;
    w->rc |= buf_append(w->b, "\"", 1);
    w->rc |= buf_puts(w->b, key);
    w->rc |= buf_append(w->b, "\":", 2);
}

void jsonw_member_strn(jsonw_obj_t *w, const char *key, const char *v, size_t n)
{
    if (!v || !utf8_valid(v, n))
        return;
    jsonw_key(w, key);
    w->rc |= jsonw_string_utf8(w->b, v, n);
}

void jsonw_member_str(jsonw_obj_t *w, const char *key, const char *v)
{
    if (v)
        jsonw_member_strn(w, key, v, strlen(v));
}

void jsonw_member_int(jsonw_obj_t *w, const char *key, long long v)
{
    jsonw_key(w, key);
    w->rc |= jsonw_int(w->b, v);
}
