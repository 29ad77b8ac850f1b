/*
 * libFuzzer driver for compliance/segments and compliance/footer: arbitrary
 * bytes must give a result or a clean error, never a crash, and the results
 * must hang together: analysing with Smart Encoding equals analysing the text
 * that sms_smart_encode() produces, and the footer never loses the body.
 */
#include "common/buf.h"
#include "compliance/footer.h"
#include "compliance/segments.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    sms_info_t plain, smart, enc;
    buf_t b;
    int r1, r2;

    r1 = sms_analyze(s, size, 0, &plain);
    r2 = sms_analyze(s, size, SMS_SMART_ENCODING, &smart);
    if (r1 != r2)
        abort();
    if (r1 != 0)
        return 0;
    if (plain.segments < 1 || plain.characters > plain.units || plain.segments > plain.units + 1)
        abort();
    if (plain.encoding == SMS_ENC_GSM7 && plain.characters != plain.units)
        abort();

    buf_init(&b, 16 * size + 16);
    if (sms_smart_encode(s, size, &b) != 0)
        abort();
    if (sms_analyze(buf_str(&b), b.len, 0, &enc) != 0 || enc.encoding != smart.encoding ||
        enc.segments != smart.segments || enc.characters != smart.characters || enc.units != smart.units)
        abort();
    buf_close(&b);

    if (memchr(s, '\0', size) == NULL) {
        char *body = malloc(size + 1);
        footer_result_t res;

        memcpy(body, s, size);
        body[size] = '\0';
        buf_init(&b, size + FOOTER_MAX_TEXT + 8);
        if (footer_apply(body, NULL, FOOTER_POLICY_ALWAYS, 1, 0, &b, &res) != 0)
            abort();
        if (b.len < size || memcmp(b.data, body, size) != 0 || res.segments_after < res.segments_before)
            abort();
        if (res.appended == res.already_present)
            abort();
        buf_close(&b);
        free(body);
    }
    return 0;
}
