/* history_text.h - the deterministic message texts shared by tests/history_writer.c and
 * tests/history_check.c: a text is "<tag><key>:" followed by letters drawn from the key, so the
 * checker can regenerate any message from its first bytes. */
#ifndef MX_HISTORY_TEXT_H
#define MX_HISTORY_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 step */
static inline uint64_t mx_ht_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline size_t mx_ht_user_len(uint64_t key) {
    return 40 + (size_t)(key % 200);
}

static inline size_t mx_ht_answer_len(uint64_t key) {
    return 200 + (size_t)(key % 3000);
}

/* The full text of length len (>= the prefix) for tag and key; caller frees. */
static inline char *mx_ht_text(char tag, uint64_t key, size_t len) {
    char *t = malloc(len + 1);
    if (!t)
        exit(4);
    int n = snprintf(t, len + 1, "%c%llu:", tag, (unsigned long long)key);
    uint64_t s = key;
    for (size_t i = (size_t)n; i < len; i++) {
        uint64_t r = mx_ht_next(&s) % 28;
        t[i] = r < 26 ? (char)('a' + r) : r == 26 ? ' ' : '\n';
    }
    t[len] = '\0';
    return t;
}

#endif
