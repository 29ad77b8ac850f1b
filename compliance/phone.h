/*
 * phone: E.164 parsing, validation and normalization for recipient numbers.
 *
 * The reference behaviour is Google's libphonenumber (Parse, then IsValidNumber):
 * phone_normalize_full() always goes through it. phone_normalize() first tries a
 * pure-C fast path for the common shapes ("+" international numbers, US national
 * numbers with ordinary punctuation) and falls back to the full path for anything
 * else; both return identical results for every input (the unit test, the fuzz
 * driver and bench/bench_phone check this).
 *
 * Parsing is not validation: a number must parse AND be valid for its region
 * ("12345" with region US is too_short; "+1 555 555 5555" parses but is
 * invalid_for_region).
 *
 * Input rules, applied before libphonenumber sees anything:
 *   - more than PHONE_INPUT_MAX bytes            -> PHONE_ETOOLONG
 *   - a NUL byte or malformed UTF-8 anywhere      -> PHONE_ENOTANUMBER
 *   - nothing but ASCII white space (or len 0)    -> PHONE_EEMPTY
 * The rest is libphonenumber's behaviour, kept as is and documented here:
 *   - leading text before the first digit or '+' is skipped, trailing punctuation
 *     is ignored ("tel: (415) 555-0199." parses);
 *   - letters after the first digits are keypad-converted when there are at
 *     least three ("1-800-FLOWERS" -> +18003569377), otherwise ignored
 *     ("1-800-FL" -> too_short); text with no digit at all is not_a_number;
 *   - an extension ("415-555-0199 ext 12", "x12", ",,12", ";ext=12") is accepted
 *     and dropped: the E.164 form never carries one;
 *   - a valid number longer than E.164's 15 digits is reported as PHONE_ETOOLONG.
 *
 * All functions are thread-safe and may be called from any number of threads;
 * the first call builds shared tables (a few milliseconds).
 */
#ifndef HERALD_COMPLIANCE_PHONE_H
#define HERALD_COMPLIANCE_PHONE_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest input accepted, in bytes (libphonenumber's own limit for parsing). */
#define PHONE_INPUT_MAX 250

typedef enum phone_err {
    PHONE_OK = 0,
    PHONE_EEMPTY = -1,       /* empty or white space only */
    PHONE_ENOTANUMBER = -2,  /* no phone number in the text (or NUL / bad UTF-8) */
    PHONE_ETOOSHORT = -3,    /* too few digits for the country */
    PHONE_ETOOLONG = -4,     /* too many digits, or input over PHONE_INPUT_MAX bytes */
    PHONE_EINVALID = -5,     /* parses, but is not a valid number for its region */
    PHONE_ECOUNTRY = -6,     /* unknown country calling code */
    PHONE_EREGION = -7,      /* the default region argument is not a known region */
    PHONE_ENOTFOUND = -8,    /* phone_geocode(): no description for this number */
    PHONE_ENOSPACE = -9,     /* phone_geocode(): output buffer too small */
} phone_err_t;

typedef struct phone_result {
    char e164[17];    /* "+14155550199"; "" unless the result is PHONE_OK */
    char region[3];   /* ISO 3166 region of the number ("US", "CA", "GB"), "" when it has
                         none: parse errors, NANP numbers valid nowhere, and the
                         non-geographic codes (+800, +881, ...) */
    int country_code; /* calling code (1, 44, ...) once the number parsed, else 0 */
} phone_result_t;

/*
 * Normalizes input[0..len) (not necessarily NUL-terminated) to E.164.
 * default_region ("US", case-insensitive) is used for numbers written without a
 * country code; NULL or "" means none, so only international numbers parse.
 * Fills *out (always, also on failure: then e164 is "", region/country_code are
 * filled when the number parsed) and returns PHONE_OK or a negative phone_err_t.
 * Tries the fast path and falls back to phone_normalize_full(); same results.
 */
__attribute__((warn_unused_result)) int phone_normalize(const char *input, size_t len,
                                                        const char *default_region,
                                                        phone_result_t *out);

/* As phone_normalize(), always through libphonenumber's Parse (the reference). */
__attribute__((warn_unused_result)) int phone_normalize_full(const char *input, size_t len,
                                                             const char *default_region,
                                                             phone_result_t *out);

/* Human text for a phone_err_t ("too short"); "unknown error" for other values. Static. */
const char *phone_strerror(int err);

/*
 * Machine form for a phone_err_t, as printed by `herald phone normalize` and stored
 * as a rejection reason: "valid", "empty", "not_a_number", "too_short", "too_long",
 * "invalid_for_region", "unknown_country_code", "unknown_region", "not_found",
 * "no_space"; "unknown" for other values. Static.
 */
const char *phone_reason(int err);

/* 1 if region is a two-letter region libphonenumber knows (case-insensitive), else 0. */
int phone_region_known(const char *region);

/*
 * English description of where a number is, from libphonenumber's offline
 * geocoder: a US state or "City, ST" for NANP numbers ("California",
 * "Jacksonville, FL"), usually the country name elsewhere ("Germany").
 * e164 is a NUL-terminated E.164 string. Writes a NUL-terminated description to
 * out and returns 0; PHONE_EINVALID if e164 is not a valid E.164 number,
 * PHONE_ENOTFOUND if the geocoder has no description, PHONE_ENOSPACE if outlen
 * is too small (out is then "").
 */
__attribute__((warn_unused_result)) int phone_geocode(const char *e164, char *out, size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
