/* llama.c - loading llama / mistral / Mixtral models and the llama-like MoE architectures
 * (qwen2moe, qwen3moe, olmoe, granitemoe) from GGUF: hyperparameters, validation, and the
 * weights as views into the file's mmap.
 *
 * Everything in a model file is untrusted: every key is range-checked, every tensor's presence,
 * shape and type is checked against the hyperparameters before anything runs, and the backend is
 * asked at load whether it supports each (op, type) the forward pass will use, so an unsupported
 * file fails here with a message instead of at token 5,000.
 *
 * Tensor naming follows llama.cpp (src/llama-arch.cpp): token_embd, output_norm, output (absent:
 * tied to token_embd), blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm}, dense
 * blk.N.ffn_{gate,up,down} or MoE blk.N.ffn_gate_inp + ffn_{gate,up,down}_exps (3-D), or the
 * older Mixtral layout with one 2-D tensor per expert (blk.N.ffn_gate.E.weight), which is
 * gathered into one allocation at load. The other architectures add optional pieces, each bound
 * when the arch table (below) or the file says so: attention biases (attn_{q,k,v,output}.bias),
 * QK-norm weights (attn_q_norm, attn_k_norm), a shared expert (ffn_{gate,up,down}_shexp and its
 * gate ffn_gate_inp_shexp), and Llama 3.1's rope_freqs.
 *
 * gpt-oss (general.architecture "gpt-oss", llama.cpp's LLM_ARCH_OPENAI_MOE) shares the loader
 * with its own pieces: gptoss_hparams_read (sliding-window pattern, NEOX rope), yarn_read (YaRN
 * as llama.cpp sets it up) and gptoss_bind_layer (biases, attention sinks, post_attention_norm,
 * expert biases; experts usually MXFP4).
 */
#include "core/llm/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"
#include "core/llm/llama_impl.h"
#include "core/llm/lora.h"
#include "core/llm/placement.h"
#include "core/base/log.h"
#include "core/base/mapfile.h"
#include "core/base/util.h"

/* ---- hyperparameters ------------------------------------------------------------------------ */

/* Reads integer key prefix.suffix into *out; absent keys keep *out when !required. */
static int get_i32(const struct mx_gguf *g, const char *arch, const char *suffix, bool required,
                   int32_t *out, struct mx_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int rc = mx_gguf_get_int(g, key, &v, err);
    if (rc == MX_ENOENT) {
        if (required)
            return mx_err_set(err, MX_EFORMAT, "%s: key '%s' missing", mx_gguf_path(g), key);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (v < 0 || v > INT32_MAX)
        return mx_err_set(err, MX_EFORMAT, "%s: key '%s' out of range (%lld)", mx_gguf_path(g),
                          key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

static int get_f32(const struct mx_gguf *g, const char *arch, const char *suffix, float *out,
                   struct mx_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v;
    int rc = mx_gguf_get_float(g, key, &v, err);
    if (rc == MX_ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (!isfinite(v))
        return mx_err_set(err, MX_EFORMAT, "%s: key '%s' is not finite", mx_gguf_path(g), key);
    *out = (float)v;
    return 0;
}

/* gpt-oss's own keys: its sliding-window layer pattern (default 2: even layers slide, odd ones
 * see everything, as llama.cpp's set_swa_pattern) and NEOX rope. The window itself is required,
 * as llama.cpp requires it. */
static int gptoss_hparams_read(const struct mx_gguf *g, struct mx_llama_hparams *hp,
                               struct mx_err *err) {
    int rc;
    hp->swa_pattern = 2;
    hp->rope_mode = 2; /* MX_ROPE_NEOX */
    if ((rc = get_i32(g, hp->arch, "attention.sliding_window", true, &hp->sliding_window,
                      err)) < 0 ||
        (rc = get_i32(g, hp->arch, "attention.sliding_window_pattern", false, &hp->swa_pattern,
                      err)) < 0)
        return rc;
    if (hp->swa_pattern < 1 || hp->swa_pattern > 64)
        return mx_err_set(err, MX_EFORMAT, "%s: attention.sliding_window_pattern %d out of "
                          "range [1, 64]", mx_gguf_path(g), (int)hp->swa_pattern);
    return 0;
}

/* YaRN as llama.cpp sets it up (llama-context.cpp): extrapolation mix 1 unless the file says
 * otherwise, the ramp between beta_fast and beta_slow rotations over the original context, and
 * the magnitude factor 0.1 ln(factor) + 1 -- which ggml's rope multiplies in again, so llama.cpp
 * divides it out here (ggml-org/llama.cpp#17945) -- times rope.scaling.attn_factor. */
static int yarn_read(const struct mx_gguf *g, const char *arch, float factor,
                     struct mx_llama_hparams *hp, struct mx_err *err) {
    int rc;
    float log_mul = 0.0f, attn = 1.0f;
    if (factor == 0.0f) /* no factor key: llama.cpp's freq_scale 1 */
        factor = 1.0f;
    hp->yarn_ext_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->yarn_n_ctx_orig = hp->n_ctx_train;
    if ((rc = get_f32(g, arch, "rope.scaling.yarn_ext_factor", &hp->yarn_ext_factor, err)) < 0 ||
        (rc = get_f32(g, arch, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast, err)) < 0 ||
        (rc = get_f32(g, arch, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow, err)) < 0 ||
        (rc = get_f32(g, arch, "rope.scaling.yarn_log_multiplier", &log_mul, err)) < 0 ||
        (rc = get_f32(g, arch, "rope.scaling.attn_factor", &attn, err)) < 0 ||
        (rc = get_i32(g, arch, "rope.scaling.original_context_length", false,
                      &hp->yarn_n_ctx_orig, err)) < 0)
        return rc;
    if (!(factor >= 1.0f) || !(hp->yarn_beta_fast > 0.0f) || !(hp->yarn_beta_slow > 0.0f) ||
        hp->yarn_n_ctx_orig < 1 || !(hp->yarn_ext_factor >= 0.0f) || !(attn > 0.0f))
        return mx_err_set(err, MX_EFORMAT, "%s: YaRN parameters out of range (factor %g, beta "
                          "%g/%g, original context %d)", mx_gguf_path(g), factor,
                          hp->yarn_beta_fast, hp->yarn_beta_slow, (int)hp->yarn_n_ctx_orig);
    /* get_mscale(scale, m) = scale <= 1 ? 1 : 0.1 m ln(scale) + 1, in float like llama.cpp */
    hp->yarn_attn_factor = 1.0f;
    if (hp->yarn_ext_factor != 0.0f) {
        float ms1 = factor <= 1.0f ? 1.0f : 0.1f * 1.0f * logf(factor) + 1.0f;
        float msl = factor <= 1.0f ? 1.0f : 0.1f * log_mul * logf(factor) + 1.0f;
        hp->yarn_attn_factor = log_mul != 0.0f ? ms1 / msl : ms1;
        hp->yarn_attn_factor *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    hp->yarn_attn_factor *= attn;
    return 0;
}

/* ---- the architectures ------------------------------------------------------------------------
 * One entry per general.architecture this loader runs: the MX_LLAMA_F_* features in which its
 * forward differs from llama's (llama.cpp src/models/<arch>.cpp). An architecture that is llama
 * plus small changes gets one line here and, when it needs a new feature, a flag in llama.h
 * handled in llama_ctx.c's block helpers. */
struct arch_info {
    const char *name;   /* general.architecture */
    uint32_t flags;     /* MX_LLAMA_F_* */
};

static const struct arch_info ARCHS[] = {
    /* Llama 1-3, Mistral, Mixtral (llama.cpp writes all of them as 'llama') */
    {"llama", MX_LLAMA_F_MOE_NORM_W},
    /* Qwen1.5-MoE, Qwen2-57B-A14B: q/k/v biases, a sigmoid-gated shared expert */
    {"qwen2moe", MX_LLAMA_F_ROPE_NEOX | MX_LLAMA_F_SHEXP_GATE | MX_LLAMA_F_FF_EXP_DIV |
                 MX_LLAMA_F_MOE_ONLY},
    /* Qwen3-30B-A3B, Qwen3-235B-A22B: per-head QK-norm, normalised top-k weights */
    {"qwen3moe", MX_LLAMA_F_ROPE_NEOX | MX_LLAMA_F_QK_NORM_HEAD | MX_LLAMA_F_MOE_NORM_W |
                 MX_LLAMA_F_FF_EXP_DIV | MX_LLAMA_F_MOE_ONLY},
    /* OLMoE-1B-7B: QK-norm over the whole q and k vectors, top-k weights not renormalised */
    {"olmoe", MX_LLAMA_F_ROPE_NEOX | MX_LLAMA_F_QK_NORM_FULL | MX_LLAMA_F_MOE_ONLY},
    /* Granite 3.x MoE (and "MoE shared"): scales on embeddings, residuals, scores, logits */
    {"granitemoe", MX_LLAMA_F_MOE_NORM_W | MX_LLAMA_F_GRANITE},
    /* gpt-oss-20b/120b: its own block (gptoss_hparams_read, gptoss_bind_layer, gptoss_moe) */
    {"gpt-oss", MX_LLAMA_F_ROPE_NEOX | MX_LLAMA_F_MOE_ONLY},
};

/* The arch table entry of name, or NULL. */
static const struct arch_info *arch_find(const char *name) {
    for (size_t i = 0; i < MX_ARRAY_LEN(ARCHS); i++)
        if (strcmp(ARCHS[i].name, name) == 0)
            return &ARCHS[i];
    return NULL;
}

int mx_llama_hparams_read(const struct mx_gguf *g, struct mx_llama_hparams *hp,
                          struct mx_err *err) {
    memset(hp, 0, sizeof *hp);
    const char *path = mx_gguf_path(g);
    const char *arch = NULL;
    int rc = mx_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc == MX_ENOENT)
        return mx_err_set(err, MX_EFORMAT, "%s: key 'general.architecture' missing", path);
    if (rc < 0)
        return rc;
    const struct arch_info *ai = arch_find(arch);
    if (!ai) {
        char list[160];
        size_t o = 0;
        for (size_t i = 0; i < MX_ARRAY_LEN(ARCHS) && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "",
                                  ARCHS[i].name);
        return mx_err_set(err, MX_EUNSUP, "%s: architecture '%.40s' not supported (supported: "
                          "%s; llama covers Llama 1-3, Mistral and Mixtral)", path, arch, list);
    }
    hp->gptoss = strcmp(arch, "gpt-oss") == 0;
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    hp->arch_flags = ai->flags;

    if ((rc = get_i32(g, arch, "context_length", true, &hp->n_ctx_train, err)) < 0 ||
        (rc = get_i32(g, arch, "embedding_length", true, &hp->n_embd, err)) < 0 ||
        (rc = get_i32(g, arch, "block_count", true, &hp->n_layer, err)) < 0 ||
        (rc = get_i32(g, arch, hp->gptoss ? "expert_feed_forward_length" : "feed_forward_length",
                      true, &hp->n_ff, err)) < 0 ||
        (rc = get_i32(g, arch, "attention.head_count", true, &hp->n_head, err)) < 0)
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_i32(g, arch, "attention.head_count_kv", false, &hp->n_head_kv, err)) < 0)
        return rc;
    /* head_dim: attention.key_length when present (Qwen3: 128 with n_embd / n_head = 64) */
    hp->head_dim = hp->n_head > 0 && hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
    int32_t vlen = -1;
    if ((rc = get_i32(g, arch, "attention.key_length", false, &hp->head_dim, err)) < 0 ||
        (rc = get_i32(g, arch, "attention.value_length", false, &vlen, err)) < 0)
        return rc;
    if (vlen >= 0 && vlen != hp->head_dim)
        return mx_err_set(err, MX_EUNSUP, "%s: key length %d != value length %d not supported",
                          path, (int)hp->head_dim, (int)vlen);
    hp->n_rot = hp->head_dim;
    if ((rc = get_i32(g, arch, "rope.dimension_count", false, &hp->n_rot, err)) < 0 ||
        (rc = get_i32(g, arch, "expert_count", false, &hp->n_expert, err)) < 0 ||
        (rc = get_i32(g, arch, "expert_used_count", false, &hp->n_expert_used, err)) < 0 ||
        (rc = get_i32(g, arch, "attention.sliding_window", false, &hp->sliding_window, err)) < 0 ||
        (rc = get_i32(g, arch, "vocab_size", false, &hp->n_vocab, err)) < 0)
        return rc;
    hp->rope_freq_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->norm_eps = 1e-5f;
    if ((rc = get_f32(g, arch, "rope.freq_base", &hp->rope_freq_base, err)) < 0 ||
        (rc = get_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps, err)) < 0)
        return rc;

    if (hp->gptoss && (rc = gptoss_hparams_read(g, hp, err)) < 0)
        return rc;
    /* expert and shared-expert widths (llama.cpp: n_ff_exp, n_ff_shexp) */
    hp->n_ff_exp = hp->n_ff;
    if ((hp->arch_flags & MX_LLAMA_F_FF_EXP_DIV) && hp->n_expert_used > 0)
        hp->n_ff_exp = hp->n_ff / hp->n_expert_used;
    if (hp->arch_flags & MX_LLAMA_F_SHEXP_GATE)
        hp->n_ff_shexp = hp->n_ff;
    if ((rc = get_i32(g, arch, "expert_feed_forward_length", false, &hp->n_ff_exp, err)) < 0 ||
        (rc = get_i32(g, arch, "expert_shared_feed_forward_length", false, &hp->n_ff_shexp,
                      err)) < 0)
        return rc;
    if (hp->arch_flags & MX_LLAMA_F_GRANITE) {
        char lkey[128];
        snprintf(lkey, sizeof lkey, "%s.logit_scale", arch);
        if (!mx_gguf_get(g, lkey))
            return mx_err_set(err, MX_EFORMAT, "%s: key '%s' missing", path, lkey);
        if ((rc = get_f32(g, arch, "logit_scale", &hp->logit_scale, err)) < 0 ||
            (rc = get_f32(g, arch, "residual_scale", &hp->residual_scale, err)) < 0 ||
            (rc = get_f32(g, arch, "embedding_scale", &hp->embd_scale, err)) < 0 ||
            (rc = get_f32(g, arch, "attention.scale", &hp->attn_scale, err)) < 0)
            return rc;
    }

    /* RoPE scaling: linear (position interpolation; "rope.scale_linear" is the old key) or
     * YaRN. */
    float factor = 0.0f;
    if ((rc = get_f32(g, arch, "rope.scale_linear", &factor, err)) < 0)
        return rc;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *stype = NULL;
    rc = mx_gguf_get_str(g, key, &stype, err);
    if (rc < 0 && rc != MX_ENOENT)
        return rc;
    bool yarn = stype && strcmp(stype, "yarn") == 0;
    if (stype && strcmp(stype, "none") != 0) {
        if (strcmp(stype, "linear") != 0 && !yarn)
            return mx_err_set(err, MX_EUNSUP, "%s: rope scaling '%.40s' not supported (only "
                              "linear and yarn)", path, stype);
        if ((rc = get_f32(g, arch, "rope.scaling.factor", &factor, err)) < 0)
            return rc;
    }
    if (factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0.0f))
            return mx_err_set(err, MX_EFORMAT, "%s: rope scaling factor %g", path, factor);
        hp->rope_freq_scale = 1.0f / factor;
    }
    if (yarn && (rc = yarn_read(g, arch, factor, hp, err)) < 0)
        return rc;

    /* the vocabulary: the tokenizer's list when present (checked against token_embd later) */
    const struct mx_gguf_value *toks = mx_gguf_get(g, "tokenizer.ggml.tokens");
    if (toks && toks->type == MX_GGUF_ARRAY && toks->v.arr.n <= INT32_MAX)
        hp->n_vocab = (int32_t)toks->v.arr.n;
    return 0;
}

int mx_llama_hparams_validate(const struct mx_llama_hparams *hp, struct mx_err *err) {
    /* Generous upper bounds: they stop absurd allocations from a corrupt header, not models. */
    struct { const char *name; int64_t v, lo, hi; } r[] = {
        {"embedding_length", hp->n_embd, 1, 1 << 17},
        {"block_count", hp->n_layer, 1, 4096},
        {"feed_forward_length", hp->n_ff, 1, 1 << 20},
        {"attention.head_count", hp->n_head, 1, 4096},
        {"attention.head_count_kv", hp->n_head_kv, 1, 4096},
        {"head dimension", hp->head_dim, 2, 4096},
        {"context_length", hp->n_ctx_train, 1, 1 << 24},
        {"expert_count", hp->n_expert, 0, 1024},
        {"vocabulary size", hp->n_vocab, 1, 1 << 24},
        {"attention.sliding_window", hp->sliding_window, 0, 1 << 24},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(r); i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return mx_err_set(err, MX_EFORMAT, "model: %s %lld out of range [%lld, %lld]",
                              r[i].name, (long long)r[i].v, (long long)r[i].lo,
                              (long long)r[i].hi);
    if (hp->n_head % hp->n_head_kv != 0)
        return mx_err_set(err, MX_EFORMAT, "model: head_count %d is not a multiple of "
                          "head_count_kv %d", (int)hp->n_head, (int)hp->n_head_kv);
    if (hp->head_dim == 0)
        return mx_err_set(err, MX_EFORMAT, "model: embedding_length %d is not a multiple of "
                          "head_count %d and attention.key_length is absent", (int)hp->n_embd,
                          (int)hp->n_head);
    if (hp->n_rot < 2 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return mx_err_set(err, MX_EFORMAT, "model: rope.dimension_count %d must be even and in "
                          "[2, head dimension %d]", (int)hp->n_rot, (int)hp->head_dim);
    if (hp->n_expert > 0 && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
        return mx_err_set(err, MX_EFORMAT, "model: expert_used_count %d must be in [1, "
                          "expert_count %d]", (int)hp->n_expert_used, (int)hp->n_expert);
    if (hp->gptoss && hp->n_expert == 0)
        return mx_err_set(err, MX_EFORMAT, "model: gpt-oss without experts (expert_count 0)");
    if (hp->n_expert == 0 && hp->n_expert_used != 0)
        return mx_err_set(err, MX_EFORMAT, "model: expert_used_count %d without experts",
                          (int)hp->n_expert_used);
    if ((hp->arch_flags & MX_LLAMA_F_MOE_ONLY) && hp->n_expert == 0)
        return mx_err_set(err, MX_EFORMAT, "model: architecture %s needs expert_count > 0",
                          hp->arch);
    struct { const char *name; int64_t v, lo; } w[] = {
        {"expert_feed_forward_length", hp->n_ff_exp, hp->n_expert > 0 ? 1 : 0},
        {"expert_shared_feed_forward_length", hp->n_ff_shexp, 0},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(w); i++)
        if (w[i].v < w[i].lo || w[i].v > (1 << 20))
            return mx_err_set(err, MX_EFORMAT, "model: %s %lld out of range [%lld, %d]",
                              w[i].name, (long long)w[i].v, (long long)w[i].lo, 1 << 20);
    float sc[] = {hp->embd_scale, hp->residual_scale, hp->attn_scale, hp->logit_scale};
    for (size_t i = 0; i < MX_ARRAY_LEN(sc); i++)
        if (!isfinite(sc[i]) || sc[i] < 0.0f || sc[i] > 1e6f)
            return mx_err_set(err, MX_EFORMAT, "model: granite scales (embedding %g, residual "
                              "%g, attention %g, logit %g) must be in [0, 1e6]", hp->embd_scale,
                              hp->residual_scale, hp->attn_scale, hp->logit_scale);
    if (!(hp->rope_freq_base > 0.0f) || !(hp->rope_freq_scale > 0.0f) || !(hp->norm_eps > 0.0f) ||
        !isfinite(hp->rope_freq_base) || !isfinite(hp->norm_eps) || hp->norm_eps > 1.0f)
        return mx_err_set(err, MX_EFORMAT, "model: rope base %g / scale %g / rms eps %g out of "
                          "range", hp->rope_freq_base, hp->rope_freq_scale, hp->norm_eps);
    return 0;
}

/* ---- tensors -------------------------------------------------------------------------------- */

/* What a tensor is used for: decides the type rule and the backend op asked about. */
enum use { USE_NORM, USE_MATMUL, USE_MATMUL_ID, USE_EMBD, USE_BIAS };

static void shape_str(char *buf, size_t n, int nd, const int64_t *ne) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* Checks tensor gt against the expected shape and use, and makes t a view of it in buf, which
 * wraps the host memory starting at host_base. */
static int bind_tensor(struct mx_llama_model *m, const struct mx_gguf_tensor *gt,
                       struct mx_buf *buf, const char *host_base, enum use use, int nd,
                       int64_t ne0, int64_t ne1, int64_t ne2, struct mx_tensor *t,
                       struct mx_err *err) {
    const char *path = mx_gguf_path(m->gguf);
    int64_t want[3] = {ne0, ne1, ne2};
    bool ok = gt->n_dims <= nd || (gt->n_dims == nd + 1 && gt->ne[nd] == 1);
    for (int i = 0; i < 3 && ok; i++)
        ok = gt->ne[i] == (i < nd ? want[i] : 1);
    if (!ok) {
        char a[96], b[96];
        shape_str(a, sizeof a, gt->n_dims, gt->ne);
        shape_str(b, sizeof b, nd, want);
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", path,
                          gt->name, a, b);
    }
    const struct mx_type_traits *tr = mx_type_traits(gt->type);
    if (!tr || !tr->to_float)
        return mx_err_set(err, MX_EUNSUP, "%s: tensor '%s' has unsupported type %s (%d)", path,
                          gt->name, mx_type_name(gt->type), gt->type);
    enum mx_op op = use == USE_MATMUL ? MX_OP_MATMUL : use == USE_MATMUL_ID ? MX_OP_MATMUL_ID
                  : use == USE_EMBD ? MX_OP_GET_ROWS : use == USE_BIAS ? MX_OP_ADD
                  : MX_OP_RMS_NORM;
    if ((use == USE_NORM || use == USE_BIAS) && gt->type != MX_TYPE_F32)
        return mx_err_set(err, MX_EUNSUP, "%s: %s tensor '%s' is %s, expected f32", path,
                          use == USE_NORM ? "norm" : "vector", gt->name, mx_type_name(gt->type));
    if (!mx_backend_supports(m->be, op, (enum mx_type)gt->type))
        return mx_err_set(err, MX_EUNSUP, "%s: tensor '%s': backend %s has no %s for type %s",
                          path, gt->name, mx_backend_name(m->be), mx_op_name(op),
                          mx_type_name(gt->type));
    int rc = mx_tensor_init(t, (enum mx_type)gt->type, ne0, nd > 1 ? ne1 : 1, nd > 2 ? ne2 : 1, 1);
    if (rc < 0)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': bad shape for type %s", path,
                          gt->name, mx_type_name(gt->type));
    if (mx_tensor_nbytes(t) != gt->nbytes)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': %zu bytes, expected %zu", path,
                          gt->name, gt->nbytes, mx_tensor_nbytes(t));
    t->buf = buf;
    /* the same offset inside the backend's buffer (the host mapping itself on the CPU; a device
     * backend's copy of it elsewhere) */
    t->data = (char *)buf->base + ((const char *)gt->data - host_base);
    t->name = gt->name;
    /* counts for bench: all tensors; "active" adjusted by the caller for experts */
    m->size.n_params += (uint64_t)mx_tensor_nelements(t);
    m->size.n_bytes += gt->nbytes;
    return 0;
}

static int bind(struct mx_llama_model *m, const char *name, enum use use, int nd, int64_t ne0,
                int64_t ne1, int64_t ne2, struct mx_tensor *t, struct mx_err *err) {
    const struct mx_gguf_tensor *gt = mx_gguf_find_tensor(m->gguf, name);
    if (!gt)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' missing", mx_gguf_path(m->gguf),
                          name);
    return bind_tensor(m, gt, m->wbuf, m->host_base, use, nd, ne0, ne1, ne2, t, err);
}

/* One gpt-oss block (llama.cpp's llama_model_openai_moe::load_arch_tensors): the llama names
 * plus q/k/v/output biases, attn_sinks [n_head], post_attention_norm (the pre-FFN norm), a
 * router bias and per-expert biases [n, n_expert]. *eparams / *ebytes receive the experts' share
 * (matrices and their biases), which only n_expert_used / n_expert of is read per token. */
static int gptoss_bind_layer(struct mx_llama_model *m, int il, uint64_t *eparams,
                             uint64_t *ebytes, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &m->hp;
    struct mx_llama_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, F = hp->n_ff_exp, X = hp->n_expert;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    const struct {
        const char *name; enum use use; int nd; int64_t ne0, ne1, ne2; struct mx_tensor *t;
        bool expert;
    } ts[] = {
        {"attn_norm.weight", USE_NORM, 1, E, 1, 1, &L->attn_norm, false},
        {"attn_q.weight", USE_MATMUL, 2, E, Q, 1, &L->wq, false},
        {"attn_k.weight", USE_MATMUL, 2, E, KV, 1, &L->wk, false},
        {"attn_v.weight", USE_MATMUL, 2, E, KV, 1, &L->wv, false},
        {"attn_output.weight", USE_MATMUL, 2, Q, E, 1, &L->wo, false},
        {"attn_q.bias", USE_BIAS, 1, Q, 1, 1, &L->bq, false},
        {"attn_k.bias", USE_BIAS, 1, KV, 1, 1, &L->bk, false},
        {"attn_v.bias", USE_BIAS, 1, KV, 1, 1, &L->bv, false},
        {"attn_output.bias", USE_BIAS, 1, E, 1, 1, &L->bo, false},
        {"attn_sinks.weight", USE_BIAS, 1, hp->n_head, 1, 1, &L->sinks, false},
        {"post_attention_norm.weight", USE_NORM, 1, E, 1, 1, &L->ffn_norm, false},
        {"ffn_gate_inp.weight", USE_MATMUL, 2, E, X, 1, &L->ffn_gate_inp, false},
        {"ffn_gate_inp.bias", USE_BIAS, 1, X, 1, 1, &L->gate_inp_b, false},
        {"ffn_gate_exps.weight", USE_MATMUL_ID, 3, E, F, X, &L->gate_exps, true},
        {"ffn_up_exps.weight", USE_MATMUL_ID, 3, E, F, X, &L->up_exps, true},
        {"ffn_down_exps.weight", USE_MATMUL_ID, 3, F, E, X, &L->down_exps, true},
        {"ffn_gate_exps.bias", USE_BIAS, 2, F, X, 1, &L->gate_exps_b, true},
        {"ffn_up_exps.bias", USE_BIAS, 2, F, X, 1, &L->up_exps_b, true},
        {"ffn_down_exps.bias", USE_BIAS, 2, E, X, 1, &L->down_exps_b, true},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(ts); i++) {
        char n[96];
        snprintf(n, sizeof n, "blk.%d.%s", il, ts[i].name);
        uint64_t p0 = m->size.n_params, b0 = m->size.n_bytes;
        int rc = bind(m, n, ts[i].use, ts[i].nd, ts[i].ne0, ts[i].ne1, ts[i].ne2, ts[i].t, err);
        if (rc < 0)
            return rc;
        if (ts[i].expert) {
            *eparams += m->size.n_params - p0;
            *ebytes += m->size.n_bytes - b0;
        }
    }
    return 0;
}

/* bind() for a tensor the file may leave out: absent leaves t zeroed (data NULL). */
static int bind_opt(struct mx_llama_model *m, const char *name, enum use use, int nd, int64_t ne0,
                    int64_t ne1, int64_t ne2, struct mx_tensor *t, struct mx_err *err) {
    if (!mx_gguf_find_tensor(m->gguf, name))
        return 0;
    return bind(m, name, use, nd, ne0, ne1, ne2, t, err);
}

/* The optional pieces of layer il (llama_impl.h's per-architecture groups): attention biases
 * whenever present, QK-norm and the shared expert when the architecture has them. Counts the
 * shared expert as active (every token runs it). */
static int bind_arch_extras(struct mx_llama_model *m, int il, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &m->hp;
    struct mx_llama_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, S = hp->n_ff_shexp;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char n[96];
    int rc = 0;
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
    if ((rc = bind_opt(m, NAME("attn_q.bias"), USE_BIAS, 1, Q, 1, 1, &L->bq, err)) < 0 ||
        (rc = bind_opt(m, NAME("attn_k.bias"), USE_BIAS, 1, KV, 1, 1, &L->bk, err)) < 0 ||
        (rc = bind_opt(m, NAME("attn_v.bias"), USE_BIAS, 1, KV, 1, 1, &L->bv, err)) < 0 ||
        (rc = bind_opt(m, NAME("attn_output.bias"), USE_BIAS, 1, E, 1, 1, &L->bo, err)) < 0)
        return rc;
    if (hp->arch_flags & (MX_LLAMA_F_QK_NORM_HEAD | MX_LLAMA_F_QK_NORM_FULL)) {
        bool full = hp->arch_flags & MX_LLAMA_F_QK_NORM_FULL;
        if ((rc = bind(m, NAME("attn_q_norm.weight"), USE_NORM, 1, full ? Q : hp->head_dim, 1, 1,
                       &L->q_norm, err)) < 0 ||
            (rc = bind(m, NAME("attn_k_norm.weight"), USE_NORM, 1, full ? KV : hp->head_dim, 1,
                       1, &L->k_norm, err)) < 0)
            return rc;
    }
    if (S > 0 && hp->n_expert > 0) {
        if ((hp->arch_flags & MX_LLAMA_F_SHEXP_GATE) &&
            (rc = bind(m, NAME("ffn_gate_inp_shexp.weight"), USE_MATMUL, 2, E, 1, 1,
                       &L->gate_inp_shexp, err)) < 0)
            return rc;
        if ((rc = bind(m, NAME("ffn_gate_shexp.weight"), USE_MATMUL, 2, E, S, 1, &L->gate_shexp,
                       err)) < 0 ||
            (rc = bind(m, NAME("ffn_up_shexp.weight"), USE_MATMUL, 2, E, S, 1, &L->up_shexp,
                       err)) < 0 ||
            (rc = bind(m, NAME("ffn_down_shexp.weight"), USE_MATMUL, 2, S, E, 1, &L->down_shexp,
                       err)) < 0)
            return rc;
    }
#undef NAME
    return 0;
}

/* Older Mixtral files: blk.N.ffn_{gate,up,down}.E.weight, one 2-D tensor per expert. They are
 * copied into one 3-D tensor per kind (the backend's matmul_id wants [n_in, n_out, n_expert]). */
static int gather_experts(struct mx_llama_model *m, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &m->hp;
    static const char *kinds[3] = {"gate", "up", "down"};
    size_t total = 0;
    int rc;
    /* pass 1: check every piece (shape, type, backend support; viewed in the mapping) and size
     * the allocation */
    for (int il = 0; il < hp->n_layer; il++)
        for (int k = 0; k < 3; k++) {
            int64_t n_in = k == 2 ? hp->n_ff_exp : hp->n_embd;
            int64_t n_out = k == 2 ? hp->n_embd : hp->n_ff_exp;
            int type = -1;
            for (int e = 0; e < hp->n_expert; e++) {
                char name[96];
                snprintf(name, sizeof name, "blk.%d.ffn_%s.%d.weight", il, kinds[k], e);
                const struct mx_gguf_tensor *gt = mx_gguf_find_tensor(m->gguf, name);
                if (!gt)
                    return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' missing (MoE layer %d "
                                      "has neither ffn_%s_exps nor per-expert tensors)",
                                      mx_gguf_path(m->gguf), name, il, kinds[k]);
                if (type >= 0 && gt->type != type)
                    return mx_err_set(err, MX_EUNSUP, "%s: experts of '%s' differ in type",
                                      mx_gguf_path(m->gguf), name);
                type = gt->type;
                struct mx_tensor one;
                rc = bind_tensor(m, gt, m->wbuf, m->host_base, USE_MATMUL_ID, 2, n_in, n_out, 1,
                                 &one, err);
                if (rc < 0)
                    return rc;
                if (!mx_add_size(total, gt->nbytes, &total))
                    return mx_err_set(err, MX_EFORMAT, "%s: expert sizes overflow",
                                      mx_gguf_path(m->gguf));
            }
        }
    m->owned_experts = malloc(total ? total : 1);
    if (!m->owned_experts)
        return mx_err_set(err, MX_ENOMEM, "%s: gathering experts needs %zu bytes",
                          mx_gguf_path(m->gguf), total);
    /* pass 2: copy each kind's experts one after the other (before wrapping: a device backend
     * copies the memory when it wraps it) */
    char *p = m->owned_experts;
    for (int il = 0; il < hp->n_layer; il++)
        for (int k = 0; k < 3; k++)
            for (int e = 0; e < hp->n_expert; e++) {
                char name[96];
                snprintf(name, sizeof name, "blk.%d.ffn_%s.%d.weight", il, kinds[k], e);
                const struct mx_gguf_tensor *gt = mx_gguf_find_tensor(m->gguf, name);
                memcpy(p, gt->data, gt->nbytes);
                p += gt->nbytes;
            }
    rc = mx_buf_from_host(m->wbuf->be, m->owned_experts, total ? total : 1, &m->ebuf, err);
    if (rc < 0)
        return rc;
    /* the 3-D views [n_in, n_out, n_expert] */
    size_t off = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        struct mx_llama_layer *L = &m->layers[il];
        struct mx_tensor *dst[3] = {&L->gate_exps, &L->up_exps, &L->down_exps};
        for (int k = 0; k < 3; k++) {
            int64_t n_in = k == 2 ? hp->n_ff_exp : hp->n_embd;
            int64_t n_out = k == 2 ? hp->n_embd : hp->n_ff_exp;
            char name[96];
            snprintf(name, sizeof name, "blk.%d.ffn_%s.0.weight", il, kinds[k]);
            const struct mx_gguf_tensor *gt = mx_gguf_find_tensor(m->gguf, name);
            rc = mx_tensor_init(dst[k], (enum mx_type)gt->type, n_in, n_out, hp->n_expert, 1);
            if (rc < 0)
                return mx_err_set(err, MX_EFORMAT, "layer %d: bad expert shape", il);
            dst[k]->buf = m->ebuf;
            dst[k]->data = (char *)m->ebuf->base + off;
            dst[k]->name = kinds[k];
            off += mx_tensor_nbytes(dst[k]);
        }
    }
    return 0;
}

int mx_llama_model_load(const char *path, struct mx_backend *be, struct mx_llama_model **out,
                        struct mx_err *err) {
    return mx_llama_model_load_opts(path, be, NULL, out, err);
}

int mx_llama_model_load_opts(const char *path, struct mx_backend *be,
                             const struct mx_llama_load_opts *o, struct mx_llama_model **out,
                             struct mx_err *err) {
    unsigned flags = o ? o->map_flags : 0;
    *out = NULL;
    double t0 = mx_time_s();
    struct mx_llama_model *m = calloc(1, sizeof *m);
    if (!m)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    m->be = be;
    int rc = mx_gguf_open_flags(path, flags, &m->gguf, err);
    if (rc < 0)
        goto fail;
    struct mx_llama_hparams *hp = &m->hp;
    rc = mx_llama_hparams_read(m->gguf, hp, err);
    if (rc < 0)
        goto fail;
    const struct mx_gguf_tensor *te = mx_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: tensor 'token_embd.weight' missing", path);
        goto fail;
    }
    if (hp->n_vocab == 0 && te->n_dims == 2 && te->ne[1] <= INT32_MAX)
        hp->n_vocab = (int32_t)te->ne[1];
    rc = mx_llama_hparams_validate(hp, err);
    if (rc < 0) {
        if (err && !strncmp(err->msg, "model:", 6)) { /* say which file */
            char tmp[sizeof err->msg];
            snprintf(tmp, sizeof tmp, "%s:%s", path, err->msg + 6);
            memcpy(err->msg, tmp, sizeof tmp);
        }
        goto fail;
    }

    /* the data section, wrapped once; every weight is a view into it */
    if (mx_gguf_n_tensors(m->gguf) <= 0) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: no tensors", path);
        goto fail;
    }
    const struct mx_gguf_tensor *t0t = mx_gguf_tensor(m->gguf, 0);
    char *base = (char *)t0t->data - t0t->offset;
    m->host_base = base;
    size_t dsize = mx_gguf_file_size(m->gguf) - mx_gguf_data_offset(m->gguf);
    /* split (o->host): the mapping is the host's, and the device gets its parts one tensor at
     * a time (mx_llama_place_weights); else be takes the whole data section */
    rc = mx_buf_from_host(o && o->host ? o->host : be, base, dsize ? dsize : 1, &m->wbuf, err);
    if (rc < 0)
        goto fail;

    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff, X = hp->n_expert;
    const int64_t FX = hp->n_ff_exp;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    if ((rc = bind(m, "token_embd.weight", USE_EMBD, 2, E, V, 1, &m->tok_embd, err)) < 0 ||
        (rc = bind(m, "output_norm.weight", USE_NORM, 1, E, 1, 1, &m->output_norm, err)) < 0)
        goto fail;
    if (mx_gguf_find_tensor(m->gguf, "output.weight")) {
        if ((rc = bind(m, "output.weight", USE_MATMUL, 2, E, V, 1, &m->output, err)) < 0)
            goto fail;
    } else {
        if (!mx_backend_supports(be, MX_OP_MATMUL, m->tok_embd.type)) {
            rc = mx_err_set(err, MX_EUNSUP, "%s: tied output: backend has no matmul for %s",
                            path, mx_type_name(m->tok_embd.type));
            goto fail;
        }
        m->output = m->tok_embd;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    uint64_t expert_params = 0, expert_bytes = 0;
    bool split_experts = false;
    for (int il = 0; il < hp->n_layer; il++) {
        struct mx_llama_layer *L = &m->layers[il];
        char n[96];
#define B(suffix, use, nd, a, b, c, t)                                                   \
        do {                                                                             \
            snprintf(n, sizeof n, "blk.%d." suffix ".weight", il);                       \
            if ((rc = bind(m, n, use, nd, a, b, c, t, err)) < 0)                         \
                goto fail;                                                               \
        } while (0)
        if (hp->gptoss) {
            if ((rc = gptoss_bind_layer(m, il, &expert_params, &expert_bytes, err)) < 0)
                goto fail;
            continue;
        }
        B("attn_norm", USE_NORM, 1, E, 1, 1, &L->attn_norm);
        B("attn_q", USE_MATMUL, 2, E, Q, 1, &L->wq);
        B("attn_k", USE_MATMUL, 2, E, KV, 1, &L->wk);
        B("attn_v", USE_MATMUL, 2, E, KV, 1, &L->wv);
        B("attn_output", USE_MATMUL, 2, Q, E, 1, &L->wo);
        B("ffn_norm", USE_NORM, 1, E, 1, 1, &L->ffn_norm);
        rc = bind_arch_extras(m, il, err);
        if (rc < 0)
            goto fail;
        if (X == 0) {
            B("ffn_gate", USE_MATMUL, 2, E, F, 1, &L->ffn_gate);
            B("ffn_up", USE_MATMUL, 2, E, F, 1, &L->ffn_up);
            B("ffn_down", USE_MATMUL, 2, F, E, 1, &L->ffn_down);
            continue;
        }
        B("ffn_gate_inp", USE_MATMUL, 2, E, X, 1, &L->ffn_gate_inp);
        snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", il);
        if (!mx_gguf_find_tensor(m->gguf, n)) {
            split_experts = true;
            continue;
        }
        uint64_t p0 = m->size.n_params, b0 = m->size.n_bytes;
        B("ffn_gate_exps", USE_MATMUL_ID, 3, E, FX, X, &L->gate_exps);
        B("ffn_up_exps", USE_MATMUL_ID, 3, E, FX, X, &L->up_exps);
        B("ffn_down_exps", USE_MATMUL_ID, 3, FX, E, X, &L->down_exps);
#undef B
        expert_params += m->size.n_params - p0;
        expert_bytes += m->size.n_bytes - b0;
    }
    if (split_experts) {
        uint64_t p0 = m->size.n_params, b0 = m->size.n_bytes;
        rc = gather_experts(m, err);
        if (rc < 0)
            goto fail;
        expert_params += m->size.n_params - p0;
        expert_bytes += m->size.n_bytes - b0;
    }
    /* Llama 3.1+ files carry per-dimension RoPE frequency factors (llama3 rope scaling): pair i
     * rotates with theta / rope_freqs[i], as ggml_rope_ext with freq_factors */
    if ((rc = bind_opt(m, "rope_freqs.weight", USE_BIAS, 1, hp->n_rot / 2, 1, 1, &m->rope_freqs,
                       err)) < 0)
        goto fail;
    /* each part to the backend that runs it (a split: core/llm/placement.c), matmul weights
     * into the backend's fast layout */
    rc = mx_llama_place_weights(m, o, err);
    if (rc < 0)
        goto fail;
    /* the ops every forward uses on activations */
    static const enum mx_op f32_ops[] = {MX_OP_RMS_NORM, MX_OP_ROPE, MX_OP_SILU_MUL, MX_OP_ADD,
                                         MX_OP_CPY};
    for (size_t i = 0; i < MX_ARRAY_LEN(f32_ops); i++)
        if (!mx_backend_supports(be, f32_ops[i], MX_TYPE_F32)) {
            rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s has no %s", path,
                            mx_backend_name(be), mx_op_name(f32_ops[i]));
            goto fail;
        }
    if ((hp->arch_flags & MX_LLAMA_F_SHEXP_GATE) && X > 0 && hp->n_ff_shexp > 0 &&
        (!mx_backend_supports(be, MX_OP_SIGMOID, MX_TYPE_F32) ||
         !mx_backend_supports(be, MX_OP_MUL, MX_TYPE_F32))) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s has no sigmoid (the shared expert's "
                        "gate)", path, mx_backend_name(be));
        goto fail;
    }
    if ((hp->arch_flags & MX_LLAMA_F_GRANITE) && !mx_backend_supports(be, MX_OP_SCALE,
                                                                      MX_TYPE_F32)) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s has no scale (granite's multipliers)",
                        path, mx_backend_name(be));
        goto fail;
    }
    if (X > 0 && (!mx_backend_supports(be, MX_OP_MOE_ROUTE, MX_TYPE_F32) ||
                  !mx_backend_supports(be, MX_OP_MOE_COMBINE, MX_TYPE_F32))) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s has no MoE routing", path,
                        mx_backend_name(be));
        goto fail;
    }
    if (hp->gptoss && !mx_backend_supports(be, MX_OP_SWIGLU_OAI, MX_TYPE_F32)) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: backend %s has no swiglu_oai (gpt-oss experts)",
                        path, mx_backend_name(be));
        goto fail;
    }
    /* what one token reads: everything but the unused experts and all but one embedding row */
    struct mx_llama_size *s = &m->size;
    uint64_t embd_params = (uint64_t)mx_tensor_nelements(&m->tok_embd);
    uint64_t embd_bytes = mx_tensor_nbytes(&m->tok_embd);
    s->n_params_active = s->n_params - embd_params + (uint64_t)E;
    s->n_bytes_active = s->n_bytes - embd_bytes + embd_bytes / (uint64_t)V;
    if (m->output.data == m->tok_embd.data) { /* tied: the output matmul reads it all */
        s->n_params_active += embd_params;
        s->n_bytes_active += embd_bytes;
    }
    if (X > 0) {
        s->n_params_active -= expert_params - expert_params / (uint64_t)X * hp->n_expert_used;
        s->n_bytes_active -= expert_bytes - expert_bytes / (uint64_t)X * hp->n_expert_used;
    }
    mx_log(MX_LOG_INFO, "%s: %s, %d layers, n_embd %d, %d heads (%d kv), vocab %d, %s%d "
           "experts (%d used), %.1f M params (%.1f M active), loaded in %.3f s", path, hp->arch,
           hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_vocab,
           split_experts ? "split " : "", hp->n_expert, hp->n_expert_used, s->n_params / 1e6,
           s->n_params_active / 1e6, mx_time_s() - t0);
    *out = m;
    return 0;
fail:
    mx_llama_model_free(m);
    return rc;
}

void mx_llama_model_free(struct mx_llama_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_pbufs; i++)
        mx_buf_free(m->pbufs[i]);
    free(m->pbufs);
    for (int i = 0; i < m->n_dbufs; i++)
        mx_buf_free(m->dbufs[i]);
    free(m->dbufs);
    mx_buf_free(m->ebuf);
    mx_llama_lora_free_all(m);
    mx_buf_free(m->wbuf);
    free(m->owned_experts);
    free(m->layers);
    mx_gguf_close(m->gguf);
    free(m);
}

const struct mx_llama_hparams *mx_llama_model_hparams(const struct mx_llama_model *m) {
    return &m->hp;
}

const struct mx_gguf *mx_llama_model_gguf(const struct mx_llama_model *m) {
    return m->gguf;
}

void mx_llama_model_size(const struct mx_llama_model *m, struct mx_llama_size *s) {
    *s = m->size;
}
