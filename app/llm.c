/* llm.c - the one LLM stack (see llm.h): open, feed with a mirror of the cache, prefill, the
 * generate loop with stop-string hold-back, KV snapshots.
 *
 * The mirror (`cached`, the ids whose K/V the cache holds in position order) is updated by every
 * cache edit here, so a chat's next turn reuses everything the conversation still shares and a
 * snapshot saves exactly what the cache holds. Tuned for two workloads: long chats (a turn costs
 * its new tokens, not the history) and one-shot completions from scripts (no per-token
 * allocation; output reaches the sink as soon as it cannot be part of a stop string).
 */
#include "app/llm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "app/memplan.h"
#include "core/base/bytes.h"
#include "core/base/log.h"
#include "core/base/mapfile.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/base/readfile.h"
#include "core/llm/grammar.h"
#include "core/llm/llama.h"
#include "core/llm/lora.h"
#include "core/text/tokenizer.h"
#include "history/kvsnap.h"
#include "kernels/backend.h"
#include "kernels/devices.h"

#define HOLD_MAX 256 /* longest stop string text is held back for */
#define MX_GRAMMAR_MAX_FILE ((size_t)16 << 20) /* a .gbnf file is text, never this large */

struct mx_llm {
    struct mx_backend *be;          /* owned */
    struct mx_backend *host;        /* owned: beside a device, for what stays in host memory */
    struct mx_llama_model *model;   /* owned */
    struct mx_llama_ctx *ctx;       /* owned */
    struct mx_tokenizer *tok;       /* owned */
    char *path;                     /* owned copy, for the model hash and messages */
    char name[128];                 /* general.name or the basename, printable */
    char device[32];                /* "CPU", "CUDA" */
    double load_s;                  /* backend + weights */
    int32_t n_vocab;
    enum mx_type kv_type;
    uint64_t model_hash;            /* valid when have_hash */
    bool have_hash;
    int32_t *cached;                /* [n_cached] ids the cache holds, position order */
    size_t n_cached, cap_cached;
};

void mx_gen_settings_default(struct mx_gen_settings *s) {
    memset(s, 0, sizeof *s);
    s->device = "auto";
    s->gpu_layers = -1;
    s->kv_type = MX_TYPE_F16;
    s->ubatch = 512;
    s->act_mode = MX_ACT_GGML;
    mx_sampler_params_default(&s->sampling);
    s->sampling.seed = 0;
    s->n_predict = -1;
    s->n_keep = 1;
}

uint64_t mx_gen_fresh_seed(void) {
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec << 32 ^ (uint64_t)ts.tv_nsec) + 0x9e3779b97f4a7c15ull * ++counter;
}

const char *mx_gen_end_name(enum mx_gen_end end) {
    static const char *const names[] = {"length", "end of text", "stop string", "context full",
                                        "canceled", "error", "no token fits the grammar"};
    return (unsigned)end < sizeof names / sizeof names[0] ? names[end] : "?";
}

double mx_gen_stats_tok_s(const struct mx_gen_stats *st) {
    return st->gen_s > 0 ? (double)st->n_generated / st->gen_s : 0;
}

/* ---- the mirror of the cache ----------------------------------------------------------------- */

/* Makes room for n ids in total. Returns 0 or MX_ENOMEM. */
static int mirror_reserve(struct mx_llm *L, size_t n) {
    if (n <= L->cap_cached)
        return 0;
    size_t cap = L->cap_cached ? L->cap_cached : 256, bytes;
    while (cap < n)
        cap *= 2;
    if (!mx_mul_size(cap, sizeof *L->cached, &bytes))
        return MX_ENOMEM;
    int32_t *p = realloc(L->cached, bytes);
    if (!p)
        return MX_ENOMEM;
    L->cached = p;
    L->cap_cached = cap;
    return 0;
}

void mx_llm_clear(struct mx_llm *L) {
    if (!L)
        return;
    mx_llama_kv_clear(L->ctx);
    L->n_cached = 0;
}

int mx_llm_feed(struct mx_llm *L, const int32_t *ids, size_t n, struct mx_err *err) {
    if (mirror_reserve(L, L->n_cached + n) < 0)
        return mx_err_set(err, MX_ENOMEM, "out of memory for %zu cached tokens",
                          L->n_cached + n);
    int rc = mx_llama_decode(L->ctx, ids, (int64_t)n, false, NULL, NULL, err);
    if (rc < 0) {
        if (rc != MX_EFULL && rc != MX_EINVAL) /* those leave the cache as it was */
            mx_llm_clear(L);
        return rc;
    }
    memcpy(L->cached + L->n_cached, ids, n * sizeof *ids);
    L->n_cached += n;
    return 0;
}

const int32_t *mx_llm_cached(const struct mx_llm *L, size_t *n) {
    *n = L ? L->n_cached : 0;
    return L && L->n_cached ? L->cached : NULL;
}

int mx_llm_cache_plan(struct mx_llm *L, const int32_t *ids, size_t n_keep, size_t src,
                      size_t n_move, struct mx_err *err) {
    int rc = 0;
    if (src + n_move > L->n_cached || n_keep > src) {
        mx_llm_clear(L); /* a plan we do not understand: start over rather than guess */
        return 0;
    }
    if (src + n_move < L->n_cached)
        rc = mx_llama_kv_remove(L->ctx, (int64_t)(src + n_move), -1, err);
    if (rc == 0 && src > n_keep)
        rc = mx_llama_kv_discard(L->ctx, (int64_t)n_keep, (int64_t)(src - n_keep), err);
    if (rc < 0) {
        mx_llm_clear(L);
        return rc;
    }
    if ((size_t)mx_llama_ctx_n_past(L->ctx) != n_keep + n_move) {
        /* the sliding-window layers no longer held the window the kept tokens need, so the
         * context cleared itself (llama_ctx.c): everything is prefilled again */
        mx_llm_clear(L);
        return 0;
    }
    /* the mirror now equals the new prompt's first n_keep + n_move ids (that is the plan) */
    if (n_keep + n_move > 0) /* cached may still be NULL for an empty cache */
        memcpy(L->cached, ids, (n_keep + n_move) * sizeof *ids);
    L->n_cached = n_keep + n_move;
    return 0;
}

/* ---- opening --------------------------------------------------------------------------------- */

/* general.name when it is set, else the file's basename, into L->name without control bytes
 * (model metadata and file names are untrusted) and never cut inside a UTF-8 character. */
static void set_name(struct mx_llm *L) {
    const char *name = NULL;
    struct mx_err ignore = {0};
    if (mx_gguf_get_str(mx_llama_model_gguf(L->model), "general.name", &name, &ignore) < 0 ||
        !name || !name[0]) {
        const char *slash = strrchr(L->path, '/');
        name = slash ? slash + 1 : L->path;
    }
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && k + 1 < sizeof L->name; p++)
        if (*p >= 0x20 && *p != 0x7f && !(p[0] == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0))
            L->name[k++] = (char)*p;
        else if (*p == 0xc2)
            p++; /* a C1 control (U+0080..U+009F): both bytes go */
    size_t cut = k;
    while (cut > 0 && ((unsigned char)L->name[cut - 1] & 0xc0) == 0x80)
        cut--;
    if (cut > 0 && ((unsigned char)L->name[cut - 1] & 0x80)) {
        unsigned char lead = (unsigned char)L->name[cut - 1];
        size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (k - (cut - 1) < need)
            k = cut - 1;
    }
    L->name[k] = '\0';
}

int mx_llm_open(struct mx_llm **out, const char *model_path, const struct mx_gen_settings *s,
                struct mx_err *err) {
    struct mx_gen_settings def;
    if (!s) {
        mx_gen_settings_default(&def);
        s = &def;
    }
    *out = NULL;
    if (!model_path || !model_path[0])
        return mx_err_set(err, MX_EINVAL, "no model (-m FILE.gguf)");
    struct mx_llm *L = calloc(1, sizeof *L);
    if (!L || !(L->path = strdup(model_path))) {
        free(L);
        return mx_err_set(err, MX_ENOMEM, "out of memory");
    }
    int rc;
    /* the plan first, from the header alone: a refusal leaves nothing allocated */
    struct mx_mem_plan plan;
    int n_cpu_moe = s->cpu_moe ? -1 : s->n_cpu_moe;
    if ((rc = mx_mem_plan_make_split(model_path, s->device, s->n_ctx, s->kv_type, s->ubatch,
                                     s->gpu_layers, n_cpu_moe, &plan, err)) < 0)
        goto fail;
    {
        char w[32], kv[32], b[32], t[32], a[32], sv[32], swa[80] = "";
        if (plan.kv_full > plan.kv + plan.host_kv)
            snprintf(swa, sizeof swa, "; sliding-window layers keep only the window: %s saved",
                     mx_mem_fmt(plan.kv_full - plan.kv - plan.host_kv, sv, sizeof sv));
        mx_log(MX_LOG_INFO, "memory: model %s + KV %s (%lld tokens%s) + buffers %s = %s; %s free "
               "in %s", mx_mem_fmt(plan.weights, w, sizeof w), mx_mem_fmt(plan.kv, kv, sizeof kv),
               (long long)plan.n_ctx, swa, mx_mem_fmt(plan.buffers, b, sizeof b),
               mx_mem_fmt(plan.total, t, sizeof t),
               plan.avail ? mx_mem_fmt(plan.avail, a, sizeof a) : "unknown", plan.where);
        if (plan.split)
            mx_log(MX_LOG_INFO, "memory: host part: model %s + KV %s + buffers %s = %s; %s "
                   "free in memory", mx_mem_fmt(plan.host_weights, w, sizeof w),
                   mx_mem_fmt(plan.host_kv, kv, sizeof kv),
                   mx_mem_fmt(plan.host_buffers, b, sizeof b),
                   mx_mem_fmt(plan.host_total, t, sizeof t),
                   plan.host_avail ? mx_mem_fmt(plan.host_avail, a, sizeof a) : "unknown");
    }
    int n_ctx = s->n_ctx > 0 ? s->n_ctx : 0;
    if (!s->no_mem_check) {
        if ((rc = mx_mem_plan_check_split(model_path, &plan, s->kv_type, s->ubatch, n_cpu_moe,
                                          err)) < 0)
            goto fail;
        if (n_ctx == 0 && plan.avail > 0)
            n_ctx = (int)plan.n_ctx;
        char kv[32], av[32];
        if (plan.capped)
            mx_log(MX_LOG_WARN, "context: %lld tokens of the model's %lld fit in %s (KV %s, "
                   "%s available)", (long long)plan.n_ctx, (long long)plan.n_ctx_train,
                   plan.where, mx_mem_fmt(plan.kv, kv, sizeof kv),
                   mx_mem_fmt(plan.avail, av, sizeof av));
    }
    double t0 = mx_time_s();
    L->be = mx_device_open(s->device, s->threads, err);
    if (!L->be) {
        rc = err && err->code ? err->code : MX_EIO;
        goto fail;
    }
    /* shown as "CPU" / "CUDA" in status lines */
    snprintf(L->device, sizeof L->device, "%s", mx_backend_name(L->be));
    for (char *c = L->device; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    if ((rc = mx_backend_set_act_mode(L->be, s->act_mode)) < 0) {
        mx_err_set(err, rc, "backend: activation mode %d", s->act_mode);
        goto fail;
    }
    /* a device gets a CPU backend beside it for what stays in host memory (the embedding, and
     * what --gpu-layers / --cpu-moe leave there); MIXEL_SPLIT_CPU=1 (tests) lets a CPU backend
     * play the device, so the split runs where no GPU is */
    if (strcmp(mx_backend_name(L->be), "cpu") != 0 || mx_app_split_cpu()) {
        if (!(L->host = mx_backend_cpu_new(s->threads, err))) {
            rc = err && err->code ? err->code : MX_EIO;
            goto fail;
        }
        if ((rc = mx_backend_set_act_mode(L->host, s->act_mode)) < 0) {
            mx_err_set(err, rc, "backend: activation mode %d", s->act_mode);
            goto fail;
        }
    } else if (s->gpu_layers >= 0 || s->cpu_moe || s->n_cpu_moe > 0) {
        mx_log(MX_LOG_WARN, "--gpu-layers / --cpu-moe / --n-cpu-moe: running on the CPU, "
               "nothing to split (ignored)");
    }
    struct mx_llama_load_opts lo = {
        .map_flags = (s->no_mmap ? MX_MAP_NO_MMAP : 0u) | (s->mlock ? MX_MAP_MLOCK : 0u),
        .progress = s->on_load, .progress_ud = s->on_load_ud,
        .host = L->host, .gpu_layers = s->gpu_layers, .n_cpu_moe = n_cpu_moe,
    };
    if ((rc = mx_llama_model_load_opts(model_path, L->be, &lo, &L->model, err)) < 0)
        goto fail;
    for (int i = 0; i < s->n_lora; i++)
        if ((rc = mx_llama_lora_add(L->model, s->lora[i], s->lora_scale[i], err)) < 0)
            goto fail;
    L->load_s = mx_time_s() - t0;
    if ((rc = mx_tokenizer_from_gguf(mx_llama_model_gguf(L->model), &L->tok, err)) < 0)
        goto fail;
    L->n_vocab = mx_tokenizer_n_vocab(L->tok);
    if (L->n_vocab != mx_llama_model_hparams(L->model)->n_vocab) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: tokenizer has %d tokens, the model %d",
                        model_path, (int)L->n_vocab,
                        (int)mx_llama_model_hparams(L->model)->n_vocab);
        goto fail;
    }
    struct mx_llama_ctx_params cp;
    mx_llama_ctx_params_default(&cp);
    cp.n_ctx = n_ctx;
    cp.kv_type = (enum mx_type)s->kv_type;
    cp.n_ubatch = s->ubatch;
    L->kv_type = cp.kv_type;
    if ((rc = mx_llama_ctx_new(L->model, &cp, &L->ctx, err)) < 0)
        goto fail;
    set_name(L);
    /* the hash only gates snapshots: a failure here must not stop the model */
    struct mx_err herr = {0};
    L->have_hash = mx_kvsnap_model_hash(model_path, &L->model_hash, &herr) == 0;
    /* a cache computed with an adapter is not the model's: no snapshots to share then */
    if (s->n_lora > 0)
        L->have_hash = false;
    *out = L;
    return 0;
fail:
    if (err && !err->code)
        mx_err_set(err, rc < 0 ? rc : MX_EIO, "%s: cannot load", model_path);
    mx_llm_close(L);
    return rc < 0 ? rc : MX_EIO;
}

void mx_llm_close(struct mx_llm *L) {
    if (!L)
        return;
    mx_llama_ctx_free(L->ctx);
    mx_llama_model_free(L->model);
    mx_backend_free(L->be);
    mx_backend_free(L->host);
    mx_tokenizer_free(L->tok);
    free(L->path);
    free(L->cached);
    free(L);
}

struct mx_backend *mx_llm_backend(const struct mx_llm *L) { return L->be; }
struct mx_llama_model *mx_llm_model(const struct mx_llm *L) { return L->model; }
struct mx_llama_ctx *mx_llm_ctx(const struct mx_llm *L) { return L->ctx; }
struct mx_tokenizer *mx_llm_tokenizer(const struct mx_llm *L) { return L->tok; }
const char *mx_llm_name(const struct mx_llm *L) { return L->name; }
const char *mx_llm_device(const struct mx_llm *L) { return L->device; }
double mx_llm_load_s(const struct mx_llm *L) { return L->load_s; }
int32_t mx_llm_n_vocab(const struct mx_llm *L) { return L->n_vocab; }
size_t mx_llm_n_ctx(const struct mx_llm *L) { return (size_t)mx_llama_ctx_n_ctx(L->ctx); }

int mx_llm_tokenize(const struct mx_llm *L, const char *text, size_t len, int32_t **ids,
                    size_t *n, struct mx_err *err) {
    return mx_tokenizer_encode(L->tok, text, len, MX_TOK_ADD_SPECIAL, ids, n, err);
}

/* ---- prefill and the generate loop ----------------------------------------------------------- */

int mx_llm_prefill(struct mx_llm *L, const int32_t *ids, size_t n, const struct mx_gen_io *io,
                   struct mx_gen_stats *st, struct mx_err *err) {
    size_t chunk = io && io->prefill_chunk ? io->prefill_chunk : n;
    double t0 = mx_time_s();
    int rc = 0;
    for (size_t i = 0; i < n;) {
        if (io && io->canceled && io->canceled(io->ud)) {
            rc = MX_ECANCELED;
            break;
        }
        size_t k = MX_MIN(n - i, chunk);
        if ((rc = mx_llm_feed(L, ids + i, k, err)) < 0)
            break;
        i += k;
        if (st)
            st->n_prefilled += k;
        if (io && io->progress && n > chunk)
            io->progress(io->ud, i, n);
    }
    if (st)
        st->prefill_s += mx_time_s() - t0;
    return rc;
}

/* Emits the held text h->p[0..n) and keeps the rest. n falls on a UTF-8 boundary: the buffer
 * holds whole characters and the kept tail starts where a stop string (valid UTF-8) starts. */
static int hold_emit(const struct mx_gen_io *io, struct mx_bytes *h, size_t n) {
    if (n == 0)
        return 0;
    int rc = io->text(io->ud, h->p, n);
    memmove(h->p, h->p + n, h->n - n);
    h->n -= n;
    return rc;
}

/* The earliest complete stop string in h (*hit: its offset), or how many bytes at the end could
 * still start one (*keep). */
static bool hold_find(const struct mx_bytes *h, const char *const *stops, size_t *hit,
                      size_t *keep) {
    bool found = false;
    for (const char *const *s = stops; s && *s; s++) {
        size_t sl = strlen(*s);
        if (sl == 0 || sl > HOLD_MAX)
            continue;
        const char *p = h->n >= sl ? memmem(h->p, h->n, *s, sl) : NULL;
        if (p && (!found || (size_t)(p - h->p) < *hit)) {
            *hit = (size_t)(p - h->p);
            found = true;
        }
        /* longest suffix of the text that is a proper prefix of this stop string */
        for (size_t k = MX_MIN(sl - 1, h->n); k > *keep; k--)
            if (!memcmp(h->p + h->n - k, *s, k)) {
                *keep = k;
                break;
            }
    }
    return found;
}

/* Looks for a stop string in s->stop and io->stops: true when one is complete (the text before
 * it is emitted, the rest dropped); otherwise emits what can no longer start one. */
static bool hold_scan(const struct mx_gen_settings *s, const struct mx_gen_io *io,
                      struct mx_bytes *h, int *rc) {
    size_t hit = 0, keep = 0;
    bool found = hold_find(h, s->stop, &hit, &keep);
    size_t hit2 = 0;
    if (hold_find(h, io->stops, &hit2, &keep) && (!found || hit2 < hit)) {
        hit = hit2;
        found = true;
    }
    if (found) {
        *rc = hold_emit(io, h, hit);
        h->n = 0;
        return true;
    }
    *rc = hold_emit(io, h, h->n - keep);
    return false;
}

/* The control token whose text is trigger (Mistral's [TOOL_CALLS]): its id, or -1 when the
 * trigger is no such token (it then appears in the answer as ordinary text). */
static int32_t trigger_token(const struct mx_llm *L, const char *trigger) {
    char buf[64];
    size_t tl = trigger ? strlen(trigger) : 0;
    if (tl == 0 || tl > sizeof buf)
        return -1;
    for (int32_t id = 0; id < L->n_vocab; id++) {
        if (mx_tokenizer_piece(L->tok, id, 0, buf, sizeof buf) != 0)
            continue; /* an ordinary token: it has text of its own */
        int n = mx_tokenizer_piece(L->tok, id, MX_DETOK_SPECIAL, buf, sizeof buf);
        if (n == (int)tl && memcmp(buf, trigger, tl) == 0)
            return id;
    }
    return -1;
}

/* The settings' grammar (s->grammar_text, else the file s->grammar) with the vocabulary's
 * pieces (raw bytes, as the stream detokenizer produces them before its first-piece space
 * strip). Returns 0 with *out (caller frees), or an error in err (MX_EIO / MX_ENOENT reading,
 * MX_EFORMAT "name:line:col: ...", MX_ENOMEM). */
static int load_grammar(const struct mx_llm *L, const struct mx_gen_settings *s,
                        struct mx_grammar **out, struct mx_err *err) {
    struct mx_grammar *g = NULL;
    char *file_text = NULL, *piece = NULL;
    const char *name = s->grammar_text ? (s->grammar_name ? s->grammar_name : "grammar")
                                       : s->grammar;
    const char *text = s->grammar_text;
    size_t len = text ? strlen(text) : 0, pcap = 256;
    int rc = 0;
    *out = NULL;
    if (!text) {
        if ((rc = mx_read_file(s->grammar, MX_GRAMMAR_MAX_FILE, &file_text, &len, err)) < 0)
            return rc;
        text = file_text;
    }
    if ((rc = mx_grammar_parse(text, len, name, &g, err)) < 0)
        goto done;
    if ((rc = mx_grammar_vocab_init(g, L->n_vocab)) < 0 || !(piece = malloc(pcap))) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory for the vocabulary", name);
        goto done;
    }
    for (int32_t id = 0; id < L->n_vocab; id++) {
        int n = mx_tokenizer_piece(L->tok, id, 0, piece, pcap);
        if (n > (int)pcap) {
            char *p = realloc(piece, pcap = (size_t)n);
            if (!p) {
                rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
                goto done;
            }
            piece = p;
            n = mx_tokenizer_piece(L->tok, id, 0, piece, pcap);
        }
        if (n < 0)
            n = 0;
        if ((rc = mx_grammar_vocab_set(g, id, piece, (size_t)n,
                                       mx_tokenizer_is_eog(L->tok, id))) < 0) {
            mx_err_set(err, rc, "%s: cannot set token %d", name, (int)id);
            goto done;
        }
    }
    *out = g;
    g = NULL;
done:
    free(file_text);
    free(piece);
    mx_grammar_free(g);
    return rc;
}

/* The sampler chain from the settings; impossible values (a session stored before they were
 * checked) fall back to "off" rather than failing a chat. With s->grammar_text or s->grammar,
 * the chain is constrained to it, or (s->grammar_trigger) the grammar waits in *lazy for its
 * trigger. */
static int make_sampler(const struct mx_llm *L, const struct mx_gen_settings *s,
                        struct mx_sampler **out, struct mx_grammar **lazy, struct mx_err *err) {
    struct mx_sampler_params p = s->sampling;
    *lazy = NULL;
    if (!(p.top_p > 0))
        p.top_p = 1.0f;
    if (!(p.repeat_penalty > 0))
        p.repeat_penalty = 1.0f;
    if (!(p.typical_p > 0))
        p.typical_p = 1.0f;
    int rc = mx_sampler_new_params(L->n_vocab, &p, out, err);
    if (rc < 0 || ((!s->grammar || !s->grammar[0]) && !s->grammar_text))
        return rc;
    struct mx_grammar *g;
    if ((rc = load_grammar(L, s, &g, err)) < 0) {
        mx_sampler_free(*out);
        *out = NULL;
        return rc;
    }
    if (s->grammar_trigger && s->grammar_trigger[0])
        *lazy = g;
    else
        mx_sampler_set_grammar(*out, g);
    return 0;
}

/* A lazy grammar's watch for its trigger: the raw text of the answer (the pieces the grammar
 * sees), kept only as far back as a trigger could still start. */
struct lazy_watch {
    struct mx_grammar *g;   /* owned until it is handed to the sampler; NULL: none waiting */
    const char *trigger;    /* borrowed from the settings */
    size_t tl;              /* strlen(trigger) */
    struct mx_bytes tail;   /* the answer's last bytes, fewer than tl unless a trigger is in */
    char *piece;            /* scratch for a token's raw bytes */
    size_t pcap;            /* bytes allocated at piece */
};

/* Feeds token id's raw bytes (text, when it is the trigger token) to the watch. When the
 * trigger appears, the grammar accepts the text from the trigger's first byte and the sampler
 * takes it over (*gram is set). Returns 0, or an error in err (the text after the trigger does
 * not fit the grammar, MX_ENOMEM). */
static int lazy_feed(struct lazy_watch *w, const struct mx_llm *L, struct mx_sampler *smp,
                     int32_t id, const char *text, size_t n_text, struct mx_grammar **gram,
                     struct mx_err *err) {
    int n = (int)n_text;
    if (!text) {
        n = mx_tokenizer_piece(L->tok, id, 0, w->piece, w->pcap);
        if (n > (int)w->pcap) {
            char *p = realloc(w->piece, (size_t)n);
            if (!p)
                return mx_err_set(err, MX_ENOMEM, "grammar: out of memory");
            w->piece = p;
            w->pcap = (size_t)n;
            n = mx_tokenizer_piece(L->tok, id, 0, w->piece, w->pcap);
        }
        text = w->piece;
    }
    if (n > 0 && mx_bytes_add(&w->tail, text, (size_t)n) < 0)
        return mx_err_set(err, MX_ENOMEM, "grammar: out of memory");
    const char *hit = w->tail.n >= w->tl ? memmem(w->tail.p, w->tail.n, w->trigger, w->tl) : NULL;
    if (!hit) {
        if (w->tail.n >= w->tl) { /* keep what could still begin the trigger */
            size_t keep = w->tl - 1;
            memmove(w->tail.p, w->tail.p + w->tail.n - keep, keep);
            w->tail.n = keep;
        }
        return 0;
    }
    size_t off = (size_t)(hit - w->tail.p);
    int rc = mx_grammar_accept(w->g, hit, w->tail.n - off);
    if (rc < 0)
        return mx_err_set(err, rc, "grammar: the text after the trigger '%.64s' does not fit the "
                          "grammar ('%.*s')", w->trigger, (int)MX_MIN(w->tail.n - off, 64),
                          hit);
    mx_sampler_set_grammar(smp, w->g);
    *gram = w->g;
    w->g = NULL;
    return 0;
}

/* A full context: drops the older half after n_keep cells (llama.cpp's context shift), the mirror
 * with it. Returns 1 when shifted, 0 when it cannot (off, or nothing to drop), or an error. */
static int shift(struct mx_llm *L, const struct mx_gen_settings *s, struct mx_err *err) {
    size_t n_ctx = mx_llm_n_ctx(L);
    size_t keep = MX_MIN((size_t)MX_MAX(s->n_keep, 0), n_ctx > 2 ? n_ctx - 2 : 0);
    size_t discard = L->n_cached > keep ? (L->n_cached - keep) / 2 : 0;
    if (!s->ctx_shift || discard < 1)
        return 0;
    int rc = mx_llama_kv_discard(L->ctx, (int64_t)keep, (int64_t)discard, err);
    if (rc < 0) {
        mx_llm_clear(L);
        return rc;
    }
    memmove(L->cached + keep, L->cached + keep + discard,
            (L->n_cached - keep - discard) * sizeof *L->cached);
    L->n_cached -= discard;
    return 1;
}

int mx_llm_generate(struct mx_llm *L, const struct mx_gen_settings *s, const int32_t *history,
                    size_t n_history, const struct mx_gen_io *io, struct mx_gen_stats *st,
                    struct mx_err *err) {
    struct mx_sampler *smp = NULL;
    struct mx_detok_stream ds;
    struct mx_bytes hold = {0}; /* text generated but not yet emitted: the tail that may
                                 * still turn into a stop string */
    const size_t n_ctx = mx_llm_n_ctx(L);
    struct lazy_watch lazy = {0};
    const char *trigger = s->grammar_trigger && s->grammar_trigger[0] ? s->grammar_trigger : NULL;
    int rc = make_sampler(L, s, &smp, &lazy.g, err);
    st->n_generated = 0;
    st->end = MX_GEN_ERROR;
    if (rc < 0)
        return rc;
    /* a control token that is the trigger is written into the answer as its text */
    const int32_t trigger_id = trigger ? trigger_token(L, trigger) : -1;
    lazy.trigger = trigger;
    lazy.tl = trigger ? strlen(trigger) : 0;
    for (size_t i = 0; i < n_history; i++)
        mx_sampler_accept_prompt(smp, history[i]); /* the penalties' window sees the prompt */
    struct mx_grammar *gram = mx_sampler_grammar(smp);
    mx_detok_stream_init(&ds, L->tok, io->detok_flags);
    double t1 = mx_time_s();
    for (;;) {
        if (io->canceled && io->canceled(io->ud)) {
            st->end = MX_GEN_CANCELED;
            break;
        }
        if (s->n_predict >= 0 && st->n_generated >= (size_t)s->n_predict) {
            st->end = MX_GEN_LENGTH;
            break;
        }
        if (gram && mx_grammar_finished(gram)) { /* nothing more can follow: as if EOS came */
            st->end = MX_GEN_EOG;
            break;
        }
        int32_t id;
        if ((rc = mx_sampler_sample(smp, mx_llama_logits(L->ctx), &id)) < 0) {
            if (rc == MX_ENOENT && gram) { /* no token of the vocabulary fits: a clean end */
                st->end = MX_GEN_GRAMMAR;
                rc = 0;
                break;
            }
            mx_err_set(err, rc, "sampler: no candidate left (check the sampling settings)");
            break;
        }
        if (!s->ignore_eos && mx_tokenizer_is_eog(L->tok, id)) {
            st->end = MX_GEN_EOG;
            break;
        }
        if ((rc = mx_sampler_accept(smp, id)) < 0) {
            mx_err_set(err, rc, "grammar: refused token %d it allowed", (int)id);
            break;
        }
        if (lazy.g && (rc = lazy_feed(&lazy, L, smp, id, id == trigger_id ? trigger : NULL,
                                      lazy.tl, &gram, err)) < 0)
            break;
        /* the token goes into the cache before its text is shown: what the user saw is what the
         * next turn finds cached; in a full context that cannot shift it is the last one, shown
         * but not cached */
        bool last = false;
        if (L->n_cached >= n_ctx) {
            rc = shift(L, s, err);
            if (rc < 0)
                break;
            st->n_shifts += (size_t)rc;
            last = rc == 0;
        }
        if (!last && (rc = mx_llm_feed(L, &id, 1, err)) < 0)
            break;
        st->n_generated++;
        if (io->token)
            io->token(io->ud, id, st->n_generated);
        const char *piece;
        size_t np;
        /* the trigger's control token: what the stream holds (a character cut short by it)
         * comes out first, then the trigger's text */
        rc = id == trigger_id ? mx_detok_stream_flush(&ds, &piece, &np)
                              : mx_detok_stream_push(&ds, id, &piece, &np);
        if (rc == 0 && np)
            rc = mx_bytes_add(&hold, piece, np);
        if (rc == 0 && id == trigger_id)
            rc = mx_bytes_add(&hold, trigger, lazy.tl);
        if (rc < 0) {
            mx_err_set(err, rc, "detokenizer failed on token %d", (int)id);
            break;
        }
        if (hold_scan(s, io, &hold, &rc)) {
            st->end = MX_GEN_STOP;
            break;
        }
        if (rc < 0)
            break;
        if (last) {
            st->end = MX_GEN_FULL;
            break;
        }
        if (io->stats && (st->n_generated & 15) == 0) { /* the clock only every 16th token */
            double dt = mx_time_s() - t1;
            if (dt > 0)
                io->stats(io->ud, (double)st->n_generated / dt, L->n_cached);
        }
    }
    st->gen_s = mx_time_s() - t1;
    if (rc >= 0 && st->end != MX_GEN_STOP) {
        /* the held tail was no stop string after all: it is part of the answer */
        const char *tail;
        size_t nt;
        if (mx_detok_stream_flush(&ds, &tail, &nt) == 0 && nt)
            rc = mx_bytes_add(&hold, tail, nt);
        if (rc >= 0)
            rc = hold_emit(io, &hold, hold.n);
    }
    if (rc < 0)
        st->end = MX_GEN_ERROR;
    if (gram) {
        struct mx_sampler_grammar_stats gs;
        mx_sampler_grammar_stats(smp, &gs);
        st->grammar_s = gs.seconds;
        st->grammar_refused = (size_t)gs.n_refused;
    }
    mx_bytes_free(&hold);
    mx_bytes_free(&lazy.tail);
    free(lazy.piece);
    mx_grammar_free(lazy.g);
    mx_detok_stream_deinit(&ds);
    mx_sampler_free(smp);
    return rc < 0 ? rc : 0;
}

/* ---- snapshots ------------------------------------------------------------------------------- */

static int snap_write(void *ud, const void *data, size_t n, struct mx_err *err) {
    return mx_kvsnap_write(ud, data, n, err);
}

static int snap_read(void *ud, void *data, size_t n, struct mx_err *err) {
    return mx_kvsnap_read(ud, data, n, err);
}

int mx_llm_save(struct mx_llm *L, const char *path, struct mx_err *err) {
    if (!L->have_hash)
        return mx_err_set(err, MX_EIO, "snapshot: %s: cannot fingerprint the model file",
                          L->path);
    if (L->n_cached == 0 || (size_t)mx_llama_ctx_n_past(L->ctx) != L->n_cached)
        return mx_err_set(err, MX_EINVAL, "snapshot: nothing to save (cache holds %zu tokens)",
                          L->n_cached);
    struct mx_kvsnap_info info = {
        .model_hash = L->model_hash,
        .n_ctx = (uint32_t)mx_llama_ctx_n_ctx(L->ctx),
        .kv_type = (uint32_t)L->kv_type,
        .n_layer = (uint32_t)mx_llama_model_hparams(L->model)->n_layer,
        .n_tokens = L->n_cached,
        .payload_size = mx_llama_kv_state_size(L->ctx),
    };
    struct mx_kvsnap_writer *w = NULL;
    int rc = mx_kvsnap_write_begin(&w, path, &info, L->cached, err);
    if (rc < 0)
        return rc;
    rc = mx_llama_kv_state_save(L->ctx, snap_write, w, err);
    if (rc < 0) {
        mx_kvsnap_write_abort(w);
        return rc;
    }
    return mx_kvsnap_write_commit(w, err);
}

int mx_llm_load(struct mx_llm *L, const char *path, struct mx_err *err) {
    mx_llm_clear(L); /* whatever happens, the old cache is not the session's */
    if (!L->have_hash)
        return mx_err_set(err, MX_EIO, "snapshot: %s: cannot fingerprint the model file",
                          L->path);
    struct mx_kvsnap_reader *r = NULL;
    struct mx_kvsnap_info info;
    int rc = mx_kvsnap_open(&r, path, L->model_hash, &info, err);
    if (rc < 0)
        return rc;
    size_t n_ctx = mx_llm_n_ctx(L);
    if (info.kv_type != (uint32_t)L->kv_type ||
        info.n_layer != (uint32_t)mx_llama_model_hparams(L->model)->n_layer) {
        rc = mx_err_set(err, MX_EUNSUP, "snapshot %s: cache type %u / %u layers, engine has "
                        "%u / %u", path, info.kv_type, info.n_layer, (unsigned)L->kv_type,
                        (unsigned)mx_llama_model_hparams(L->model)->n_layer);
        goto fail;
    }
    if (info.n_tokens == 0 || info.n_tokens > n_ctx) {
        rc = mx_err_set(err, MX_ERANGE, "snapshot %s: %llu tokens, the context holds %zu", path,
                        (unsigned long long)info.n_tokens, n_ctx);
        goto fail;
    }
    if ((rc = mirror_reserve(L, MX_MAX((size_t)info.n_tokens, n_ctx))) < 0) {
        mx_err_set(err, rc, "snapshot: out of memory");
        goto fail;
    }
    const int32_t *ids = mx_kvsnap_tokens(r);
    for (uint64_t i = 0; i < info.n_tokens; i++)
        if (ids[i] < 0 || ids[i] >= L->n_vocab) {
            rc = mx_err_set(err, MX_EFORMAT, "snapshot %s: token %llu id %d out of range",
                            path, (unsigned long long)i, (int)ids[i]);
            goto fail;
        }
    rc = mx_llama_kv_state_load(L->ctx, (size_t)info.payload_size, snap_read, r, err);
    if (rc == 0)
        rc = mx_kvsnap_read_end(r, err); /* the checksum: only now is the payload trusted */
    if (rc == 0 && (uint64_t)mx_llama_ctx_n_past(L->ctx) != info.n_tokens)
        rc = mx_err_set(err, MX_EFORMAT, "snapshot %s: cache holds %lld positions for %llu "
                        "tokens", path, (long long)mx_llama_ctx_n_past(L->ctx),
                        (unsigned long long)info.n_tokens);
    if (rc < 0)
        goto fail;
    memcpy(L->cached, ids, (size_t)info.n_tokens * sizeof *ids);
    L->n_cached = (size_t)info.n_tokens;
    mx_kvsnap_close(r);
    return 0;
fail:
    mx_kvsnap_close(r);
    mx_llm_clear(L);
    return rc;
}
