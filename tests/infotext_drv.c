/* infotext_drv.c - driver for tests/infotext_ref.py: reads records (4-byte little-endian length,
 * then the bytes) from stdin, parses each with mx_sd_infotext_parse and writes one JSON line per
 * record: {"prompt", "negative", "fields": {A1111 key: value as text}, "extra": [[key, value]]}
 * so the Python side can compare with A1111's own parse rules. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/infotext.h"

/* A JSON string of s, or null when s is NULL or not valid UTF-8. */
static json_t *str_or_null(const char *s) {
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

int main(void) {
    unsigned char len4[4];
    while (fread(len4, 1, 4, stdin) == 4) {
        size_t n = (size_t)len4[0] | (size_t)len4[1] << 8 | (size_t)len4[2] << 16 |
                   (size_t)len4[3] << 24;
        char *buf = malloc(n + 1);
        if (!buf || fread(buf, 1, n, stdin) != n)
            return 2;
        struct mx_sd_infotext it;
        struct mx_err err = {0};
        if (mx_sd_infotext_parse(buf, n, &it, &err) != 0)
            return 3;
        json_t *o = json_object();
        json_object_set_new(o, "prompt", str_or_null(it.prompt));
        json_object_set_new(o, "negative", str_or_null(it.negative));
        json_t *f = json_object();
        char num[64];
        if (it.steps > 0) {
            snprintf(num, sizeof num, "%d", it.steps);
            json_object_set_new(f, "Steps", json_string(num));
        }
        if (!isnan(it.cfg)) {
            snprintf(num, sizeof num, "%.9g", (double)it.cfg);
            json_object_set_new(f, "CFG scale", json_string(num));
        }
        if (it.has_seed) {
            snprintf(num, sizeof num, "%llu", (unsigned long long)it.seed);
            json_object_set_new(f, "Seed", json_string(num));
        }
        if (it.w > 0) {
            snprintf(num, sizeof num, "%dx%d", it.w, it.h);
            json_object_set_new(f, "Size", json_string(num));
        }
        if (it.strength >= 0) {
            snprintf(num, sizeof num, "%.9g", (double)it.strength);
            json_object_set_new(f, "Denoising strength", json_string(num));
        }
        if (it.clip_skip != 1) {
            snprintf(num, sizeof num, "%d", it.clip_skip);
            json_object_set_new(f, "Clip skip", json_string(num));
        }
        const char *names[] = {"Sampler", "Schedule type", "Model hash", "Model", "RNG", "Version"};
        const char *vals[] = {it.sampler, it.schedule, it.model_hash, it.model, it.rng, it.version};
        for (int i = 0; i < 6; i++)
            if (vals[i])
                json_object_set_new(f, names[i], str_or_null(vals[i]));
        json_object_set_new(o, "fields", f);
        json_t *x = json_array();
        for (size_t i = 0; i < it.n_extra; i++)
            json_array_append_new(x, json_pack("[o, o]", str_or_null(it.extra[i].key),
                                               str_or_null(it.extra[i].value)));
        json_object_set_new(o, "extra", x);
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(line ? line : "null");
        free(line);
        json_decref(o);
        mx_sd_infotext_free(&it);
        free(buf);
    }
    return 0;
}
