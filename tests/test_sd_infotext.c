/* test_sd_infotext.c - A1111's "parameters" text and the PNG text chunks that carry it: the exact
 * text A1111's create_infotext writes for the same values, parsing its documented samples,
 * format -> parse round trips, hostile text (no parameters line, bad quotes, megabyte lines,
 * random bytes), and PNG tEXt/iTXt writing with zTXt/compressed-iTXt/after-IDAT reading and
 * corrupt chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "app/model_hash.h"
#include "core/base/sha256.h"
#include "core/base/util.h"
#include "core/diffusion/infotext.h"
#include "core/image/image.h"
#include "core/image/png_text.h"
#include "tests/mx_test.h"

/* ---- infotext ------------------------------------------------------------------------------- */

/* Parses s (asserting success) into *it. */
static void parse(const char *s, struct mx_sd_infotext *it) {
    struct mx_err err = {0};
    assert_int_equal(mx_sd_infotext_parse(s, strlen(s), it, &err), 0);
}

/* Formats it (asserting success); caller frees. */
static char *format(const struct mx_sd_infotext *it) {
    char *out = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_infotext_format(it, &out, &err), 0);
    assert_non_null(out);
    return out;
}

/* The values of the brief's example, as A1111 v1.10 would hold them. */
static void fill_example(struct mx_sd_infotext *it) {
    mx_sd_infotext_init(it);
    it->prompt = strdup("a cat in a hat, oil painting");
    it->negative = strdup("blurry");
    it->steps = 20;
    it->sampler = strdup("Euler a");
    it->schedule = strdup("Karras");
    it->cfg = 7.0f;
    it->has_seed = true;
    it->seed = 42;
    it->w = 512;
    it->h = 512;
    it->model_hash = strdup("abcdef1234");
    it->model = strdup("v1-5-pruned-emaonly");
    it->strength = 0.6f;
    it->clip_skip = 2;
    it->version = strdup("mixel 0.1");
}

/* The exact text, key order and number forms of A1111's create_infotext. */
static void test_format_exact(void **state) {
    (void)state;
    struct mx_sd_infotext it;
    fill_example(&it);
    char *s = format(&it);
    assert_string_equal(s, "a cat in a hat, oil painting\n"
                           "Negative prompt: blurry\n"
                           "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, "
                           "Seed: 42, Size: 512x512, Model hash: abcdef1234, "
                           "Model: v1-5-pruned-emaonly, Denoising strength: 0.6, Clip skip: 2, "
                           "Version: mixel 0.1");
    free(s);

    // Clip skip 1 and no strength are left out; no negative line; CFG 7.5; RNG before extras;
    // extras with A1111 keys go to A1111's place ("VAE hash" after Model), others before Version;
    // values with ',' ':' or a newline are JSON-quoted, '"' alone is not (A1111's quote()).
    it.clip_skip = 1;
    it.strength = -1;
    free(it.negative);
    it.negative = NULL;
    it.cfg = 7.5f;
    it.rng = strdup("CPU");
    assert_int_equal(mx_sd_infotext_set_extra(&it, "Lora hashes", "detail: 7c6bad76eb54, x: 1"),
                     0);
    assert_int_equal(mx_sd_infotext_set_extra(&it, "VAE hash", "63aeecb90f"), 0);
    assert_int_equal(mx_sd_infotext_set_extra(&it, "Note", "say \"hi\"\\now"), 0);
    assert_int_equal(mx_sd_infotext_set_extra(&it, "Tab", "a\tb\nc\x01"), 0);
    assert_int_equal(mx_sd_infotext_set_extra(&it, "bad: key", "v"), MX_EINVAL);
    s = format(&it);
    assert_string_equal(s, "a cat in a hat, oil painting\n"
                           "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7.5, "
                           "Seed: 42, Size: 512x512, Model hash: abcdef1234, "
                           "Model: v1-5-pruned-emaonly, VAE hash: 63aeecb90f, RNG: CPU, "
                           "Lora hashes: \"detail: 7c6bad76eb54, x: 1\", Note: say \"hi\"\\now, "
                           "Tab: \"a\\tb\\nc\\u0001\", Version: mixel 0.1");
    free(s);
    mx_sd_infotext_free(&it);

    // An empty prompt: A1111's .strip() leaves the parameters line alone.
    mx_sd_infotext_init(&it);
    it.steps = 4;
    it.has_seed = true;
    it.seed = 18446744073709551615ull;
    s = format(&it);
    assert_string_equal(s, "Steps: 4, Seed: 18446744073709551615");
    free(s);
    mx_sd_infotext_free(&it);

    char *q = mx_sd_infotext_quote("caf\xc3\xa9: \xe7\x8c\xab");
    assert_string_equal(q, "\"caf\xc3\xa9: \xe7\x8c\xab\""); /* ensure_ascii=False */
    free(q);
}

/* The sample in parse_generation_parameters' own docstring (A1111 modules/infotext_utils.py). */
static void test_parse_a1111_docstring(void **state) {
    (void)state;
    const char *s =
        "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, "
        "heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), "
        "detailed, intricate\n"
        "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, "
        "disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn "
        "hands), messy drawing\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, "
        "Model hash: 45dee52b\n";
    struct mx_sd_infotext it;
    parse(s, &it);
    assert_string_equal(it.prompt, "girl with an artist's beret, determined, blue eyes, desert "
                        "scene, computer monitors, heavy makeup, by Alphonse Mucha and Charlie "
                        "Bowater, ((eyeshadow)), (coquettish), detailed, intricate");
    assert_string_equal(it.negative, "ugly, fat, obese, chubby, (((deformed))), [blurry], bad "
                        "anatomy, disfigured, poorly drawn face, mutation, mutated, (extra_limb), "
                        "(ugly), (poorly drawn hands), messy drawing");
    assert_int_equal(it.steps, 20);
    assert_string_equal(it.sampler, "Euler a");
    assert_true(it.cfg == 7.0f);
    assert_true(it.has_seed);
    assert_int_equal(it.seed, 965400086);
    assert_int_equal(it.w, 512);
    assert_int_equal(it.h, 512);
    assert_string_equal(it.model_hash, "45dee52b");
    assert_null(it.model);
    assert_null(it.schedule);
    assert_null(it.rng);
    assert_int_equal(it.clip_skip, 1);
    assert_true(it.strength < 0);
    assert_int_equal(it.n_extra, 0);
    mx_sd_infotext_free(&it);
}

/* A v1.10 img2img + hires + LoRA infotext: quoted values with ':' and ',', a multi-line prompt
 * and negative prompt, Windows line ends, unknown keys kept in order, "WxH" of other keys kept. */
static void test_parse_a1111_full(void **state) {
    (void)state;
    const char *s =
        "  masterpiece, 1girl <lora:add_detail:0.8>\r\n"
        "\r\n"
        "  second line  \r\n"
        "Negative prompt: easynegative, lowres\r\n"
        "bad hands\r\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3129611203, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 63aeecb90f, "
        "VAE: vae-ft-mse-840000-ema-pruned.ckpt, Denoising strength: 0.45, Clip skip: 2, "
        "ENSD: 31337, RNG: NV, Hires upscale: 2, Hires upscaler: Latent, "
        "Seed resize from: 640x960, "
        "Lora hashes: \"add_detail: 7c6bad76eb54\", TI hashes: \"easynegative: c74b4e810b03\", "
        "ADetailer prompt: \"a \\\"smile\\\", caf\\u00e9 \\ud83d\\ude00\", Version: v1.10.1\r\n";
    struct mx_sd_infotext it;
    parse(s, &it);
    assert_string_equal(it.prompt, "masterpiece, 1girl <lora:add_detail:0.8>\n\nsecond line");
    assert_string_equal(it.negative, "easynegative, lowres\nbad hands");
    assert_int_equal(it.steps, 28);
    assert_string_equal(it.sampler, "DPM++ 2M");
    assert_string_equal(it.schedule, "Karras");
    assert_true(it.cfg == 6.5f);
    assert_int_equal(it.seed, 3129611203ull);
    assert_int_equal(it.w, 512);
    assert_int_equal(it.h, 768);
    assert_string_equal(it.model_hash, "6ce0161689");
    assert_string_equal(it.model, "v1-5-pruned-emaonly");
    assert_true(it.strength == 0.45f);
    assert_int_equal(it.clip_skip, 2);
    assert_string_equal(it.rng, "NV");
    assert_string_equal(it.version, "v1.10.1");
    static const char *const keys[] = {"VAE hash", "VAE", "ENSD", "Hires upscale",
                                       "Hires upscaler", "Seed resize from", "Lora hashes",
                                       "TI hashes", "ADetailer prompt"};
    static const char *const vals[] = {"63aeecb90f", "vae-ft-mse-840000-ema-pruned.ckpt",
                                       "31337", "2", "Latent", "640x960",
                                       "add_detail: 7c6bad76eb54", "easynegative: c74b4e810b03",
                                       "a \"smile\", caf\xc3\xa9 \xf0\x9f\x98\x80"};
    assert_int_equal(it.n_extra, 9);
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(it.extra[i].key, keys[i]);
        assert_string_equal(it.extra[i].value, vals[i]);
    }
    // And back: A1111's order puts the VAE keys after Model, Seed resize from before Denoising.
    char *f = format(&it);
    assert_string_equal(f,
        "masterpiece, 1girl <lora:add_detail:0.8>\n\nsecond line\n"
        "Negative prompt: easynegative, lowres\nbad hands\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3129611203, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 63aeecb90f, "
        "VAE: vae-ft-mse-840000-ema-pruned.ckpt, Seed resize from: 640x960, "
        "Denoising strength: 0.45, Clip skip: 2, ENSD: 31337, RNG: NV, Hires upscale: 2, "
        "Hires upscaler: Latent, Lora hashes: \"add_detail: 7c6bad76eb54\", "
        "TI hashes: \"easynegative: c74b4e810b03\", "
        "ADetailer prompt: \"a \\\"smile\\\", caf\xc3\xa9 \xf0\x9f\x98\x80\", Version: v1.10.1");
    free(f);
    mx_sd_infotext_free(&it);
}

/* parse_generation_parameters' corner rules. */
static void test_parse_rules(void **state) {
    (void)state;
    struct mx_sd_infotext it;

    // Fewer than 3 pairs on the last line: it is prompt text.
    parse("a photo\nStyle: noir, Mood: dark", &it);
    assert_string_equal(it.prompt, "a photo\nStyle: noir, Mood: dark");
    assert_int_equal(it.steps, 0);
    assert_int_equal(it.n_extra, 0);
    mx_sd_infotext_free(&it);

    // Only a parameters line: empty prompt; no text at all: empty prompt.
    parse("Steps: 5, Seed: 1, Size: 64x64", &it);
    assert_string_equal(it.prompt, "");
    assert_int_equal(it.w, 64);
    mx_sd_infotext_free(&it);
    parse(" \n\t ", &it);
    assert_string_equal(it.prompt, "");
    assert_string_equal(it.negative, "");
    mx_sd_infotext_free(&it);

    // An empty value is dropped (A1111's v[0] raises IndexError); a failed type keeps the text;
    // a key with a trailing space is another key; a bad JSON string stays raw; a one-letter key
    // does not match the regex ("\w[\w \-/]+").
    parse("p\nSteps: many, Seed: , CFG scale : 7, Model: \"a\\qb\", x: 1, Size: 64x, "
          "Sampler: \"\"", &it);
    assert_int_equal(it.steps, 0);
    assert_string_equal(mx_sd_infotext_get_extra(&it, "Steps"), "many");
    assert_null(mx_sd_infotext_get_extra(&it, "Seed"));
    assert_false(it.has_seed);
    assert_string_equal(mx_sd_infotext_get_extra(&it, "CFG scale "), "7");
    assert_true(isnan(it.cfg));
    assert_string_equal(it.model, "\"a\\qb\"");
    assert_null(mx_sd_infotext_get_extra(&it, "x"));
    assert_string_equal(mx_sd_infotext_get_extra(&it, "Size"), "64x");
    assert_string_equal(it.sampler, "");
    // "Steps: many" is written back where Steps goes.
    char *f = format(&it);
    // (A1111's quote() leaves '"' alone: the raw value goes back as it came.)
    assert_string_equal(f, "p\nSteps: many, Sampler: , Size: 64x, Model: \"a\\qb\", "
                           "CFG scale : 7");
    free(f);
    mx_sd_infotext_free(&it);

    // Negative prompt with nothing after the colon, a later line continues it; a second
    // "Negative prompt:" line loses its prefix too; Python's strip() takes NBSP and U+3000.
    parse("\xc2\xa0pos\xe3\x80\x80\nNegative prompt:\nn1\nNegative prompt: n2\n"
          "Steps: 1, Seed: 2, CFG scale: 3", &it);
    assert_string_equal(it.prompt, "pos");
    assert_string_equal(it.negative, "n1\nn2");
    mx_sd_infotext_free(&it);

    // A key needs two characters, counted as characters: "猫" (3 bytes) is one, "é猫" two.
    parse("p\n\xe7\x8c\xab: 1, \xc3\xa9\xe7\x8c\xab: 2, cd: 3, ef: 4", &it);
    assert_int_equal(it.n_extra, 3);
    assert_string_equal(it.extra[0].key, "\xc3\xa9\xe7\x8c\xab");
    mx_sd_infotext_free(&it);

    // Duplicate keys: the last value wins, also between a valid and an invalid typed value.
    parse("p\nSteps: x, Seed: 1, Steps: 4, Model: a, Size: 8x8, Size: big", &it);
    assert_int_equal(it.steps, 4);
    assert_null(mx_sd_infotext_get_extra(&it, "Steps"));
    assert_int_equal(it.w, 0);
    assert_string_equal(mx_sd_infotext_get_extra(&it, "Size"), "big");
    mx_sd_infotext_free(&it);
    parse("p\nSteps: 1, Steps: 2, Seed: 3, Foo: a, Foo: b", &it);
    assert_int_equal(it.steps, 2);
    assert_int_equal(it.n_extra, 1);
    assert_string_equal(it.extra[0].value, "b");
    mx_sd_infotext_free(&it);

    // Keys may hold spaces, '-' and '/'; text between pairs that is no pair is skipped.
    parse("p\n!!Hires-fix/upscale: 2, junk, Token merging ratio: 0.3, ,, ENSD: 31337", &it);
    assert_string_equal(mx_sd_infotext_get_extra(&it, "Hires-fix/upscale"), "2");
    assert_string_equal(mx_sd_infotext_get_extra(&it, "Token merging ratio"), "0.3");
    assert_string_equal(mx_sd_infotext_get_extra(&it, "ENSD"), "31337");
    mx_sd_infotext_free(&it);
}

/* format -> parse gives the same values, for tricky prompts and values. */
static void test_roundtrip(void **state) {
    (void)state;
    static const char *const prompts[] = {
        "simple",
        "line one\nline two, with: colon",
        "quotes \"inside\" and \\backslash\\",
        "\xe7\x8c\xab cat \xf0\x9f\x98\xba, caf\xc3\xa9",
        "Steps: 20, Sampler: Euler a, CFG scale: 7",   /* looks like parameters: a 2nd line */
    };
    static const char *const models[] = {
        "plain", "with, comma", "with: colon", "with \"quote\"", "new\nline", "uni\xc3\xa9",
        /* not "\"quoted\"": A1111 writes it raw and unquotes it on reading (lossy there too) */
    };
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        for (size_t j = 0; j < sizeof models / sizeof models[0]; j++) {
            struct mx_sd_infotext a, b;
            fill_example(&a);
            free(a.prompt);
            a.prompt = strdup(prompts[i]);
            free(a.model);
            a.model = strdup(models[j]);
            a.seed = 0xfedcba9876543210ull;
            a.cfg = 0.1f * (float)(j + 1);
            a.rng = strdup("CPU");
            assert_int_equal(mx_sd_infotext_set_extra(&a, "Extra key", models[j]), 0);
            char *s = format(&a);
            parse(s, &b);
            assert_string_equal(b.prompt, a.prompt);
            assert_string_equal(b.negative, a.negative);
            assert_int_equal(b.steps, a.steps);
            assert_string_equal(b.sampler, a.sampler);
            assert_string_equal(b.schedule, a.schedule);
            assert_true(b.cfg == a.cfg);
            assert_true(b.has_seed);
            assert_true(b.seed == a.seed);
            assert_int_equal(b.w, a.w);
            assert_int_equal(b.h, a.h);
            assert_string_equal(b.model_hash, a.model_hash);
            assert_string_equal(b.model, a.model);
            assert_true(b.strength == a.strength);
            assert_int_equal(b.clip_skip, a.clip_skip);
            assert_string_equal(b.rng, a.rng);
            assert_string_equal(b.version, a.version);
            assert_int_equal(b.n_extra, 1);
            assert_string_equal(b.extra[0].value, models[j]);
            char *s2 = format(&b);
            assert_string_equal(s2, s); /* and the text is a fixed point */
            free(s);
            free(s2);
            mx_sd_infotext_free(&a);
            mx_sd_infotext_free(&b);
        }
    }
}

/* Hostile text: megabyte lines in the shapes that make naive regex engines quadratic, random
 * bytes; each must parse quickly and the result must format. */
static void test_hostile(void **state) {
    (void)state;
    size_t n = 4u << 20;
    char *s = malloc(n + 1);
    assert_non_null(s);
    static const char *const units[] = {"ab", "a b-", "ab: \"\\", "ab: \"x, ", "a:", "\"\\\"",
                                        " \t", "ab: 1,"};
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ul = strlen(units[u]);
        for (size_t i = 0; i < n; i++)
            s[i] = units[u][i % ul];
        s[n] = '\0';
        double t0 = mx_time_s();
        struct mx_sd_infotext it;
        parse(s, &it);
        double dt = mx_time_s() - t0;
        printf("4 MiB of \"%s\": %.3f s, %zu extras\n", units[u], dt, it.n_extra);
        assert_true(dt < 5.0); /* linear: ~0.05 s here; quadratic would take hours */
        char *f = format(&it);
        free(f);
        mx_sd_infotext_free(&it);
    }
    // 4 MiB of distinct keys: extras stop at MX_SD_INFOTEXT_MAX_EXTRA, in linear time.
    size_t o = 0;
    for (unsigned k = 0; o + 32 < n; k++)
        o += (size_t)sprintf(s + o, "k%u: %u, ", k, k);
    double t0 = mx_time_s();
    struct mx_sd_infotext many;
    parse(s, &many);
    printf("4 MiB of distinct keys: %.3f s\n", mx_time_s() - t0);
    assert_true(mx_time_s() - t0 < 5.0);
    assert_int_equal(many.n_extra, MX_SD_INFOTEXT_MAX_EXTRA);
    assert_string_equal(many.extra[0].key, "k0");
    mx_sd_infotext_free(&many);
    free(s);

    uint64_t seed = 7;
    static const char alphabet[] = "ab :,\"\\\n\r\t-/x0123456789\xc3\xa9\xff";
    char buf[256];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = mx_test_rand(&seed) % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = alphabet[mx_test_rand(&seed) % (sizeof alphabet - 1)];
        struct mx_sd_infotext it;
        struct mx_err err = {0};
        assert_int_equal(mx_sd_infotext_parse(buf, len, &it, &err), 0);
        char *f = format(&it);
        free(f);
        mx_sd_infotext_free(&it);
    }
    struct mx_sd_infotext it;
    assert_int_equal(mx_sd_infotext_parse(NULL, 3, &it, NULL), MX_EINVAL);
    mx_sd_infotext_free(&it);
    mx_sd_infotext_free(NULL);
}

/* ---- PNG text chunks ------------------------------------------------------------------------ */

/* A small test image. */
static struct mx_image small_image(void) {
    struct mx_image img = {4, 3, malloc(4 * 3 * 3)};
    for (int i = 0; i < 4 * 3 * 3; i++)
        img.rgb[i] = (uint8_t)(i * 17);
    return img;
}

/* Reads a whole file; *n its size. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Writes n bytes to path. */
static void spill(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Position of the chunk type (4 bytes) in a PNG image, or 0. */
static size_t find_chunk(const unsigned char *b, size_t n, const char *type) {
    for (size_t p = 8; p + 12 <= n;) {
        uint32_t len = (uint32_t)b[p] << 24 | (uint32_t)b[p + 1] << 16 | b[p + 2] << 8 | b[p + 3];
        if (!memcmp(b + p + 4, type, 4))
            return p + 4;
        p += 12 + len;
    }
    return 0;
}

/* The file at path with one chunk (type, data) inserted before IEND. */
static void insert_chunk(const char *path, const char *type, const void *data, size_t len) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    unsigned char *o = malloc(n + len + 12);
    size_t at = n - 12; /* IEND is the last 12 bytes */
    memcpy(o, b, at);
    o[at] = (unsigned char)(len >> 24), o[at + 1] = (unsigned char)(len >> 16);
    o[at + 2] = (unsigned char)(len >> 8), o[at + 3] = (unsigned char)len;
    memcpy(o + at + 4, type, 4);
    memcpy(o + at + 8, data, len);
    uLong crc = crc32(crc32(0, (const Bytef *)type, 4), data, (uInt)len);
    unsigned char *c = o + at + 8 + len;
    c[0] = (unsigned char)(crc >> 24), c[1] = (unsigned char)(crc >> 16);
    c[2] = (unsigned char)(crc >> 8), c[3] = (unsigned char)crc;
    memcpy(c + 4, b + at, 12);
    spill(path, o, n + len + 12);
    free(b);
    free(o);
}

/* A temp path for this test. */
static void tmp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/mx_sdinfo_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), name);
}

/* Latin-1 text goes to tEXt (bytes converted), other text to an uncompressed iTXt, both before
 * IDAT as Pillow writes them; both read back as the UTF-8 given; the pixels are untouched. */
static void test_png_write_read(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "a.png");
    struct mx_image img = small_image();
    struct mx_err err = {0};
    const char *latin = "caf\xc3\xa9 \xc3\xbf, Steps: 20\nNegative prompt: x";
    assert_int_equal(mx_image_save_png_text(&img, path, "parameters", latin, &err), 0);
    size_t n;
    unsigned char *b = slurp(path, &n);
    size_t t = find_chunk(b, n, "tEXt");
    assert_true(t > 0 && t < find_chunk(b, n, "IDAT"));
    assert_int_equal(find_chunk(b, n, "iTXt"), 0);
    assert_memory_equal(b + t + 4, "parameters\0caf\xe9 \xff,", 18); /* Latin-1 bytes */
    free(b);
    char *out = NULL;
    assert_int_equal(mx_png_read_text(path, "parameters", &out, &err), 0);
    assert_string_equal(out, latin);
    free(out);
    assert_int_equal(mx_png_read_text(path, "parameter", &out, &err), 0);
    assert_null(out);
    struct mx_image back = {0};
    assert_int_equal(mx_image_load(path, &back, &err), 0);
    assert_int_equal(back.w, 4);
    assert_memory_equal(back.rgb, img.rgb, 4 * 3 * 3);
    mx_image_free(&back);

    const char *cjk = "\xe7\x8c\xab \xf0\x9f\x98\xba\nSteps: 1";
    assert_int_equal(mx_image_save_png_text(&img, path, "parameters", cjk, &err), 0);
    b = slurp(path, &n);
    t = find_chunk(b, n, "iTXt");
    assert_true(t > 0 && t < find_chunk(b, n, "IDAT"));
    assert_int_equal(find_chunk(b, n, "tEXt"), 0);
    assert_memory_equal(b + t + 4, "parameters\0\0\0\0\0\xe7\x8c\xab", 18); /* uncompressed */
    free(b);
    assert_int_equal(mx_png_read_text(path, "parameters", &out, &err), 0);
    assert_string_equal(out, cjk);
    free(out);

    // Invalid UTF-8 is written as U+FFFD; bad keys are refused.
    assert_int_equal(mx_image_save_png_text(&img, path, "parameters", "a\xff\xfe\xe7", &err), 0);
    assert_int_equal(mx_png_read_text(path, "parameters", &out, &err), 0);
    assert_string_equal(out, "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    free(out);
    assert_int_equal(mx_image_save_png_text(&img, path, "", "x", &err), MX_EINVAL);
    assert_int_equal(mx_image_save_png_text(&img, path, "two  spaces", "x", NULL), MX_EINVAL);
    assert_int_equal(mx_image_save_png_text(&img, path, "k\x01", "x", NULL), MX_EINVAL);
    mx_image_free(&img);
    unlink(path);
}

/* zTXt and compressed iTXt after IDAT (as other tools write them) are found and inflated;
 * corrupt, truncated, oversized and bomb chunks fail cleanly. */
static void test_png_read_hostile(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "b.png");
    struct mx_image img = small_image();
    struct mx_err err = {0};
    assert_int_equal(mx_image_save_png(&img, path, &err), 0);
    char *out = NULL;
    assert_int_equal(mx_png_read_text(path, "parameters", &out, &err), 0);
    assert_null(out);

    unsigned char z[256], chunk[512];
    uLongf zn = sizeof z;
    const char *txt = "caf\xe9 zipped"; /* Latin-1 */
    assert_int_equal(compress(z, &zn, (const Bytef *)txt, strlen(txt)), Z_OK);
    memcpy(chunk, "zk\0\0", 4);
    memcpy(chunk + 4, z, zn);
    insert_chunk(path, "zTXt", chunk, 4 + zn);
    const char *utf = "\xe7\x8c\xab compressed";
    zn = sizeof z;
    assert_int_equal(compress(z, &zn, (const Bytef *)utf, strlen(utf)), Z_OK);
    memcpy(chunk, "ik\0\1\0en\0tr\0", 11); /* keyword, compressed, zlib, language, tkey */
    memcpy(chunk + 11, z, zn);
    insert_chunk(path, "iTXt", chunk, 11 + zn);
    insert_chunk(path, "tEXt", "tk\0last", 7);
    assert_int_equal(mx_png_read_text(path, "zk", &out, &err), 0);
    assert_string_equal(out, "caf\xc3\xa9 zipped");
    free(out);
    assert_int_equal(mx_png_read_text(path, "ik", &out, &err), 0);
    assert_string_equal(out, utf);
    free(out);
    assert_int_equal(mx_png_read_text(path, "tk", &out, &err), 0);
    assert_string_equal(out, "last");
    free(out);

    // A zip bomb: 20 MiB of 'a' in a few KiB.
    size_t big = 20u << 20;
    char *raw = malloc(big);
    memset(raw, 'a', big);
    uLongf bn = compressBound(big);
    unsigned char *bz = malloc(bn + 4);
    memcpy(bz, "bk\0\0", 4);
    assert_int_equal(compress(bz + 4, &bn, (const Bytef *)raw, big), Z_OK);
    insert_chunk(path, "zTXt", bz, 4 + bn);
    free(raw);
    free(bz);
    mx_err_clear(&err);
    assert_int_equal(mx_png_read_text(path, "bk", &out, &err), MX_ERANGE);
    assert_null(out);
    printf("bomb: %s\n", err.msg);
    // Corrupt deflate data in a zTXt.
    insert_chunk(path, "zTXt", "ck\0\0\x78\x9c\xff\xff", 8);
    mx_err_clear(&err);
    assert_int_equal(mx_png_read_text(path, "ck", &out, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "corrupt"));

    // Bad CRC, truncation at every point of the last chunks, not a PNG, no file.
    size_t n;
    unsigned char *b = slurp(path, &n);
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    size_t t = find_chunk(c, n, "tEXt");
    c[t + 6] ^= 1;
    spill(path, c, n);
    mx_err_clear(&err);
    assert_int_equal(mx_png_read_text(path, "tk", &out, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "CRC"));
    for (size_t cut = 0; cut < n; cut += (cut < 64 || cut > n - 64) ? 1 : 97) {
        spill(path, b, cut);
        int rc = mx_png_read_text(path, "nope", &out, NULL);
        assert_true(rc == MX_EFORMAT);
        assert_null(out);
    }
    spill(path, "GIF89a", 6);
    assert_int_equal(mx_png_read_text(path, "k", &out, NULL), MX_EFORMAT);
    unlink(path);
    assert_int_equal(mx_png_read_text(path, "k", &out, NULL), MX_ENOENT);
    free(b);
    free(c);
    mx_image_free(&img);
}

/* The infotext written into a PNG by the writer comes back through the reader and parser. */
static void test_png_infotext_roundtrip(void **state) {
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "c.png");
    struct mx_image img = small_image();
    struct mx_sd_infotext a, b;
    fill_example(&a);
    free(a.prompt);
    a.prompt = strdup("\xe7\x8c\xab in a hat");
    char *s = format(&a);
    struct mx_err err = {0};
    assert_int_equal(mx_image_save_png_text(&img, path, "parameters", s, &err), 0);
    char *back = NULL;
    assert_int_equal(mx_png_read_text(path, "parameters", &back, &err), 0);
    assert_string_equal(back, s);
    parse(back, &b);
    assert_string_equal(b.prompt, a.prompt);
    assert_int_equal(b.seed, 42);
    free(s);
    free(back);
    mx_sd_infotext_free(&a);
    mx_sd_infotext_free(&b);
    mx_image_free(&img);
    unlink(path);
}

/* ---- SHA-256 and the model hash ------------------------------------------------------------ */

/* FIPS 180-4 / NIST CAVP vectors through both block functions, and split updates (every split
 * point of a 200-byte message) equal to one-shot hashing. */
static void test_sha256(void **state) {
    (void)state;
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    printf("SHA-NI available: %s\n", mx_sha256_hw() ? "yes" : "no");
    for (int portable = 0; portable <= 1; portable++) {
        mx_sha256_force_portable(portable);
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            mx_sha256_hex(v[i].msg, strlen(v[i].msg), hex);
            assert_string_equal(hex, v[i].hex);
        }
        // One million 'a' in uneven pieces.
        struct mx_sha256 s;
        uint8_t d[32];
        char *a = malloc(1000000);
        memset(a, 'a', 1000000);
        mx_sha256_init(&s);
        for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 1000 + 1)
            mx_sha256_update(&s, a + off, off + step > 1000000 ? 1000000 - off : step);
        mx_sha256_final(&s, d);
        mx_sha256_to_hex(d, hex);
        assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        free(a);
        uint8_t msg[200];
        uint64_t seed = 3;
        for (int i = 0; i < 200; i++)
            msg[i] = (uint8_t)mx_test_rand(&seed);
        char whole[65];
        mx_sha256_hex(msg, sizeof msg, whole);
        for (size_t cut = 0; cut <= sizeof msg; cut++) {
            mx_sha256_init(&s);
            mx_sha256_update(&s, msg, cut);
            mx_sha256_update(&s, msg + cut, sizeof msg - cut);
            mx_sha256_final(&s, d);
            mx_sha256_to_hex(d, hex);
            assert_string_equal(hex, whole);
        }
    }
    mx_sha256_force_portable(0);
    // Both paths agree on random lengths (the hardware one, where there is one).
    uint64_t seed = 11;
    for (int it = 0; it < 50; it++) {
        size_t n = mx_test_rand(&seed) % 5000;
        uint8_t *b = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            b[i] = (uint8_t)mx_test_rand(&seed);
        char h1[65], h2[65];
        mx_sha256_hex(b, n, h1);
        mx_sha256_force_portable(1);
        mx_sha256_hex(b, n, h2);
        mx_sha256_force_portable(0);
        assert_string_equal(h1, h2);
        free(b);
    }
}

/* Runs a shell command, asserting it succeeds. */
static void sh(const char *cmd) {
    assert_int_equal(system(cmd), 0);
}

/* mx_sd_model_hash: AutoV2 of the file, cached by path + size + mtime in
 * $XDG_CACHE_HOME/mixel/model_hashes.json, recomputed when the file changes, robust to a broken
 * cache; a diffusers folder hashes its UNet file. */
static void test_model_hash(void **state) {
    (void)state;
    char dir[512], path[600], cache[600], cmd[2048];
    tmp_path(dir, sizeof dir, "hash");
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/xdg' '%s/m/unet'", dir, dir, dir);
    sh(cmd);
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    snprintf(cache, sizeof cache, "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", cache, 1);

    char h[11], full[65];
    bool cached = true;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_model_sha256(path, full, &cached, &err), 0);
    assert_false(cached);
    assert_string_equal(full, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(mx_sd_model_sha256(path, full, &cached, &err), 0);
    assert_true(cached);
    assert_int_equal(mx_sd_model_hash(path, h, &err), 0);
    assert_string_equal(h, "ba7816bf8f");
    snprintf(cache, sizeof cache, "%s/xdg/mixel/model_hashes.json", dir);
    assert_int_equal(access(cache, R_OK), 0);

    // A wrong digest planted in the cache is what comes back while size and mtime match: proof
    // that the file is not read again...
    snprintf(cmd, sizeof cmd, "sed -i 's/ba7816bf8f01/0123456789ab/' '%s'", cache);
    sh(cmd);
    assert_int_equal(mx_sd_model_hash(path, h, &err), 0);
    assert_string_equal(h, "0123456789");
    // ...and a new mtime (same size) or new content makes it hash again.
    snprintf(cmd, sizeof cmd, "touch -d '2001-02-03 04:05:06' '%s'", path);
    sh(cmd);
    assert_int_equal(mx_sd_model_sha256(path, full, &cached, &err), 0);
    assert_false(cached);
    assert_string_equal(full, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    f = fopen(path, "wb");
    fputs("", f);
    fclose(f);
    assert_int_equal(mx_sd_model_hash(path, h, &err), 0);
    assert_string_equal(h, "e3b0c44298");

    // A broken cache file is ignored and replaced.
    f = fopen(cache, "wb");
    fputs("{\"sha256\": [1, 2", f);
    fclose(f);
    assert_int_equal(mx_sd_model_sha256(path, full, &cached, &err), 0);
    assert_false(cached);
    assert_int_equal(mx_sd_model_sha256(path, full, &cached, &err), 0);
    assert_true(cached);

    // Diffusers folder: the UNet file's hash; a folder without one is refused.
    snprintf(cmd, sizeof cmd, "printf abc > '%s/m/unet/diffusion_pytorch_model.fp16.safetensors'"
             " && echo '{}' > '%s/m/model_index.json'", dir, dir);
    sh(cmd);
    snprintf(path, sizeof path, "%s/m", dir);
    assert_int_equal(mx_sd_model_hash(path, h, &err), 0);
    assert_string_equal(h, "ba7816bf8f");
    snprintf(path, sizeof path, "%s/xdg", dir);
    mx_err_clear(&err);
    assert_int_equal(mx_sd_model_hash(path, h, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "diffusers"));
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    assert_int_equal(mx_sd_model_hash(path, h, NULL), MX_ENOENT);

    // No usable cache folder: the hash still comes back.
    setenv("XDG_CACHE_HOME", "/proc/mixel-no-such-dir", 1);
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    assert_int_equal(mx_sd_model_hash(path, h, &err), 0);
    assert_string_equal(h, "e3b0c44298");

    if (old)
        setenv("XDG_CACHE_HOME", old, 1);
    else
        unsetenv("XDG_CACHE_HOME");
    free(old);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    sh(cmd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_parse_a1111_docstring),
        cmocka_unit_test(test_parse_a1111_full),
        cmocka_unit_test(test_parse_rules),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_png_write_read),
        cmocka_unit_test(test_png_read_hostile),
        cmocka_unit_test(test_png_infotext_roundtrip),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_model_hash),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
