/*
 * The form encoder behind every Twilio create request. Encoding byte by byte into
 * the capped buffer keeps a huge Body from growing anything past the request cap.
 */
#include "provider/form.h"

#include <string.h>

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

int twilio_form_encode(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char tmp[96];
    size_t t = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (t + 3 > sizeof(tmp)) {
            if (buf_append(b, tmp, t) != 0)
                return BUF_ETOOBIG;
            t = 0;
        }
        if (unreserved(c)) {
            tmp[t++] = (char)c;
        } else if (c == ' ') {
            tmp[t++] = '+';
        } else {
            tmp[t++] = '%';
            tmp[t++] = hex[c >> 4];
            tmp[t++] = hex[c & 0xf];
        }
    }
    return t ? buf_append(b, tmp, t) : 0;
}

int twilio_form_add(buf_t *b, const char *name, const char *value)
{
    size_t old = b->len;

    if ((old > 0 && buf_append(b, "&", 1) != 0) || twilio_form_encode(b, name, strlen(name)) != 0 ||
        buf_append(b, "=", 1) != 0 || twilio_form_encode(b, value, strlen(value)) != 0) {
        b->len = old;
        if (b->data)
            b->data[old] = '\0';
        return BUF_ETOOBIG;
    }
    return 0;
}
