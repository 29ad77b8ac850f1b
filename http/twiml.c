/*
 * TwiML writing (see twiml.h). The escaper walks the text once, validating UTF-8
 * by hand (shortest form, no surrogates, at most U+10FFFF) because a reply may
 * carry a contact's own bytes merged into a template.
 */
#include "http/twiml.h"
#include "common/utf8.h"

#include <string.h>

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"

static const char replacement[] = "\xEF\xBF\xBD";

/*
 * Length of the UTF-8 sequence at s that XML accepts as text, or 0: well-formed
 * (common/utf8.h) and not U+FFFE or U+FFFF, which are not XML characters.
 */
static size_t xml_seq(const unsigned char *s, size_t n)
{
    size_t len = utf8_seq(s, n);

    if (len == 3 && s[0] == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF))
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
                n = xml_seq(s + i, len - i);
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
        size_t n = xml_seq(s + i, len - i);
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
