/* tok_unicode.c - the little Unicode the tokenizers need: UTF-8 decoding with llama.cpp's
 * tolerance for invalid input, general-category flags from a generated range table (for the
 * BPE pre-tokenizer splitters), the White_Space set, and GPT-2's byte <-> codepoint map. */
#include "core/text/tok_internal.h"

struct mx_uc_range {
    uint32_t first, last;
    uint16_t flags;
};

#include "core/text/tok_unicode_table.h"

/* Returns the codepoint at s[*off] and advances *off; invalid or truncated sequences consume one
 * byte and give U+FFFD, like llama.cpp's unicode_cpts_from_utf8 (which also does not reject
 * overlong forms: the same bytes must give the same pre-tokens). */
uint32_t mx_utf8_next(const char *s, size_t len, size_t *off) {
    const unsigned char *u = (const unsigned char *)s + *off;
    size_t left = len - *off;
    if (!(u[0] & 0x80)) {
        *off += 1;
        return u[0];
    }
    if (!(u[0] & 0x40))
        goto bad;
    if (!(u[0] & 0x20)) {
        if (left < 2 || (u[1] & 0xc0) != 0x80)
            goto bad;
        *off += 2;
        return ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f);
    }
    if (!(u[0] & 0x10)) {
        if (left < 3 || (u[1] & 0xc0) != 0x80 || (u[2] & 0xc0) != 0x80)
            goto bad;
        *off += 3;
        return ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
    }
    if (!(u[0] & 0x08)) {
        if (left < 4 || (u[1] & 0xc0) != 0x80 || (u[2] & 0xc0) != 0x80 ||
            (u[3] & 0xc0) != 0x80)
            goto bad;
        *off += 4;
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) |
               ((uint32_t)(u[2] & 0x3f) << 6) | (u[3] & 0x3f);
    }
bad:
    *off += 1;
    return 0xFFFD;
}


/* White_Space (the \s of the pre-tokenizer regexes), as llama.cpp's unicode-data tables. */
static bool uc_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Category flags by binary search over the generated ranges; 0 for unassigned/other. */
unsigned mx_uc_flags(uint32_t cp) {
    unsigned f = uc_is_space(cp) ? MX_UC_WS : 0;
    size_t lo = 0, hi = sizeof(mx_uc_ranges) / sizeof(mx_uc_ranges[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < mx_uc_ranges[mid].first)
            hi = mid;
        else if (cp > mx_uc_ranges[mid].last)
            lo = mid + 1;
        else
            return f | mx_uc_ranges[mid].flags;
    }
    return f;
}

/* GPT-2 bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100.. in byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t mx_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 256u + 33u + (b - 0x7Fu);
    return 256u + 67u; /* 0xAD, soft hyphen */
}

int mx_cp_to_byte(uint32_t cp) {
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32)
        return (int)(cp - 256);
    if (cp <= 256 + 66)
        return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 67)
        return 0xAD;
    return -1;
}
