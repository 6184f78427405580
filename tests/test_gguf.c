/* test_gguf.c - GGUF reader/writer: round trips of every metadata and tensor type (v2, v3),
 * alignment variants, the real files in ../shared/models, and a corpus of corrupt files built
 * byte by byte (every one must fail with the right code and a message, never crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "tests/mx_test.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static struct mx_gguf *open_buf(const void *buf, size_t size) {
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    int rc = mx_gguf_open_mem(buf, size, "t.gguf", &g, &err);
    if (rc != 0)
        fprintf(stderr, "open failed: %s\n", mx_err_msg(&err, rc));
    assert_int_equal(rc, 0);
    assert_non_null(g);
    return g;
}

/* Writes w in memory with the given version and opens the result (buffer returned too). */
static struct mx_gguf *roundtrip(struct mx_gguf_writer *w, uint32_t version, void **buf) {
    size_t size;
    struct mx_err err = {0};
    int rc = mx_gguf_writer_write_mem(w, version, buf, &size, &err);
    assert_int_equal(rc, 0);
    struct mx_gguf *g = open_buf(*buf, size);
    assert_int_equal(mx_gguf_version(g), version);
    assert_int_equal(mx_gguf_file_size(g), size);
    return g;
}

/* Values for the all-types test, in one place so the checks mirror the sets. */
static const uint8_t arr_u8[] = {0, 1, 255};
static const int8_t arr_i8[] = {-128, 0, 127};
static const uint16_t arr_u16[] = {0, 65535};
static const int16_t arr_i16[] = {-32768, 32767, 5};
static const uint32_t arr_u32[] = {0, 4294967295u, 12345};
static const int32_t arr_i32[] = {INT32_MIN, INT32_MAX, -1};
static const float arr_f32[] = {-1.5f, 0.0f, 3.25e10f};
static const uint8_t arr_bool[] = {1, 0, 1, 1};
static const uint64_t arr_u64[] = {UINT64_MAX, 0};
static const int64_t arr_i64[] = {INT64_MIN, INT64_MAX};
static const double arr_f64[] = {1e300, -2.5};

static void fill_all_types(struct mx_gguf_writer *w) {
    assert_int_equal(mx_gguf_writer_set_u8(w, "t.u8", 200), 0);
    assert_int_equal(mx_gguf_writer_set_i8(w, "t.i8", -100), 0);
    assert_int_equal(mx_gguf_writer_set_u16(w, "t.u16", 60000), 0);
    assert_int_equal(mx_gguf_writer_set_i16(w, "t.i16", -30000), 0);
    assert_int_equal(mx_gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    assert_int_equal(mx_gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    assert_int_equal(mx_gguf_writer_set_u64(w, "t.u64", UINT64_MAX), 0);
    assert_int_equal(mx_gguf_writer_set_i64(w, "t.i64", INT64_MIN), 0);
    assert_int_equal(mx_gguf_writer_set_f32(w, "t.f32", 0.1f), 0);
    assert_int_equal(mx_gguf_writer_set_f64(w, "t.f64", 0.1), 0);
    assert_int_equal(mx_gguf_writer_set_bool(w, "t.true", true), 0);
    assert_int_equal(mx_gguf_writer_set_bool(w, "t.false", false), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo \xe2\x96\x81world"), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "t.empty", ""), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.u8", MX_GGUF_UINT8, arr_u8, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.i8", MX_GGUF_INT8, arr_i8, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.u16", MX_GGUF_UINT16, arr_u16, 2), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.i16", MX_GGUF_INT16, arr_i16, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.u32", MX_GGUF_UINT32, arr_u32, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.i32", MX_GGUF_INT32, arr_i32, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.f32", MX_GGUF_FLOAT32, arr_f32, 3), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.bool", MX_GGUF_BOOL, arr_bool, 4), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.u64", MX_GGUF_UINT64, arr_u64, 2), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.i64", MX_GGUF_INT64, arr_i64, 2), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.f64", MX_GGUF_FLOAT64, arr_f64, 2), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "a.empty", MX_GGUF_INT32, NULL, 0), 0);
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "<0x0A>"};
    assert_int_equal(mx_gguf_writer_set_arr_str(w, "a.str", strs, 4), 0);
    assert_int_equal(mx_gguf_writer_set_arr_str(w, "a.str_empty", NULL, 0), 0);

    /* nested: [[1,2,3],[],[["x",""]]]-like trees: array of u8 arrays, and a 3-level tree */
    struct mx_gguf_value inner[2] = {{.type = MX_GGUF_ARRAY}, {.type = MX_GGUF_ARRAY}};
    inner[0].v.arr.elem_type = MX_GGUF_UINT8;
    inner[0].v.arr.n = 3;
    inner[0].v.arr.raw = arr_u8;
    inner[1].v.arr.elem_type = MX_GGUF_UINT8;
    inner[1].v.arr.n = 0;
    struct mx_gguf_value outer = {.type = MX_GGUF_ARRAY};
    outer.v.arr.elem_type = MX_GGUF_ARRAY;
    outer.v.arr.n = 2;
    outer.v.arr.items = inner;
    assert_int_equal(mx_gguf_writer_set_value(w, "n.arr_of_u8", &outer), 0);

    struct mx_gguf_value s2[2] = {{.type = MX_GGUF_STRING}, {.type = MX_GGUF_STRING}};
    s2[0].v.str.data = "x";
    s2[0].v.str.len = 1;
    s2[1].v.str.data = "";
    s2[1].v.str.len = 0;
    struct mx_gguf_value l2 = {.type = MX_GGUF_ARRAY};
    l2.v.arr.elem_type = MX_GGUF_STRING;
    l2.v.arr.n = 2;
    l2.v.arr.items = s2;
    struct mx_gguf_value l1 = {.type = MX_GGUF_ARRAY};
    l1.v.arr.elem_type = MX_GGUF_ARRAY;
    l1.v.arr.n = 1;
    l1.v.arr.items = &l2;
    struct mx_gguf_value l0 = {.type = MX_GGUF_ARRAY};
    l0.v.arr.elem_type = MX_GGUF_ARRAY;
    l0.v.arr.n = 1;
    l0.v.arr.items = &l1;
    assert_int_equal(mx_gguf_writer_set_value(w, "n.deep", &l0), 0);
    struct mx_gguf_value e = {.type = MX_GGUF_ARRAY};
    e.v.arr.elem_type = MX_GGUF_ARRAY;
    assert_int_equal(mx_gguf_writer_set_value(w, "n.empty", &e), 0);
}

static void check_all_types(const struct mx_gguf *g) {
    struct mx_err err = {0};
    int64_t i;
    uint32_t u;
    double f;
    bool b;
    const char *s;
    assert_int_equal(mx_gguf_n_kv(g), 31);
    assert_int_equal(mx_gguf_get_int(g, "t.u8", &i, &err), 0);
    assert_int_equal(i, 200);
    assert_int_equal(mx_gguf_get(g, "t.u8")->type, MX_GGUF_UINT8);
    assert_int_equal(mx_gguf_get_int(g, "t.i8", &i, &err), 0);
    assert_int_equal(i, -100);
    assert_int_equal(mx_gguf_get_int(g, "t.u16", &i, &err), 0);
    assert_int_equal(i, 60000);
    assert_int_equal(mx_gguf_get_int(g, "t.i16", &i, &err), 0);
    assert_int_equal(i, -30000);
    assert_int_equal(mx_gguf_get_u32(g, "t.u32", &u, &err), 0);
    assert_true(u == 4000000000u);
    assert_int_equal(mx_gguf_get_int(g, "t.i32", &i, &err), 0);
    assert_true(i == -2000000000);
    assert_true(mx_gguf_get(g, "t.u64")->v.u64 == UINT64_MAX);
    assert_int_equal(mx_gguf_get_int(g, "t.i64", &i, &err), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(mx_gguf_get_float(g, "t.f32", &f, &err), 0);
    assert_true(f == (double)0.1f);
    assert_int_equal(mx_gguf_get_float(g, "t.f64", &f, &err), 0);
    assert_true(f == 0.1);
    assert_int_equal(mx_gguf_get_bool(g, "t.true", &b, &err), 0);
    assert_true(b);
    assert_int_equal(mx_gguf_get_bool(g, "t.false", &b, &err), 0);
    assert_false(b);
    assert_int_equal(mx_gguf_get_str(g, "t.str", &s, &err), 0);
    assert_string_equal(s, "h\xc3\xa9llo \xe2\x96\x81world");
    assert_int_equal(mx_gguf_get_str(g, "t.empty", &s, &err), 0);
    assert_string_equal(s, "");
    assert_int_equal(mx_gguf_get(g, "t.empty")->v.str.len, 0);
    assert_int_equal(err.code, 0);

    /* numeric arrays: raw bytes exactly as written, element getters decode them */
    const struct {
        const char *key;
        enum mx_gguf_vtype t;
        const void *data;
        uint64_t n;
        size_t esz;
    } arrs[] = {
        {"a.u8", MX_GGUF_UINT8, arr_u8, 3, 1},     {"a.i8", MX_GGUF_INT8, arr_i8, 3, 1},
        {"a.u16", MX_GGUF_UINT16, arr_u16, 2, 2},  {"a.i16", MX_GGUF_INT16, arr_i16, 3, 2},
        {"a.u32", MX_GGUF_UINT32, arr_u32, 3, 4},  {"a.i32", MX_GGUF_INT32, arr_i32, 3, 4},
        {"a.f32", MX_GGUF_FLOAT32, arr_f32, 3, 4}, {"a.bool", MX_GGUF_BOOL, arr_bool, 4, 1},
        {"a.u64", MX_GGUF_UINT64, arr_u64, 2, 8},  {"a.i64", MX_GGUF_INT64, arr_i64, 2, 8},
        {"a.f64", MX_GGUF_FLOAT64, arr_f64, 2, 8}, {"a.empty", MX_GGUF_INT32, NULL, 0, 4},
    };
    for (size_t k = 0; k < MX_ARRAY_LEN(arrs); k++) {
        const struct mx_gguf_value *a = NULL;
        assert_int_equal(mx_gguf_get_arr(g, arrs[k].key, arrs[k].t, &a, &err), 0);
        assert_int_equal(a->v.arr.n, arrs[k].n);
        if (arrs[k].n)
            assert_memory_equal(a->v.arr.raw, arrs[k].data, arrs[k].n * arrs[k].esz);
    }
    const struct mx_gguf_value *a = mx_gguf_get(g, "a.i16");
    assert_int_equal(mx_gguf_arr_int(a, 0), -32768);
    assert_true(mx_gguf_arr_float(a, 2) == 5.0);
    assert_int_equal(mx_gguf_arr_int(a, 3), 0); /* out of range */
    assert_true(mx_gguf_arr_float(mx_gguf_get(g, "a.f32"), 2) == (double)3.25e10f);
    assert_true(mx_gguf_arr_int(mx_gguf_get(g, "a.i64"), 0) == INT64_MIN);
    assert_true(mx_gguf_arr_float(mx_gguf_get(g, "a.f64"), 0) == 1e300);
    /* float -> int saturates and truncates toward zero (no UB on hostile values) */
    assert_true(mx_gguf_arr_int(mx_gguf_get(g, "a.f64"), 0) == INT64_MAX);
    assert_int_equal(mx_gguf_arr_int(mx_gguf_get(g, "a.f64"), 1), -2);

    assert_int_equal(mx_gguf_get_arr(g, "a.str", MX_GGUF_STRING, &a, &err), 0);
    assert_int_equal(a->v.arr.n, 4);
    assert_string_equal(a->v.arr.items[0].v.str.data, "<unk>");
    assert_string_equal(a->v.arr.items[1].v.str.data, "");
    assert_string_equal(a->v.arr.items[2].v.str.data, "\xe2\x96\x81the");
    assert_int_equal(a->v.arr.items[3].v.str.len, 6);
    assert_int_equal(mx_gguf_get_arr(g, "a.str_empty", MX_GGUF_STRING, &a, &err), 0);
    assert_int_equal(a->v.arr.n, 0);

    assert_int_equal(mx_gguf_get_arr(g, "n.arr_of_u8", MX_GGUF_ARRAY, &a, &err), 0);
    assert_int_equal(a->v.arr.n, 2);
    assert_int_equal(a->v.arr.items[0].v.arr.elem_type, MX_GGUF_UINT8);
    assert_int_equal(mx_gguf_arr_int(&a->v.arr.items[0], 2), 255);
    assert_int_equal(a->v.arr.items[1].v.arr.n, 0);
    a = mx_gguf_get(g, "n.deep");
    const struct mx_gguf_value *l2 = &a->v.arr.items[0].v.arr.items[0];
    assert_int_equal(l2->v.arr.elem_type, MX_GGUF_STRING);
    assert_string_equal(l2->v.arr.items[0].v.str.data, "x");
    assert_string_equal(l2->v.arr.items[1].v.str.data, "");
    assert_int_equal(mx_gguf_get(g, "n.empty")->v.arr.n, 0);
    assert_int_equal(err.code, 0);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_roundtrip_metadata(void **state) {
    (void)state;
    for (uint32_t version = 2; version <= 3; version++) {
        struct mx_gguf_writer *w = mx_gguf_writer_new();
        fill_all_types(w);
        void *buf;
        struct mx_gguf *g = roundtrip(w, version, &buf);
        check_all_types(g);
        assert_int_equal(mx_gguf_n_tensors(g), 0);

        /* oracle: the reader's value trees, fed back to a writer, reproduce the same bytes */
        struct mx_gguf_writer *w2 = mx_gguf_writer_new();
        for (int64_t i = 0; i < mx_gguf_n_kv(g); i++)
            assert_int_equal(mx_gguf_writer_set_value(w2, mx_gguf_kv_key(g, i),
                                                      mx_gguf_kv_value(g, i)), 0);
        void *buf2, *buf1;
        size_t size2, size1;
        assert_int_equal(mx_gguf_writer_write_mem(w2, version, &buf2, &size2, NULL), 0);
        assert_int_equal(mx_gguf_writer_write_mem(w, version, &buf1, &size1, NULL), 0);
        assert_int_equal(size1, size2);
        assert_memory_equal(buf1, buf2, size1);
        free(buf1);
        free(buf2);
        mx_gguf_writer_free(w2);
        mx_gguf_close(g);
        free(buf);
        mx_gguf_writer_free(w);
    }
}

static void test_getters_type_checks(void **state) {
    (void)state;
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    fill_all_types(w);
    void *buf;
    struct mx_gguf *g = roundtrip(w, 3, &buf);
    struct mx_err err = {0};
    int64_t i = 42;
    uint32_t u;
    const char *s;
    double f;
    assert_int_equal(mx_gguf_get_int(g, "no.such.key", &i, &err), MX_ENOENT);
    assert_int_equal(i, 42);
    assert_int_equal(err.code, 0); /* absent keys leave err alone */
    assert_int_equal(mx_gguf_get_str(g, "t.u32", &s, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "t.u32"));
    assert_non_null(strstr(err.msg, "string"));
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_get_u32(g, "t.i8", &u, &err), MX_EFORMAT); /* negative */
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_get_u32(g, "t.u64", &u, &err), MX_EFORMAT); /* too large */
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_get_float(g, "t.i32", &f, &err), MX_EFORMAT);
    mx_err_clear(&err);
    const struct mx_gguf_value *a;
    assert_int_equal(mx_gguf_get_arr(g, "a.f32", MX_GGUF_INT32, &a, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "float32"));
    assert_int_equal(mx_gguf_find_key(g, "t.str"), 12);
    assert_string_equal(mx_gguf_kv_key(g, 12), "t.str");
    assert_null(mx_gguf_kv_key(g, 31));
    assert_null(mx_gguf_kv_value(g, -1));
    assert_null(mx_gguf_get(g, NULL));
    assert_string_equal(mx_gguf_vtype_name(MX_GGUF_FLOAT64), "float64");
    assert_string_equal(mx_gguf_vtype_name(99), "unknown");
    mx_gguf_close(g);
    free(buf);

    /* replacing a key keeps one entry with the new value */
    assert_int_equal(mx_gguf_writer_set_u32(w, "t.u8", 7), 0);
    g = roundtrip(w, 3, &buf);
    assert_int_equal(mx_gguf_n_kv(g), 31);
    assert_int_equal(mx_gguf_get(g, "t.u8")->type, MX_GGUF_UINT32);
    mx_gguf_close(g);
    free(buf);
    mx_gguf_writer_free(w);
    mx_gguf_close(NULL);
    mx_gguf_writer_free(NULL);
}

static void test_roundtrip_tensor_types(void **state) {
    (void)state;
    uint64_t seed = 1;
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    int n = 0;
    /* every known type, with 1..4 dims; bytes are random (no dequantizing here) */
    unsigned char *data[MX_TYPE_COUNT] = {0};
    size_t sizes[MX_TYPE_COUNT] = {0};
    int64_t shapes[MX_TYPE_COUNT][4];
    for (int t = 0; t < MX_TYPE_COUNT; t++) {
        const struct mx_type_traits *tr = mx_type_traits(t);
        if (!tr)
            continue;
        int nd = 1 + n % 4;
        int64_t ne[4] = {tr->blck_size * (1 + n % 3), 3, 2, 1 + (n % 2)};
        size_t nb;
        assert_true(mx_row_size(t, ne[0], &nb));
        for (int d = 1; d < nd; d++)
            nb *= (size_t)ne[d];
        data[t] = malloc(nb);
        for (size_t k = 0; k < nb; k++)
            data[t][k] = (unsigned char)mx_test_rand(&seed);
        sizes[t] = nb;
        memcpy(shapes[t], ne, sizeof ne);
        char name[32];
        snprintf(name, sizeof name, "blk.%d.%s", n, tr->name);
        assert_int_equal(mx_gguf_writer_add_tensor(w, name, t, nd, ne, data[t]), 0);
        n++;
    }
    assert_true(n >= 19);
    /* zero-size tensor and a duplicate name */
    int64_t zero[2] = {0, 5};
    assert_int_equal(mx_gguf_writer_add_tensor(w, "empty", MX_TYPE_F32, 2, zero, NULL), 0);
    int64_t one = 32;
    assert_int_equal(mx_gguf_writer_add_tensor(w, "empty", MX_TYPE_F32, 1, &one, data[0]),
                     MX_EINVAL);
    int64_t bad = 33;
    assert_int_equal(mx_gguf_writer_add_tensor(w, "x", MX_TYPE_Q4_0, 1, &bad, data[0]),
                     MX_EINVAL);
    assert_int_equal(mx_gguf_writer_add_tensor(w, "x", 4, 1, &one, data[0]), MX_EINVAL);

    for (uint32_t version = 2; version <= 3; version++) {
        void *buf;
        struct mx_gguf *g = roundtrip(w, version, &buf);
        assert_int_equal(mx_gguf_n_tensors(g), n + 1);
        assert_int_equal(mx_gguf_data_offset(g) % 32, 0);
        int k = 0;
        for (int t = 0; t < MX_TYPE_COUNT; t++) {
            if (!data[t])
                continue;
            const struct mx_gguf_tensor *ti = mx_gguf_tensor(g, k);
            assert_int_equal(ti->type, t);
            assert_int_equal(ti->n_dims, 1 + k % 4);
            for (int d = 0; d < 4; d++)
                assert_int_equal(ti->ne[d], d < ti->n_dims ? shapes[t][d] : 1);
            assert_int_equal(ti->nbytes, sizes[t]);
            assert_int_equal(ti->offset % 32, 0);
            assert_memory_equal(ti->data, data[t], sizes[t]);
            assert_ptr_equal(mx_gguf_find_tensor(g, ti->name), ti);
            k++;
        }
        const struct mx_gguf_tensor *e = mx_gguf_find_tensor(g, "empty");
        assert_non_null(e);
        assert_int_equal(e->nbytes, 0);
        assert_null(mx_gguf_find_tensor(g, "missing"));
        assert_null(mx_gguf_tensor(g, n + 1));
        mx_gguf_close(g);
        free(buf);
    }
    for (int t = 0; t < MX_TYPE_COUNT; t++)
        free(data[t]);
    mx_gguf_writer_free(w);
}

static void test_alignment_variants(void **state) {
    (void)state;
    const uint32_t aligns[] = {1, 2, 8, 32, 64, 4096};
    float x[7] = {1, 2, 3, 4, 5, 6, 7};
    for (size_t k = 0; k < MX_ARRAY_LEN(aligns); k++) {
        struct mx_gguf_writer *w = mx_gguf_writer_new();
        assert_int_equal(mx_gguf_writer_set_u32(w, "general.alignment", aligns[k]), 0);
        assert_int_equal(mx_gguf_writer_set_str(w, "general.name", "odd"), 0);
        int64_t ne = 7;
        assert_int_equal(mx_gguf_writer_add_tensor(w, "a", MX_TYPE_F32, 1, &ne, x), 0);
        assert_int_equal(mx_gguf_writer_add_tensor(w, "b", MX_TYPE_F32, 1, &ne, x), 0);
        void *buf;
        struct mx_gguf *g = roundtrip(w, 3, &buf);
        assert_int_equal(mx_gguf_alignment(g), aligns[k]);
        assert_int_equal(mx_gguf_data_offset(g) % aligns[k], 0);
        const struct mx_gguf_tensor *b = mx_gguf_find_tensor(g, "b");
        assert_int_equal(b->offset, (28 + aligns[k] - 1) / aligns[k] * aligns[k]);
        assert_memory_equal(b->data, x, sizeof x);
        mx_gguf_close(g);
        free(buf);
        mx_gguf_writer_free(w);
    }
    /* the writer refuses alignments the reader would refuse */
    const int64_t bad[] = {0, 3, 48, -32};
    for (size_t k = 0; k < MX_ARRAY_LEN(bad); k++) {
        struct mx_gguf_writer *w = mx_gguf_writer_new();
        assert_int_equal(mx_gguf_writer_set_i64(w, "general.alignment", bad[k]), 0);
        void *buf;
        size_t size;
        struct mx_err err = {0};
        assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &err), MX_EINVAL);
        assert_non_null(strstr(err.msg, "alignment"));
        mx_gguf_writer_free(w);
    }
}

static void test_write_file_atomic(void **state) {
    (void)state;
    char dir[] = "/tmp/mx_test_gguf_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    fill_all_types(w);
    float x[32] = {0};
    x[3] = 1.0f;
    int64_t ne = 32;
    assert_int_equal(mx_gguf_writer_add_tensor(w, "x", MX_TYPE_F32, 1, &ne, x), 0);
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_writer_write(w, path, 2, &err), 0);
    assert_int_equal(mx_gguf_writer_write(w, path, 3, &err), 0); /* replaces */
    struct mx_gguf *g = NULL;
    assert_int_equal(mx_gguf_open(path, &g, &err), 0);
    check_all_types(g);
    assert_int_equal(mx_gguf_version(g), 3);
    assert_string_equal(mx_gguf_path(g), path);
    assert_true(((const float *)mx_gguf_find_tensor(g, "x")->data)[3] == 1.0f);
    mx_gguf_close(g);
    /* no temp file left beside it */
    DIR *d = opendir(dir);
    int entries = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);
    /* unwritable target: error, message names the path */
    char bad[80];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.gguf", dir);
    assert_int_equal(mx_gguf_writer_write(w, bad, 3, &err), MX_EIO);
    assert_non_null(strstr(err.msg, "no/such/dir"));
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_writer_write(w, path, 1, &err), MX_EINVAL);
    mx_gguf_writer_free(w);
    /* open errors */
    mx_err_clear(&err);
    snprintf(bad, sizeof bad, "%s/absent.gguf", dir);
    assert_int_equal(mx_gguf_open(bad, &g, &err), MX_ENOENT);
    assert_null(g);
    assert_non_null(strstr(err.msg, "absent.gguf"));
    mx_err_clear(&err);
    assert_int_equal(mx_gguf_open(dir, &g, &err), MX_EINVAL);
    mx_err_clear(&err);
    snprintf(bad, sizeof bad, "%s/empty.gguf", dir);
    FILE *f = fopen(bad, "wb");
    fclose(f);
    assert_int_equal(mx_gguf_open(bad, &g, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "empty.gguf"));
    unlink(bad);
    unlink(path);
    rmdir(dir);
}

/* Every model in ../shared/models opens, its tensors lie inside the file, and the key
 * facts llama.cpp relies on are there. */
static void test_shared_models(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared) {
        mx_test_skip("test_shared_models needs ../shared (set MX_SHARED)");
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models", shared);
    DIR *d = opendir(dir);
    if (!d)
        mx_test_skip("test_shared_models: no folder %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".gguf") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct mx_gguf *g = NULL;
        struct mx_err err = {0};
        int rc = mx_gguf_open(path, &g, &err);
        if (rc)
            fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, 0);
        const char *arch = NULL;
        assert_int_equal(mx_gguf_get_str(g, "general.architecture", &arch, &err), 0);
        const struct mx_gguf_value *tok;
        assert_int_equal(mx_gguf_get_arr(g, "tokenizer.ggml.tokens", MX_GGUF_STRING, &tok,
                                         &err), 0);
        assert_true(tok->v.arr.n > 0);
        size_t data_size = mx_gguf_file_size(g) - mx_gguf_data_offset(g);
        for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
            const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
            assert_true(t->offset + t->nbytes <= data_size);
            assert_int_equal(t->offset % mx_gguf_alignment(g), 0);
        }
        mx_gguf_close(g);
        n++;
    }
    closedir(d);
    printf("opened %d shared models\n", n);
    assert_true(n >= 1);
}

/* ---- corrupt files ---------------------------------------------------------------------- */

/* A byte builder for hand-made files. */
struct tb {
    unsigned char p[8192];
    size_t n;
};

static void b_raw(struct tb *b, const void *s, size_t n) {
    assert_true(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void b_u32(struct tb *b, uint32_t v) { b_raw(b, &v, 4); }
static void b_u64(struct tb *b, uint64_t v) { b_raw(b, &v, 8); }
static void b_str(struct tb *b, const char *s) {
    b_u64(b, strlen(s));
    b_raw(b, s, strlen(s));
}
static void b_pad(struct tb *b, size_t a) {
    while (b->n % a)
        b->p[b->n++] = 0;
}
static void b_head(struct tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(struct tb *b, const char *k, uint32_t v) {
    b_str(b, k);
    b_u32(b, MX_GGUF_UINT32);
    b_u32(b, v);
}
static void b_tinfo(struct tb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                    uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_zeros(struct tb *b, size_t n) {
    assert_true(b->n + n <= sizeof b->p);
    memset(b->p + b->n, 0, n);
    b->n += n;
}

/* A valid 2-tensor file: the base every "one thing wrong" case departs from. */
static void b_valid_tensors(struct tb *b, uint64_t off1, uint32_t type1, uint64_t ne0_1) {
    uint64_t ne[2] = {ne0_1, 2};
    uint64_t ne2[1] = {32};
    b_head(b, 3, 2, 1);
    b_kv_u32(b, "general.alignment", 32);
    b_tinfo(b, "tok_embd.weight", 2, ne, type1, 0);
    b_tinfo(b, "blk.3.ffn_up.weight", 1, ne2, MX_TYPE_F32, off1);
    b_pad(b, 32);
    b_zeros(b, 256 + 128);
}

struct bad_case {
    const char *what;
    void (*build)(struct tb *b);
    int code;
    const char *needle; /* must appear in the message */
};

static void c_magic(struct tb *b) { b_head(b, 3, 0, 0); b->p[0] = 'X'; }
static void c_v1(struct tb *b) { b_head(b, 1, 0, 0); }
static void c_v4(struct tb *b) { b_head(b, 4, 0, 0); }
static void c_bigendian(struct tb *b) { b_head(b, 0x03000000u, 0, 0); }
static void c_nkv_huge(struct tb *b) { b_head(b, 3, 0, (uint64_t)1 << 62); }
static void c_nt_huge(struct tb *b) { b_head(b, 3, UINT64_MAX, 0); }
static void c_nkv_plus1(struct tb *b) {
    b_head(b, 3, 0, 2);
    b_kv_u32(b, "a", 1);
    b_u64(b, 100); /* the second key runs off the end */
    b_zeros(b, 1);
}
static void c_key_len_huge(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_u64(b, (uint64_t)1 << 60);
    b_raw(b, "abcdefgh", 8);
}
static void c_str_len_huge(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "general.name");
    b_u32(b, MX_GGUF_STRING);
    b_u64(b, UINT64_MAX - 3);
    b_raw(b, "xyz", 3);
}
static void c_arr_len_huge(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "tokenizer.ggml.tokens");
    b_u32(b, MX_GGUF_ARRAY);
    b_u32(b, MX_GGUF_STRING);
    b_u64(b, (uint64_t)1 << 60);
    b_str(b, "a");
}
static void c_arr_num_len_huge(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "tokenizer.ggml.scores");
    b_u32(b, MX_GGUF_ARRAY);
    b_u32(b, MX_GGUF_FLOAT64);
    b_u64(b, (uint64_t)1 << 61); /* * 8 overflows 64 bits */
    b_zeros(b, 16);
}
static void c_vtype_unknown(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "k");
    b_u32(b, 13);
    b_u32(b, 0);
}
static void c_elem_unknown(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "k");
    b_u32(b, MX_GGUF_ARRAY);
    b_u32(b, 77);
    b_u64(b, 1);
    b_u32(b, 0);
}
static void c_nest_deep(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "k");
    b_u32(b, MX_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) {
        b_u32(b, MX_GGUF_ARRAY);
        b_u64(b, 1);
    }
    b_u32(b, MX_GGUF_UINT8);
    b_u64(b, 0);
}
static void c_bool2(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "k");
    b_u32(b, MX_GGUF_BOOL);
    b_raw(b, "\x02", 1);
}
static void c_dup_key(struct tb *b) {
    b_head(b, 3, 0, 2);
    b_kv_u32(b, "llama.block_count", 1);
    b_kv_u32(b, "llama.block_count", 2);
}
static void c_key_nul(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_u64(b, 3);
    b_raw(b, "a\0b", 3);
    b_u32(b, MX_GGUF_UINT8);
    b_raw(b, "\x01", 1);
}
static void c_align0(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_kv_u32(b, "general.alignment", 0);
}
static void c_align3(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_kv_u32(b, "general.alignment", 3);
}
static void c_align_str(struct tb *b) {
    b_head(b, 3, 0, 1);
    b_str(b, "general.alignment");
    b_u32(b, MX_GGUF_STRING);
    b_str(b, "32");
}
static void c_ndims0(struct tb *b) {
    uint64_t ne[1] = {32};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "t", 0, ne, MX_TYPE_F32, 0);
    b_zeros(b, 32);
}
static void c_ndims5(struct tb *b) {
    uint64_t ne[5] = {1, 1, 1, 1, 1};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "t", 5, ne, MX_TYPE_F32, 0);
}
static void c_ne_huge(struct tb *b) {
    uint64_t ne[2] = {32, (uint64_t)1 << 63};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "t", 2, ne, MX_TYPE_F32, 0);
}
static void c_ne_overflow(struct tb *b) {
    uint64_t ne[4] = {1 << 16, 1 << 16, 1 << 16, 1 << 16};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "t", 4, ne, MX_TYPE_F32, 0);
}
static void c_bytes_overflow(struct tb *b) {
    uint64_t ne[3] = {(uint64_t)1 << 40, (uint64_t)1 << 20, 4};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "t", 3, ne, MX_TYPE_F64, 0); /* 2^62 elements * 8 bytes */
}
static void c_type_unknown(struct tb *b) { b_valid_tensors(b, 256, 4, 32); }
static void c_type_huge(struct tb *b) { b_valid_tensors(b, 256, 0xffffffffu, 32); }
static void c_blocks(struct tb *b) { b_valid_tensors(b, 256, MX_TYPE_Q4_0, 33); }
static void c_unaligned(struct tb *b) { b_valid_tensors(b, 260, MX_TYPE_F32, 32); }
static void c_past_end(struct tb *b) { b_valid_tensors(b, 384, MX_TYPE_F32, 32); }
static void c_off_huge(struct tb *b) { b_valid_tensors(b, UINT64_MAX - 31, MX_TYPE_F32, 32); }
static void c_overlap(struct tb *b) { b_valid_tensors(b, 128, MX_TYPE_F32, 32); }
static void c_dup_tensor(struct tb *b) {
    uint64_t ne[1] = {32};
    b_head(b, 3, 2, 0);
    b_tinfo(b, "blk.0.attn_q.weight", 1, ne, MX_TYPE_F32, 0);
    b_tinfo(b, "blk.0.attn_q.weight", 1, ne, MX_TYPE_F32, 128);
    b_pad(b, 32);
    b_zeros(b, 256);
}
static void c_tname_huge(struct tb *b) {
    b_head(b, 3, 1, 0);
    b_u64(b, UINT64_MAX);
    b_zeros(b, 40);
}
static void c_nt_plus1(struct tb *b) {
    uint64_t ne[1] = {32};
    b_head(b, 3, 2, 0);
    b_tinfo(b, "a", 1, ne, MX_TYPE_F32, 0);
    b_u64(b, 40); /* enough bytes for the count check, not for a second info */
    b_zeros(b, 23);
}
static void c_escape_name(struct tb *b) {
    uint64_t ne[1] = {32};
    b_head(b, 3, 1, 0);
    b_tinfo(b, "\x1b]0;pwned\x07", 1, ne, MX_TYPE_F32, 1 << 20);
    b_pad(b, 32);
}
static void c_empty(struct tb *b) { (void)b; }
static void c_short(struct tb *b) { b_raw(b, "GGUF\x03", 5); }

static const struct bad_case bad_cases[] = {
    {"bad magic", c_magic, MX_EFORMAT, "bad magic"},
    {"version 1", c_v1, MX_EUNSUP, "version 1 is obsolete"},
    {"version 4", c_v4, MX_EUNSUP, "version 4"},
    {"big-endian", c_bigendian, MX_EUNSUP, "big-endian"},
    {"n_kv 2^62", c_nkv_huge, MX_EFORMAT, "metadata pairs"},
    {"n_tensors 2^64-1", c_nt_huge, MX_EFORMAT, "tensors"},
    {"n_kv one too many", c_nkv_plus1, MX_EFORMAT, "metadata key 1"},
    {"key length 2^60", c_key_len_huge, MX_EFORMAT, "string length"},
    {"string length ~2^64", c_str_len_huge, MX_EFORMAT, "general.name"},
    {"string array 2^60", c_arr_len_huge, MX_EFORMAT, "does not fit"},
    {"f64 array 2^61", c_arr_num_len_huge, MX_EFORMAT, "does not fit"},
    {"unknown value type", c_vtype_unknown, MX_EFORMAT, "unknown value type 13"},
    {"unknown element type", c_elem_unknown, MX_EFORMAT, "element type 77"},
    {"nesting depth", c_nest_deep, MX_EFORMAT, "nested deeper"},
    {"bool value 2", c_bool2, MX_EFORMAT, "not 0 or 1"},
    {"duplicate key", c_dup_key, MX_EFORMAT, "duplicate metadata key 'llama.block_count'"},
    {"NUL in key", c_key_nul, MX_EFORMAT, "NUL"},
    {"alignment 0", c_align0, MX_EFORMAT, "general.alignment 0"},
    {"alignment 3", c_align3, MX_EFORMAT, "general.alignment 3"},
    {"alignment string", c_align_str, MX_EFORMAT, "general.alignment"},
    {"n_dims 0", c_ndims0, MX_EFORMAT, "0 dimensions"},
    {"n_dims 5", c_ndims5, MX_EFORMAT, "5 dimensions"},
    {"ne 2^63", c_ne_huge, MX_EFORMAT, "too large"},
    {"ne product overflow", c_ne_overflow, MX_EFORMAT, "overflows"},
    {"byte size overflow", c_bytes_overflow, MX_EFORMAT, "overflows"},
    {"tensor type 4", c_type_unknown, MX_EFORMAT, "unknown type 4"},
    {"tensor type 2^32-1", c_type_huge, MX_EFORMAT, "unknown type 4294967295"},
    {"row not whole blocks", c_blocks, MX_EFORMAT, "not a multiple of the q4_0 block"},
    {"unaligned offset", c_unaligned, MX_EFORMAT, "not a multiple of the alignment 32"},
    {"past end", c_past_end, MX_EFORMAT,
     "tensor 'blk.3.ffn_up.weight' extends past end of file"},
    {"offset near 2^64", c_off_huge, MX_EFORMAT, "extends past end of file"},
    {"overlap", c_overlap, MX_EFORMAT, "overlap"},
    {"duplicate tensor", c_dup_tensor, MX_EFORMAT, "duplicate tensor name"},
    {"tensor name length 2^64-1", c_tname_huge, MX_EFORMAT, "string length"},
    {"n_tensors one too many", c_nt_plus1, MX_EFORMAT, "tensor info 1"},
    {"escape in name", c_escape_name, MX_EFORMAT, "'?]0;pwned?'"},
    {"empty", c_empty, MX_EFORMAT, "bad magic"},
    {"5 bytes", c_short, MX_EFORMAT, "truncated"},
};

static void test_corrupt_cases(void **state) {
    (void)state;
    /* the base file itself is valid, so each case fails for its own reason */
    struct tb *b = calloc(1, sizeof *b);
    b_valid_tensors(b, 256, MX_TYPE_F32, 32);
    struct mx_gguf *g = open_buf(b->p, b->n);
    assert_int_equal(mx_gguf_n_tensors(g), 2);
    mx_gguf_close(g);
    for (size_t k = 0; k < MX_ARRAY_LEN(bad_cases); k++) {
        memset(b, 0, sizeof *b);
        bad_cases[k].build(b);
        /* an exact-size heap copy so ASan sees any read past the end */
        void *copy = malloc(b->n ? b->n : 1);
        memcpy(copy, b->p, b->n);
        struct mx_err err = {0};
        g = (struct mx_gguf *)1;
        int rc = mx_gguf_open_mem(copy, b->n, "m.gguf", &g, &err);
        if (rc != bad_cases[k].code || !strstr(err.msg, bad_cases[k].needle))
            fprintf(stderr, "case '%s': rc %d, msg '%s'\n", bad_cases[k].what, rc, err.msg);
        assert_int_equal(rc, bad_cases[k].code);
        assert_null(g);
        assert_int_equal(err.code, rc);
        assert_true(strncmp(err.msg, "m.gguf: ", 8) == 0);
        assert_non_null(strstr(err.msg, bad_cases[k].needle));
        for (const char *c = err.msg; *c; c++)
            assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
        free(copy);
    }
    free(b);
    printf("%zu hand-made corrupt files rejected\n", MX_ARRAY_LEN(bad_cases));
}

/* Truncating a full-featured file at every byte before the end of its last tensor's data must
 * fail cleanly; cuts after it (in the final padding) are still valid files. */
static void test_truncate_everywhere(void **state) {
    (void)state;
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    fill_all_types(w);
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)i;
    int64_t ne[2] = {32, 2};
    assert_int_equal(mx_gguf_writer_add_tensor(w, "a", MX_TYPE_F32, 2, ne, x), 0);
    int64_t ne1 = 36;
    assert_int_equal(mx_gguf_writer_add_tensor(w, "b", MX_TYPE_F16, 1, &ne1, x), 0);
    void *buf;
    size_t size;
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, NULL), 0);
    struct mx_gguf *g = open_buf(buf, size);
    const struct mx_gguf_tensor *tb = mx_gguf_find_tensor(g, "b");
    size_t end = mx_gguf_data_offset(g) + tb->offset + tb->nbytes;
    mx_gguf_close(g);
    int failed = 0;
    for (size_t cut = 0; cut < size; cut++) {
        void *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        struct mx_err err = {0};
        int rc = mx_gguf_open_mem(copy, cut, "cut.gguf", &g, &err);
        if (cut < end) {
            assert_int_equal(rc, MX_EFORMAT);
            assert_non_null(strstr(err.msg, "cut.gguf: "));
            failed++;
        } else {
            assert_int_equal(rc, 0);
            mx_gguf_close(g);
        }
        free(copy);
    }
    printf("%d truncations rejected (file %zu bytes)\n", failed, size);
    assert_true(failed > 500);

    /* flipping each header count byte and each length byte must never crash; the result is
     * either a clean error or (rarely) another valid file */
    size_t hdr = mx_gguf_data_offset(g = open_buf(buf, size));
    mx_gguf_close(g);
    unsigned char *m = malloc(size);
    int errors = 0;
    for (size_t pos = 0; pos < hdr; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(m, buf, size);
            m[pos] ^= (unsigned char)(1u << bit);
            struct mx_err err = {0};
            int rc = mx_gguf_open_mem(m, size, "flip.gguf", &g, &err);
            if (rc == 0)
                mx_gguf_close(g);
            else
                errors++, assert_true(err.msg[0] != '\0');
        }
    }
    printf("%d of %zu bit flips rejected\n", errors, hdr * 3);
    free(m);
    free(buf);
    mx_gguf_writer_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_metadata),
        cmocka_unit_test(test_getters_type_checks),
        cmocka_unit_test(test_roundtrip_tensor_types),
        cmocka_unit_test(test_alignment_variants),
        cmocka_unit_test(test_write_file_atomic),
        cmocka_unit_test(test_shared_models),
        cmocka_unit_test(test_corrupt_cases),
        cmocka_unit_test(test_truncate_everywhere),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
