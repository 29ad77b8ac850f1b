/*
 * libFuzzer driver for compliance/keywords: any byte string must classify without a
 * crash, and the answers must hang together (an opt-out keyword is a revocation, a
 * keyword is reported only with a class or a revocation, the rule is never NULL).
 */
#include "compliance/keywords.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kw_result_t r;
    /* An exact-size heap copy lets ASan catch any read past len. */
    char *copy = malloc(size ? size : 1);

    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    keywords_classify(copy, size, &r);
    if (!r.rule || memchr(r.keyword, '\0', sizeof(r.keyword)) == NULL)
        abort();
    if (r.cls == KW_OPT_OUT && !r.revocation)
        abort();
    if (r.keyword[0] && r.cls == KW_NONE && !r.revocation)
        abort();
    if (r.cls != KW_NONE && size > KEYWORDS_MAX_SCAN)
        abort();
    (void)keywords_class_name(r.cls);
    free(copy);
    return 0;
}
