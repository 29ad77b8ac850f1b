/*
 * TwiML writing (see twiml.h). The escaper walks the text once, validating UTF-8
 * by hand (shortest form, no surrogates, at most U+10FFFF) because a reply may
 * carry a contact's own bytes merged into a template.
 */
#include "http/twiml.h"

#include <string.h>

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"

static const char replacement[] = "\xEF\xBF\xBD";

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    /* U+FFFE and U+FFFF are not XML characters either. */
    if (cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return len;
}

int twiml_escape(buf_t *out, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, run = 0;
    int rc = 0;

    while (rc == 0 && i < len) {
        const char *ent = NULL;
        size_t n = 0;
        unsigned char c = s[i];

        switch (c) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&apos;"; break;
        default:
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                ent = "";
            } else {
                n = utf8_seq(s + i, len - i);
                if (n == 0)
                    ent = replacement;
            }
        }
        if (ent) {
            if (i > run)
                rc = buf_append(out, text + run, i - run);
            if (rc == 0)
                rc = buf_puts(out, ent);
            i++;
            run = i;
        } else {
            i += n;
        }
    }
    if (rc == 0 && i > run)
        rc = buf_append(out, text + run, i - run);
    return rc;
}

int twiml_utf8_clean(buf_t *out, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, run = 0;
    int rc = 0;

    while (rc == 0 && i < len) {
        size_t n = s[i] < 0x80 ? 1 : utf8_seq(s + i, len - i);
        if (n == 0) {
            if (i > run)
                rc = buf_append(out, text + run, i - run);
            if (rc == 0)
                rc = buf_puts(out, replacement);
            i++;
            run = i;
        } else {
            i += n;
        }
    }
    if (rc == 0 && i > run)
        rc = buf_append(out, text + run, i - run);
    return rc;
}

int twiml_begin(buf_t *out)
{
    return buf_puts(out, XML_DECL "<Response>");
}

int twiml_message(buf_t *out, const char *text, size_t len)
{
    int rc = buf_puts(out, "<Message>");
    if (rc == 0)
        rc = twiml_escape(out, text, len);
    if (rc == 0)
        rc = buf_puts(out, "</Message>");
    return rc;
}

int twiml_end(buf_t *out)
{
    return buf_puts(out, "</Response>");
}

const char *twiml_empty(void)
{
    return XML_DECL "<Response/>";
}
