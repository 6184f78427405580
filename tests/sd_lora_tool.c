/* sd_lora_tool.c - test helper for tests/sd_lora.sh: writes small LoRA files for the random SD
 * 1.5 checkpoint with the project's safetensors writer, and the offline merge the LoRA must
 * equal: a copy of the checkpoint with W + w * (alpha / rank) * up * down written over the
 * affected tensors (summed in double here, independently of core/diffusion/sd_lora.c; the
 * canonical names come from this file's own table, not from the library's name mapping).
 *
 *   sd_lora_tool make CKPT OUT.safetensors [KIND]   KIND: kohya (default), peft, sdxl, shape,
 *                                                   unknown, loha; on the small SDXL
 *                                                   checkpoint: xl (kohya SDXL), xl-peft
 *                                                   (its diffusers/PEFT names), xl-sd1 (one
 *                                                   SD 1.x name among them)
 *   sd_lora_tool merge CKPT LORA.safetensors W OUT  (kohya, peft or xl LoRA of `make`)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/quant.h"
#include "core/format/safetensors.h"
#include "kernels/backend.h"

/* One module of the test LoRA: its kohya key, the PEFT key, the checkpoint weight it adapts. */
struct mod {
    const char *kohya;   /* lora_unet_... / lora_te_... */
    const char *peft;    /* unet.... / text_encoder.... */
    const char *ldm;     /* the canonical checkpoint name */
    int rank;
    float alpha;         /* 0: no .alpha tensor (scale 1) */
    int third;           /* 1..3: the q/k/v rows of a fused in_proj (SDXL's bigG); 0: whole */
};

static const struct mod k_mods[] = {
    {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
     "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
     "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", 4, 2, 0},
    {"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
     "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k",
     "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight", 4, 0, 0},
    {"lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_ff_net_2",
     "unet.up_blocks.1.attentions.2.transformer_blocks.0.ff.net.2",
     "model.diffusion_model.output_blocks.5.1.transformer_blocks.0.ff.net.2.weight", 4, 8, 0},
    {"lora_unet_down_blocks_1_resnets_0_conv1", "unet.down_blocks.1.resnets.0.conv1",
     "model.diffusion_model.input_blocks.4.0.in_layers.2.weight", 4, 4, 0}, /* LoCon 3x3 */
    {"lora_unet_up_blocks_3_attentions_0_proj_in", "unet.up_blocks.3.attentions.0.proj_in",
     "model.diffusion_model.output_blocks.9.1.proj_in.weight", 2, 1, 0},    /* 1x1 conv */
    {"lora_unet_input_blocks_2_1_transformer_blocks_0_attn1_to_out_0", /* LDM-style kohya */
     "unet.down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0",
     "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn1.to_out.0.weight", 4, 4, 0},
    {"lora_unet_down_blocks_2_resnets_1_time_emb_proj",
     "unet.down_blocks.2.resnets.1.time_emb_proj",
     "model.diffusion_model.input_blocks.8.0.emb_layers.1.weight", 4, 4, 0},
    {"lora_te_text_model_encoder_layers_0_self_attn_q_proj",
     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
     "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", 4, 4, 0},
    {"lora_te_text_model_encoder_layers_11_mlp_fc2",
     "text_encoder.text_model.encoder.layers.11.mlp.fc2",
     "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight", 8, 0, 0},
};
#define N_MODS (int)(sizeof k_mods / sizeof k_mods[0])

/* The SDXL LoRA (kohya names, the small SDXL checkpoint of tests/sdxl_ckpt.sh): UNet attention
 * in an input, the middle and an output block (SGM names), a feed-forward under its diffusers
 * name, a CLIP-L (te1) layer, and bigG (te2) k_proj, which is the middle third of the file's
 * fused in_proj_weight, and an MLP; `peft` holds every module's diffusers/PEFT name. `ldm` is
 * the file's own (SGM) name here. */
static const struct mod k_xl_mods[] = {
    {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
     "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
     "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight", 4, 2, 0},
    {"lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k",
     "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k",
     "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight", 4, 0, 0},
    {"lora_unet_output_blocks_1_1_transformer_blocks_0_attn1_to_out_0",
     "unet.up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0",
     "model.diffusion_model.output_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight", 4, 8,
     0},
    {"lora_unet_up_blocks_0_attentions_2_transformer_blocks_0_ff_net_2",
     "unet.up_blocks.0.attentions.2.transformer_blocks.0.ff.net.2",
     "model.diffusion_model.output_blocks.2.1.transformer_blocks.0.ff.net.2.weight", 4, 4, 0},
    {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
     "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
     4, 4, 0},
    {"lora_te2_text_model_encoder_layers_0_self_attn_k_proj",
     "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj",
     "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", 4, 4, 2},
    {"lora_te2_text_model_encoder_layers_1_mlp_fc1",
     "text_encoder_2.text_model.encoder.layers.1.mlp.fc1",
     "conditioner.embedders.1.model.transformer.resblocks.1.mlp.c_fc.weight", 8, 0, 0},
};
#define N_XL_MODS (int)(sizeof k_xl_mods / sizeof k_xl_mods[0])

/* Deterministic normal-ish values (sum of uniforms), scaled by sd. */
static float rnd(unsigned long long *s, float sd) {
    float acc = 0;
    for (int i = 0; i < 4; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        acc += (float)((*s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
    }
    return acc * 1.7320508f * sd;
}

/* out and in (flattened) of a checkpoint tensor [out, in, (kh, kw)], and whether it is a conv. */
static void dims(const struct mx_st_tensor *t, const struct mod *m, int64_t *n_out,
                 int64_t *n_in) {
    *n_out = m->third ? t->shape[0] / 3 : t->shape[0];
    *n_in = t->n_elements / t->shape[0];
}

static int make(const char *ckpt, const char *out, const char *kind) {
    struct mx_err err = {0};
    struct mx_st *st;
    if (mx_st_open(ckpt, &st, &err) < 0) {
        fprintf(stderr, "sd_lora_tool: %s\n", err.msg);
        return 1;
    }
    struct mx_st_writer *w = mx_st_writer_new();
    unsigned long long seed = 12345;
    bool peft = !strcmp(kind, "peft") || !strcmp(kind, "xl-peft"), xl = !strncmp(kind, "xl", 2);
    const struct mod *mods = xl ? k_xl_mods : k_mods;
    int n_mods = xl ? N_XL_MODS : N_MODS, rc = 0;
    for (int i = 0; i < n_mods && rc == 0; i++) {
        const struct mod *m = &mods[i];
        const struct mx_st_tensor *t = mx_st_find_tensor(st, m->ldm);
        if (!t) {
            fprintf(stderr, "sd_lora_tool: %s: no %s\n", ckpt, m->ldm);
            rc = 1;
            break;
        }
        int64_t n_out, n_in;
        dims(t, m, &n_out, &n_in);
        int64_t r = m->rank;
        float *up = malloc((size_t)(n_out * r) * sizeof(float));
        float *down = malloc((size_t)(r * n_in) * sizeof(float));
        for (int64_t j = 0; j < n_out * r; j++)
            up[j] = rnd(&seed, 0.15f);
        for (int64_t j = 0; j < r * n_in; j++)
            down[j] = rnd(&seed, 0.15f);
        int64_t sh_up[4] = {n_out, r, 1, 1}, sh_down[4] = {r, t->shape[1], 1, 1};
        int nd = t->n_dims; /* conv layers: 4-D up/down (down k x k for LoCon) */
        if (nd == 4) {
            sh_down[2] = t->shape[2];
            sh_down[3] = t->shape[3];
        }
        if (!strcmp(kind, "shape") && i == 2)
            sh_up[0] = n_out / 2; /* a module whose up does not fit the weight */
        char name[512];
        const char *key = peft ? m->peft : m->kohya;
        if (!strcmp(kind, "sdxl") && i == 7)
            key = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj";
        if (!strcmp(kind, "xl-sd1") && i == 4) /* SD 1.x's one-encoder name on SDXL */
            key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
        if (!strcmp(kind, "unknown") && i == 0)
            key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn9_to_q";
        snprintf(name, sizeof name, "%s.%s", key, peft ? "lora_B.weight" : "lora_up.weight");
        rc |= mx_st_writer_add_tensor(w, name, MX_ST_F32, nd == 4 ? 4 : 2, sh_up, up);
        snprintf(name, sizeof name, "%s.%s", key,
                 peft ? "lora_A.weight" : !strcmp(kind, "loha") && i == 1 ? "hada_w1_a"
                                                                          : "lora_down.weight");
        rc |= mx_st_writer_add_tensor(w, name, MX_ST_F32, nd == 4 ? 4 : 2, sh_down, down);
        if (m->alpha > 0 && !peft) {
            snprintf(name, sizeof name, "%s.alpha", key);
            float a = m->alpha;
            rc |= mx_st_writer_add_tensor(w, name, MX_ST_F32, 0, NULL, &a);
        }
        free(up);
        free(down);
    }
    if (rc == 0 && mx_st_writer_write(w, out, &err) < 0) {
        fprintf(stderr, "sd_lora_tool: %s\n", err.msg);
        rc = 1;
    }
    mx_st_writer_free(w);
    mx_st_close(st);
    return rc ? 1 : 0;
}

/* The F32 values of a LoRA tensor (F32 as `make` writes them), or NULL. */
static const float *lora_f32(const struct mx_st *l, const char *key, const char *suffix) {
    char name[512];
    snprintf(name, sizeof name, "%s.%s", key, suffix);
    const struct mx_st_tensor *t = mx_st_find_tensor(l, name);
    return t && t->dtype == MX_ST_F32 ? t->data : NULL;
}

static int merge(const char *ckpt, const char *lora, double wt, const char *out) {
    struct mx_err err = {0};
    char cmd[8192];
    /* an OUT left by an earlier merge is reused: every affected tensor is rewritten below from
     * the checkpoint's own values, and nothing else differs */
    snprintf(cmd, sizeof cmd, "cp --reflink=auto '%s' '%s'", ckpt, out);
    if (access(out, F_OK) != 0 && system(cmd) != 0) {
        fprintf(stderr, "sd_lora_tool: %s failed\n", cmd);
        return 1;
    }
    struct mx_st *st, *l;
    if (mx_st_open(ckpt, &st, &err) < 0 || mx_st_open(lora, &l, &err) < 0) {
        fprintf(stderr, "sd_lora_tool: %s\n", err.msg);
        return 1;
    }
    bool peft = mx_st_find_tensor(l, "unet.down_blocks.0.attentions.0.transformer_blocks.0."
                                      "attn1.to_q.lora_A.weight") != NULL;
    char xkey[256], pkey[256];
    snprintf(xkey, sizeof xkey, "%s.lora_up.weight", k_xl_mods[0].kohya);
    snprintf(pkey, sizeof pkey, "%s.lora_B.weight", k_xl_mods[0].peft);
    bool xl_peft = mx_st_find_tensor(l, pkey) != NULL;
    bool xl = xl_peft || mx_st_find_tensor(l, xkey) != NULL;
    peft = peft || xl_peft;
    const struct mod *mods = xl ? k_xl_mods : k_mods;
    int n_mods = xl ? N_XL_MODS : N_MODS;
    FILE *f = fopen(out, "r+b");
    if (!f)
        return 1;
    const struct mx_type_traits *f16 = mx_type_traits(MX_TYPE_F16);
    for (int i = 0; i < n_mods; i++) {
        const struct mod *m = &mods[i];
        const struct mx_st_tensor *t = mx_st_find_tensor(st, m->ldm);
        const char *key = peft ? m->peft : m->kohya;
        const float *up = lora_f32(l, key, peft ? "lora_B.weight" : "lora_up.weight");
        const float *down = lora_f32(l, key, peft ? "lora_A.weight" : "lora_down.weight");
        const float *alpha = peft ? NULL : lora_f32(l, key, "alpha");
        if (!t || t->dtype != MX_ST_F16 || !up || !down) {
            fprintf(stderr, "sd_lora_tool: module %s: missing tensor or not F16\n", key);
            return 1;
        }
        int64_t n_out, n_in, r = m->rank;
        dims(t, m, &n_out, &n_in);
        double scale = alpha ? (double)*alpha / (double)r : 1.0;
        int64_t row0 = m->third ? (m->third - 1) * n_out : 0, ne = n_out * n_in;
        float *wv = malloc((size_t)ne * sizeof(float));
        uint16_t *h = malloc((size_t)ne * 2);
        f16->to_float((const uint16_t *)t->data + row0 * n_in, wv, ne);
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t k = 0; k < n_in; k++) {
                double d = 0;
                for (int64_t j = 0; j < r; j++)
                    d += (double)up[o * r + j] * (double)down[j * n_in + k];
                wv[o * n_in + k] = (float)((double)wv[o * n_in + k] + wt * scale * d);
            }
        f16->from_float(wv, h, ne);
        if (fseek(f, (long)(mx_st_data_offset(st) + t->offset + (size_t)(row0 * n_in) * 2),
                  SEEK_SET) != 0 ||
            fwrite(h, 2, (size_t)ne, f) != (size_t)ne)
            return 1;
        free(wv);
        free(h);
    }
    int rc = fclose(f) == 0 ? 0 : 1;
    mx_st_close(l);
    mx_st_close(st);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "make"))
        return make(argv[2], argv[3], argc > 4 ? argv[4] : "kohya");
    if (argc == 6 && !strcmp(argv[1], "merge"))
        return merge(argv[2], argv[3], atof(argv[4]), argv[5]);
    fprintf(stderr, "usage: sd_lora_tool make CKPT OUT [KIND] | merge CKPT LORA W OUT\n");
    return 2;
}
