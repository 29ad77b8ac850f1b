/*
 * Internals shared by segments.c and its generated tables: the grapheme-break
 * classes of grapheme-splitter 1.0.4 (Unicode 10.0), which Twilio's calculator
 * uses to keep characters whole across segments (segments_gcb.c), and Twilio's
 * Smart Encoding replacements (segments_smart.c).
 */
#ifndef HERALD_COMPLIANCE_SEGMENTS_INT_H
#define HERALD_COMPLIANCE_SEGMENTS_INT_H
#include <stddef.h>
#include <stdint.h>

typedef enum gcb_class {
    GCB_CR,
    GCB_LF,
    GCB_CONTROL,
    GCB_EXTEND,
    GCB_RI,
    GCB_SPACINGMARK,
    GCB_L,
    GCB_V,
    GCB_T,
    GCB_LV,
    GCB_LVT,
    GCB_OTHER,
    GCB_PREPEND,
    GCB_E_BASE,
    GCB_E_MODIFIER,
    GCB_ZWJ,
    GCB_GAZ,
    GCB_E_BASE_GAZ,
} gcb_class_t;

typedef struct gcb_range {
    uint32_t first, last;
    uint8_t cls; /* gcb_class_t */
} gcb_range_t;

/* Sorted, non-overlapping; code points in no range are GCB_OTHER. */
extern const gcb_range_t gcb_ranges[];
extern const size_t gcb_nranges;

typedef struct smart_map {
    uint32_t cp;
    const char *to; /* GSM-7 ASCII (never "`"); "" deletes the code point */
} smart_map_t;

/* Sorted by cp. */
extern const smart_map_t smart_map[];
extern const size_t smart_map_len;

#endif
