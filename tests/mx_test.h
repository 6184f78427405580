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

/* Tests skipped inside a cmocka program by mx_test_skip(), for mx_test_status(). */
static int mx_test_n_skipped __attribute__((unused));

/* Skips the running cmocka test visibly: prints "SKIP: <reason>", counts it and calls cmocka's
 * skip(). Use it instead of skip() or an early return: those leave the program's exit status 0,
 * a PASS that tested nothing. Needs <cmocka.h> before the call site. */
#define mx_test_skip(...)                                                                         \
    do {                                                                                          \
        printf("SKIP: " __VA_ARGS__);                                                             \
        printf("\n");                                                                             \
        fflush(stdout);                                                                           \
        mx_test_n_skipped++;                                                                      \
        skip();                                                                                   \
    } while (0)

/* The exit status of a cmocka program: the failure count from cmocka_run_group_tests(), or 77
 * (Automake's SKIP, which tests/run_test.sh refuses in CI) when nothing failed but a test was
 * skipped with mx_test_skip(). */
static inline int mx_test_status(int failures) {
    if (failures == 0 && mx_test_n_skipped > 0) {
        printf("SKIP: %d test(s) of this program skipped (see SKIP: lines above)\n",
               mx_test_n_skipped);
        return MX_TEST_SKIP;
    }
    return failures;
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
