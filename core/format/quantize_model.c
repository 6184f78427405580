/* quantize_model.c - `llama-quantize` for mixel: the per-tensor type mix and the conversion.
 *
 * Two parts. The plan (mx_quantize_plan) picks each tensor's output type with the rules of
 * llama.cpp's src/llama-quant.cpp (llama_tensor_get_type and its helpers), restricted to the file
 * types whose quantizers mixel has (Q4_0/1, Q5_0/1, Q8_0, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M,
 * Q6_K, IQ4_NL, IQ4_XS, IQ3_S, IQ3_M, F16, BF16, F32, and with an importance matrix IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ2_M, IQ1_S, IQ1_M, IQ3_XXS, IQ3_XS and Q2_K_S): llama-quantize's list
 * but Q1_0, Q2_0, TQ1_0, TQ2_0 and COPY; MXFP4_MOE too. The conversion
 * (mx_quantize_model) then dequantizes each source row with the scalar reference dequantizer
 * and quantizes it with llama-quantize's quantizer (mx_quantize_row_weighted: ggml's *_ref
 * without an importance matrix, the weighted searches with the tensor's imatrix row per expert
 * when one is given), the rows of a tensor split over a few threads; tensors whose type does
 * not change are copied.
 *
 * Workload: multi-GB models converted once; the time is in the row quantizers (Q4_K/Q6_K search
 * for scales), so rows are split evenly across threads and nothing else is clever.
 *
 * Ref: https://github.com/ggml-org/llama.cpp/blob/007dbbf3fd17eefe9b47fee45f48f7ba5e62b714/src/llama-quant.cpp
 * (rules learned from there and rewritten). llama.cpp visits tensors sorted by layer number, then
 * name (llama_model_loader's weight_name_comparer), and its attn_v / ffn_down counters count in
 * that order; the plan does the same, while the output keeps the input's tensor order.
 */
#include "core/format/quantize_model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/format/imatrix.h"
#include "core/base/quant.h"
#include "core/base/quant_iq.h"
#include "core/base/util.h"

#define MAX_THREADS 256

/* ---- file types ------------------------------------------------------------------------------ */

struct ftype_info {
    int ftype;          /* enum mx_ftype */
    const char *name;   /* llama-quantize's name */
    int default_type;   /* enum mx_type of most weights */
};

static const struct ftype_info ftypes[] = {
    {MX_FTYPE_MOSTLY_Q4_0,   "Q4_0",   MX_TYPE_Q4_0},
    {MX_FTYPE_MOSTLY_Q4_1,   "Q4_1",   MX_TYPE_Q4_1},
    {MX_FTYPE_MOSTLY_Q5_0,   "Q5_0",   MX_TYPE_Q5_0},
    {MX_FTYPE_MOSTLY_Q5_1,   "Q5_1",   MX_TYPE_Q5_1},
    {MX_FTYPE_MOSTLY_Q2_K,   "Q2_K",   MX_TYPE_Q2_K},
    {MX_FTYPE_MOSTLY_Q3_K_S, "Q3_K_S", MX_TYPE_Q3_K},
    {MX_FTYPE_MOSTLY_Q3_K_M, "Q3_K_M", MX_TYPE_Q3_K},
    {MX_FTYPE_MOSTLY_Q3_K_L, "Q3_K_L", MX_TYPE_Q3_K},
    {MX_FTYPE_MOSTLY_Q4_K_S, "Q4_K_S", MX_TYPE_Q4_K},
    {MX_FTYPE_MOSTLY_Q4_K_M, "Q4_K_M", MX_TYPE_Q4_K},
    {MX_FTYPE_MOSTLY_Q5_K_S, "Q5_K_S", MX_TYPE_Q5_K},
    {MX_FTYPE_MOSTLY_Q5_K_M, "Q5_K_M", MX_TYPE_Q5_K},
    {MX_FTYPE_MOSTLY_Q6_K,   "Q6_K",   MX_TYPE_Q6_K},
    {MX_FTYPE_MOSTLY_IQ2_XXS, "IQ2_XXS", MX_TYPE_IQ2_XXS},
    {MX_FTYPE_MOSTLY_IQ2_XS, "IQ2_XS", MX_TYPE_IQ2_XS},
    {MX_FTYPE_MOSTLY_IQ2_S, "IQ2_S", MX_TYPE_IQ2_XS}, /* sic: llama.cpp's IQ2_S is IQ2_XS-based */
    {MX_FTYPE_MOSTLY_IQ2_M, "IQ2_M", MX_TYPE_IQ2_S},
    {MX_FTYPE_MOSTLY_IQ1_S, "IQ1_S", MX_TYPE_IQ1_S},
    {MX_FTYPE_MOSTLY_IQ1_M, "IQ1_M", MX_TYPE_IQ1_M},
    {MX_FTYPE_MOSTLY_IQ3_XXS, "IQ3_XXS", MX_TYPE_IQ3_XXS},
    {MX_FTYPE_MOSTLY_IQ3_XS, "IQ3_XS", MX_TYPE_IQ3_S},
    {MX_FTYPE_MOSTLY_Q2_K_S, "Q2_K_S", MX_TYPE_Q2_K},
    {MX_FTYPE_MOSTLY_IQ3_S, "IQ3_S", MX_TYPE_IQ3_S},
    {MX_FTYPE_MOSTLY_IQ3_M, "IQ3_M", MX_TYPE_IQ3_S},
    {MX_FTYPE_MOSTLY_IQ4_NL, "IQ4_NL", MX_TYPE_IQ4_NL},
    {MX_FTYPE_MOSTLY_IQ4_XS, "IQ4_XS", MX_TYPE_IQ4_XS},
    {MX_FTYPE_MOSTLY_MXFP4_MOE, "MXFP4_MOE", MX_TYPE_MXFP4},
    {MX_FTYPE_MOSTLY_Q8_0,   "Q8_0",   MX_TYPE_Q8_0},
    {MX_FTYPE_MOSTLY_F16,    "F16",    MX_TYPE_F16},
    {MX_FTYPE_MOSTLY_BF16,   "BF16",   MX_TYPE_BF16},
    {MX_FTYPE_ALL_F32,       "F32",    MX_TYPE_F32},
};
#define N_FTYPES ((int)(sizeof ftypes / sizeof ftypes[0]))

static const struct ftype_info *ftype_find(int ftype) {
    for (int i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype)
            return &ftypes[i];
    return NULL;
}

int mx_ftype_from_name(const char *name) {
    if (!name || !*name)
        return -1;
    for (int i = 0; i < N_FTYPES; i++)
        if (strcasecmp(name, ftypes[i].name) == 0)
            return ftypes[i].ftype;
    /* llama-quantize's short names for the recommended K mixes */
    if (strcasecmp(name, "Q3_K") == 0)
        return MX_FTYPE_MOSTLY_Q3_K_M;
    if (strcasecmp(name, "Q4_K") == 0)
        return MX_FTYPE_MOSTLY_Q4_K_M;
    if (strcasecmp(name, "Q5_K") == 0)
        return MX_FTYPE_MOSTLY_Q5_K_M;
    char *end;
    errno = 0;
    long v = strtol(name, &end, 10);
    if (errno == 0 && *end == 0 && v >= 0 && v < 1000 && ftype_find((int)v))
        return (int)v;
    return -1;
}

bool mx_ftype_needs_imatrix(int ftype) {
    return ftype == MX_FTYPE_MOSTLY_IQ2_XXS || ftype == MX_FTYPE_MOSTLY_IQ2_XS ||
           ftype == MX_FTYPE_MOSTLY_IQ2_S || ftype == MX_FTYPE_MOSTLY_IQ2_M ||
           ftype == MX_FTYPE_MOSTLY_IQ1_S || ftype == MX_FTYPE_MOSTLY_IQ1_M ||
           ftype == MX_FTYPE_MOSTLY_IQ3_XXS || ftype == MX_FTYPE_MOSTLY_IQ3_XS ||
           ftype == MX_FTYPE_MOSTLY_Q2_K_S;
}

/* The 1- and 2-bit IQ file types, which share llama.cpp's low-bit mix. */
static bool low_bit_iq(int ftype) {
    return ftype == MX_FTYPE_MOSTLY_IQ2_XXS || ftype == MX_FTYPE_MOSTLY_IQ2_XS ||
           ftype == MX_FTYPE_MOSTLY_IQ2_S || ftype == MX_FTYPE_MOSTLY_IQ2_M ||
           ftype == MX_FTYPE_MOSTLY_IQ1_S || ftype == MX_FTYPE_MOSTLY_IQ1_M;
}

const char *mx_ftype_name(int ftype) {
    const struct ftype_info *f = ftype_find(ftype);
    return f ? f->name : NULL;
}

const int *mx_ftype_list(int *n) {
    static int list[N_FTYPES];
    for (int i = 0; i < N_FTYPES; i++)
        list[i] = ftypes[i].ftype;
    if (n)
        *n = N_FTYPES;
    return list;
}

/* ---- the type mix ---------------------------------------------------------------------------- */

/* The N of a "blk.N." name, or -1 (also for numbers of more than 9 digits: no overflow). */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    int v = 0, k = 0;
    for (; *p >= '0' && *p <= '9'; p++, k++) {
        if (k == 9)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return k > 0 && *p == '.' ? v : -1;
}

/* Broad roles of a tensor, from its name (llama.cpp's tensor_category). */
enum category {
    CAT_TOKEN_EMBD, CAT_ATTN_Q, CAT_ATTN_V, CAT_ATTN_K, CAT_ATTN_QKV, CAT_ATTN_KV_B,
    CAT_ATTN_OUTPUT, CAT_FFN_UP, CAT_FFN_GATE, CAT_FFN_DOWN, CAT_OUTPUT, CAT_OTHER
};

static enum category category_of(const char *name) {
    if (strcmp(name, "output.weight") == 0)
        return CAT_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "per_layer_token_embd.weight") == 0)
        return CAT_TOKEN_EMBD;
    static const struct { const char *sub; enum category cat; } by_sub[] = {
        {"attn_qkv.weight", CAT_ATTN_QKV},       {"attn_kv_b.weight", CAT_ATTN_KV_B},
        {"attn_v.weight", CAT_ATTN_V},           {"attn_k.weight", CAT_ATTN_K},
        {"attn_q.weight", CAT_ATTN_Q},           {"attn_output.weight", CAT_ATTN_OUTPUT},
        {"ffn_up", CAT_FFN_UP},                  {"ffn_gate", CAT_FFN_GATE},
        {"ffn_down", CAT_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof by_sub / sizeof by_sub[0]; i++)
        if (strstr(name, by_sub[i].sub))
            return by_sub[i].cat;
    return CAT_OTHER;
}

/* attn_v and the tensors that play its role (fused QKV, MLA's kv_b): the most sensitive ones. */
static bool is_attn_v_like(enum category c) {
    return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* Dimensions that count: ggml_n_dims (trailing 1s dropped, at least 1). */
static int eff_dims(const struct mx_gguf_tensor *t) {
    int n = 1;
    for (int d = 1; d < MX_GGUF_MAX_DIMS; d++)
        if (t->ne[d] > 1)
            n = d + 1;
    return n;
}

/* Whether a tensor may change type at all: 2-D/3-D "*weight" tensors, except norms, the MoE
 * router and small special tensors of other architectures (llama.cpp's
 * tensor_allows_quantization with its default params). */
static bool allows_quantization(const struct mx_gguf_tensor *t) {
    if (eff_dims(t) < 2)
        return false;
    const char *name = t->name;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight") != 0)
        return false;
    static const char *const keep[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
        "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
        "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
        "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
        "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
        "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
        ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strstr(name, keep[i]))
            return false;
    /* BERT-style absolute position embeddings and token types */
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
        return false;
    return true;
}

/* What the mix depends on, read once from the metadata. */
struct mix_state {
    int ftype;
    bool falcon;           /* general.architecture == "falcon" */
    bool is_70b;           /* llama with 80 layers and GQA: llama.cpp's LLM_TYPE_70B */
    int64_t n_gqa;         /* query heads per KV head (llama.cpp's n_gqa(); 0 without heads) */
    int64_t n_expert;      /* <arch>.expert_count, 0 when absent */
    int64_t n_layer;       /* <arch>.block_count (or 1 + the highest blk.N seen) */
    bool tied;             /* no output.weight: token_embd doubles as the output matrix */
    int n_attention_wv;    /* attn_v-like tensors in the file */
    int i_attention_wv;    /* those visited so far (in visit order) */
    int i_ffn_down;        /* ffn_down tensors visited so far */
    int i_ffn_gate;        /* ffn_gate tensors visited so far (IQ3_XS's middle-layer rule) */
    int i_ffn_up;          /* ffn_up tensors likewise */
    bool has_imatrix;      /* quantizing with importance weights (llama.cpp's qs.has_imatrix) */
};

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third between. */
static bool use_more_bits(int64_t i_layer, int64_t n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 ||
           (i_layer - n_layers / 8) % 3 == 2;
}

/* The layer of an ffn_down / ffn_gate / ffn_up tensor: its blk.N for MoE models (experts may be
 * stored out of order), else the running count of its kind (visited). Returns 0 or MX_EFORMAT. */
static int ffn_layer(const struct mix_state *s, const char *name, int visited, int64_t *il,
                     struct mx_err *err) {
    *il = visited;
    if (s->n_expert > 1) {
        int v = layer_of(name);
        if (v < 0)
            return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': no layer number (blk.N.)", name);
        if (v >= s->n_layer)
            return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': layer %d outside the %" PRId64
                              " layers of block_count", name, v, s->n_layer);
        *il = v;
    }
    return 0;
}

/* The mix's type for one quantizable tensor, before the block-size fallback (llama.cpp's
 * llama_tensor_get_type_impl for the file types listed above). Updates the counters. */
static int mix_type(struct mix_state *s, const struct mx_gguf_tensor *t, int type,
                    struct mx_err *err) {
    const int ft = s->ftype;
    enum category cat = category_of(t->name);
    const struct mx_type_traits *tr = mx_type_traits(type);
    if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) {
        /* the output matrix decides every token: at least 6 bits (5 in the 2-bit mixes) */
        if (ft == MX_FTYPE_MOSTLY_MXFP4_MOE || s->falcon || t->ne[0] % tr->blck_size != 0)
            type = MX_TYPE_Q8_0;
        else if (low_bit_iq(ft) || ft == MX_FTYPE_MOSTLY_IQ3_XXS) /* the IQ1..IQ3_XXS mixes */
            type = MX_TYPE_Q5_K;
        else if (type != MX_TYPE_Q8_0)
            type = MX_TYPE_Q6_K;
    } else if (ft == MX_FTYPE_MOSTLY_MXFP4_MOE) {
        /* gpt-oss's mix: the experts (3-D: one plane per expert) MXFP4, every other matrix Q8_0
         * (llama.cpp matches bailingmoe3's expert roles by name too; mixel has no such arch) */
        type = t->ne[2] > 1 ? MX_TYPE_MXFP4 : MX_TYPE_Q8_0;
    } else if (cat == CAT_TOKEN_EMBD) {
        if (low_bit_iq(ft)) /* IQ/TQ mixes only */
            type = ft == MX_FTYPE_MOSTLY_IQ2_S || ft == MX_FTYPE_MOSTLY_IQ2_M ? MX_TYPE_IQ3_S
                                                                             : MX_TYPE_Q2_K;
        else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS)
            type = MX_TYPE_IQ3_S;
    } else if (low_bit_iq(ft)) {
        /* llama.cpp's 1- and 2-bit IQ mixes: more bits where few weights decide much (IQ3_S in
         * IQ2_S / IQ2_M, Q2_K or IQ2_XXS in the others) */
        const bool iq2sm = ft == MX_FTYPE_MOSTLY_IQ2_S || ft == MX_FTYPE_MOSTLY_IQ2_M;
        const bool iq1 = ft == MX_FTYPE_MOSTLY_IQ1_S || ft == MX_FTYPE_MOSTLY_IQ1_M;
        if (is_attn_v_like(cat)) {
            type = s->n_gqa >= 4 || s->n_expert >= 4 ? MX_TYPE_Q4_K
                 : iq2sm ? MX_TYPE_IQ3_S : MX_TYPE_Q2_K;
            s->i_attention_wv++;
        } else if (s->n_expert == 8 && cat == CAT_ATTN_K) {
            type = MX_TYPE_Q4_K;
        } else if (cat == CAT_FFN_DOWN) {
            if (s->i_ffn_down < s->n_layer / 8) /* the visit count, not blk.N, as llama.cpp */
                type = iq2sm ? MX_TYPE_IQ3_S : MX_TYPE_Q2_K;
            s->i_ffn_down++;
        } else if (cat == CAT_ATTN_OUTPUT) {
            if (s->n_expert == 8)
                type = MX_TYPE_Q5_K;
            else if (iq1)
                type = MX_TYPE_IQ2_XXS;
            else if (iq2sm)
                type = MX_TYPE_IQ3_S;
        }
    } else if (is_attn_v_like(cat)) {
        if (ft == MX_FTYPE_MOSTLY_Q2_K)
            type = s->n_gqa >= 4 ? MX_TYPE_Q4_K : MX_TYPE_Q3_K;
        else if (ft == MX_FTYPE_MOSTLY_Q2_K_S && s->n_gqa >= 4)
            type = MX_TYPE_Q4_K;
        else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS)
            type = s->n_gqa >= 4 ? MX_TYPE_Q4_K : !s->has_imatrix ? MX_TYPE_IQ3_S
                                                                   : MX_TYPE_IQ3_XXS;
        else if (ft == MX_FTYPE_MOSTLY_Q3_K_M)
            type = s->i_attention_wv < 2 ? MX_TYPE_Q5_K : MX_TYPE_Q4_K;
        else if (ft == MX_FTYPE_MOSTLY_Q3_K_L)
            type = MX_TYPE_Q5_K;
        else if ((ft == MX_FTYPE_MOSTLY_Q4_K_M || ft == MX_FTYPE_MOSTLY_Q5_K_M) &&
            use_more_bits(s->i_attention_wv, s->n_attention_wv))
            type = MX_TYPE_Q6_K;
        else if (ft == MX_FTYPE_MOSTLY_Q4_K_S && s->i_attention_wv < 4)
            type = MX_TYPE_Q5_K;
        else if ((ft == MX_FTYPE_MOSTLY_IQ4_NL || ft == MX_FTYPE_MOSTLY_IQ4_XS) && s->n_gqa >= 4)
            type = MX_TYPE_Q5_K; /* GQA: attn_v is small and shared by >= 4 query heads */
        else if (((ft == MX_FTYPE_MOSTLY_IQ3_S || ft == MX_FTYPE_MOSTLY_IQ3_XS) && s->n_gqa >= 4) ||
                 ft == MX_FTYPE_MOSTLY_IQ3_M)
            type = MX_TYPE_Q4_K;
        /* 70B: 8 query heads share each attn_v, so it is small; more bits are nearly free */
        if (s->is_70b && (type == MX_TYPE_Q3_K || type == MX_TYPE_Q4_K))
            type = MX_TYPE_Q5_K;
        if (s->n_expert == 8)
            type = MX_TYPE_Q8_0; /* Mixtral: attention is a small share of the bytes */
        s->i_attention_wv++;
    } else if (cat == CAT_ATTN_K) {
        if (s->n_expert == 8)
            type = MX_TYPE_Q8_0;
        else if (ft == MX_FTYPE_MOSTLY_IQ3_XS)
            type = MX_TYPE_IQ3_XXS;
        else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS)
            type = MX_TYPE_IQ2_S;
    } else if (cat == CAT_ATTN_Q) {
        if (ft == MX_FTYPE_MOSTLY_IQ3_XS)
            type = MX_TYPE_IQ3_XXS;
        else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS)
            type = MX_TYPE_IQ2_S;
    } else if (cat == CAT_FFN_DOWN) {
        int64_t il;
        int rc = ffn_layer(s, t->name, s->i_ffn_down, &il, err);
        if (rc < 0)
            return rc;
        int64_t nl = s->n_layer;
        if (ft == MX_FTYPE_MOSTLY_Q2_K) {
            type = MX_TYPE_Q3_K;
        } else if (ft == MX_FTYPE_MOSTLY_Q2_K_S) {
            if (il < nl / 8)
                type = MX_TYPE_Q4_K;
        } else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS && !s->has_imatrix) {
            type = il < nl / 8 ? MX_TYPE_Q4_K : MX_TYPE_Q3_K; /* unreachable: it needs one */
        } else if (ft == MX_FTYPE_MOSTLY_Q3_K_M) {
            type = il < nl / 16 ? MX_TYPE_Q5_K
                 : !s->falcon || use_more_bits(il, nl) ? MX_TYPE_Q4_K : MX_TYPE_Q3_K;
        } else if (ft == MX_FTYPE_MOSTLY_IQ3_M &&
                   (il < nl / 8 || (s->n_expert == 8 && use_more_bits(il, nl)))) {
            type = MX_TYPE_Q4_K;
        } else if (ft == MX_FTYPE_MOSTLY_Q3_K_L) {
            type = s->falcon ? MX_TYPE_Q4_K : MX_TYPE_Q5_K;
        } else if (ft == MX_FTYPE_MOSTLY_Q4_K_M) {
            if (s->falcon)
                type = il < nl / 16 ? MX_TYPE_Q6_K
                     : use_more_bits(il, nl) ? MX_TYPE_Q5_K : MX_TYPE_Q4_K;
            else if (use_more_bits(il, nl))
                type = MX_TYPE_Q6_K;
        } else if ((ft == MX_FTYPE_MOSTLY_IQ4_NL || ft == MX_FTYPE_MOSTLY_IQ4_XS) && il < nl / 8 &&
                   !s->has_imatrix) {
            type = MX_TYPE_Q5_K; /* llama.cpp: only without an importance matrix */
        } else if (ft == MX_FTYPE_MOSTLY_Q5_K_M && use_more_bits(il, nl)) {
            type = MX_TYPE_Q6_K;
        } else if (ft == MX_FTYPE_MOSTLY_Q4_K_S && !s->falcon && il < nl / 8) {
            type = MX_TYPE_Q5_K;
        } else if ((ft == MX_FTYPE_MOSTLY_Q4_0 || ft == MX_FTYPE_MOSTLY_Q5_0) && s->has_imatrix &&
                   il < nl / 8) {
            /* llama.cpp guards the first ffn_down layers of an imatrix Q4_0/Q5_0 with a min */
            type = ft == MX_FTYPE_MOSTLY_Q4_0 ? MX_TYPE_Q4_1 : MX_TYPE_Q5_1;
        }
        s->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUTPUT) {
        if (!s->falcon && s->n_expert == 8) {
            if (ft == MX_FTYPE_MOSTLY_Q2_K || ft == MX_FTYPE_MOSTLY_Q3_K_S ||
                ft == MX_FTYPE_MOSTLY_Q3_K_M || ft == MX_FTYPE_MOSTLY_Q4_K_S ||
                ft == MX_FTYPE_MOSTLY_Q4_K_M || ft == MX_FTYPE_MOSTLY_IQ4_NL ||
                ft == MX_FTYPE_MOSTLY_IQ4_XS || ft == MX_FTYPE_MOSTLY_IQ3_S ||
                ft == MX_FTYPE_MOSTLY_IQ3_M || ft == MX_FTYPE_MOSTLY_IQ3_XXS ||
                ft == MX_FTYPE_MOSTLY_IQ3_XS)
                type = MX_TYPE_Q5_K;
        } else if (!s->falcon) {
            if (ft == MX_FTYPE_MOSTLY_Q2_K)
                type = MX_TYPE_Q3_K;
            else if (ft == MX_FTYPE_MOSTLY_Q3_K_M || ft == MX_FTYPE_MOSTLY_IQ3_M)
                type = MX_TYPE_Q4_K;
            else if (ft == MX_FTYPE_MOSTLY_IQ3_XXS)
                type = MX_TYPE_IQ3_S;
            else if (ft == MX_FTYPE_MOSTLY_Q3_K_L)
                type = MX_TYPE_Q5_K;
        } else if (ft == MX_FTYPE_MOSTLY_Q3_K_L) {
            type = MX_TYPE_Q4_K;
        }
    } else if (cat == CAT_ATTN_QKV) {
        if (ft == MX_FTYPE_MOSTLY_Q3_K_M || ft == MX_FTYPE_MOSTLY_Q3_K_L ||
            ft == MX_FTYPE_MOSTLY_IQ3_M)
            type = MX_TYPE_Q4_K;
        else if (ft == MX_FTYPE_MOSTLY_Q4_K_M)
            type = MX_TYPE_Q5_K;
        else if (ft == MX_FTYPE_MOSTLY_Q5_K_M)
            type = MX_TYPE_Q6_K;
    } else if (cat == CAT_FFN_GATE || cat == CAT_FFN_UP) {
        /* IQ3_XS: the middle three quarters of the layers' gate and up get the smaller IQ3_XXS */
        int *visited = cat == CAT_FFN_GATE ? &s->i_ffn_gate : &s->i_ffn_up;
        int64_t il;
        int rc = ffn_layer(s, t->name, *visited, &il, err);
        if (rc < 0)
            return rc;
        if (ft == MX_FTYPE_MOSTLY_IQ3_XS && il >= s->n_layer / 8 && il < 7 * s->n_layer / 8)
            type = MX_TYPE_IQ3_XXS;
        (*visited)++;
    }
    return type;
}

/* llama.cpp's tensor_type_fallback: a type whose blocks do not tile ne[0] becomes a 32-block
 * type of about the same size, and F16 when even that does not fit (also for types that are
 * already 32-block types, as the llama.cpp shipped with node-llama-cpp 3.21.1 does). */
static int fallback_type(int type, int64_t ne0, bool *used) {
    const struct mx_type_traits *tr = mx_type_traits(type);
    *used = false;
    if (ne0 % tr->blck_size == 0)
        return type;
    *used = true;
    int r;
    switch (type) {
    case MX_TYPE_Q2_K:
    case MX_TYPE_Q3_K: r = MX_TYPE_Q4_0; break;
    case MX_TYPE_Q4_K: r = MX_TYPE_Q5_0; break;
    case MX_TYPE_Q5_K: r = MX_TYPE_Q5_1; break;
    case MX_TYPE_Q6_K: r = MX_TYPE_Q8_0; break;
    case MX_TYPE_IQ1_S:
    case MX_TYPE_IQ1_M:
    case MX_TYPE_IQ2_XXS:
    case MX_TYPE_IQ2_XS:
    case MX_TYPE_IQ2_S:
    case MX_TYPE_IQ3_XXS:
    case MX_TYPE_IQ3_S:
    case MX_TYPE_IQ4_XS: r = MX_TYPE_IQ4_NL; break;
    default: r = MX_TYPE_F16; break;
    }
    if (ne0 % mx_type_traits(r)->blck_size != 0)
        r = MX_TYPE_F16;
    return r;
}

/* Reads the hyperparameters the mix looks at. Returns 0 or MX_ENOMEM. */
static int mix_init(struct mix_state *s, const struct mx_gguf *g, int ftype) {
    memset(s, 0, sizeof *s);
    s->ftype = ftype;
    const char *arch = "";
    (void)mx_gguf_get_str(g, "general.architecture", &arch, NULL);
    s->falcon = strcmp(arch, "falcon") == 0;
    char key[160];
    int64_t v;
    snprintf(key, sizeof key, "%.100s.expert_count", arch);
    if (mx_gguf_get_int(g, key, &v, NULL) == 0 && v > 0)
        s->n_expert = v;
    int64_t n_head = 0, n_head_kv = -1;
    snprintf(key, sizeof key, "%.100s.attention.head_count", arch);
    (void)mx_gguf_get_int(g, key, &n_head, NULL);
    snprintf(key, sizeof key, "%.100s.attention.head_count_kv", arch);
    if (mx_gguf_get_int(g, key, &n_head_kv, NULL) != 0)
        n_head_kv = n_head;
    snprintf(key, sizeof key, "%.100s.block_count", arch);
    if (mx_gguf_get_int(g, key, &v, NULL) == 0 && v > 0 && v < (1 << 20))
        s->n_layer = v;
    s->tied = true;
    int64_t max_blk = -1;
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const char *name = mx_gguf_tensor(g, i)->name;
        enum category c = category_of(name);
        if (c == CAT_OUTPUT)
            s->tied = false;
        if (is_attn_v_like(c))
            s->n_attention_wv++;
        int b = layer_of(name);
        if (b > max_blk && b < (1 << 20))
            max_blk = b;
    }
    if (s->n_layer == 0)
        s->n_layer = max_blk + 1;
    s->n_gqa = n_head > 0 && n_head_kv > 0 ? n_head / n_head_kv : 0;
    s->is_70b = strcmp(arch, "llama") == 0 && s->n_layer == 80 && n_head != n_head_kv &&
                s->n_expert != 8;
    return 0;
}

/* A tensor's name, layer and file index. llama.cpp visits tensors by layer number (blk.N; -1 for
 * tensors outside the blocks), then by name, and its counters run in that order. */
struct named {
    const char *name;
    int layer;
    int64_t i;
};
static int by_layer_name(const void *a, const void *b) {
    const struct named *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

int mx_quantize_plan(const struct mx_gguf *g, int ftype, struct mx_quantize_tensor *out,
                     struct mx_err *err) {
    return mx_quantize_plan_imatrix(g, ftype, false, out, err);
}

int mx_quantize_plan_imatrix(const struct mx_gguf *g, int ftype, bool has_imatrix,
                             struct mx_quantize_tensor *out, struct mx_err *err) {
    const struct ftype_info *fi = ftype_find(ftype);
    if (!g || !out || !fi)
        return mx_err_set(err, MX_EINVAL, "quantize: unsupported file type %d", ftype);
    struct mix_state s;
    mix_init(&s, g, ftype);
    s.has_imatrix = has_imatrix;
    int64_t n = mx_gguf_n_tensors(g);
    struct named *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return mx_err_set(err, MX_ENOMEM, "quantize: out of memory");
    for (int64_t i = 0; i < n; i++) {
        const char *name = mx_gguf_tensor(g, i)->name;
        order[i] = (struct named){name, layer_of(name), i};
    }
    qsort(order, (size_t)n, sizeof *order, by_layer_name);

    const bool quantized_default = mx_type_traits(fi->default_type)->is_quantized;
    int rc = 0;
    for (int64_t k = 0; k < n && rc == 0; k++) {
        int64_t i = order[k].i;
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        struct mx_quantize_tensor *q = &out[i];
        memset(q, 0, sizeof *q);
        q->name = t->name;
        q->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++)
            q->ne[d] = t->ne[d];
        q->src_type = q->dst_type = t->type;
        q->src_bytes = q->dst_bytes = t->nbytes;
        if (!allows_quantization(t))
            continue;
        int type = fi->default_type;
        if (quantized_default) {
            type = mix_type(&s, t, type, err);
            if (type < 0) {
                rc = type;
                break;
            }
            type = fallback_type(type, t->ne[0], &q->fallback);
        }
        q->dst_type = type;
        if (type == t->type) {
            q->fallback = false;
            continue;
        }
        const struct mx_type_traits *st = mx_type_traits(t->type);
        if (!st || !st->to_float) {
            rc = mx_err_set(err, MX_EUNSUP, "tensor '%.120s': cannot convert from type %s",
                            t->name, mx_type_name(t->type));
            break;
        }
        size_t row, bytes;
        int64_t rows = t->ne[1] * t->ne[2] * t->ne[3]; /* the reader checked the product */
        if (!mx_row_size(type, t->ne[0], &row) || !mx_mul_size(row, (size_t)rows, &bytes)) {
            rc = mx_err_set(err, MX_EFORMAT, "tensor '%.120s': %" PRId64 " values per row do not "
                            "fit type %s", t->name, t->ne[0], mx_type_name(type));
            break;
        }
        q->dst_bytes = bytes;
    }
    free(order);
    return rc;
}

/* ---- conversion ---------------------------------------------------------------------------- */

/* One thread's share of a tensor: rows [r0, r1). */
struct job {
    const uint8_t *src;
    uint8_t *dst;
    int src_type, dst_type;
    int64_t ne0, r0, r1;
    size_t src_row, dst_row;     /* bytes per row */
    const float *qw;             /* importance weights: ne0 per expert, expert-major; or NULL */
    int64_t rows_per_expert;     /* ne[1]: row r uses the weights of expert r / rows_per_expert */
    int rc;                      /* 0, MX_ENOMEM, or MX_EFORMAT (non-finite value) */
    int64_t bad_row;             /* the row of MX_EFORMAT */
};

/* Dequantizes and requantizes the job's rows. Non-finite source values are refused: ggml's
 * quantizers would write garbage scales for them (llama.cpp validates its output likewise). */
static void *job_run(void *arg) {
    struct job *j = arg;
    float *row = malloc((size_t)(j->ne0 > 0 ? j->ne0 : 1) * sizeof *row);
    if (!row) {
        j->rc = MX_ENOMEM;
        return NULL;
    }
    for (int64_t r = j->r0; r < j->r1; r++) {
        int rc = mx_dequantize_row(j->src_type, j->src + (size_t)r * j->src_row, row, j->ne0);
        if (rc == 0) {
            for (int64_t k = 0; k < j->ne0; k++) {
                if (!isfinite(row[k])) {
                    rc = MX_EFORMAT;
                    j->bad_row = r;
                    break;
                }
            }
        }
        if (rc == 0)
            rc = mx_quantize_row_weighted(j->dst_type, row, j->dst + (size_t)r * j->dst_row,
                                          j->ne0, j->qw ? j->qw + (r / j->rows_per_expert) *
                                                                  j->ne0 : NULL);
        if (rc < 0) {
            j->rc = rc;
            break;
        }
    }
    free(row);
    return NULL;
}

/* Converts one tensor into dst (q->dst_bytes), rows split over n_threads; qw: its importance
 * weights (ne[0] * ne[2] values) or NULL. Returns 0 or MX_E*. */
static int convert_tensor(const struct mx_gguf_tensor *t, const struct mx_quantize_tensor *q,
                          const float *qw, void *dst, int n_threads, struct mx_err *err) {
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t src_row, dst_row;
    if (!mx_row_size(q->src_type, t->ne[0], &src_row) ||
        !mx_row_size(q->dst_type, t->ne[0], &dst_row))
        return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': bad row size", t->name);
    int nt = n_threads < 1 ? 1 : n_threads > MAX_THREADS ? MAX_THREADS : n_threads;
    if (nt > rows)
        nt = rows > 0 ? (int)rows : 1;
    struct job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int k = 0; k < nt; k++) {
        jobs[k] = (struct job){
            .src = t->data, .dst = dst, .src_type = q->src_type, .dst_type = q->dst_type,
            .ne0 = t->ne[0], .r0 = rows * k / nt, .r1 = rows * (k + 1) / nt,
            .src_row = src_row, .dst_row = dst_row, .bad_row = -1,
            .qw = qw, .rows_per_expert = t->ne[1] > 0 ? t->ne[1] : 1,
        };
    }
    /* the calling thread takes the first share; threads that fail to start leave theirs to it */
    for (int k = 1; k < nt; k++)
        started[k] = pthread_create(&tid[k], NULL, job_run, &jobs[k]) == 0;
    job_run(&jobs[0]);
    for (int k = 1; k < nt; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            job_run(&jobs[k]);
    }
    for (int k = 0; k < nt; k++) {
        if (jobs[k].rc == MX_EFORMAT)
            return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': row %" PRId64 " holds a NaN or "
                              "infinite value", t->name, jobs[k].bad_row);
        if (jobs[k].rc < 0)
            return mx_err_set(err, jobs[k].rc, "tensor '%.120s': conversion to %s failed (%s)",
                              t->name, mx_type_name(q->dst_type), mx_strerror(jobs[k].rc));
    }
    return 0;
}

/* ---- the output file, streamed -------------------------------------------------------------- *
 * The header is known before any tensor is converted (types and sizes come from the plan), so it
 * is written first and the tensors follow one at a time: memory stays at one converted tensor,
 * whatever the model's size. The bytes are those of the GGUF writer in core/format/gguf.c (version 3). */

/* Growable buffer for the header; after an allocation failure `failed` is set and puts do
 * nothing. */
struct hbuf {
    uint8_t *p;
    size_t n, cap;
    bool failed;
};

static void hput(struct hbuf *b, const void *src, size_t n) {
    if (b->failed || n == 0)
        return;
    if (b->n + n < b->n) {
        b->failed = true;
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n && cap <= SIZE_MAX / 2)
            cap *= 2;
        uint8_t *q = cap >= b->n + n ? realloc(b->p, cap) : NULL;
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void hput_u32(struct hbuf *b, uint32_t v) { hput(b, &v, 4); }
static void hput_u64(struct hbuf *b, uint64_t v) { hput(b, &v, 8); }
static void hput_str(struct hbuf *b, const char *s, uint64_t len) {
    hput_u64(b, len);
    hput(b, s, (size_t)len);
}

/* Bytes of one numeric/bool array element; 0 for strings and arrays. */
static size_t vtype_size(int t) {
    switch (t) {
    case MX_GGUF_UINT8: case MX_GGUF_INT8: case MX_GGUF_BOOL: return 1;
    case MX_GGUF_UINT16: case MX_GGUF_INT16: return 2;
    case MX_GGUF_UINT32: case MX_GGUF_INT32: case MX_GGUF_FLOAT32: return 4;
    case MX_GGUF_UINT64: case MX_GGUF_INT64: case MX_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* The payload of v (not its type tag) as GGUF stores it. v comes from the reader, which checked
 * its shape (nesting depth, element counts against the file). */
static void hput_value(struct hbuf *b, const struct mx_gguf_value *v) {
    switch (v->type) {
    case MX_GGUF_UINT8: { uint8_t y = (uint8_t)v->v.u64; hput(b, &y, 1); break; }
    case MX_GGUF_INT8: { int8_t y = (int8_t)v->v.i64; hput(b, &y, 1); break; }
    case MX_GGUF_BOOL: { uint8_t y = v->v.b ? 1 : 0; hput(b, &y, 1); break; }
    case MX_GGUF_UINT16: { uint16_t y = (uint16_t)v->v.u64; hput(b, &y, 2); break; }
    case MX_GGUF_INT16: { int16_t y = (int16_t)v->v.i64; hput(b, &y, 2); break; }
    case MX_GGUF_UINT32: hput_u32(b, (uint32_t)v->v.u64); break;
    case MX_GGUF_INT32: { int32_t y = (int32_t)v->v.i64; hput(b, &y, 4); break; }
    case MX_GGUF_FLOAT32: { float y = (float)v->v.f64; hput(b, &y, 4); break; }
    case MX_GGUF_UINT64: hput_u64(b, v->v.u64); break;
    case MX_GGUF_INT64: hput(b, &v->v.i64, 8); break;
    case MX_GGUF_FLOAT64: hput(b, &v->v.f64, 8); break;
    case MX_GGUF_STRING: hput_str(b, v->v.str.data, v->v.str.len); break;
    case MX_GGUF_ARRAY: {
        size_t esz = vtype_size(v->v.arr.elem_type);
        hput_u32(b, (uint32_t)v->v.arr.elem_type);
        hput_u64(b, v->v.arr.n);
        if (esz > 0) {
            size_t bytes;
            if (!mx_mul_size((size_t)v->v.arr.n, esz, &bytes))
                b->failed = true;
            else
                hput(b, v->v.arr.raw, bytes);
        } else {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                if (v->v.arr.elem_type == MX_GGUF_ARRAY)
                    hput_value(b, &v->v.arr.items[i]);
                else
                    hput_str(b, v->v.arr.items[i].v.str.data, v->v.arr.items[i].v.str.len);
            }
        }
        break;
    }
    }
}

static void hput_pad(struct hbuf *b, size_t align) {
    static const uint8_t zeros[64];
    size_t pad = (align - b->n % align) % align;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        hput(b, zeros, k);
        pad -= k;
    }
}

/* Metadata keys not carried over: they describe a split set, and the output is one file; with
 * an importance matrix, the source's quantize.imatrix.* keys (the new ones are appended). */
static bool skip_key(const char *key, bool imatrix) {
    return strcmp(key, "split.no") == 0 || strcmp(key, "split.count") == 0 ||
           strcmp(key, "split.tensors.count") == 0 ||
           (imatrix && strncmp(key, "quantize.imatrix.", 17) == 0);
}

/* The keys llama-quantize adds when it quantizes with an importance matrix. */
static void hput_kv_str(struct hbuf *b, const char *key, const char *v) {
    hput_str(b, key, strlen(key));
    hput_u32(b, MX_GGUF_STRING);
    hput_str(b, v, strlen(v));
}
static void hput_kv_i32(struct hbuf *b, const char *key, int32_t v) {
    hput_str(b, key, strlen(key));
    hput_u32(b, MX_GGUF_INT32);
    hput(b, &v, 4);
}

/* The whole header of the output: the source's metadata in order (split keys left out), with
 * general.quantization_version and general.file_type set as llama.cpp sets them (in place when
 * present, else appended), then the tensor infos with offsets from the plan's sizes, padded to
 * the alignment. Returns 0 or MX_ENOMEM; *out caller frees. */
static int build_header(const struct mx_gguf *g, const struct mx_quantize_tensor *plan,
                        const struct mx_quantize_params *p, size_t align, struct hbuf *out) {
    const int ftype = p->ftype;
    const struct mx_imatrix *im = p->imatrix;
    /* llama-quantize's values: the file name (127 bytes at most), the first dataset, the entries
     * left after --include/--exclude-weights, the chunk count when known */
    char im_file[128] = "", im_dataset[128] = "";
    if (im) {
        snprintf(im_file, sizeof im_file, "%s", p->imatrix_file ? p->imatrix_file : "");
        if (im->dataset)
            snprintf(im_dataset, sizeof im_dataset, "%s", im->dataset);
    }
    const struct mx_gguf_value qv = {.type = MX_GGUF_UINT32, .v.u64 = 2};
    const struct mx_gguf_value fv = {.type = MX_GGUF_UINT32, .v.u64 = (uint64_t)ftype};
    int64_t n_kv = mx_gguf_n_kv(g), n = mx_gguf_n_tensors(g), n_out = 0;
    bool have_q = false, have_f = false;
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = mx_gguf_kv_key(g, i);
        n_out += !skip_key(key, im != NULL);
        have_q |= strcmp(key, "general.quantization_version") == 0;
        have_f |= strcmp(key, "general.file_type") == 0;
    }
    n_out += !have_q + !have_f;
    if (im)
        n_out += 2 + (im->dataset != NULL) + (im->chunk_count > 0);
    struct hbuf *b = out;
    hput(b, "GGUF", 4);
    hput_u32(b, 3);
    hput_u64(b, (uint64_t)n);
    hput_u64(b, (uint64_t)n_out);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = mx_gguf_kv_key(g, i);
        if (skip_key(key, im != NULL))
            continue;
        const struct mx_gguf_value *v = mx_gguf_kv_value(g, i);
        if (strcmp(key, "general.quantization_version") == 0)
            v = &qv;
        else if (strcmp(key, "general.file_type") == 0)
            v = &fv;
        hput_str(b, key, strlen(key));
        hput_u32(b, (uint32_t)v->type);
        hput_value(b, v);
    }
    if (!have_q) {
        hput_str(b, "general.quantization_version", strlen("general.quantization_version"));
        hput_u32(b, MX_GGUF_UINT32);
        hput_value(b, &qv);
    }
    if (!have_f) {
        hput_str(b, "general.file_type", strlen("general.file_type"));
        hput_u32(b, MX_GGUF_UINT32);
        hput_value(b, &fv);
    }
    if (im) {
        hput_kv_str(b, "quantize.imatrix.file", im_file);
        if (im->dataset)
            hput_kv_str(b, "quantize.imatrix.dataset", im_dataset);
        hput_kv_i32(b, "quantize.imatrix.entries_count", (int32_t)im->n_entries);
        if (im->chunk_count > 0)
            hput_kv_i32(b, "quantize.imatrix.chunks_count", im->chunk_count);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct mx_quantize_tensor *q = &plan[i];
        hput_str(b, q->name, strlen(q->name));
        hput_u32(b, (uint32_t)q->n_dims);
        for (int d = 0; d < q->n_dims; d++)
            hput_u64(b, (uint64_t)q->ne[d]);
        hput_u32(b, (uint32_t)q->dst_type);
        hput_u64(b, off);
        off += (q->dst_bytes + align - 1) / align * align;
    }
    hput_pad(b, align);
    return b->failed ? MX_ENOMEM : 0;
}

/* The output being written: a temp file beside the final path, renamed over it at the end. */
struct out_file {
    char *tmp;          /* "<out>.tmp.XXXXXX" (owned) */
    int fd;             /* -1 when closed */
    uint64_t written;   /* bytes so far */
};

/* Creates the temp file beside out_path: also the early check that the output can be written.
 * Returns 0, MX_ENOMEM or MX_EIO ("<out>: cannot create the output file: <why>"). */
static int out_open(struct out_file *o, const char *out_path, struct mx_err *err) {
    size_t plen = strlen(out_path);
    o->fd = -1;
    o->written = 0;
    o->tmp = malloc(plen + 16);
    if (!o->tmp)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", out_path);
    memcpy(o->tmp, out_path, plen);
    memcpy(o->tmp + plen, ".tmp.XXXXXX", 12);
    o->fd = mkstemp(o->tmp);
    if (o->fd < 0) {
        int rc = mx_err_set(err, MX_EIO, "%s: cannot create the output file: %s", out_path,
                            strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        return rc;
    }
    (void)fchmod(o->fd, 0644); /* mkstemp makes 0600; a model is an ordinary readable file */
    return 0;
}

/* Writes n bytes (retrying short writes). Returns 0 or MX_EIO ("disk full" and the like). */
static int out_write(struct out_file *o, const void *p, size_t n, struct mx_err *err) {
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t k = write(o->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return mx_err_set(err, MX_EIO, "%s: write: %s", o->tmp,
                              strerror(k < 0 ? errno : EIO));
        c += k;
        n -= (size_t)k;
        o->written += (uint64_t)k;
    }
    return 0;
}

static int out_pad(struct out_file *o, size_t align, struct mx_err *err) {
    static const uint8_t zeros[256];
    size_t pad = (size_t)((align - o->written % align) % align);
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        int rc = out_write(o, zeros, k, err);
        if (rc < 0)
            return rc;
        pad -= k;
    }
    return 0;
}

/* Makes the file durable and gives it its final name. Returns 0 or MX_EIO. */
static int out_commit(struct out_file *o, const char *out_path, struct mx_err *err) {
    int rc = 0;
    if (fsync(o->fd) != 0)
        rc = mx_err_set(err, MX_EIO, "%s: fsync: %s", o->tmp, strerror(errno));
    if (close(o->fd) != 0 && rc == 0)
        rc = mx_err_set(err, MX_EIO, "%s: close: %s", o->tmp, strerror(errno));
    o->fd = -1;
    if (rc == 0 && rename(o->tmp, out_path) != 0)
        rc = mx_err_set(err, MX_EIO, "%s: rename: %s", out_path, strerror(errno));
    if (rc == 0) {
        free(o->tmp);
        o->tmp = NULL;
    }
    return rc;
}

/* Closes and removes an unfinished temp file (nothing when committed or never opened). */
static void out_abort(struct out_file *o) {
    if (o->fd >= 0)
        close(o->fd);
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    o->fd = -1;
    o->tmp = NULL;
}

/* Drops the source pages of a tensor that is done from the resident set, so a multi-GB input
 * does not stay resident while the output is written. The reader maps the file read-only
 * (gguf.h), so these are clean file pages: dropping them loses nothing. */
static void release_source(const struct mx_gguf_tensor *t) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || t->nbytes == 0)
        return;
    uintptr_t a = (uintptr_t)t->data, e = a + t->nbytes;
    a = (a + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg; /* whole pages inside only */
    e = e / (uintptr_t)pg * (uintptr_t)pg;
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

/* llama.cpp's tensor_requires_imatrix: a tensor that becomes an IQ1, IQ2 or IQ3_XXS type (or Q2_K
 * in a Q2_K_S file) is garbage without importance weights; token_embd and output never need
 * them. */
static bool requires_imatrix(const char *name, int type, int ftype) {
    enum category cat = category_of(name);
    if (cat == CAT_TOKEN_EMBD || cat == CAT_OUTPUT)
        return false;
    return type == MX_TYPE_IQ3_XXS || type == MX_TYPE_IQ2_XXS || type == MX_TYPE_IQ2_XS ||
           type == MX_TYPE_IQ2_S || type == MX_TYPE_IQ1_M || type == MX_TYPE_IQ1_S ||
           (type == MX_TYPE_Q2_K && ftype == MX_FTYPE_MOSTLY_Q2_K_S);
}

/* Finds each converted tensor's importance weights (llama.cpp: by exact name; ne[0] * ne[2]
 * values, one row per expert) and marks it weighted in the plan. A tensor without an entry is
 * quantized without weights, as llama-quantize does ("did not find weights"), unless its type
 * needs them (requires_imatrix: refused); an entry of the wrong size is refused (llama-quantize
 * aborts too), except for token_embd, whose entry it ignores. Checked before anything is
 * written. Returns 0 or MX_EFORMAT. */
static int match_imatrix(const struct mx_gguf *g, struct mx_quantize_tensor *plan, int ftype,
                         const struct mx_imatrix *im, struct mx_quantize_stats *st,
                         struct mx_err *err) {
    if (!im)
        return 0;
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        struct mx_quantize_tensor *q = &plan[i];
        if (q->dst_type == q->src_type)
            continue;
        const struct mx_imatrix_entry *e = mx_imatrix_find(im, t->name);
        int64_t want = t->ne[0] * t->ne[2];
        if ((!e || e->n_values != want) && requires_imatrix(t->name, q->dst_type, ftype))
            return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': no importance matrix entry%s "
                              "for it, and %s cannot be quantized without one (llama-quantize "
                              "bails out too)", t->name, e ? " of its size" : "",
                              mx_type_name(q->dst_type));
        if (!e) {
            st->n_unweighted++;
            continue;
        }
        if (e->n_values != want) {
            if (category_of(t->name) == CAT_TOKEN_EMBD) {
                st->n_unweighted++;
                continue;
            }
            return mx_err_set(err, MX_EFORMAT, "tensor '%.120s': the importance matrix has %"
                              PRId64 " values for it, the tensor needs %" PRId64 " (%" PRId64
                              " columns x %" PRId64 " experts): an imatrix of another model?",
                              t->name, e->n_values, want, t->ne[0], t->ne[2]);
        }
        q->weighted = true;
        st->n_weighted++;
    }
    return 0;
}

int mx_quantize_model(const char *in_path, const char *out_path,
                      const struct mx_quantize_params *p, struct mx_quantize_stats *stats,
                      struct mx_err *err) {
    if (!in_path || !out_path || !p || !ftype_find(p->ftype))
        return mx_err_set(err, MX_EINVAL, "quantize: unsupported file type %d",
                          p ? p->ftype : -1);
    double t0 = mx_time_s();
    struct mx_gguf *g = NULL;
    struct mx_quantize_tensor *plan = NULL;
    struct mx_quantize_stats st = {0};
    struct out_file o = {NULL, -1, 0};
    struct hbuf hdr = {0};
    void *buf = NULL;
    int rc = mx_gguf_open(in_path, &g, err);
    if (rc < 0)
        return rc;
    /* the same file under another name (or a link) would be replaced by the rename */
    struct stat si, so;
    if (stat(out_path, &so) == 0) {
        if (S_ISDIR(so.st_mode)) {
            rc = mx_err_set(err, MX_EINVAL, "%s: is a folder, not an output file", out_path);
            goto fail;
        }
        if (stat(in_path, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            rc = mx_err_set(err, MX_EINVAL, "%s: output is the input file; choose another "
                            "name (the input is never overwritten)", out_path);
            goto fail;
        }
    }
    int64_t n_split = 0;
    if (mx_gguf_get_int(g, "split.count", &n_split, NULL) == 0 && n_split > 1) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: part of a split model (%" PRId64 " files); merge "
                        "it first (llama-gguf-split --merge)", in_path, n_split);
        goto fail;
    }
    int64_t n = mx_gguf_n_tensors(g);
    plan = calloc((size_t)(n ? n : 1), sizeof *plan);
    if (!plan) {
        rc = mx_err_set(err, MX_ENOMEM, "quantize: out of memory");
        goto fail;
    }
    rc = mx_quantize_plan_imatrix(g, p->ftype, p->imatrix != NULL, plan, err);
    if (rc < 0)
        goto fail;
    const size_t align = mx_gguf_alignment(g); /* general.alignment is copied with the rest */
    if (mx_ftype_needs_imatrix(p->ftype) && !p->imatrix) {
        rc = mx_err_set(err, MX_EINVAL, "%s needs an importance matrix (--imatrix FILE from "
                        "llama-imatrix): without one the result is garbage, and llama-quantize "
                        "refuses it too", mx_ftype_name(p->ftype));
        goto fail;
    }
    rc = match_imatrix(g, plan, p->ftype, p->imatrix, &st, err);
    if (rc < 0)
        goto fail;
    rc = build_header(g, plan, p, align, &hdr);
    if (rc < 0) {
        rc = mx_err_set(err, rc, "%s: out of memory for the header", out_path);
        goto fail;
    }
    rc = out_open(&o, out_path, err);
    if (rc < 0)
        goto fail;
    rc = out_write(&o, hdr.p, hdr.n, err);
    if (rc < 0)
        goto fail;

    /* tensors, in file order, one converted buffer alive at a time */
    for (int64_t i = 0; i < n; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        const struct mx_quantize_tensor *q = &plan[i];
        const void *data = t->data;
        const struct mx_imatrix_entry *e = q->weighted ? mx_imatrix_find(p->imatrix, t->name)
                                                       : NULL;
        if (q->dst_type != q->src_type) {
            buf = malloc(q->dst_bytes ? q->dst_bytes : 1);
            if (!buf) {
                rc = mx_err_set(err, MX_ENOMEM, "tensor '%.120s': out of memory (%zu bytes)",
                                t->name, q->dst_bytes);
                goto fail;
            }
            rc = convert_tensor(t, q, e ? e->values : NULL, buf, p->n_threads, err);
            if (rc < 0)
                goto fail;
            data = buf;
            st.n_converted++;
            st.n_fallback += q->fallback;
        }
        rc = out_write(&o, data, q->dst_bytes, err);
        if (rc == 0)
            rc = out_pad(&o, align, err);
        free(buf);
        buf = NULL;
        release_source(t);
        if (rc < 0)
            goto fail;
        int64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        st.n_elements += (uint64_t)ne;
        st.src_bytes += q->src_bytes;
        st.dst_bytes += q->dst_bytes;
        if (p->progress && p->progress(p->progress_ud, i, n, q, mx_time_s() - t0) != 0) {
            rc = mx_err_set(err, MX_ECANCELED, "quantize: canceled");
            goto fail;
        }
    }
    st.n_tensors = n;
    st.file_bytes = o.written;
    rc = out_commit(&o, out_path, err);
    if (rc < 0)
        goto fail;
    st.seconds = mx_time_s() - t0;
    if (stats)
        *stats = st;
fail:
    out_abort(&o);
    free(buf);
    free(hdr.p);
    free(plan);
    mx_gguf_close(g);
    return rc;
}
