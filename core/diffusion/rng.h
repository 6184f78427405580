/* rng.h - the Gaussian noise generators Stable Diffusion front ends seed images with, bit-exact,
 * so that a seed gives the same picture here as in AUTOMATIC1111, ComfyUI or stable-diffusion.cpp.
 *
 *   cuda         torch's CUDA randn: Philox4x32-10 keyed by the seed, counter (offset, 0, i, 0),
 *                one Box-Muller value per element; each randn call advances the offset by one.
 *                A1111's default ("GPU" noise, reproduced on the CPU as in its rng_philox.py).
 *   cpu          torch's CPU randn: mt19937 seeded with the low 32 bits of the seed; n >= 16 is
 *                filled in blocks of 16 uniform floats turned into normals pairwise (j, j+8),
 *                a tail redrawn as a final overlapping block; n < 16 uses double Box-Muller with
 *                a cached spare. ComfyUI's default.
 *   std_default  libstdc++'s std::default_random_engine (minstd_rand0) with a fresh
 *                std::normal_distribution<float> (Marsaglia polar method) per randn call.
 *
 * Exactness is against stable-diffusion.cpp's CPU ports of these generators (the dumps in
 * ../shared/refs/sd/noise), which use the float libm functions named in rng.c.
 *
 * HOW TO USE
 *   struct mx_sd_rng r;
 *   mx_sd_rng_init(&r, MX_SD_RNG_CUDA, 42);
 *   mx_sd_rng_randn(&r, noise, 4 * h * w);   // the initial latent noise
 *   mx_sd_rng_randn(&r, noise, 4 * h * w);   // an ancestral sampler's next draw
 * The object is plain data (no allocation, no deinit); one thread at a time.
 */
#ifndef MX_SD_RNG_H
#define MX_SD_RNG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"

enum mx_sd_rng_kind {
    MX_SD_RNG_CUDA = 0,    /* Philox4x32-10 + Box-Muller as torch's CUDA randn (A1111) */
    MX_SD_RNG_CPU,         /* mt19937 as torch's CPU randn (ComfyUI) */
    MX_SD_RNG_STD_DEFAULT, /* libstdc++ minstd_rand0 + normal_distribution<float> */
    MX_SD_RNG_COUNT
};

#define MX_SD_MT_N 624 /* mt19937 state words */

/* One generator's whole state. */
struct mx_sd_rng {
    enum mx_sd_rng_kind kind;
    uint64_t seed;            /* as given to mx_sd_rng_init (cuda: the Philox key) */
    uint32_t offset;          /* cuda: randn calls since seeding (the Philox counter's word 0) */
    uint32_t mt[MX_SD_MT_N];  /* cpu: mt19937 state */
    int mt_left;              /* cpu: words left before the next twist, plus one */
    int mt_next;              /* cpu: index of the next state word to temper */
    bool has_next_gauss;      /* cpu: a spare double normal is cached (n < 16 path) */
    double next_gauss;        /* cpu: that spare */
    uint32_t lcg;             /* std_default: minstd_rand0 state, in [1, 2^31 - 2] */
};

/* Seeds r as the peer's manual_seed(seed) does. Never fails; an unknown kind is treated as
 * cuda (callers validate kinds with mx_sd_rng_parse). */
void mx_sd_rng_init(struct mx_sd_rng *r, enum mx_sd_rng_kind kind, uint64_t seed);

/* Fills out[0..n) with the values of one torch.randn(n) call (N(0,1) float32) and advances r.
 * n <= 0 does nothing (and for cuda still advances nothing). */
void mx_sd_rng_randn(struct mx_sd_rng *r, float *out, int64_t n);

/* Parses a generator name: "cuda", "cpu", "std_default" (stable-diffusion.cpp's --rng names;
 * case-insensitive; A1111's "GPU"/"CPU" settings values are accepted as cuda/cpu). Returns 0 and
 * sets *kind, or MX_EINVAL with err listing the valid names. */
int mx_sd_rng_parse(const char *name, int *kind, struct mx_err *err);

/* "cuda", "cpu", "std_default" ("unknown" out of range). Static string. */
const char *mx_sd_rng_name(int kind);

#endif
