/* mx_test.h - helpers shared by the cmocka tests: locating ../shared (skip with exit 77 and a
 * visible reason when absent), reading whole files, a seeded RNG for random inputs. */
#ifndef MX_TEST_H
#define MX_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define MX_TEST_SKIP 77

/* The shared test-data folder ($MX_SHARED, set by make check to ../shared), or NULL. */
static inline const char *mx_test_shared_dir(void) {
    const char *d = getenv("MX_SHARED");
    struct stat st;
    if (!d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return d;
}

/* Returns the shared folder or exits 77 (Automake SKIP) printing why. Call at the top of main(). */
static inline const char *mx_test_require_shared(const char *what) {
    const char *d = mx_test_shared_dir();
    if (!d) {
        printf("SKIP: %s needs ../shared (set MX_SHARED); it is absent here\n", what);
        fflush(stdout);
        exit(MX_TEST_SKIP);
    }
    return d;
}

/* splitmix64: small, seedable, good enough for test inputs. */
static inline uint64_t mx_test_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform float in [-1, 1). */
static inline float mx_test_randf(uint64_t *s) {
    return (float)((mx_test_rand(s) >> 40) * (1.0 / 8388608.0) - 1.0);
}

#endif
