/*
 * The libphonenumber wrapper: the project's only C++ file. It implements the
 * reference path phone_normalize_full() (Parse, then the region and validity
 * checks, then the reason for a rejection), the geocoder lookup, the region
 * helpers, and the few entry points the C fast path (phone_fast.c) needs to
 * ask libphonenumber about a number it has already taken apart. No exception
 * or C++ type crosses the extern "C" boundary.
 */
#include "compliance/phone.h"
#include "compliance/phone_int.h"

#include <phonenumbers/geocoding/phonenumber_offline_geocoder.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>
#include <unicode/locid.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <set>
#include <string>

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberOfflineGeocoder;
using i18n::phonenumbers::PhoneNumberUtil;

namespace i18n {
namespace phonenumbers {
/* Defined in libphonenumber (metadata.h, which Debian does not install). */
int metadata_size();
const void *metadata_get();
} // namespace phonenumbers
} // namespace i18n

namespace {

struct lpn_state {
    const PhoneNumberUtil *util;
    std::set<std::string> regions;
};

/* GetInstance() is thread-safe, but the region set is ours: build both once. */
const lpn_state &lpn()
{
    static lpn_state *st;
    static std::once_flag once;
    std::call_once(once, [] {
        lpn_state *s = new lpn_state;
        s->util = PhoneNumberUtil::GetInstance();
        s->util->GetSupportedRegions(&s->regions);
        st = s;
    });
    return *st;
}

/* The geocoder loads its prefix tables lazily under its own mutex. */
const PhoneNumberOfflineGeocoder &geocoder()
{
    static const PhoneNumberOfflineGeocoder *g = new PhoneNumberOfflineGeocoder();
    return *g;
}

int map_parse_error(PhoneNumberUtil::ErrorType e)
{
    switch (e) {
    case PhoneNumberUtil::NO_PARSING_ERROR:
        return PHONE_OK;
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
        return PHONE_ECOUNTRY;
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN:
        return PHONE_ETOOSHORT;
    case PhoneNumberUtil::TOO_LONG_NSN:
        return PHONE_ETOOLONG;
    case PhoneNumberUtil::NOT_A_NUMBER:
    default:
        return PHONE_ENOTANUMBER;
    }
}

int map_possible(PhoneNumberUtil::ValidationResult v)
{
    switch (v) {
    case PhoneNumberUtil::INVALID_COUNTRY_CODE:
        return PHONE_ECOUNTRY;
    case PhoneNumberUtil::TOO_SHORT:
        return PHONE_ETOOSHORT;
    case PhoneNumberUtil::TOO_LONG:
        return PHONE_ETOOLONG;
    case PhoneNumberUtil::IS_POSSIBLE:
    case PhoneNumberUtil::IS_POSSIBLE_LOCAL_ONLY:
    case PhoneNumberUtil::INVALID_LENGTH:
    default:
        return PHONE_EINVALID;
    }
}

/* Builds the PhoneNumber that Parse would produce for (cc, nsn); nsn is all digits. */
void build_number(int cc, const char *nsn, size_t n, PhoneNumber *num)
{
    uint64_t v = 0;
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(nsn[i] - '0');
    num->set_country_code(cc);
    num->set_national_number(v);
    /* Mirrors SetItalianLeadingZerosForPhoneNumber: an all-zero NSN keeps its last 0. */
    if (n > 1 && nsn[0] == '0') {
        num->set_italian_leading_zero(true);
        zeros = 1;
        while (zeros < n - 1 && nsn[zeros] == '0')
            zeros++;
        if (zeros != 1)
            num->set_number_of_leading_zeros((int32_t)zeros);
    }
}

/* The verdict on a parsed number: the part of the full path after Parse. */
int classify(const PhoneNumberUtil &u, const PhoneNumber &num, phone_result_t *out)
{
    std::string region;
    std::string e164;

    /* IsValidNumber() is exactly GetRegionCodeForNumber + IsValidNumberForRegion. */
    u.GetRegionCodeForNumber(num, &region);
    out->country_code = num.country_code();
    if (region.size() == 2 && region != "ZZ")
        memcpy(out->region, region.c_str(), 3);
    if (!u.IsValidNumberForRegion(num, region))
        return map_possible(u.IsPossibleNumberWithReason(num));
    u.Format(num, PhoneNumberUtil::E164, &e164);
    if (e164.size() >= sizeof(out->e164))
        return PHONE_ETOOLONG;
    memcpy(out->e164, e164.c_str(), e164.size() + 1);
    return PHONE_OK;
}

} // namespace

extern "C" int phone_normalize_full(const char *input, size_t len, const char *default_region,
                                    phone_result_t *out)
{
    char region[3];
    PhoneNumber num;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = phone_region_arg(default_region, region);
    if (rc < 0)
        return rc;
    rc = phone_input_check(input, len);
    if (rc < 0)
        return rc;
    try {
        const PhoneNumberUtil &u = *lpn().util;
        rc = map_parse_error(u.Parse(std::string(input, len), region[0] ? region : "ZZ", &num));
        if (rc < 0)
            return rc;
        return classify(u, num, out);
    } catch (...) {
        /* libphonenumber does not throw for bad input; only allocation can, and the
         * house rule for allocation failure is to abort. */
        abort();
    }
}

extern "C" int phone_region_known(const char *region)
{
    char r[3];
    if (!region || !region[0])
        return 0;
    return phone_region_arg(region, r) == 0;
}

extern "C" int phone_lpn_region_supported(const char *region)
{
    const lpn_state &s = lpn();
    return s.regions.count(region) ? 1 : 0;
}

extern "C" void phone_lpn_metadata(const unsigned char **data, size_t *len)
{
    *data = static_cast<const unsigned char *>(i18n::phonenumbers::metadata_get());
    *len = (size_t)i18n::phonenumbers::metadata_size();
}

extern "C" int phone_lpn_regions(int cc, char (*ids)[4], int max)
{
    std::list<std::string> codes;
    int n = 0;
    lpn().util->GetRegionCodesForCountryCallingCode(cc, &codes);
    for (const std::string &c : codes) {
        if (n < max) {
            snprintf(ids[n], 4, "%s", c.c_str());
        }
        n++;
    }
    return n;
}

extern "C" int phone_lpn_invalid_reason(int cc, const char *nsn, size_t nsnlen)
{
    PhoneNumber num;
    build_number(cc, nsn, nsnlen, &num);
    return map_possible(lpn().util->IsPossibleNumberWithReason(num));
}

extern "C" int phone_lpn_verdict(int cc, const char *nsn, size_t nsnlen, char region[4])
{
    PhoneNumber num;
    std::string r;
    const PhoneNumberUtil &u = *lpn().util;
    build_number(cc, nsn, nsnlen, &num);
    u.GetRegionCodeForNumber(num, &r);
    snprintf(region, 4, "%s", r.c_str());
    return u.IsValidNumberForRegion(num, r) ? 1 : 0;
}

extern "C" int phone_geocode(const char *e164, char *out, size_t outlen)
{
    PhoneNumber num;
    std::string desc;
    size_t n;

    if (out && outlen)
        out[0] = '\0';
    if (!e164 || e164[0] != '+')
        return PHONE_EINVALID;
    n = strnlen(e164, PHONE_INPUT_MAX + 1);
    if (n > 16 || phone_input_check(e164, n) < 0)
        return PHONE_EINVALID;
    for (size_t i = 1; i < n; i++)
        if (e164[i] < '0' || e164[i] > '9')
            return PHONE_EINVALID;
    try {
        const PhoneNumberUtil &u = *lpn().util;
        if (u.Parse(std::string(e164, n), "ZZ", &num) != PhoneNumberUtil::NO_PARSING_ERROR ||
            !u.IsValidNumber(num))
            return PHONE_EINVALID;
        desc = geocoder().GetDescriptionForNumber(num, icu::Locale::getEnglish());
    } catch (...) {
        abort();
    }
    if (desc.empty())
        return PHONE_ENOTFOUND;
    if (!out || desc.size() >= outlen)
        return PHONE_ENOSPACE;
    memcpy(out, desc.c_str(), desc.size() + 1);
    return 0;
}
