/* quant_tmp.c - TEMPORARY stand-in for core/quant.c's type traits, linked only into the gguf
 * tests until core/quant.c lands (then this file is deleted). Sizes are ggml's. */
#include <stddef.h>

#include "core/quant.h"
#include "core/util.h"

static const struct mx_type_traits traits[MX_TYPE_COUNT] = {
    [MX_TYPE_F32] = {"f32", 1, 4, false, NULL, NULL},
    [MX_TYPE_F16] = {"f16", 1, 2, false, NULL, NULL},
    [MX_TYPE_Q4_0] = {"q4_0", 32, 18, true, NULL, NULL},
    [MX_TYPE_Q4_1] = {"q4_1", 32, 20, true, NULL, NULL},
    [MX_TYPE_Q5_0] = {"q5_0", 32, 22, true, NULL, NULL},
    [MX_TYPE_Q5_1] = {"q5_1", 32, 24, true, NULL, NULL},
    [MX_TYPE_Q8_0] = {"q8_0", 32, 34, true, NULL, NULL},
    [MX_TYPE_Q8_1] = {"q8_1", 32, 36, true, NULL, NULL},
    [MX_TYPE_Q2_K] = {"q2_K", 256, 84, true, NULL, NULL},
    [MX_TYPE_Q3_K] = {"q3_K", 256, 110, true, NULL, NULL},
    [MX_TYPE_Q4_K] = {"q4_K", 256, 144, true, NULL, NULL},
    [MX_TYPE_Q5_K] = {"q5_K", 256, 176, true, NULL, NULL},
    [MX_TYPE_Q6_K] = {"q6_K", 256, 210, true, NULL, NULL},
    [MX_TYPE_Q8_K] = {"q8_K", 256, 292, true, NULL, NULL},
    [MX_TYPE_I8] = {"i8", 1, 1, false, NULL, NULL},
    [MX_TYPE_I16] = {"i16", 1, 2, false, NULL, NULL},
    [MX_TYPE_I32] = {"i32", 1, 4, false, NULL, NULL},
    [MX_TYPE_I64] = {"i64", 1, 8, false, NULL, NULL},
    [MX_TYPE_F64] = {"f64", 1, 8, false, NULL, NULL},
    [MX_TYPE_BF16] = {"bf16", 1, 2, false, NULL, NULL},
};

const struct mx_type_traits *mx_type_traits(int type) {
    if (type < 0 || type >= MX_TYPE_COUNT || !traits[type].name)
        return NULL;
    return &traits[type];
}

const char *mx_type_name(int type) {
    const struct mx_type_traits *t = mx_type_traits(type);
    return t ? t->name : "?";
}

bool mx_row_size(int type, int64_t n, size_t *out) {
    const struct mx_type_traits *t = mx_type_traits(type);
    if (!t || n < 0 || n % t->blck_size)
        return false;
    return mx_mul_size((size_t)(n / t->blck_size), t->type_size, out);
}
