/* sd_load_diffusers.c - a diffusers folder (unet/ vae/ text_encoder/ scheduler/) as canonical
 * LDM-named tensors (see sd_model.h).
 *
 * The UNet's down_blocks/mid_block/up_blocks become input_blocks/middle_block/output_blocks, the
 * VAE's down_blocks/up_blocks/mid_block become down/up/mid (up blocks counted from the other
 * end), the text encoder (already Hugging Face CLIP names) gets the cond_stage_model.transformer.
 * prefix. The schedule and prediction type come from scheduler/scheduler_config.json.
 * Ref: the inverse of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py and of
 * stable-diffusion.cpp name_conversion.cpp (97d2990); written from their tables, not copied.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/diffusion/sd_model_impl.h"

/* A numbered path element "name.N." at the start of s: N, and *rest after the final dot; -1
 * when s does not start so. */
static int take_index(const char *s, const char *name, const char **rest) {
    size_t n = strlen(name);
    if (strncmp(s, name, n) != 0 || s[n] != '.')
        return -1;
    const char *d = s + n + 1;
    size_t nd = strspn(d, "0123456789");
    if (nd == 0 || nd > 3 || d[nd] != '.')
        return -1;
    *rest = d + nd + 1;
    return atoi(d);
}

/* Sub-names inside a UNet resnet: diffusers -> LDM. */
static const char *const k_unet_res[][2] = {
    {"norm1.", "in_layers.0."},      {"conv1.", "in_layers.2."},
    {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
    {"conv2.", "out_layers.3."},     {"conv_shortcut.", "skip_connection."},
};

static bool unet_res(const char *rest, char *out, size_t size, const char *prefix) {
    for (size_t i = 0; i < MX_ARRAY_LEN(k_unet_res); i++) {
        size_t n = strlen(k_unet_res[i][0]);
        if (!strncmp(rest, k_unet_res[i][0], n))
            return (size_t)snprintf(out, size, "%s%s%s", prefix, k_unet_res[i][1], rest + n) <
                   size;
    }
    return false;
}

bool mx_sd_diffusers_unet_name(const char *name, int lpb, const bool up_has_attn[8], char *out,
                               size_t size) {
    static const char *const whole[][2] = {
        {"time_embedding.linear_1.", "time_embed.0."},
        {"time_embedding.linear_2.", "time_embed.2."},
        {"conv_in.", "input_blocks.0.0."},             {"conv_norm_out.", "out.0."},
        {"conv_out.", "out.2."},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(whole); i++) {
        size_t n = strlen(whole[i][0]);
        if (!strncmp(name, whole[i][0], n))
            return (size_t)snprintf(out, size, "%s%s", whole[i][1], name + n) < size;
    }
    const char *r, *r2;
    char pre[64];
    int L, j;
    if ((L = take_index(name, "down_blocks", &r)) >= 0) {
        if ((j = take_index(r, "resnets", &r2)) >= 0) {
            snprintf(pre, sizeof pre, "input_blocks.%d.0.", L * (lpb + 1) + j + 1);
            return unet_res(r2, out, size, pre);
        }
        if ((j = take_index(r, "attentions", &r2)) >= 0)
            return (size_t)snprintf(out, size, "input_blocks.%d.1.%s", L * (lpb + 1) + j + 1,
                                    r2) < size;
        if (take_index(r, "downsamplers", &r2) == 0 && !strncmp(r2, "conv.", 5))
            return (size_t)snprintf(out, size, "input_blocks.%d.0.op.%s", (L + 1) * (lpb + 1),
                                    r2 + 5) < size;
        return false;
    }
    if (!strncmp(name, "mid_block.", 10)) {
        if ((j = take_index(name + 10, "attentions", &r2)) == 0)
            return (size_t)snprintf(out, size, "middle_block.1.%s", r2) < size;
        if ((j = take_index(name + 10, "resnets", &r2)) >= 0 && j < 2) {
            snprintf(pre, sizeof pre, "middle_block.%d.", 2 * j);
            return unet_res(r2, out, size, pre);
        }
        return false;
    }
    if ((L = take_index(name, "up_blocks", &r)) >= 0 && L < 8) {
        if ((j = take_index(r, "resnets", &r2)) >= 0) {
            snprintf(pre, sizeof pre, "output_blocks.%d.0.", L * (lpb + 1) + j);
            return unet_res(r2, out, size, pre);
        }
        if ((j = take_index(r, "attentions", &r2)) >= 0)
            return (size_t)snprintf(out, size, "output_blocks.%d.1.%s", L * (lpb + 1) + j, r2) <
                   size;
        /* the upsampler follows the level's last resnet (and attention, when it has one) */
        if (take_index(r, "upsamplers", &r2) == 0)
            return (size_t)snprintf(out, size, "output_blocks.%d.%d.%s", L * (lpb + 1) + lpb,
                                    up_has_attn[L] ? 2 : 1, r2) < size;
        return false;
    }
    return false;
}

bool mx_sd_diffusers_vae_name(const char *name, int n_up, char *out, size_t size) {
    if (!strncmp(name, "quant_conv.", 11) || !strncmp(name, "post_quant_conv.", 16))
        return (size_t)snprintf(out, size, "%s", name) < size;
    const char *coder = !strncmp(name, "encoder.", 8) ? "encoder" :
                        !strncmp(name, "decoder.", 8) ? "decoder" : NULL;
    if (!coder)
        return false;
    const char *r = name + 8, *r2, *r3;
    if (!strncmp(r, "conv_in.", 8) || !strncmp(r, "conv_out.", 9))
        return (size_t)snprintf(out, size, "%s.%s", coder, r) < size;
    if (!strncmp(r, "conv_norm_out.", 14))
        return (size_t)snprintf(out, size, "%s.norm_out.%s", coder, r + 14) < size;
    char blk[96];
    int L, j;
    if (!strncmp(r, "mid_block.", 10)) {
        r += 10;
        if ((j = take_index(r, "resnets", &r2)) >= 0 && j < 2) {
            snprintf(blk, sizeof blk, "%s.mid.block_%d.", coder, j + 1);
            r3 = r2;
        } else if (take_index(r, "attentions", &r2) == 0) {
            /* old (query/key/value/proj_attn) and new (to_q/.../to_out.0) attention names */
            static const char *const attn[][2] = {
                {"group_norm.", "norm."}, {"to_q.", "q."},        {"query.", "q."},
                {"to_k.", "k."},          {"key.", "k."},         {"to_v.", "v."},
                {"value.", "v."},         {"to_out.0.", "proj_out."}, {"proj_attn.", "proj_out."},
            };
            for (size_t i = 0; i < MX_ARRAY_LEN(attn); i++) {
                size_t n = strlen(attn[i][0]);
                if (!strncmp(r2, attn[i][0], n))
                    return (size_t)snprintf(out, size, "%s.mid.attn_1.%s%s", coder, attn[i][1],
                                            r2 + n) < size;
            }
            return false;
        } else {
            return false;
        }
    } else if ((L = take_index(r, coder[0] == 'e' ? "down_blocks" : "up_blocks", &r2)) >= 0) {
        int level = coder[0] == 'e' ? L : n_up - 1 - L;
        if (level < 0)
            return false;
        const char *lv = coder[0] == 'e' ? "down" : "up";
        if ((j = take_index(r2, "resnets", &r3)) >= 0) {
            snprintf(blk, sizeof blk, "%s.%s.%d.block.%d.", coder, lv, level, j);
        } else if (take_index(r2, coder[0] == 'e' ? "downsamplers" : "upsamplers", &r3) == 0) {
            return (size_t)snprintf(out, size, "%s.%s.%d.%s.%s", coder, lv, level,
                                    coder[0] == 'e' ? "downsample" : "upsample", r3) < size;
        } else {
            return false;
        }
    } else {
        return false;
    }
    /* inside a resnet: only the shortcut is renamed */
    if (!strncmp(r3, "conv_shortcut.", 14))
        return (size_t)snprintf(out, size, "%snin_shortcut.%s", blk, r3 + 14) < size;
    return (size_t)snprintf(out, size, "%s%s", blk, r3) < size;
}

static void close_folder(void *f) {
    mx_st_folder_close(f);
}

int mx_sd_add_diffusers(struct mx_sd_model *m, const struct mx_st *st, int kind, int lpb,
                        const bool up_attn[8], struct mx_err *err) {
    int n_up = 0; /* VAE: the decoder's up blocks */
    char key[64];
    while (kind == 1 && n_up < 8 &&
           (snprintf(key, sizeof key, "decoder.up_blocks.%d.resnets.0.conv1.weight", n_up),
            mx_st_find_tensor(st, key)))
        n_up++;
    int64_t nt = mx_st_n_tensors(st);
    struct mx_buf *buf;
    int rc = mx_sd_wrap_st(m, st, &buf, err);
    if (rc < 0)
        return rc;
    static const char *const prefix[3] = {"model.diffusion_model.", "first_stage_model.",
                                          "cond_stage_model.transformer."};
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_st_tensor *s = mx_st_tensor(st, i);
        char name[320];
        size_t np = (size_t)snprintf(name, sizeof name, "%s", prefix[kind]);
        bool ok = kind == 0   ? mx_sd_diffusers_unet_name(s->name, lpb, up_attn, name + np,
                                                          sizeof name - np)
                  : kind == 1 ? mx_sd_diffusers_vae_name(s->name, n_up, name + np,
                                                         sizeof name - np)
                              : (size_t)snprintf(name + np, sizeof name - np, "%s", s->name) <
                                    sizeof name - np;
        if (kind == 2 && (!strncmp(s->name, "text_model.embeddings.position_ids", 34) ||
                          strncmp(s->name, "text_model.", 11) != 0))
            continue; /* position_ids, text_projection of a CLIPTextModelWithProjection */
        if (!ok)
            return mx_err_set(err, MX_EFORMAT, "%s: unknown diffusers %s tensor %s",
                              mx_st_path(st), kind == 0 ? "UNet" : "VAE", s->name);
        if ((rc = mx_sd_add_st_tensor(m, st, s, buf, name, err)) < 0)
            return rc;
    }
    return 0;
}

/* The schedule and prediction type of scheduler/scheduler_config.json, when present. */
static int read_scheduler(struct mx_sd_model *m, const char *dir, struct mx_err *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir) >=
        sizeof path)
        return mx_err_set(err, MX_EINVAL, "%s: path too long", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return mx_err_set(err, MX_EFORMAT, "%s: not a JSON object (line %d: %s)", path, je.line,
                          je.text);
    }
    int rc = 0;
    const char *pt = json_string_value(json_object_get(j, "prediction_type"));
    if (pt && !strcmp(pt, "epsilon"))
        mx_sd_hint_prediction(m, MX_SD_PRED_EPS, "scheduler/scheduler_config.json");
    else if (pt && !strcmp(pt, "v_prediction"))
        mx_sd_hint_prediction(m, MX_SD_PRED_V, "scheduler/scheduler_config.json");
    else if (pt)
        rc = mx_err_set(err, MX_EUNSUP, "%s: prediction_type \"%.40s\" is not supported "
                        "(epsilon, v_prediction)", path, pt);
    json_t *steps = json_object_get(j, "num_train_timesteps");
    if (rc == 0 && steps && json_integer_value(steps) != MX_SD_TRAIN_STEPS)
        rc = mx_err_set(err, MX_EUNSUP, "%s: num_train_timesteps %lld (SD uses %d)", path,
                        (long long)json_integer_value(steps), MX_SD_TRAIN_STEPS);
    json_t *tb = json_object_get(j, "trained_betas");
    const char *sched = json_string_value(json_object_get(j, "beta_schedule"));
    if (rc == 0 && json_is_array(tb)) {
        if (json_array_size(tb) != MX_SD_TRAIN_STEPS) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: trained_betas has %zu values, expected %d",
                            path, json_array_size(tb), MX_SD_TRAIN_STEPS);
        } else {
            double prod = 1.0, ac[MX_SD_TRAIN_STEPS];
            for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
                prod *= 1.0 - json_number_value(json_array_get(tb, (size_t)i));
                ac[i] = prod;
            }
            rc = mx_sd_set_alphas(m, ac, MX_ST_F64, MX_SD_TRAIN_STEPS,
                                  "scheduler_config.json trained_betas", err);
            m->alphas_from_file = false;
        }
    } else if (rc == 0 && sched) {
        json_t *b0 = json_object_get(j, "beta_start"), *b1 = json_object_get(j, "beta_end");
        double s = b0 ? json_number_value(b0) : 0.00085, e = b1 ? json_number_value(b1) : 0.012;
        bool scaled = !strcmp(sched, "scaled_linear");
        if (!scaled && strcmp(sched, "linear"))
            rc = mx_err_set(err, MX_EUNSUP, "%s: beta_schedule \"%.40s\" is not supported "
                            "(scaled_linear, linear)", path, sched);
        else if (!(s > 0 && e > s && e < 1))
            rc = mx_err_set(err, MX_EFORMAT, "%s: beta_start %g, beta_end %g out of range", path,
                            s, e);
        else {
            mx_sd_betas_schedule(m->alphas_cumprod, (float)s, (float)e, scaled);
            m->schedule_source = scaled ? "scheduler_config.json (scaled_linear)"
                                        : "scheduler_config.json (linear)";
        }
    }
    json_decref(j);
    return rc;
}

int mx_sd_load_diffusers(struct mx_sd_model *m, const char *dir, struct mx_err *err) {
    struct mx_st_folder *f = NULL;
    int rc = mx_st_folder_open(dir, &f, err);
    if (rc < 0)
        return rc;
    if ((rc = mx_sd_own(m, f, close_folder, err)) < 0)
        return rc;
    const struct mx_st *unet = mx_st_folder_file(f, "unet");
    if (!unet)
        return mx_err_set(err, MX_EFORMAT, "%s: no unet/ weights (diffusion_pytorch_model"
                          "[.fp16].safetensors) in this diffusers folder", dir);
    /* layout facts from the UNet config, checked against the names actually present */
    const json_t *uc = mx_st_folder_config(f, "unet");
    json_t *lj = uc ? json_object_get(uc, "layers_per_block") : NULL;
    int lpb = lj && json_is_integer(lj) ? (int)json_integer_value(lj) : 2;
    if (lpb < 1 || lpb > 8)
        return mx_err_set(err, MX_EFORMAT, "%s: unet layers_per_block %d out of range", dir, lpb);
    bool up_attn[8] = {false};
    char key[96];
    for (int L = 0; L < 8; L++) {
        snprintf(key, sizeof key, "up_blocks.%d.attentions.0.proj_in.weight", L);
        up_attn[L] = mx_st_find_tensor(unet, key) != NULL;
    }
    if ((rc = mx_sd_add_diffusers(m, unet, 0, lpb, up_attn, err)) < 0)
        return rc;
    const struct mx_st *vae = mx_st_folder_file(f, "vae");
    if (vae && (rc = mx_sd_add_diffusers(m, vae, 1, lpb, up_attn, err)) < 0)
        return rc;
    const struct mx_st *te = mx_st_folder_file(f, "text_encoder");
    if (te && (rc = mx_sd_add_diffusers(m, te, 2, lpb, up_attn, err)) < 0)
        return rc;
    return read_scheduler(m, dir, err);
}
