/*
 * Sample phone-number lines for benchmarks and tests: the mix a US campaign CSV
 * tends to have. NANP numbers use real area codes and exchanges 2-9XX in the
 * formats people type; international numbers use real number ranges; the
 * invalid share covers short, long, unknown-code, vanity, extension, IDD,
 * non-ASCII and plain junk lines. See phone_corpus.h.
 */
#include "compliance/phone_corpus.h"

#include <stdio.h>
#include <string.h>

static const short us_npa[] = {
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225,
    228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 276, 281,
    301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 385, 386, 401, 402, 404, 405, 406,
    407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425, 432, 434, 435, 440, 443, 469,
    478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518,
    520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573, 574, 575, 580, 585, 586, 601,
    602, 603, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620, 623, 626, 630,
    631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 682, 701, 702, 703, 704, 706, 707, 708, 712,
    713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 754, 757, 760, 763, 765,
    770, 772, 773, 774, 775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814,
    815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860, 862,
    863, 864, 865, 870, 872, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913, 914, 915, 916, 917,
    918, 919, 920, 925, 928, 931, 936, 937, 940, 941, 947, 949, 951, 952, 954, 956, 970, 971, 972,
    973, 978, 979, 980, 985, 989,
    /* Canada */
    204, 226, 236, 250, 289, 306, 343, 365, 403, 416, 418, 431, 437, 438, 450, 506, 514, 519, 548,
    579, 581, 587, 604, 613, 639, 647, 705, 709, 778, 780, 782, 807, 819, 825, 867, 873, 902, 905,
};

static const char *const nanp_fmt[] = {
    "(%03d) %03d-%04d", "%03d-%03d-%04d", "%03d.%03d.%04d", "+1 %03d %03d %04d", "1%03d%03d%04d",
    "+1%03d%03d%04d",   "1-%03d-%03d-%04d", "%03d %03d %04d", "%03d%03d%04d",     "+1 (%03d) %03d-%04d",
};

static const char *const junk[] = {
    "",
    "N/A",
    "none",
    "  ",
    "12345",
    "555-0199",
    "1-800-FLOWERS",
    "call me maybe",
    "john@example.com",
    "\xe2\x98\x8e (415) 555-0199",
    "(415) 555-0199 ext 12",
    "+44 20 7946 0958 x3",
    "011 44 20 7946 0958",
    "tel:+1-415-555-0199",
    "0044 20 7946 0958",
    "+0 123 4567",
    "+",
    "+1",
    "(123) 456-7890",
    "+44 (0) 20 7946 0958",
    "#REF!",
    "415/555/0199",
};

static uint32_t next32(phone_corpus_t *c)
{
    /* xorshift64* */
    uint64_t x = c->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

static int pick(phone_corpus_t *c, int n)
{
    return (int)(next32(c) % (uint32_t)n);
}

void phone_corpus_init(phone_corpus_t *c, uint64_t seed)
{
    c->state = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!c->state)
        c->state = 1;
}

static size_t digits(phone_corpus_t *c, char *buf, size_t cap, int n)
{
    size_t i = 0;
    for (; i < (size_t)n && i + 1 < cap; i++)
        buf[i] = (char)('0' + pick(c, 10));
    if (cap)
        buf[i < cap ? i : cap - 1] = '\0';
    return i;
}

size_t phone_corpus_next(phone_corpus_t *c, char *buf, size_t cap)
{
    int r = pick(c, 1000), n;
    int npa = us_npa[pick(c, (int)(sizeof(us_npa) / sizeof(us_npa[0])))];
    int nxx = 200 + pick(c, 800), line = pick(c, 10000);
    int a = pick(c, 10000), b = pick(c, 10000);

    if (cap == 0)
        return 0;
    if (r < 720) {
        n = snprintf(buf, cap, nanp_fmt[pick(c, (int)(sizeof(nanp_fmt) / sizeof(nanp_fmt[0])))], npa, nxx,
                     line);
    } else if (r < 790) {
        switch (pick(c, 4)) {
        case 0: n = snprintf(buf, cap, "+44 7%d%02d %06d", 4 + pick(c, 6), pick(c, 100), a * 100 + pick(c, 100)); break;
        case 1: n = snprintf(buf, cap, "+44 20 %d%03d %04d", 3 + pick(c, 6), pick(c, 1000), b); break;
        case 2: n = snprintf(buf, cap, "+447%d%02d%06d", 4 + pick(c, 6), pick(c, 100), a * 100 + pick(c, 100)); break;
        default: n = snprintf(buf, cap, "+44 161 %03d %04d", pick(c, 1000), b); break;
        }
    } else if (r < 840) {
        switch (pick(c, 3)) {
        case 0: n = snprintf(buf, cap, "+49 30 %04d%04d", a, b); break;
        case 1: n = snprintf(buf, cap, "+49 15%d %04d%04d", 1 + pick(c, 9), a, b); break;
        default: n = snprintf(buf, cap, "+4989%04d%03d", a, pick(c, 1000)); break;
        }
    } else if (r < 890) {
        if (pick(c, 2))
            n = snprintf(buf, cap, "+33 %d %02d %02d %02d %02d", 1 + pick(c, 7), pick(c, 100), pick(c, 100),
                         pick(c, 100), pick(c, 100));
        else
            n = snprintf(buf, cap, "+33%d%04d%04d", 6 + pick(c, 2), a, b);
    } else if (r < 920) {
        switch (pick(c, 5)) {
        case 0: n = snprintf(buf, cap, "+61 4%02d %03d %03d", pick(c, 100), pick(c, 1000), pick(c, 1000)); break;
        case 1: n = snprintf(buf, cap, "+91 9%04d %05d", a, pick(c, 100000)); break;
        case 2: n = snprintf(buf, cap, "+81 90 %04d %04d", a, b); break;
        case 3: n = snprintf(buf, cap, "+55 11 9%04d %04d", a, b); break;
        default: n = snprintf(buf, cap, "+52 55 %04d %04d", a, b); break;
        }
    } else if (r < 940) {
        /* NANP-shaped but invalid: fictional or unassigned area codes and exchanges. */
        if (pick(c, 2))
            n = snprintf(buf, cap, "+1 555 %03d %04d", nxx, line);
        else
            n = snprintf(buf, cap, "(%03d) %03d-%04d", npa, 100 + pick(c, 100), line);
    } else if (r < 960) {
        char d[32];
        digits(c, d, sizeof(d), 1 + pick(c, 20));
        n = snprintf(buf, cap, "%s%s", pick(c, 2) ? "+" : "", d);
    } else {
        n = snprintf(buf, cap, "%s", junk[pick(c, (int)(sizeof(junk) / sizeof(junk[0])))]);
    }
    if (n < 0)
        n = 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}
