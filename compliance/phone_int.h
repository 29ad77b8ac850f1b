/*
 * Internals shared by the phone module's files: phone.cc (the libphonenumber
 * wrapper, the only C++ file), phone_fast.c (the fast path), phone_meta.c (the
 * metadata reader) and phone_re.c (the pattern compiler). Not for other modules.
 */
#ifndef HERALD_COMPLIANCE_PHONE_INT_H
#define HERALD_COMPLIANCE_PHONE_INT_H
#include <stddef.h>
#include <stdint.h>

#include "compliance/phone.h"

#ifdef __cplusplus
extern "C" {
#endif

/* libphonenumber's limits on a national significant number. */
#define PHONE_NSN_MIN 2
#define PHONE_NSN_MAX 17

/* ---- phone_fast.c: checks shared by both paths ---- */

/*
 * Applies the input rules of phone.h (length cap, NUL, UTF-8, blank).
 * Returns 0 when libphonenumber may see the input, else the phone_err_t.
 */
int phone_input_check(const char *in, size_t len);

/*
 * Validates a default-region argument. NULL or "" -> 0 and out = "";
 * a known region -> 0 and out = its upper-case code; else PHONE_EREGION.
 */
int phone_region_arg(const char *region, char out[3]);

/* ---- phone.cc: libphonenumber, exported with C linkage ---- */

/* The serialized PhoneMetadataCollection compiled into libphonenumber. */
void phone_lpn_metadata(const unsigned char **data, size_t *len);

/*
 * The regions sharing calling code cc, in libphonenumber's order (main region
 * first; "001" for non-geographic codes). Writes up to max NUL-terminated ids
 * and returns how many there are (0: cc is not a valid calling code).
 */
int phone_lpn_regions(int cc, char (*ids)[4], int max);

/* 1 if region is a region libphonenumber supports (exact, upper-case), else 0. */
int phone_lpn_region_supported(const char *region);

/*
 * Finishes a number that parsed into (cc, nsn) but is not valid: the reason
 * libphonenumber's IsPossibleNumberWithReason gives (never PHONE_OK).
 */
int phone_lpn_invalid_reason(int cc, const char *nsn, size_t nsnlen);

/*
 * libphonenumber's verdict for (cc, nsn), used to cross-check the fast path's
 * tables when they are built: writes the region code (or "ZZ") and returns
 * 1 if valid, 0 if not.
 */
int phone_lpn_verdict(int cc, const char *nsn, size_t nsnlen, char region[4]);

/* ---- phone_meta.c: the metadata, read once ---- */

typedef struct phone_desc {
    const char *pattern;  /* national_number_pattern, not NUL-terminated; NULL if absent */
    size_t pattern_len;
    const char *example;  /* example_number, not NUL-terminated; NULL if absent */
    size_t example_len;
    uint32_t lengths;     /* bit n set: possible length n (n < 32) */
    int has_lengths;      /* possible_length had any entry (even -1) */
} phone_desc_t;

/* The number types in the order libphonenumber's GetNumberTypeHelper tries them. */
enum phone_desc_kind {
    PHONE_DESC_GENERAL,
    PHONE_DESC_PREMIUM,
    PHONE_DESC_TOLL_FREE,
    PHONE_DESC_SHARED_COST,
    PHONE_DESC_VOIP,
    PHONE_DESC_PERSONAL,
    PHONE_DESC_PAGER,
    PHONE_DESC_UAN,
    PHONE_DESC_VOICEMAIL,
    PHONE_DESC_FIXED_LINE,
    PHONE_DESC_MOBILE,
    PHONE_DESC_COUNT
};

typedef struct phone_meta {
    char id[4];           /* "US", "001" */
    int country_code;
    phone_desc_t desc[PHONE_DESC_COUNT];
    const char *leading_digits;  /* NULL if absent (present but empty is not NULL) */
    size_t leading_digits_len;
    const char *npfp;            /* national_prefix_for_parsing, NULL if absent */
    size_t npfp_len;
    const char *idd;             /* international_prefix, NULL if absent */
    size_t idd_len;
    int same_mobile_and_fixed_line;
} phone_meta_t;

/*
 * The metadata entry for a region id ("US"), or for a non-geographic calling
 * code when id is "001". NULL if there is none. Entries live for the process.
 */
const phone_meta_t *phone_meta_find(const char *id, int cc);

/* ---- phone_re.c: libphonenumber's patterns as DFAs over the digits 0-9 ---- */

typedef struct phone_dfa phone_dfa_t;

/*
 * Compiles a pattern of the regular-expression subset libphonenumber's metadata
 * uses (digits, \d, classes of digits, groups, |, ?, *, +, {n}, {n,}, {n,m}).
 * Returns NULL for anything outside that subset or too large; free with
 * phone_dfa_free().
 */
phone_dfa_t *phone_dfa_compile(const char *pattern, size_t len);
void phone_dfa_free(phone_dfa_t *dfa);

/* 1 if the whole of digits[0..n) matches (ICU matches()), else 0. */
int phone_dfa_full(const phone_dfa_t *dfa, const char *digits, size_t n);

/* 1 if some prefix of digits[0..n), maybe empty, matches (ICU lookingAt()), else 0. */
int phone_dfa_prefix(const phone_dfa_t *dfa, const char *digits, size_t n);

#ifdef __cplusplus
}
#endif
#endif
