/* rng.c - torch-compatible Gaussian noise (see rng.h): Philox4x32-10 (cuda), mt19937 (cpu) and
 * libstdc++'s minstd_rand0 + normal_distribution<float> (std_default).
 *
 * Every arithmetic step below is float or double exactly where the reference is, in the same
 * order, with the float libm functions (logf, sinf, cosf, sqrtf) where the reference calls the
 * float overloads and the double ones where it calls C's log/sin (the Philox Box-Muller: the
 * peer's unqualified log(u) on a float resolves to ::log(double); with logf/sinf about 30% of
 * its values differ in the last bit). One rounding more or less changes the last bit of a draw
 * and, a few sampler steps later, visible pixels. The build is -std=c11, so GCC does not
 * contract a*b+c into FMA.
 *
 * Workload: one randn per image plus one per ancestral step, of 4*h*w values (16 K for 512x512):
 * microseconds next to a UNet evaluation, so the loops stay scalar and plain.
 *
 * Ref: stable-diffusion.cpp src/core/rng_philox.hpp, rng_mt19937.hpp, rng.hpp at 97d2990;
 * AUTOMATIC1111 modules/rng_philox.py; PyTorch aten/src/ATen/core/MT19937RNGEngine.h,
 * TransformationHelper.h, native/cpu/DistributionTemplates.h; libstdc++ bits/random.tcc.
 */
#include "core/diffusion/rng.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- cuda: Philox4x32-10 + Box-Muller ---------------------------------------------------- */

#define PHILOX_M0 0xD2511F53u /* round multipliers */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* key schedule increments (golden ratio, sqrt(3)-1) */
#define PHILOX_W1 0xBB67AE85u

/* Ten Philox rounds on one counter c[4] with key (k0, k1); c receives the output block. */
static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)c[0] * PHILOX_M0;
        uint64_t p1 = (uint64_t)c[2] * PHILOX_M1;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[1] = (uint32_t)p1;
        c[3] = (uint32_t)p0;
        c[0] = n0;
        c[2] = n2;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* Element i of randn call number `offset`: Philox block (offset, 0, i, 0) under the seed as key,
 * its first two words mapped to (0, 1] and (0, 2pi] in float, one Box-Muller output (the radius
 * and the product computed in double, each rounded to float, as the peer does). */
static float philox_normal(uint64_t seed, uint32_t offset, uint32_t i) {
    const float two_pow32_inv = 2.3283064e-10f;               /* 2^-32 as torch writes it */
    const float two_pow32_inv_2pi = 2.3283064e-10f * 6.2831855f;
    uint32_t c[4] = {offset, 0, i, 0};
    philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    float u = (float)c[0] * two_pow32_inv + two_pow32_inv / 2;
    float v = (float)c[1] * two_pow32_inv_2pi + two_pow32_inv_2pi / 2;
    float s = (float)sqrt(-2.0f * log(u));
    return (float)(s * sin(v));
}

/* One cuda randn(n): element i from block (offset, 0, i, 0); the offset moves on by one. */
static void randn_philox(struct mx_sd_rng *r, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = philox_normal(r->seed, r->offset, (uint32_t)i);
    r->offset++;
}

/* ---- cpu: torch's mt19937 and its randn --------------------------------------------------- */

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UMASK 0x80000000u
#define MT_LMASK 0x7fffffffu

/* The mt19937 recurrence on the top bit of u and the low bits of v. */
static uint32_t mt_twist(uint32_t u, uint32_t v) {
    uint32_t mix = (u & MT_UMASK) | (v & MT_LMASK);
    return (mix >> 1) ^ ((v & 1) ? MT_MATRIX_A : 0);
}

/* Regenerates the 624 state words (the classic reference loop). */
static void mt_next_state(struct mx_sd_rng *r) {
    uint32_t *s = r->mt;
    int k = 0;
    for (; k < MX_SD_MT_N - MT_M; k++)
        s[k] = s[k + MT_M] ^ mt_twist(s[k], s[k + 1]);
    for (; k < MX_SD_MT_N - 1; k++)
        s[k] = s[k + MT_M - MX_SD_MT_N] ^ mt_twist(s[k], s[k + 1]);
    s[k] = s[k + MT_M - MX_SD_MT_N] ^ mt_twist(s[k], s[0]);
    r->mt_left = MX_SD_MT_N;
    r->mt_next = 0;
}

/* The next tempered 32-bit output (twisting when the state is used up). */
static uint32_t mt_u32(struct mx_sd_rng *r) {
    if (--r->mt_left == 0)
        mt_next_state(r);
    uint32_t y = r->mt[r->mt_next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* torch's random64(): two 32-bit outputs, the first one high. */
static uint64_t mt_u64(struct mx_sd_rng *r) {
    uint64_t hi = mt_u32(r);
    uint64_t lo = mt_u32(r);
    return (hi << 32) | lo;
}

/* torch's uniform_real for float: the low 24 bits of a 32-bit draw times 2^-24, in [0, 1). */
static float mt_uniform_f(struct mx_sd_rng *r) {
    return (float)(mt_u32(r) & ((1u << 24) - 1)) * (1.0f / (float)(1u << 24));
}

/* torch's uniform_real for double: the low 53 bits of a 64-bit draw times 2^-53. */
static double mt_uniform_d(struct mx_sd_rng *r) {
    return (double)(mt_u64(r) & ((UINT64_C(1) << 53) - 1)) * (1.0 / (double)(UINT64_C(1) << 53));
}

/* torch's normal_distribution<double>: Box-Muller on two doubles, the sine half kept as a spare
 * for the next call (the spare survives across randn calls until reseeded). */
static double mt_normal_d(struct mx_sd_rng *r) {
    if (r->has_next_gauss) {
        r->has_next_gauss = false;
        return r->next_gauss;
    }
    double u1 = mt_uniform_d(r);
    double u2 = mt_uniform_d(r);
    double rad = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    r->next_gauss = rad * sin(theta) * 1.0 + 0.0;
    r->has_next_gauss = true;
    return rad * cos(theta) * 1.0 + 0.0;
}

/* torch's normal_fill_16: 16 uniforms in place -> 8 Box-Muller pairs (j, j + 8), float maths.
 * The "* 1.0f + 0.0f" is torch's std and mean, kept so that -0.0 becomes +0.0 as there. */
static void mt_fill16(float *d) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float rad = sqrtf(-2.0f * logf(u1));
        float theta = 2.0f * 3.14159265358979323846f * u2;
        d[j] = rad * cosf(theta) * 1.0f + 0.0f;
        d[j + 8] = rad * sinf(theta) * 1.0f + 0.0f;
    }
}

/* One cpu randn(n), as torch's normal_kernel on a contiguous float tensor. */
static void randn_mt(struct mx_sd_rng *r, float *out, int64_t n) {
    if (n < 16) {
        /* torch's scalar path for small tensors: double normals, rounded to float */
        for (int64_t i = 0; i < n; i++)
            out[i] = (float)mt_normal_d(r);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = mt_uniform_f(r);
    for (int64_t i = 0; i + 16 <= n; i += 16)
        mt_fill16(out + i);
    if (n % 16 != 0) {
        /* the tail: the last 16 slots are redrawn (overwriting finished values) and refilled */
        float *d = out + n - 16;
        for (int i = 0; i < 16; i++)
            d[i] = mt_uniform_f(r);
        mt_fill16(d);
    }
}

/* ---- std_default: minstd_rand0 + libstdc++ normal_distribution<float> --------------------- */

#define MINSTD_M 2147483647u /* 2^31 - 1 */
#define MINSTD_A 16807u

/* minstd_rand0's next state x = 16807 x mod (2^31 - 1), which is also its output. */
static uint32_t minstd_next(struct mx_sd_rng *r) {
    r->lcg = (uint32_t)(((uint64_t)r->lcg * MINSTD_A) % MINSTD_M);
    return r->lcg;
}

/* std::generate_canonical<float, 24>(minstd_rand0): one draw (the engine has 30 bits of range),
 * (x - min) / R in float, where R = 2147483646 rounds to 2^31 as a float; a result of 1 becomes
 * the float below 1. */
static float minstd_canonical(struct mx_sd_rng *r) {
    float sum = (float)(minstd_next(r) - 1u) * 1.0f;
    float tmp = (float)(1.0L * 2147483646.0L);
    float ret = sum / tmp;
    if (ret >= 1.0f)
        ret = nextafterf(1.0f, 0.0f);
    return ret;
}

/* One randn call: a fresh normal_distribution<float> (no spare carried in), Marsaglia's polar
 * method in float, returning y*mult then the cached x*mult, as libstdc++ does. */
static void randn_std(struct mx_sd_rng *r, float *out, int64_t n) {
    bool saved_ok = false;
    float saved = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float ret;
        if (saved_ok) {
            saved_ok = false;
            ret = saved;
        } else {
            float x, y, r2;
            do {
                /* result_type(2.0) * u - 1.0: the subtraction is in double, rounded once */
                x = (float)(2.0f * minstd_canonical(r) - 1.0);
                y = (float)(2.0f * minstd_canonical(r) - 1.0);
                r2 = x * x + y * y;
            } while (r2 > 1.0f || r2 == 0.0f);
            float mult = sqrtf(-2.0f * logf(r2) / r2);
            saved = x * mult;
            saved_ok = true;
            ret = y * mult;
        }
        out[i] = ret * 1.0f + 0.0f;
    }
}

/* ---- the interface ----------------------------------------------------------------------- */

void mx_sd_rng_init(struct mx_sd_rng *r, enum mx_sd_rng_kind kind, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->kind = (unsigned)kind < MX_SD_RNG_COUNT ? kind : MX_SD_RNG_CUDA;
    r->seed = seed;
    switch (r->kind) {
    case MX_SD_RNG_CPU:
        /* torch's mt19937 seeding: the low 32 bits, Knuth's initialiser */
        r->mt[0] = (uint32_t)seed;
        for (int j = 1; j < MX_SD_MT_N; j++)
            r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t)j;
        r->mt_left = 1;
        r->mt_next = 0;
        break;
    case MX_SD_RNG_STD_DEFAULT: {
        /* the peer seeds with (unsigned int)seed; minstd_rand0 takes it mod 2^31-1, 0 -> 1 */
        uint32_t s = (uint32_t)((uint32_t)seed % MINSTD_M);
        r->lcg = s == 0 ? 1 : s;
        break;
    }
    default:
        break;
    }
}

void mx_sd_rng_randn(struct mx_sd_rng *r, float *out, int64_t n) {
    if (n <= 0)
        return;
    switch (r->kind) {
    case MX_SD_RNG_CPU:
        randn_mt(r, out, n);
        break;
    case MX_SD_RNG_STD_DEFAULT:
        randn_std(r, out, n);
        break;
    default:
        randn_philox(r, out, n);
        break;
    }
}

static const char *const rng_names[MX_SD_RNG_COUNT] = {"cuda", "cpu", "std_default"};

const char *mx_sd_rng_name(int kind) {
    return kind >= 0 && kind < MX_SD_RNG_COUNT ? rng_names[kind] : "unknown";
}

int mx_sd_rng_parse(const char *name, int *kind, struct mx_err *err) {
    if (name) {
        for (int k = 0; k < MX_SD_RNG_COUNT; k++)
            if (strcasecmp(name, rng_names[k]) == 0) {
                *kind = k;
                return 0;
            }
        /* A1111's "Random number generator source" setting values */
        if (strcasecmp(name, "gpu") == 0) {
            *kind = MX_SD_RNG_CUDA;
            return 0;
        }
    }
    return mx_err_set(err, MX_EINVAL, "rng '%s': unknown (valid: cuda, cpu, std_default)",
                      name ? name : "(null)");
}
