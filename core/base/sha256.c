/* sha256.c - SHA-256: a portable block function (FIPS 180-4, section 6.2) and an x86 SHA-NI one
 * (Intel's "SHA extensions" instruction flow: two rounds per sha256rnds2, message schedule by
 * sha256msg1/msg2), picked at run time.
 *
 * Workload: hashing multi-gigabyte checkpoint files in 1 MiB reads; the block function is the
 * whole cost. Portable: ~250-400 MB/s; SHA-NI: ~1.5-2 GB/s, so a 2 GB checkpoint takes about a
 * second plus the read.
 * Ref: https://nvlpubs.nist.gov/nistpubs/FIPS/NIST.FIPS.180-4.pdf
 */
#include "core/base/sha256.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define MX_SHA_X86 1
#endif

/* Round constants: the first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Rotate right. */
static inline uint32_t ror(uint32_t x, int n) {
    return (x >> n) | (x << (32 - n));
}

/* Portable compression of n 64-byte blocks into h. */
static void blocks_ref(uint32_t h[8], const uint8_t *p, size_t n) {
    for (; n > 0; n--, p += 64) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++)
            w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
                   (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int t = 0; t < 64; t++) {
            uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) +
                          K[t] + w[t];
            uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d;
        h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    }
}

#ifdef MX_SHA_X86
/* SHA-NI compression of n blocks. The state lives as ABEF/CDGH in two registers; each
 * sha256rnds2 does two rounds with the message+constant words in the low half of its third
 * operand, and msg1/msg2 extend the schedule four words at a time. */
__attribute__((target("sha,sse4.1"))) static void blocks_ni(uint32_t h[8], const uint8_t *p,
                                                             size_t n) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);   /* DCBA */
    __m128i st1 = _mm_loadu_si128((const __m128i *)&h[4]);   /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                      /* CDAB */
    st1 = _mm_shuffle_epi32(st1, 0x1B);                      /* EFGH */
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);              /* ABEF */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);                   /* CDGH */
    for (; n > 0; n--, p += 64) {
        __m128i s0 = st0, s1 = st1, m[4];
        for (int i = 0; i < 4; i++)
            m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        for (int r = 0; r < 16; r++) {
            // Rounds 4r..4r+3 with schedule words m[r % 4].
            __m128i cur = m[r & 3];
            __m128i msg = _mm_add_epi32(cur, _mm_loadu_si128((const __m128i *)&K[4 * r]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
            if (r < 12) {
                // W[4(r+4)..] = msg2(msg1(W[4r..], W[4r+4..]) + W[4r+9..4r+12], W[4r+12..])
                __m128i next = _mm_sha256msg1_epu32(cur, m[(r + 1) & 3]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                m[r & 3] = _mm_sha256msg2_epu32(next, m[(r + 3) & 3]);
            }
        }
        st0 = _mm_add_epi32(st0, s0);
        st1 = _mm_add_epi32(st1, s1);
    }
    tmp = _mm_shuffle_epi32(st0, 0x1B);                      /* FEBA */
    st1 = _mm_shuffle_epi32(st1, 0xB1);                      /* DCHG */
    st0 = _mm_blend_epi16(tmp, st1, 0xF0);                   /* DCBA */
    st1 = _mm_alignr_epi8(st1, tmp, 8);                      /* ABEF -> HGFE */
    _mm_storeu_si128((__m128i *)&h[0], st0);
    _mm_storeu_si128((__m128i *)&h[4], st1);
}
#endif

/* Set by mx_sha256_force_portable: 1 keeps the hardware path off. */
static int force_portable;

int mx_sha256_hw(void) {
#ifdef MX_SHA_X86
    /* CPUID directly (leaf 7 EBX bit 29: SHA; leaf 1 ECX bit 19: SSE4.1): clang 14 has no
     * "sha" for __builtin_cpu_supports, and the fuzz targets are built with clang */
    unsigned a, b, c, d;
    if (force_portable || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)))
        return 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
#else
    return 0;
#endif
}

void mx_sha256_force_portable(int on) {
    force_portable = on;
}

/* Compresses n whole blocks with the best available function. */
static void blocks(uint32_t h[8], const uint8_t *p, size_t n) {
#ifdef MX_SHA_X86
    if (mx_sha256_hw()) {
        blocks_ni(h, p, n);
        return;
    }
#endif
    blocks_ref(h, p, n);
}

void mx_sha256_init(struct mx_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->n_bytes = 0;
    s->n_buf = 0;
}

void mx_sha256_update(struct mx_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->n_bytes += n;
    if (s->n_buf > 0) {
        size_t k = 64 - s->n_buf < n ? 64 - s->n_buf : n;
        memcpy(s->buf + s->n_buf, p, k);
        s->n_buf += k, p += k, n -= k;
        if (s->n_buf < 64)
            return;
        blocks(s->h, s->buf, 1);
        s->n_buf = 0;
    }
    if (n >= 64) {
        blocks(s->h, p, n / 64);
        p += n / 64 * 64;
        n %= 64;
    }
    memcpy(s->buf, p, n);
    s->n_buf = n;
}

void mx_sha256_final(struct mx_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->n_bytes * 8;
    // Padding: 0x80, zeros to 56 mod 64, the bit length big-endian.
    uint8_t pad[72] = {0x80};
    size_t np = s->n_buf < 56 ? 56 - s->n_buf : 120 - s->n_buf;
    for (int i = 0; i < 8; i++)
        pad[np + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t n_bytes = s->n_bytes;
    mx_sha256_update(s, pad, np + 8);
    s->n_bytes = n_bytes;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void mx_sha256_to_hex(const uint8_t digest[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
}

void mx_sha256_hex(const void *data, size_t n, char out[65]) {
    struct mx_sha256 s;
    uint8_t d[32];
    mx_sha256_init(&s);
    mx_sha256_update(&s, data, n);
    mx_sha256_final(&s, d);
    mx_sha256_to_hex(d, out);
}
