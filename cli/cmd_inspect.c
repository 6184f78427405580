/* cmd_inspect.c - `mixel inspect FILE|DIR`: what a model file holds, readable (like gguf-dump,
 * but summarised) or as JSON for scripts.
 *
 * GGUF: architecture, name, the <arch>.* hyperparameters, tokenizer kind and size, chat template,
 * tensor type histogram, total parameters and, for MoE models, parameters active per token
 * (stacked expert tensors count expert_used_count / expert_count of their size). safetensors (a
 * file or a diffusers folder): tensors, dtype histogram, parameters, metadata and a guess of the
 * model kind from key names. A Stable Diffusion checkpoint (single file, diffusers folder or
 * stable-diffusion.cpp GGUF) also gets what the engine's loader (core/diffusion/sd_model.h) makes
 * of it: family, prediction type and whether it was detected or assumed, inpainting UNet, source
 * format, parameters and weight types per component, the schedule's source, or the loader's
 * one-line complaint. Every string from the file is made inert before it is printed.
 * Exit status: 0 ok, 1 the file could not be read (the reader's message on stderr), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "core/format/gguf.h"
#include "core/base/quant.h"
#include "core/format/safetensors.h"
#include "core/base/util.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "core/diffusion/sd_kind.h"
#include "core/diffusion/sd_model.h"
#include "core/llm/model_info.h"
#include "core/base/text.h"

#define SHOW_MAX 120 /* bytes of an untrusted string shown in a line */

struct opts {
    bool json, all, tensors;
};

/* ---- formatting helpers ----------------------------------------------------------------- */

/* Inert, one-line, at most SHOW_MAX bytes of s (with "..." when cut). Returns a static buffer
 * (one call per printf argument list at a time). */
static const char *inert(const char *s, size_t len, char out[MX_SANITIZE_MAX(SHOW_MAX) + 4]) {
    size_t n = len > SHOW_MAX ? SHOW_MAX : len;
    /* do not cut inside a UTF-8 sequence */
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    size_t w = mx_text_sanitize(s, n, out, false);
    if (n < len)
        memcpy(out + w, "...", 4);
    return out;
}

/* A UTF-8-valid copy of s (invalid bytes -> U+FFFD) as a JSON string; never NULL. */
static json_t *json_text(const char *s, size_t len) {
    char *buf = malloc(len * 3 + 1);
    if (!buf)
        return json_string("");
    size_t j = 0;
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        size_t k = mx_utf8_decode(s + i, len - i, &cp);
        if (cp == 0xfffd && k == 1) {
            memcpy(buf + j, "\xef\xbf\xbd", 3);
            j += 3;
        } else if (cp == 0) {
            memcpy(buf + j, "\xef\xbf\xbd", 3); /* jansson strings cannot hold NUL */
            j += 3;
        } else {
            memcpy(buf + j, s + i, k);
            j += k;
        }
        i += k;
    }
    json_t *r = json_stringn(buf, j);
    free(buf);
    return r ? r : json_string("");
}

/* "46.7 B", "1.23 M", "512": model-world parameter counts. */
static const char *human_count(double n, char out[32]) {
    static const char *const unit[] = {"", " K", " M", " B", " T"};
    int u = 0;
    while (n >= 1000 && u < 4) {
        n /= 1000;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%.0f", n);
    else
        snprintf(out, 32, "%.3g%s", n, unit[u]);
    return out;
}

static const char *human_bytes(double n, char out[32]) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) {
        n /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%.0f bytes", n);
    else
        snprintf(out, 32, "%.3g %s", n, unit[u]);
    return out;
}

/* "1.88 MiB (1970656 bytes)", or just "132 bytes". */
static const char *size_text(size_t n, char out[64]) {
    char h[32];
    human_bytes((double)n, h);
    if (n < 1024)
        snprintf(out, 64, "%s", h);
    else
        snprintf(out, 64, "%s (%zu bytes)", h, n);
    return out;
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
}

/* ---- GGUF ------------------------------------------------------------------------------- */

/* llama.cpp's general.file_type (llama_ftype) names. */
static const char *ftype_name(int64_t ft) {
    static const char *const names[] = {
        [0] = "all F32", [1] = "mostly F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0",
        [8] = "Q5_0", [9] = "Q5_1", [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K", [32] = "BF16",
        [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS",
        [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M", [28] = "IQ2_S",
        [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M",
    };
    if (ft >= 0 && ft < (int64_t)MX_ARRAY_LEN(names) && names[ft])
        return names[ft];
    return NULL;
}

/* One value as a short line of text (arrays summarised, first elements with --all). */
static void value_text(const struct mx_gguf_value *v, bool all, char *out, size_t size) {
    char buf[MX_SANITIZE_MAX(SHOW_MAX) + 4];
    switch (v->type) {
    case MX_GGUF_UINT8: case MX_GGUF_UINT16: case MX_GGUF_UINT32: case MX_GGUF_UINT64:
        snprintf(out, size, "%" PRIu64, v->v.u64);
        break;
    case MX_GGUF_INT8: case MX_GGUF_INT16: case MX_GGUF_INT32: case MX_GGUF_INT64:
        snprintf(out, size, "%" PRId64, v->v.i64);
        break;
    case MX_GGUF_FLOAT32: case MX_GGUF_FLOAT64:
        snprintf(out, size, "%g", v->v.f64);
        break;
    case MX_GGUF_BOOL:
        snprintf(out, size, "%s", v->v.b ? "true" : "false");
        break;
    case MX_GGUF_STRING:
        snprintf(out, size, "\"%s\"", inert(v->v.str.data, (size_t)v->v.str.len, buf));
        break;
    case MX_GGUF_ARRAY: {
        int n = snprintf(out, size, "[%" PRIu64 " x %s]", v->v.arr.n,
                         mx_gguf_vtype_name(v->v.arr.elem_type));
        if (!all || n < 0 || (size_t)n >= size)
            break;
        for (uint64_t i = 0; i < v->v.arr.n && i < 4 && (size_t)n < size; i++) {
            char e[160];
            if (v->v.arr.elem_type == MX_GGUF_STRING)
                snprintf(e, sizeof e, "\"%s\"", inert(v->v.arr.items[i].v.str.data,
                                                      MX_MIN((size_t)v->v.arr.items[i].v.str.len,
                                                             (size_t)24), buf));
            else if (v->v.arr.elem_type == MX_GGUF_ARRAY)
                snprintf(e, sizeof e, "[%" PRIu64 " x %s]", v->v.arr.items[i].v.arr.n,
                         mx_gguf_vtype_name(v->v.arr.items[i].v.arr.elem_type));
            else if (v->v.arr.elem_type == MX_GGUF_FLOAT32 ||
                     v->v.arr.elem_type == MX_GGUF_FLOAT64)
                snprintf(e, sizeof e, "%g", mx_gguf_arr_float(v, i));
            else
                snprintf(e, sizeof e, "%" PRId64, mx_gguf_arr_int(v, i));
            n += snprintf(out + n, size - (size_t)n, "%s%s", i ? ", " : " ", e);
        }
        if (v->v.arr.n > 4 && (size_t)n < size)
            snprintf(out + n, size - (size_t)n, ", ...");
        break;
    }
    }
}

/* One value as JSON: scalars as themselves, arrays in full up to 64 elements, else a summary. */
static json_t *value_json(const struct mx_gguf_value *v) {
    switch (v->type) {
    case MX_GGUF_UINT8: case MX_GGUF_UINT16: case MX_GGUF_UINT32: case MX_GGUF_UINT64:
        return v->v.u64 > (uint64_t)INT64_MAX ? json_real((double)v->v.u64)
                                              : json_integer((json_int_t)v->v.u64);
    case MX_GGUF_INT8: case MX_GGUF_INT16: case MX_GGUF_INT32: case MX_GGUF_INT64:
        return json_integer(v->v.i64);
    case MX_GGUF_FLOAT32: case MX_GGUF_FLOAT64:
        return json_real(v->v.f64);
    case MX_GGUF_BOOL:
        return json_boolean(v->v.b);
    case MX_GGUF_STRING:
        return json_text(v->v.str.data, (size_t)v->v.str.len);
    case MX_GGUF_ARRAY:
        if (v->v.arr.n <= 64 && v->v.arr.elem_type != MX_GGUF_ARRAY) {
            json_t *a = json_array();
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                struct mx_gguf_value e = {.type = v->v.arr.elem_type};
                if (e.type == MX_GGUF_STRING) {
                    e = v->v.arr.items[i];
                } else if (e.type == MX_GGUF_FLOAT32 || e.type == MX_GGUF_FLOAT64) {
                    e.v.f64 = mx_gguf_arr_float(v, i);
                } else if (e.type == MX_GGUF_BOOL) {
                    e.v.b = mx_gguf_arr_int(v, i) != 0;
                } else if (e.type == MX_GGUF_UINT64) {
                    memcpy(&e.v.u64, (const uint8_t *)v->v.arr.raw + i * 8, 8);
                } else {
                    e.type = MX_GGUF_INT64;
                    e.v.i64 = mx_gguf_arr_int(v, i);
                }
                json_array_append_new(a, value_json(&e));
            }
            return a;
        }
        return json_pack("{s:s, s:I}", "array_of", mx_gguf_vtype_name(v->v.arr.elem_type), "n",
                         (json_int_t)v->v.arr.n);
    }
    return json_null();
}

/* ---- Stable Diffusion checkpoints ------------------------------------------------------- */

/* The components of a checkpoint, by canonical name prefix. */
static const char *const sd_comp_prefix[3] = {"model.diffusion_model.", "first_stage_model.",
                                              "cond_stage_model."};
static const char *const sd_comp_name[3] = {"UNet", "VAE", "text encoder"};
static const char *const sd_comp_key[3] = {"unet", "vae", "text_encoder"};

/* Weight counts per component and type. */
static void sd_type_counts(const struct mx_sd_model *m, int64_t count[3][MX_TYPE_COUNT]) {
    memset(count, 0, sizeof(int64_t) * 3 * MX_TYPE_COUNT);
    for (int64_t i = 0; i < mx_sd_n_weights(m); i++) {
        const struct mx_tensor *t = mx_sd_weight_at(m, i);
        for (int c = 0; c < 3; c++)
            if (!strncmp(t->name, sd_comp_prefix[c], strlen(sd_comp_prefix[c])) &&
                (int)t->type >= 0 && t->type < MX_TYPE_COUNT)
                count[c][t->type]++;
    }
}

/* What the SD loader makes of path (a file or a diffusers folder): added to j as
 * "stable_diffusion" when j is set, else printed. A checkpoint the loader refuses shows its
 * message (the file itself was readable, so inspect still succeeds). */
static void sd_section(const char *path, json_t *j) {
    struct mx_sd_model *m = NULL;
    struct mx_err err = {0};
    int rc = mx_sd_model_open(NULL, path, NULL, &m, &err);
    char s1[MX_SANITIZE_MAX(SHOW_MAX) + 4], b1[32];
    const char *msg = rc < 0 ? mx_err_msg(&err, rc) : NULL;
    if (j && rc < 0) {
        json_object_set_new(j, "stable_diffusion",
                            json_pack("{s:o}", "error", json_text(msg, strlen(msg))));
        return;
    }
    if (rc < 0) {
        printf("stable diffusion checkpoint, not usable: %s\n", inert(msg, strlen(msg), s1));
        return;
    }
    int64_t count[3][MX_TYPE_COUNT];
    sd_type_counts(m, count);
    const int64_t params[3] = {m->n_params_unet, m->n_params_vae, m->n_params_text};
    const bool present[3] = {true, m->has_vae, m->has_text_encoder};
    if (j) {
        json_t *sd = json_object(), *pj = json_object(), *tj = json_object();
        json_object_set_new(sd, "family", json_string(mx_sd_family_name(m->family)));
        json_object_set_new(sd, "source", json_string(mx_sd_source_name(m->source)));
        json_object_set_new(sd, "context_dim", json_integer(m->context_dim));
        json_object_set_new(sd, "prediction", json_string(mx_sd_pred_name(m->prediction)));
        json_object_set_new(sd, "prediction_detected", json_boolean(m->prediction_detected));
        json_object_set_new(sd, "prediction_source", json_string(m->prediction_source));
        json_object_set_new(sd, "inpaint", json_boolean(m->inpaint));
        json_object_set_new(sd, "unet_in_channels", json_integer(m->unet_in_channels));
        json_object_set_new(sd, "has_vae", json_boolean(m->has_vae));
        json_object_set_new(sd, "has_text_encoder", json_boolean(m->has_text_encoder));
        for (int c = 0; c < 3; c++) {
            json_object_set_new(pj, sd_comp_key[c], json_integer(params[c]));
            json_t *types = json_object();
            for (int t = 0; t < MX_TYPE_COUNT; t++)
                if (count[c][t])
                    json_object_set_new(types, mx_type_name(t), json_integer(count[c][t]));
            json_object_set_new(tj, sd_comp_key[c], types);
        }
        json_object_set_new(pj, "total", json_integer(m->n_params));
        json_object_set_new(sd, "parameters", pj);
        json_object_set_new(sd, "weight_types", tj);
        json_object_set_new(sd, "tensors", json_integer(mx_sd_n_weights(m)));
        json_object_set_new(sd, "schedule_source", json_string(m->schedule_source));
        json_object_set_new(j, "stable_diffusion", sd);
        mx_sd_model_close(m);
        return;
    }
    printf("stable diffusion (as the image engine loads it)\n");
    printf("  family        %s (cross-attention context %" PRId64 ")\n",
           mx_sd_family_name(m->family), m->context_dim);
    printf("  source        %s\n", m->source == MX_SD_SRC_DIFFUSERS ? "diffusers folder"
                                   : m->source == MX_SD_SRC_GGUF ? "GGUF (stable-diffusion.cpp)"
                                                                 : "safetensors (LDM names)");
    printf("  prediction    %s (%s%s)\n", mx_sd_pred_name(m->prediction),
           m->prediction_detected ? "detected: " : "", m->prediction_source);
    printf("  inpainting    %s (UNet input %" PRId64 " channels)\n", m->inpaint ? "yes" : "no",
           m->unet_in_channels);
    printf("  parameters    %s:", human_count((double)m->n_params, b1));
    for (int c = 0; c < 3; c++)
        if (present[c])
            printf("%s %s %s", c ? "," : "", sd_comp_name[c],
                   human_count((double)params[c], b1));
        else
            printf("%s no %s", c ? "," : "", sd_comp_name[c]);
    printf("\n");
    for (int c = 0; c < 3; c++) {
        if (!present[c])
            continue;
        printf("  %-13s", c ? "" : "weight types");
        printf(" %-12s", sd_comp_name[c]);
        for (int t = 0, sep = 0; t < MX_TYPE_COUNT; t++)
            if (count[c][t])
                printf("%s %s %" PRId64, sep++ ? "," : "", mx_type_name(t), count[c][t]);
        printf("\n");
    }
    printf("  schedule      %s\n", m->schedule_source);
    mx_sd_model_close(m);
}

static int inspect_gguf(const char *path, const struct opts *o) {
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    int rc = mx_gguf_open(path, &g, &err);
    if (rc < 0) {
        mx_cli_err("inspect", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    char b1[64], b2[32], s1[MX_SANITIZE_MAX(SHOW_MAX) + 4];
    const char *arch = NULL, *name = NULL, *tok_model = NULL, *tok_pre = NULL, *tmpl = NULL;
    (void)mx_gguf_get_str(g, "general.architecture", &arch, NULL);
    (void)mx_gguf_get_str(g, "general.name", &name, NULL);
    (void)mx_gguf_get_str(g, "tokenizer.ggml.model", &tok_model, NULL);
    (void)mx_gguf_get_str(g, "tokenizer.ggml.pre", &tok_pre, NULL);
    (void)mx_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL);
    const struct mx_gguf_value *tokens = NULL, *merges = NULL;
    (void)mx_gguf_get_arr(g, "tokenizer.ggml.tokens", MX_GGUF_STRING, &tokens, NULL);
    (void)mx_gguf_get_arr(g, "tokenizer.ggml.merges", MX_GGUF_STRING, &merges, NULL);
    int64_t ftype = -1;
    (void)mx_gguf_get_int(g, "general.file_type", &ftype, NULL);
    size_t arch_len = arch ? strlen(arch) : 0;
    /* LDM names, or a diffusers folder stable-diffusion.cpp converted without --convert-name */
    const bool sd = mx_gguf_find_tensor(g, "model.diffusion_model.input_blocks.0.0.weight") ||
                    mx_gguf_find_tensor(g, "unet.conv_in.weight");

    /* parameters (total, and active per token for MoE) and the type histogram */
    struct mx_llm_params pc;
    mx_llm_count_params(g, &pc);
    const int64_t n_expert = pc.n_expert, n_used = pc.n_used;
    const double total = pc.total, active = pc.active;
    const bool moe = pc.moe;
    const int64_t *type_count = pc.type_count;
    const size_t *type_bytes = pc.type_bytes;

    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "format", json_string("gguf"));
        json_object_set_new(j, "file", json_text(path, strlen(path)));
        json_object_set_new(j, "file_size", json_integer((json_int_t)mx_gguf_file_size(g)));
        json_object_set_new(j, "version", json_integer(mx_gguf_version(g)));
        json_object_set_new(j, "alignment", json_integer((json_int_t)mx_gguf_alignment(g)));
        json_object_set_new(j, "architecture", arch ? json_text(arch, arch_len) : json_null());
        json_object_set_new(j, "name", name ? json_text(name, strlen(name)) : json_null());
        json_object_set_new(j, "file_type", ftype >= 0 ? json_integer(ftype) : json_null());
        json_t *hp = json_object();
        for (int64_t i = 0; arch && i < mx_gguf_n_kv(g); i++) {
            const char *k = mx_gguf_kv_key(g, i);
            if (strncmp(k, arch, arch_len) == 0 && k[arch_len] == '.')
                json_object_set_new(hp, k + arch_len + 1, value_json(mx_gguf_kv_value(g, i)));
        }
        json_object_set_new(j, "hyperparameters", hp);
        json_t *tk = json_object();
        json_object_set_new(tk, "model", tok_model ? json_text(tok_model, strlen(tok_model))
                                                   : json_null());
        json_object_set_new(tk, "pre", tok_pre ? json_text(tok_pre, strlen(tok_pre))
                                               : json_null());
        json_object_set_new(tk, "vocab_size",
                            json_integer(tokens ? (json_int_t)tokens->v.arr.n : 0));
        if (merges)
            json_object_set_new(tk, "merges", json_integer((json_int_t)merges->v.arr.n));
        json_object_set_new(j, "tokenizer", tk);
        if (tmpl) {
            size_t len = strcspn(tmpl, "\n");
            json_object_set_new(j, "chat_template",
                                json_pack("{s:I, s:o}", "bytes", (json_int_t)strlen(tmpl),
                                          "first_line", json_text(tmpl, len)));
        } else {
            json_object_set_new(j, "chat_template", json_null());
        }
        json_object_set_new(j, "n_tensors", json_integer(mx_gguf_n_tensors(g)));
        json_t *types = json_object();
        for (int t = 0; t < MX_TYPE_COUNT; t++)
            if (type_count[t])
                json_object_set_new(types, mx_type_name(t),
                                    json_pack("{s:I, s:I}", "count", (json_int_t)type_count[t],
                                              "bytes", (json_int_t)type_bytes[t]));
        json_object_set_new(j, "types", types);
        json_object_set_new(j, "parameters", json_integer((json_int_t)total));
        json_object_set_new(j, "active_parameters", json_integer((json_int_t)active));
        json_object_set_new(j, "expert_count", json_integer(n_expert));
        json_object_set_new(j, "expert_used_count", json_integer(n_used));
        if (o->all || o->tensors) {
            json_t *ts = json_array();
            for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
                const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
                json_t *ne = json_array();
                for (int d = 0; d < t->n_dims; d++)
                    json_array_append_new(ne, json_integer(t->ne[d]));
                json_array_append_new(ts, json_pack("{s:o, s:s, s:o, s:I, s:I}", "name",
                                                    json_text(t->name, strlen(t->name)), "type",
                                                    mx_type_name(t->type), "ne", ne, "offset",
                                                    (json_int_t)t->offset, "bytes",
                                                    (json_int_t)t->nbytes));
            }
            json_object_set_new(j, "tensor_list", ts);
        }
        if (o->all) {
            json_t *md = json_object();
            for (int64_t i = 0; i < mx_gguf_n_kv(g); i++)
                json_object_set_new(md, mx_gguf_kv_key(g, i),
                                    value_json(mx_gguf_kv_value(g, i)));
            json_object_set_new(j, "metadata", md);
        }
        if (sd)
            sd_section(path, j);
        print_json(j);
        json_decref(j);
        mx_gguf_close(g);
        return 0;
    }

    printf("file          %s\n", inert(path, strlen(path), s1));
    printf("format        GGUF v%" PRIu32 ", %s, alignment %zu\n", mx_gguf_version(g),
           size_text(mx_gguf_file_size(g), b1), mx_gguf_alignment(g));
    printf("architecture  %s", arch ? inert(arch, arch_len, s1) : "(none)");
    if (n_expert > 1)
        printf(" (mixture of experts: %" PRId64 " experts, %" PRId64 " used per token)",
               n_expert, n_used);
    printf("\n");
    if (name)
        printf("name          %s\n", inert(name, strlen(name), s1));
    if (ftype >= 0)
        printf("file type     %" PRId64 " (%s)\n", ftype,
               ftype_name(ftype) ? ftype_name(ftype) : "unknown");
    int shown = 0;
    for (int64_t i = 0; arch && i < mx_gguf_n_kv(g); i++) {
        const char *k = mx_gguf_kv_key(g, i);
        if (strncmp(k, arch, arch_len) != 0 || k[arch_len] != '.')
            continue;
        if (!shown++)
            printf("hyperparameters\n");
        char v[512];
        value_text(mx_gguf_kv_value(g, i), true, v, sizeof v);
        printf("  %-38s %s\n", inert(k + arch_len + 1, strlen(k + arch_len + 1), s1), v);
    }
    printf("tokenizer     ");
    if (tok_model) {
        printf("%s", inert(tok_model, strlen(tok_model), s1));
        if (tok_pre)
            printf(" (pre: %s)", inert(tok_pre, strlen(tok_pre), s1));
        printf(", %" PRIu64 " tokens", tokens ? tokens->v.arr.n : 0);
        if (merges)
            printf(", %" PRIu64 " merges", merges->v.arr.n);
        int64_t bos, eos;
        if (mx_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos, NULL) == 0)
            printf(", bos %" PRId64, bos);
        if (mx_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, NULL) == 0)
            printf(", eos %" PRId64, eos);
        printf("\n");
    } else {
        printf("none in this file\n");
    }
    if (tmpl) {
        size_t len = strcspn(tmpl, "\n");
        printf("chat template present (%zu bytes): %s\n", strlen(tmpl), inert(tmpl, len, s1));
    } else {
        printf("chat template none\n");
    }
    printf("tensors       %" PRId64, mx_gguf_n_tensors(g));
    if (mx_gguf_n_tensors(g) == 0)
        printf(" (vocabulary only)");
    /* histogram, most frequent type first */
    bool done[MX_TYPE_COUNT] = {false};
    for (int sep = 0;; sep++) {
        int best = -1;
        for (int t = 0; t < MX_TYPE_COUNT; t++)
            if (type_count[t] && !done[t] && (best < 0 || type_count[t] > type_count[best]))
                best = t;
        if (best < 0)
            break;
        done[best] = true;
        printf("%s %s %" PRId64 " (%s)", sep ? "," : ":", mx_type_name(best), type_count[best],
               human_bytes((double)type_bytes[best], b1));
    }
    printf("\n");
    if (moe)
        printf("parameters    %s total, %s active per token (%" PRId64 " of %" PRId64
               " experts)\n", human_count(total, b1), human_count(active, b2), n_used, n_expert);
    else
        printf("parameters    %s\n", human_count(total, b1));
    if (o->tensors || o->all) {
        printf("tensor list\n");
        for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
            const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
            char shape[96];
            int n = 0;
            for (int d = 0; d < t->n_dims; d++)
                n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, d ? " x " : "",
                              t->ne[d]);
            printf("  %-40s %-5s %-22s %s\n", inert(t->name, strlen(t->name), s1),
                   mx_type_name(t->type), shape, human_bytes((double)t->nbytes, b1));
        }
    }
    if (o->all) {
        printf("metadata\n");
        for (int64_t i = 0; i < mx_gguf_n_kv(g); i++) {
            const char *k = mx_gguf_kv_key(g, i);
            char v[512];
            value_text(mx_gguf_kv_value(g, i), true, v, sizeof v);
            printf("  %-42s %s\n", inert(k, strlen(k), s1), v);
        }
    }
    if (sd)
        sd_section(path, NULL);
    mx_gguf_close(g);
    return 0;
}

/* ---- safetensors ------------------------------------------------------------------------ */

struct st_summary {
    int64_t count[MX_ST_DTYPE_COUNT];
    size_t bytes[MX_ST_DTYPE_COUNT];
    double params;
    char kind[256];
};

static void summarise(const struct mx_st *st, struct st_summary *s) {
    memset(s, 0, sizeof *s);
    for (int64_t i = 0; i < mx_st_n_tensors(st); i++) {
        const struct mx_st_tensor *t = mx_st_tensor(st, i);
        s->count[t->dtype]++;
        s->bytes[t->dtype] += t->nbytes;
        s->params += (double)t->n_elements;
    }
    mx_st_guess_kind(st, s->kind, sizeof s->kind);
}

static json_t *st_json(const struct mx_st *st, const struct opts *o) {
    struct st_summary s;
    summarise(st, &s);
    json_t *j = json_object();
    const char *path = mx_st_path(st);
    json_object_set_new(j, "format", json_string("safetensors"));
    json_object_set_new(j, "file", json_text(path, strlen(path)));
    json_object_set_new(j, "file_size", json_integer((json_int_t)mx_st_file_size(st)));
    json_object_set_new(j, "header_bytes", json_integer((json_int_t)mx_st_data_offset(st) - 8));
    json_object_set_new(j, "kind", json_string(s.kind));
    json_object_set_new(j, "n_tensors", json_integer(mx_st_n_tensors(st)));
    json_t *dt = json_object();
    for (int d = 0; d < MX_ST_DTYPE_COUNT; d++)
        if (s.count[d])
            json_object_set_new(dt, mx_st_dtype_name(d),
                                json_pack("{s:I, s:I}", "count", (json_int_t)s.count[d], "bytes",
                                          (json_int_t)s.bytes[d]));
    json_object_set_new(j, "dtypes", dt);
    json_object_set_new(j, "parameters", json_integer((json_int_t)s.params));
    json_t *md = json_object();
    for (int64_t i = 0; i < mx_st_n_meta(st); i++) {
        const char *v = mx_st_meta_value(st, i);
        json_object_set_new(md, mx_st_meta_key(st, i), json_text(v, strlen(v)));
    }
    json_object_set_new(j, "metadata", md);
    if (o->tensors || o->all) {
        json_t *ts = json_array();
        for (int64_t i = 0; i < mx_st_n_tensors(st); i++) {
            const struct mx_st_tensor *t = mx_st_tensor(st, i);
            json_t *shape = json_array();
            for (int d = 0; d < t->n_dims; d++)
                json_array_append_new(shape, json_integer(t->shape[d]));
            json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name,
                                                "dtype", mx_st_dtype_name(t->dtype), "shape",
                                                shape, "offset", (json_int_t)t->offset, "bytes",
                                                (json_int_t)t->nbytes));
        }
        json_object_set_new(j, "tensor_list", ts);
    }
    return j;
}

static void st_print(const struct mx_st *st, const struct opts *o, const char *indent) {
    struct st_summary s;
    summarise(st, &s);
    char b1[64], s1[MX_SANITIZE_MAX(SHOW_MAX) + 4];
    const char *path = mx_st_path(st);
    printf("%sfile          %s\n", indent, inert(path, strlen(path), s1));
    printf("%sformat        safetensors, %s, header %zu bytes\n", indent,
           size_text(mx_st_file_size(st), b1), mx_st_data_offset(st) - 8);
    printf("%skind          %s\n", indent, s.kind);
    printf("%stensors       %" PRId64, indent, mx_st_n_tensors(st));
    for (int d = 0, sep = 0; d < MX_ST_DTYPE_COUNT; d++)
        if (s.count[d])
            printf("%s %s %" PRId64 " (%s)", sep++ ? "," : ":", mx_st_dtype_name(d), s.count[d],
                   human_bytes((double)s.bytes[d], b1));
    printf("\n%sparameters    %s\n", indent, human_count(s.params, b1));
    for (int64_t i = 0; i < mx_st_n_meta(st); i++) {
        const char *k = mx_st_meta_key(st, i), *v = mx_st_meta_value(st, i);
        printf("%s%s%s = ", indent, i ? "              " : "metadata      ",
               inert(k, strlen(k), s1));
        printf("%s\n", inert(v, strlen(v), s1));
    }
    if (o->tensors || o->all) {
        printf("%stensor list\n", indent);
        for (int64_t i = 0; i < mx_st_n_tensors(st); i++) {
            const struct mx_st_tensor *t = mx_st_tensor(st, i);
            char shape[160];
            int n = snprintf(shape, sizeof shape, "[");
            for (int d = 0; d < t->n_dims; d++)
                n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRId64, d ? ", " : "",
                              t->shape[d]);
            snprintf(shape + n, sizeof shape - (size_t)n, "]");
            printf("%s  %-60s %-5s %-24s %s\n", indent, inert(t->name, strlen(t->name), s1),
                   mx_st_dtype_name(t->dtype), shape, human_bytes((double)t->nbytes, b1));
        }
    }
}

static int inspect_st(const char *path, const struct opts *o) {
    struct mx_st *st = NULL;
    struct mx_err err = {0};
    int rc = mx_st_open(path, &st, &err);
    if (rc < 0) {
        mx_cli_err("inspect", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    const bool sd = mx_st_find_tensor(st, "model.diffusion_model.input_blocks.0.0.weight");
    if (o->json) {
        json_t *j = st_json(st, o);
        if (sd)
            sd_section(path, j);
        print_json(j);
        json_decref(j);
    } else {
        st_print(st, o, "");
        if (sd)
            sd_section(path, NULL);
    }
    mx_st_close(st);
    return 0;
}

static int inspect_folder(const char *path, const struct opts *o) {
    struct mx_st_folder *f = NULL;
    struct mx_err err = {0};
    int rc = mx_st_folder_open(path, &f, &err);
    if (rc < 0) {
        mx_cli_err("inspect", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    const json_t *index = mx_st_folder_config(f, NULL);
    const char *cls = json_string_value(json_object_get(index, "_class_name"));
    json_t *j = o->json ? json_object() : NULL, *comps = o->json ? json_object() : NULL;
    char s1[MX_SANITIZE_MAX(SHOW_MAX) + 4];
    if (j) {
        json_object_set_new(j, "format", json_string("diffusers"));
        json_object_set_new(j, "folder", json_text(path, strlen(path)));
        json_object_set_new(j, "pipeline", cls ? json_text(cls, strlen(cls)) : json_null());
    } else {
        printf("folder        %s (diffusers layout)\n", inert(path, strlen(path), s1));
        if (cls)
            printf("pipeline      %s\n", inert(cls, strlen(cls), s1));
    }
    double total = 0;
    for (int c = 0; mx_st_folder_components[c]; c++) {
        const char *name = mx_st_folder_components[c];
        const struct mx_st *st = mx_st_folder_file(f, name);
        if (!st)
            continue;
        for (int64_t i = 0; i < mx_st_n_tensors(st); i++)
            total += (double)mx_st_tensor(st, i)->n_elements;
        if (j) {
            json_t *cj = st_json(st, o);
            const json_t *cfg = mx_st_folder_config(f, name);
            json_object_set_new(cj, "config", cfg ? json_deep_copy(cfg) : json_null());
            json_object_set_new(comps, name, cj);
        } else {
            printf("%s:\n", name);
            st_print(st, o, "  ");
        }
    }
    const bool sd = mx_st_folder_file(f, "unet") != NULL;
    if (j) {
        json_object_set_new(j, "components", comps);
        json_object_set_new(j, "parameters", json_integer((json_int_t)total));
        if (sd)
            sd_section(path, j);
        print_json(j);
        json_decref(j);
    } else {
        char b1[32];
        printf("parameters    %s in all components\n", human_count(total, b1));
        if (sd)
            sd_section(path, NULL);
    }
    mx_st_folder_close(f);
    return 0;
}

/* ---- command ---------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f, "usage: mixel inspect [--json] [--tensors] [--all] FILE.gguf|FILE.safetensors|DIR\n"
               "\n"
               "Describes a model file: architecture, hyperparameters, tokenizer, tensor types,\n"
               "parameter counts (total and active per token for mixtures of experts).\n"
               "A directory is read as a diffusers folder (unet/, vae/, text_encoder/).\n"
               "A Stable Diffusion checkpoint also shows what the image engine makes of it:\n"
               "family, prediction type (detected or assumed), inpainting, source format,\n"
               "parameters and weight types per component, the schedule's source.\n"
               "\n"
               "  --json     machine-readable output\n"
               "  --tensors  list every tensor (name, type, shape, size)\n"
               "  --all      also every metadata key (arrays summarised) and the tensor list\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int mx_cmd_inspect(int argc, char **argv) {
    struct opts o = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--all")) {
            o.all = true;
        } else if (!strcmp(a, "--tensors")) {
            o.tensors = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            mx_cli_err("inspect", "unknown option '%s'", a);
            usage(stderr);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            mx_cli_err("inspect", "one file at a time");
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        char s1[MX_SANITIZE_MAX(SHOW_MAX) + 4];
        mx_cli_err("inspect", "%s: %s", inert(path, strlen(path), s1),
                strerror(errno));
        return 1;
    }
    if (S_ISDIR(sb.st_mode))
        return inspect_folder(path, &o);
    /* sniff: GGUF magic, or a safetensors header ("{" after the 8-byte length) */
    unsigned char head[9] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    if ((n >= 4 && memcmp(head, "GGUF", 4) == 0) || ends_with(path, ".gguf"))
        return inspect_gguf(path, &o);
    if ((n == 9 && head[8] == '{') || ends_with(path, ".safetensors"))
        return inspect_st(path, &o);
    char s1[MX_SANITIZE_MAX(SHOW_MAX) + 4];
    mx_cli_err("inspect", "%s: not a GGUF or safetensors file",
            inert(path, strlen(path), s1));
    return 1;
}
