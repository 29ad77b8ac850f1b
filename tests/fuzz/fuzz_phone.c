/*
 * libFuzzer driver for compliance/phone. The first byte picks the default
 * region, the rest is the input. Both paths must agree on every input (status,
 * E.164, region, calling code) or the driver aborts; valid results also go
 * through the geocoder. Run: build/fuzz/fuzz_phone -max_total_time=60
 */
#include "compliance/phone.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const regions[] = {"US", "GB", "DE", "FR", "BR", "AR", "IT", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    phone_result_t a, b;
    const char *region;
    const char *in;
    char geo[128];
    int ra, rb;

    if (size == 0)
        return 0;
    region = regions[data[0] % (sizeof(regions) / sizeof(regions[0]))];
    in = (const char *)data + 1;
    ra = phone_normalize(in, size - 1, region, &a);
    rb = phone_normalize_full(in, size - 1, region, &b);
    if (ra != rb || strcmp(a.e164, b.e164) != 0 || strcmp(a.region, b.region) != 0 ||
        a.country_code != b.country_code) {
        fprintf(stderr, "fast/full mismatch (region %s): fast %s '%s' '%s' %d, full %s '%s' '%s' %d\n",
                region ? region : "-", phone_reason(ra), a.e164, a.region, a.country_code,
                phone_reason(rb), b.e164, b.region, b.country_code);
        abort();
    }
    if (ra == PHONE_OK) {
        if (a.e164[0] != '+' || strlen(a.e164) > 16)
            abort();
        if (phone_geocode(a.e164, geo, sizeof(geo)) == PHONE_EINVALID)
            abort();
    }
    return 0;
}
