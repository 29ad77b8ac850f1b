/*
 * SMS segment counting, exactly as Twilio counts segments (the reference is
 * Twilio's calculator, npm sms-segments-calculator 1.3.0).
 *
 * - GSM-7 when every character is in the GSM 03.38 basic or extension table,
 *   otherwise UCS-2. Extension characters (FF [ \ ] ^ { | } ~ €) cost two
 *   septets, and an escape pair never straddles two segments.
 * - One GSM-7 segment holds 160 septets; concatenated segments 153 each (the
 *   6-octet user data header takes the rest). UCS-2: 70, then 67 UTF-16 units.
 * - A grapheme cluster (emoji ZWJ sequence, flag, base + combining marks) is never
 *   split across segments; clusters follow grapheme-splitter's Unicode 10 rules
 *   as the calculator does, except that CR LF counts as two characters.
 * - With SMS_SMART_ENCODING, Twilio's Smart Encoding replacements (curly quotes,
 *   dashes, ellipsis, exotic spaces...) are applied first.
 *
 * All functions are pure: no I/O, no allocation except into a caller's buf_t.
 */
#ifndef HERALD_COMPLIANCE_SEGMENTS_H
#define HERALD_COMPLIANCE_SEGMENTS_H
#include "common/buf.h"

#include <stddef.h>

typedef enum sms_encoding {
    SMS_ENC_GSM7,
    SMS_ENC_UCS2,
} sms_encoding_t;

/* Flags for sms_analyze(). */
#define SMS_SMART_ENCODING 0x1u

/* Error codes (negative). */
#define SMS_EUTF8 (-1)   /* the text is not valid UTF-8 */
#define SMS_ETOOBIG (-2) /* the output buffer's cap was reached */

/*
 * Twilio refuses a body longer than 1600 characters (error 21617). Twilio says
 * non-GSM-7 characters "increase the encoded length", so a character here is an
 * encoded unit: a septet for GSM-7 (extension characters count two) and a UTF-16
 * code unit for UCS-2 (an emoji outside the BMP counts two).
 */
#define SMS_MAX_UNITS 1600

/* Single-segment and per-segment (concatenated) capacities, in units. */
#define SMS_GSM7_SINGLE 160
#define SMS_GSM7_MULTI 153
#define SMS_UCS2_SINGLE 70
#define SMS_UCS2_MULTI 67

typedef struct sms_info {
    sms_encoding_t encoding;
    unsigned segments;  /* at least 1, even for an empty body */
    size_t characters;  /* the calculator's count: septets for GSM-7, grapheme clusters for UCS-2 */
    size_t units;       /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    size_t code_points; /* Unicode scalar values, after Smart Encoding if enabled */
    int over_limit;     /* units > SMS_MAX_UNITS */
} sms_info_t;

/*
 * Analyzes len bytes of UTF-8 text (NUL bytes are ordinary characters) and fills
 * *out. flags is 0 or SMS_SMART_ENCODING. Runs in linear time and constant space
 * for any input. Returns 0, or SMS_EUTF8 (overlong forms, surrogates, code points
 * above U+10FFFF and truncated sequences are all invalid); *out is then undefined.
 */
__attribute__((warn_unused_result)) int sms_analyze(const char *utf8, size_t len, unsigned flags,
                                                    sms_info_t *out);

/*
 * Appends to out the text that Twilio's Smart Encoding would send for len bytes of
 * UTF-8 (characters without a replacement are copied unchanged). Returns 0,
 * SMS_EUTF8 (out may then hold a partial result) or SMS_ETOOBIG.
 */
__attribute__((warn_unused_result)) int sms_smart_encode(const char *utf8, size_t len, buf_t *out);

/* Returns "GSM-7" or "UCS-2". */
const char *sms_encoding_name(sms_encoding_t enc);

/* Returns a static description of an SMS_E* code ("ok" for 0). */
const char *sms_strerror(int err);

#endif
