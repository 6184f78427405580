/* test_safetensors.c - safetensors reader/writer and diffusers folders: round trips of every
 * dtype and rank, name lookup, metadata, the folder API over a generated folder, and a corpus of
 * corrupt files (each must fail with MX_EFORMAT and a message, never crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/safetensors.h"
#include "core/base/util.h"
#include "tests/mx_test.h"

static struct mx_st *open_buf(const void *buf, size_t size) {
    struct mx_st *st = NULL;
    struct mx_err err = {0};
    int rc = mx_st_open_mem(buf, size, "t.safetensors", &st, &err);
    if (rc != 0)
        fprintf(stderr, "open failed: %s\n", mx_err_msg(&err, rc));
    assert_int_equal(rc, 0);
    return st;
}

static void test_dtype_table(void **state) {
    (void)state;
    assert_int_equal(mx_st_dtype_from_name("BF16"), MX_ST_BF16);
    assert_int_equal(mx_st_dtype_from_name("bf16"), -1); /* names are case-sensitive */
    assert_int_equal(mx_st_dtype_size(MX_ST_I64), 8);
    assert_int_equal(mx_st_dtype_size(MX_ST_DTYPE_COUNT), 0);
    assert_true(mx_st_dtype_is_float(MX_ST_F16));
    assert_false(mx_st_dtype_is_float(MX_ST_I64));
    assert_false(mx_st_dtype_is_float(MX_ST_BOOL));
    assert_int_equal(mx_st_dtype_to_type(MX_ST_BF16), 30);
    assert_int_equal(mx_st_dtype_to_type(MX_ST_U8), -1);
    assert_string_equal(mx_st_dtype_name(-1), "?");
    for (int d = 0; d < MX_ST_DTYPE_COUNT; d++)
        assert_int_equal(mx_st_dtype_from_name(mx_st_dtype_name(d)), d);
}

/* Every dtype at every rank 0..8 (and zero-size tensors), metadata, 300 names found by lookup. */
static void test_roundtrip(void **state) {
    (void)state;
    uint64_t seed = 7;
    struct mx_st_writer *w = mx_st_writer_new();
    assert_int_equal(mx_st_writer_set_meta(w, "format", "pt"), 0);
    assert_int_equal(mx_st_writer_set_meta(w, "note", "h\xc3\xa9 \"quoted\"\n"), 0);
    assert_int_equal(mx_st_writer_set_meta(w, "format", "pt2"), 0); /* replaces */
    enum { N = 300 };
    static unsigned char *data[N];
    static size_t sizes[N];
    static int64_t shapes[N][MX_ST_MAX_DIMS];
    for (int i = 0; i < N; i++) {
        int dt = i % MX_ST_DTYPE_COUNT, nd = i % (MX_ST_MAX_DIMS + 1);
        size_t nb = mx_st_dtype_size(dt);
        for (int d = 0; d < nd; d++) {
            shapes[i][d] = 1 + (int64_t)(mx_test_rand(&seed) % 3);
            if (i % 37 == 5 && d == 0)
                shapes[i][d] = 0; /* zero-size */
            nb *= (size_t)shapes[i][d];
        }
        sizes[i] = nb;
        data[i] = malloc(nb + 1);
        for (size_t k = 0; k < nb; k++)
            data[i][k] = (unsigned char)mx_test_rand(&seed);
        char name[64];
        snprintf(name, sizeof name, "model.layer.%d.%x.weight", i, (unsigned)(i * 2654435761u));
        assert_int_equal(mx_st_writer_add_tensor(w, name, dt, nd, shapes[i], data[i]), 0);
    }
    int64_t sh = 2;
    assert_int_equal(mx_st_writer_add_tensor(w, "model.layer.0.0.weight", MX_ST_F32, 1, &sh,
                                             data[0]), MX_EINVAL); /* duplicate */
    assert_int_equal(mx_st_writer_add_tensor(w, "x", MX_ST_DTYPE_COUNT, 1, &sh, data[0]),
                     MX_EINVAL);
    assert_int_equal(mx_st_writer_add_tensor(w, "__metadata__", MX_ST_F32, 1, &sh, data[0]),
                     MX_EINVAL);
    void *buf;
    size_t size;
    struct mx_err err = {0};
    assert_int_equal(mx_st_writer_write_mem(w, &buf, &size, &err), 0);
    struct mx_st *st = open_buf(buf, size);
    assert_int_equal(mx_st_data_offset(st) % 8, 0);
    assert_int_equal(mx_st_n_tensors(st), N);
    assert_int_equal(mx_st_file_size(st), size);
    for (int i = 0; i < N; i++) {
        const struct mx_st_tensor *t = mx_st_tensor(st, i);
        char name[64];
        snprintf(name, sizeof name, "model.layer.%d.%x.weight", i, (unsigned)(i * 2654435761u));
        assert_string_equal(t->name, name); /* header order is insertion order */
        assert_ptr_equal(mx_st_find_tensor(st, name), t);
        assert_int_equal(t->dtype, i % MX_ST_DTYPE_COUNT);
        assert_int_equal(t->n_dims, i % (MX_ST_MAX_DIMS + 1));
        int64_t nel = 1;
        for (int d = 0; d < t->n_dims; d++) {
            assert_int_equal(t->shape[d], shapes[i][d]);
            nel *= shapes[i][d];
        }
        assert_int_equal(t->n_elements, nel);
        assert_int_equal(t->nbytes, sizes[i]);
        if (sizes[i])
            assert_memory_equal(t->data, data[i], sizes[i]);
        int64_t ne[4];
        bool ok = mx_st_tensor_ne(t, ne);
        assert_int_equal(ok, t->n_dims <= 4);
        if (t->n_dims >= 1)
            assert_int_equal(ne[0], t->shape[t->n_dims - 1]);
    }
    assert_null(mx_st_find_tensor(st, "model.layer.300"));
    assert_null(mx_st_find_tensor(st, ""));
    assert_null(mx_st_tensor(st, N));
    assert_int_equal(mx_st_n_meta(st), 2);
    assert_string_equal(mx_st_get_meta(st, "format"), "pt2");
    assert_string_equal(mx_st_get_meta(st, "note"), "h\xc3\xa9 \"quoted\"\n");
    assert_string_equal(mx_st_meta_key(st, 1), "note");
    assert_null(mx_st_get_meta(st, "absent"));
    mx_st_close(st);
    free(buf);
    for (int i = 0; i < N; i++)
        free(data[i]);
    mx_st_writer_free(w);
    mx_st_close(NULL);
    mx_st_writer_free(NULL);
}

/* Writes a small safetensors file with the given tensors (f32 values i*scale). */
static void write_st(const char *path, const char *const *names, int n, float scale) {
    struct mx_st_writer *w = mx_st_writer_new();
    for (int i = 0; i < n; i++) {
        float v[6];
        for (int k = 0; k < 6; k++)
            v[k] = (float)(i * 10 + k) * scale;
        int64_t shape[2] = {2, 3};
        assert_int_equal(mx_st_writer_add_tensor(w, names[i], MX_ST_F32, 2, shape, v), 0);
    }
    struct mx_err err = {0};
    int rc = mx_st_writer_write(w, path, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    mx_st_writer_free(w);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_file_and_folder(void **state) {
    (void)state;
    char dir[] = "/tmp/mx_test_st_XXXXXX", p[256];
    assert_non_null(mkdtemp(dir));
    /* single file */
    snprintf(p, sizeof p, "%s/one.safetensors", dir);
    const char *names[] = {"conv_in.weight", "conv_in.bias"};
    write_st(p, names, 2, 1.0f);
    struct mx_st *st = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_st_open(p, &st, &err), 0);
    assert_true(((const float *)mx_st_find_tensor(st, "conv_in.bias")->data)[5] == 15.0f);
    assert_string_equal(mx_st_path(st), p);
    mx_st_close(st);
    unlink(p);

    /* diffusers layout */
    const char *unet[] = {"conv_in.weight", "time_embedding.linear_1.weight"};
    const char *vae[] = {"decoder.conv_in.weight"};
    const char *te[] = {"text_model.embeddings.token_embedding.weight"};
    snprintf(p, sizeof p, "%s/unet", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/vae", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/text_encoder", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    write_st(p, unet, 2, 1.0f);
    snprintf(p, sizeof p, "%s/unet/config.json", dir);
    write_text(p, "{\"in_channels\": 4, \"block_out_channels\": [320, 640, 1280, 1280]}");
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.fp16.safetensors", dir);
    write_st(p, vae, 1, 2.0f);
    snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", dir);
    write_st(p, te, 1, 3.0f);
    snprintf(p, sizeof p, "%s/model_index.json", dir);
    write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\"}");

    struct mx_st_folder *f = NULL;
    assert_int_equal(mx_st_folder_open(dir, &f, &err), 0);
    assert_string_equal(mx_st_folder_path(f), dir);
    assert_non_null(mx_st_folder_file(f, "unet"));
    assert_non_null(mx_st_folder_file(f, "vae"));
    assert_null(mx_st_folder_file(f, "text_encoder_2"));
    assert_null(mx_st_folder_file(f, "nonsense"));
    const struct mx_st_tensor *t = mx_st_folder_find(f, "vae", "decoder.conv_in.weight");
    assert_non_null(t);
    assert_true(((const float *)t->data)[1] == 2.0f);
    t = mx_st_folder_find(f, "text_encoder", "text_model.embeddings.token_embedding.weight");
    assert_true(((const float *)t->data)[2] == 6.0f);
    assert_null(mx_st_folder_find(f, "unet", "decoder.conv_in.weight"));
    const json_t *cfg = mx_st_folder_config(f, "unet");
    assert_int_equal(json_integer_value(json_object_get(cfg, "in_channels")), 4);
    assert_int_equal(json_array_size(json_object_get(cfg, "block_out_channels")), 4);
    assert_null(mx_st_folder_config(f, "vae")); /* no config.json there */
    assert_string_equal(json_string_value(json_object_get(mx_st_folder_config(f, NULL),
                                                          "_class_name")),
                        "StableDiffusionPipeline");
    mx_st_folder_close(f);
    mx_st_folder_close(NULL);

    /* a bad config and a corrupt weights file both fail with the file's name */
    snprintf(p, sizeof p, "%s/unet/config.json", dir);
    write_text(p, "{\"in_channels\": 4,");
    assert_int_equal(mx_st_folder_open(dir, &f, &err), MX_EFORMAT);
    assert_null(f);
    assert_non_null(strstr(err.msg, "unet/config.json: bad JSON"));
    unlink(p);
    mx_err_clear(&err);
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.fp16.safetensors", dir);
    write_text(p, "\x05\0\0\0\0\0\0\0{\"a\":");
    assert_int_equal(mx_st_folder_open(dir, &f, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "vae/diffusion_pytorch_model.fp16.safetensors: "));
    mx_err_clear(&err);

    /* not a folder / an empty folder */
    snprintf(p, sizeof p, "%s/nope", dir);
    assert_int_equal(mx_st_folder_open(p, &f, &err), MX_ENOENT);
    mx_err_clear(&err);
    mkdir(p, 0755);
    assert_int_equal(mx_st_folder_open(p, &f, &err), MX_ENOENT);
    assert_non_null(strstr(err.msg, "not a diffusers folder"));
    rmdir(p);

    /* clean up */
    const char *files[] = {"unet/diffusion_pytorch_model.safetensors",
                           "vae/diffusion_pytorch_model.fp16.safetensors",
                           "text_encoder/model.safetensors", "model_index.json", "unet", "vae",
                           "text_encoder"};
    for (size_t i = 0; i < MX_ARRAY_LEN(files); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (remove(p) != 0)
            fprintf(stderr, "cannot remove %s\n", p);
    }
    assert_int_equal(rmdir(dir), 0); /* nothing else (no temp files) was left */
}

/* ---- corrupt files ---------------------------------------------------------------------- */

/* Builds 8-byte length + header text (hlen overrides the length when nonzero) + data bytes. */
static unsigned char *mk(const char *json, size_t data, uint64_t hlen, size_t *size) {
    size_t n = strlen(json);
    *size = 8 + n + data;
    unsigned char *p = calloc(1, *size);
    uint64_t h = hlen ? hlen : n;
    memcpy(p, &h, 8);
    memcpy(p + 8, json, n);
    return p;
}

struct bad_case {
    const char *what;
    const char *json;
    size_t data;
    uint64_t hlen;
    const char *needle;
};

#define T(dt, shape, offs) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const struct bad_case bad_cases[] = {
    {"header longer than file", "{}", 0, 100, "header length 100 exceeds the file"},
    {"header length 2^63", "{}", 0, (uint64_t)1 << 63, "exceeds the file"},
    {"not JSON", "GGUF\x03\0\0\0", 0, 0, "does not start with '{'"},
    {"truncated JSON", "{\"a\": {\"dtype\": \"F32\"", 0, 0, "bad JSON header"},
    {"trailing garbage", "{} xx", 0, 0, "bad JSON header"},
    {"duplicate key", "{\"w\":" T("F32", "[1]", "[0,4]") ",\"w\":" T("F32", "[1]", "[4,8]") "}",
     8, 0, "bad JSON header: duplicate object key"},
    {"entry not object", "{\"w\": [1,2]}", 0, 0, "'w': entry is not an object"},
    {"missing dtype", "{\"w\": {\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "needs dtype"},
    {"dtype not string", "{\"w\": {\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "needs dtype"},
    {"unknown dtype", "{\"w\":" T("Q4_0", "[1]", "[0,4]") "}", 4, 0, "unknown dtype 'Q4_0'"},
    {"shape not array", "{\"w\":" T("F32", "4", "[0,16]") "}", 16, 0, "needs dtype"},
    {"negative shape", "{\"w\":" T("F32", "[-1]", "[0,4]") "}", 4, 0, "shape[0]"},
    {"real shape", "{\"w\":" T("F32", "[1.5]", "[0,4]") "}", 4, 0, "shape[0]"},
    {"9 dims", "{\"w\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, 0, "9 dimensions"},
    {"count overflow", "{\"w\":" T("F32", "[4294967296,4294967296,4]", "[0,4]") "}", 4, 0,
     "element count overflows"},
    {"bytes overflow", "{\"w\":" T("I64", "[4294967296,268435456,4]", "[0,4]") "}", 4, 0,
     "hold 4 bytes"},
    {"one offset", "{\"w\":" T("F32", "[1]", "[0]") "}", 4, 0, "data_offsets must be"},
    {"begin > end", "{\"w\":" T("F32", "[1]", "[8,4]") "}", 8, 0, "data_offsets must be"},
    {"size mismatch", "{\"w\":" T("F32", "[2]", "[0,4]") "}", 8, 0, "hold 4 bytes, but 2 F32"},
    {"past end", "{\"unet.w\":" T("F16", "[4]", "[8,16]") "}", 12, 0,
     "tensor 'unet.w' extends past end of file"},
    {"offset 2^62", "{\"w\":" T("U8", "[4]", "[4611686018427387904,4611686018427387908]") "}", 4,
     0, "extends past end of file"},
    {"overlap", "{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", 12, 0,
     "tensors 'a' and 'b' overlap"},
    {"metadata not object", "{\"__metadata__\": [1]}", 0, 0, "__metadata__ is not an object"},
    {"metadata value number", "{\"__metadata__\": {\"k\": 1}}", 0, 0, "'k' is not a string"},
    {"bad UTF-8 key", "{\"\xff\xfe\":" T("F32", "[1]", "[0,4]") "}", 4, 0, "bad JSON header"},
    {"NUL escape", "{\"a\\u0000b\":" T("F32", "[1]", "[0,4]") "}", 4, 0, "bad JSON header"},
    {"huge number", "{\"w\":" T("F32", "[1e30]", "[0,4]") "}", 4, 0, "shape[0]"},
    {"integer too big", "{\"w\":" T("F32", "[99999999999999999999]", "[0,4]") "}", 4, 0,
     "bad JSON header"},
    {"escape in name", "{\"\\u001b[2J\":" T("F32", "[9]", "[0,36]") "}", 4, 0, "'?[2J'"},
    {"array root", "[]", 0, 0, "does not start with '{'"},
    {"header length 0", "", 0, 0, "does not start with '{'"},
};

static void test_corrupt_cases(void **state) {
    (void)state;
    int n = 0;
    for (size_t k = 0; k < MX_ARRAY_LEN(bad_cases); k++) {
        const struct bad_case *c = &bad_cases[k];
        if (!c->needle)
            continue;
        size_t size;
        unsigned char *buf = mk(c->json, c->data, c->hlen, &size);
        struct mx_st *st = (struct mx_st *)1;
        struct mx_err err = {0};
        int rc = mx_st_open_mem(buf, size, "m.safetensors", &st, &err);
        if (rc != MX_EFORMAT || !strstr(err.msg, c->needle))
            fprintf(stderr, "case '%s': rc %d, msg '%s'\n", c->what, rc, err.msg);
        assert_int_equal(rc, MX_EFORMAT);
        assert_null(st);
        assert_true(strncmp(err.msg, "m.safetensors: ", 15) == 0);
        assert_non_null(strstr(err.msg, c->needle));
        for (const char *m = err.msg; *m; m++)
            assert_true((unsigned char)*m >= 0x20 && (unsigned char)*m < 0x7f);
        free(buf);
        n++;
    }
    /* tiny files */
    for (size_t len = 0; len < 8; len++) {
        unsigned char z[8] = {0};
        struct mx_st *st;
        struct mx_err err = {0};
        assert_int_equal(mx_st_open_mem(z, len, "m.safetensors", &st, &err), MX_EFORMAT);
        assert_non_null(strstr(err.msg, "not a safetensors file"));
        n++;
    }
    /* nesting 100k deep must not blow the stack (jansson caps depth) */
    size_t deep = 100000, size;
    char *json = malloc(deep + 16);
    memcpy(json, "{\"a\":", 5);
    memset(json + 5, '[', deep);
    json[5 + deep] = '\0';
    unsigned char *buf = mk(json, 0, 0, &size);
    struct mx_st *st;
    struct mx_err err = {0};
    assert_int_equal(mx_st_open_mem(buf, size, "m.safetensors", &st, &err), MX_EFORMAT);
    free(buf);
    free(json);
    printf("%d corrupt safetensors files rejected\n", n + 1);
}

/* Every cut of a valid file before the end of its data fails cleanly. */
static void test_truncate_everywhere(void **state) {
    (void)state;
    struct mx_st_writer *w = mx_st_writer_new();
    assert_int_equal(mx_st_writer_set_meta(w, "format", "pt"), 0);
    float v[12] = {0};
    int64_t s2[2] = {3, 4}, s1 = 5;
    assert_int_equal(mx_st_writer_add_tensor(w, "a.weight", MX_ST_F32, 2, s2, v), 0);
    assert_int_equal(mx_st_writer_add_tensor(w, "a.bias", MX_ST_F16, 1, &s1, v), 0);
    void *buf;
    size_t size;
    assert_int_equal(mx_st_writer_write_mem(w, &buf, &size, NULL), 0);
    mx_st_close(open_buf(buf, size));
    int failed = 0;
    for (size_t cut = 0; cut < size; cut++) {
        void *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        struct mx_st *st;
        struct mx_err err = {0};
        assert_int_equal(mx_st_open_mem(copy, cut, "cut.safetensors", &st, &err), MX_EFORMAT);
        assert_non_null(strstr(err.msg, "cut.safetensors: "));
        free(copy);
        failed++;
    }
    printf("%d truncations rejected\n", failed);
    free(buf);
    mx_st_writer_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_file_and_folder),
        cmocka_unit_test(test_corrupt_cases),
        cmocka_unit_test(test_truncate_everywhere),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
