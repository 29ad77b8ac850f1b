/*
 * TwiML answers for Twilio's messaging webhooks: <Response> with zero or more
 * <Message> elements whose text is XML-escaped. Text that is not valid UTF-8 has each
 * bad byte replaced by U+FFFD, and characters XML 1.0 cannot carry (C0 controls
 * other than tab, LF and CR) are dropped, so the document is always well-formed.
 */
#ifndef HERALD_HTTP_TWIML_H
#define HERALD_HTTP_TWIML_H
#include "common/buf.h"

#include <stddef.h>

/* The declaration and opening tag; twiml_message() calls follow, then twiml_end(). */
__attribute__((warn_unused_result)) int twiml_begin(buf_t *out);

/* Appends <Message>escaped text</Message>. Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int twiml_message(buf_t *out, const char *text, size_t len);

/* Appends </Response>. Returns 0 or BUF_ETOOBIG. */
__attribute__((warn_unused_result)) int twiml_end(buf_t *out);

/*
 * Appends the XML escape of len bytes of text (& < > " ' as entities; see above for
 * bad UTF-8 and control characters). Returns 0 or BUF_ETOOBIG.
 */
__attribute__((warn_unused_result)) int twiml_escape(buf_t *out, const char *text, size_t len);

/*
 * Appends len bytes of text with every invalid UTF-8 byte replaced by U+FFFD (other
 * characters kept as they are). Returns 0 or BUF_ETOOBIG.
 */
__attribute__((warn_unused_result)) int twiml_utf8_clean(buf_t *out, const char *text, size_t len);

/* The empty answer: "<?xml ...?><Response/>" (static). */
const char *twiml_empty(void);

#endif
