/* template.c - chat templates written out in C, one renderer per family, plus recognition of a
 * family from its Jinja text. See template.h for the BOS contract and the deviations.
 *
 * Each renderer names the Jinja template it reproduces. Jinja facts used throughout: HF renders
 * with trim_blocks and lstrip_blocks, `trim` and Python's str.strip() remove leading/trailing
 * whitespace, and `tojson` is json.dumps with ", " and ": " separators. Workload: a few
 * conversations per second at most, texts up to a few MB (64K-token histories); a growable
 * buffer with doubling is plenty.
 */
#include "core/text/template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/util.h"

/* ---------------------------------------------------------------------------------------------
 * Names and detection
 */

static const char *const tmpl_names[MX_TMPL_COUNT] = {
    [MX_TMPL_MISTRAL_LEGACY] = "mistral-legacy",
    [MX_TMPL_MISTRAL_V1] = "mistral-v1",
    [MX_TMPL_MISTRAL_V3] = "mistral-v3",
    [MX_TMPL_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [MX_TMPL_MISTRAL_V7] = "mistral-v7",
    [MX_TMPL_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [MX_TMPL_LLAMA2] = "llama2",
    [MX_TMPL_LLAMA3] = "llama3",
    [MX_TMPL_CHATML] = "chatml",
    [MX_TMPL_ZEPHYR] = "zephyr",
    [MX_TMPL_GEMMA] = "gemma",
    [MX_TMPL_PHI3] = "phi3",
    [MX_TMPL_HARMONY] = "harmony",
    [MX_TMPL_QWEN3] = "qwen3",
    [MX_TMPL_GRANITE] = "granite",
    [MX_TMPL_TULU] = "tulu",
};

#define TMPL_NAME_LIST                                                                         \
    "mistral-legacy, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, "                  \
    "mistral-v7-tekken, llama2, llama3, chatml, zephyr, gemma, phi3, harmony, qwen3, granite, "  \
    "tulu"

const char *mx_tmpl_name(enum mx_tmpl_kind kind) {
    if ((unsigned)kind >= MX_TMPL_COUNT)
        return "unknown";
    return tmpl_names[kind];
}

const char *mx_tmpl_names(void) {
    return TMPL_NAME_LIST;
}

static bool lookup_name(const char *name, enum mx_tmpl_kind *out) {
    for (int k = 0; k < MX_TMPL_COUNT; k++) {
        if (strcmp(name, tmpl_names[k]) == 0) {
            *out = (enum mx_tmpl_kind)k;
            return true;
        }
    }
    return false;
}

int mx_tmpl_from_name(const char *name, enum mx_tmpl_kind *out, struct mx_err *err) {
    if (name && out && lookup_name(name, out))
        return 0;
    return mx_err_set(err, MX_EINVAL, "chat template '%.64s': unknown name (known: %s)",
                      name ? name : "(null)", TMPL_NAME_LIST);
}

static bool has(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

bool mx_tmpl_detect(const char *t, enum mx_tmpl_kind *out) {
    enum mx_tmpl_kind k;
    if (!t || !*t || !out)
        return false;
    /* Order matters: test the most specific markers first (llama.cpp's order, trimmed to the
     * families we render). */
    if (has(t, "<|start|>") && has(t, "<|channel|>") && has(t, "<|message|>")) {
        k = MX_TMPL_HARMONY; /* gpt-oss; before phi3, whose <|end|> it shares */
    } else if (has(t, "<|im_start|>")) {
        /* Qwen3 (and QwQ): ChatML whose assistant turns carry <think> reasoning */
        k = has(t, "<think>") && has(t, "reasoning_content") ? MX_TMPL_QWEN3 : MX_TMPL_CHATML;
    } else if (has(t, "<|start_of_role|>")) {
        k = MX_TMPL_GRANITE; /* llama.cpp: Granite 3.x unless its 4.x tool markers */
    } else if (has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) {
            /* Tekken (Mistral Small 3.x) writes '[INST]' with no space after it. */
            k = (has(t, "'[INST]'") || has(t, "\"[INST]\"")) ? MX_TMPL_MISTRAL_V7_TEKKEN
                                                             : MX_TMPL_MISTRAL_V7;
        } else if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
            /* The official v1/v3/v3-tekken templates: v1 opens turns with " [INST]", tekken
             * (Nemo) concatenates "[INST]" directly, v3 writes "[INST] ". Only the double-quoted
             * form means tekken: the first Mixtral-8x22B template writes '[INST]' with single
             * quotes and is a v3 model (llama.cpp makes the same call). */
            if (has(t, " [INST]"))
                k = MX_TMPL_MISTRAL_V1;
            else if (has(t, "\"[INST]\""))
                k = MX_TMPL_MISTRAL_V3_TEKKEN;
            else
                k = MX_TMPL_MISTRAL_V3;
        } else if (has(t, "<<SYS>>")) {
            k = MX_TMPL_LLAMA2;
        } else if (has(t, "' [INST] '") || has(t, "\" [INST] \"")) {
            k = MX_TMPL_MISTRAL_V1; /* the cookbook's basic v1 template */
        } else if (has(t, " [/INST]'") || has(t, " [/INST]\"")) {
            k = MX_TMPL_MISTRAL_LEGACY; /* '[INST] ' + content + ' [/INST]' */
        } else if (has(t, "'[INST]' +") || has(t, "\"[INST]\" +")) {
            k = MX_TMPL_MISTRAL_V3_TEKKEN; /* the cookbook's basic tekken template */
        } else if (has(t, "'[INST] ' +") || has(t, "\"[INST] \" +")) {
            k = MX_TMPL_MISTRAL_V3; /* the cookbook's basic v2/v3 template */
        } else {
            k = MX_TMPL_MISTRAL_LEGACY;
        }
    } else if (has(t, "<|assistant|>") && has(t, "<|end|>")) {
        k = MX_TMPL_PHI3;
    } else if (has(t, "<|user|>") && (has(t, "'<|user|>\\n' + message['content'] }}") ||
                                      has(t, "'<|user|> ' + message['content'] }}"))) {
        k = MX_TMPL_TULU; /* the user turn without eos_token (Zephyr ends every turn with it) */
    } else if (has(t, "<|user|>") &&
               (has(t, "eos_token") || has(t, "</s>") || has(t, "<|endoftext|>"))) {
        k = MX_TMPL_ZEPHYR;
    } else if (has(t, "<start_of_turn>")) {
        k = MX_TMPL_GEMMA;
    } else if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) {
        k = MX_TMPL_LLAMA3;
    } else {
        return false;
    }
    *out = k;
    return true;
}

int mx_tmpl_choose(const char *override_name, const char *gguf_template, const char *arch,
                   struct mx_tmpl_choice *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat template: no output");
    memset(out, 0, sizeof(*out));
    if (override_name && *override_name) {
        int rc = mx_tmpl_from_name(override_name, &out->kind, err);
        if (rc < 0)
            return rc;
        out->source = "override";
        return 0;
    }
    if (gguf_template && *gguf_template) {
        if (lookup_name(gguf_template, &out->kind) || mx_tmpl_detect(gguf_template, &out->kind)) {
            out->source = "gguf";
            return 0;
        }
        out->kind = MX_TMPL_DEFAULT_OTHER;
        out->source = "default";
        snprintf(out->warning, sizeof(out->warning),
                 "the model's chat template is not recognised; mixel uses %s (if answers look "
                 "wrong, pick another with --chat-template NAME: %s)",
                 mx_tmpl_name(out->kind), TMPL_NAME_LIST);
        return 0;
    }
    out->kind = (arch && strcmp(arch, "llama") == 0) ? MX_TMPL_DEFAULT_LLAMA
                                                     : MX_TMPL_DEFAULT_OTHER;
    out->source = "default";
    snprintf(out->warning, sizeof(out->warning),
             "the model has no chat template; mixel uses %s (if answers look wrong, pick "
             "another with --chat-template NAME: %s)",
             mx_tmpl_name(out->kind), TMPL_NAME_LIST);
    return 0;
}

static const char *const stops_none[] = {NULL};
static const char *const stops_chatml[] = {"<|im_end|>", NULL};
static const char *const stops_llama3[] = {"<|eot_id|>", NULL};
static const char *const stops_gemma[] = {"<end_of_turn>", NULL};
static const char *const stops_phi3[] = {"<|end|>", NULL};
/* harmony: <|end|> only closes a channel (the analysis comes first); the turn ends at <|return|>
 * or, for a tool call, <|call|> */
static const char *const stops_harmony[] = {"<|return|>", "<|call|>", NULL};
static const char *const stops_granite[] = {"<|end_of_text|>", NULL};

const char *const *mx_tmpl_stop_strings(enum mx_tmpl_kind kind) {
    switch (kind) {
    case MX_TMPL_CHATML: case MX_TMPL_QWEN3: return stops_chatml;
    case MX_TMPL_GRANITE: return stops_granite;
    case MX_TMPL_LLAMA3: return stops_llama3;
    case MX_TMPL_GEMMA: return stops_gemma;
    case MX_TMPL_PHI3: return stops_phi3;
    case MX_TMPL_HARMONY: return stops_harmony;
    default: return stops_none; /* the Mistral/Llama-2/Zephyr turns end with EOS itself */
    }
}

/* ---------------------------------------------------------------------------------------------
 * Growable output buffer. The first failure sticks in rc, so renderers append without checking
 * each call and test once at the end.
 */

struct sbuf {
    char *p;      /* NUL-terminated when cap > 0 */
    size_t len;   /* bytes used, excluding the NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* longest text allowed, <= MX_TMPL_MAX_TEXT */
    int rc;       /* 0, or the first MX_ENOMEM/MX_ERANGE */
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
    size_t need;
    if (b->rc < 0 || n == 0)
        return;
    if (!mx_add_size(b->len, n, &need) || need > b->max) {
        b->rc = MX_ERANGE;
        return;
    }
    if (need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need + 1)
            cap *= 2; /* need <= 1 GiB, so this cannot overflow */
        char *p = realloc(b->p, cap);
        if (!p) {
            b->rc = MX_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len = need;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* Python's str.strip()/Jinja trim on ASCII whitespace (the characters templates meet in
 * practice; Unicode spaces are left alone). */
static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void sb_put_trimmed(struct sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n > 0 && is_ws(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ws(s[n - 1]))
        n--;
    sb_put(b, s, n);
}

/* A JSON string literal as json.dumps(ensure_ascii=False) writes it. */
static void sb_put_json_string(struct sbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sb_put(b, u, 6);
            } else {
                sb_put(b, (const char *)&c, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

/* ---------------------------------------------------------------------------------------------
 * JSON re-layout: tool arguments and parameter schemas arrive as JSON text, the templates emit
 * them through `tojson`, i.e. with Python's separators. We validate the text and re-emit it with
 * ", " and ": " and no other whitespace. String literals and numbers are copied as given (their
 * escapes are not re-normalised).
 */

struct jparse {
    const char *s; /* text */
    size_t i;      /* cursor */
    struct sbuf *b;
    int indent;    /* 0: one line with ", " and ": "; n: json.dumps(indent=n) layout */
};

#define JSON_MAX_DEPTH 64

static void j_ws(struct jparse *j) {
    while (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r')
        j->i++;
}

static bool j_string(struct jparse *j) {
    size_t start = j->i;
    if (j->s[j->i] != '"')
        return false;
    j->i++;
    for (;;) {
        unsigned char c = (unsigned char)j->s[j->i];
        if (c == '\0' || c < 0x20)
            return false;
        if (c == '"')
            break;
        if (c == '\\') {
            j->i++;
            c = (unsigned char)j->s[j->i];
            if (c == 'u') {
                for (int k = 1; k <= 4; k++) {
                    char h = j->s[j->i + (size_t)k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return false;
                }
                j->i += 4;
            } else if (!c || !strchr("\"\\/bfnrt", c)) {
                return false;
            }
        }
        j->i++;
    }
    j->i++;
    sb_put(j->b, j->s + start, j->i - start);
    return true;
}

static bool j_value(struct jparse *j, int depth);

/* A line break and the indentation of nesting level `level` (json.dumps(indent=n)). */
static void j_newline(struct jparse *j, int level) {
    sb_put(j->b, "\n", 1);
    for (int k = 0; k < level * j->indent; k++)
        sb_put(j->b, " ", 1);
}

static bool j_container(struct jparse *j, int depth, char open, char close) {
    bool first = true;
    if (depth >= JSON_MAX_DEPTH)
        return false;
    sb_put(j->b, &open, 1);
    j->i++;
    j_ws(j);
    if (j->s[j->i] == close) {
        j->i++;
        sb_put(j->b, &close, 1);
        return true;
    }
    for (;;) {
        if (!first)
            sb_put(j->b, j->indent ? "," : ", ", j->indent ? 1 : 2);
        if (j->indent)
            j_newline(j, depth + 1);
        first = false;
        j_ws(j);
        if (open == '{') {
            if (!j_string(j))
                return false;
            j_ws(j);
            if (j->s[j->i] != ':')
                return false;
            j->i++;
            sb_put(j->b, ": ", 2);
            j_ws(j);
        }
        if (!j_value(j, depth + 1))
            return false;
        j_ws(j);
        if (j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->s[j->i] == close) {
            j->i++;
            if (j->indent)
                j_newline(j, depth);
            sb_put(j->b, &close, 1);
            return true;
        }
        return false;
    }
}

static bool j_value(struct jparse *j, int depth) {
    const char *s = j->s + j->i;
    static const char *const words[] = {"true", "false", "null"};
    if (*s == '{')
        return j_container(j, depth, '{', '}');
    if (*s == '[')
        return j_container(j, depth, '[', ']');
    if (*s == '"')
        return j_string(j);
    for (size_t w = 0; w < MX_ARRAY_LEN(words); w++) {
        size_t n = strlen(words[w]);
        if (strncmp(s, words[w], n) == 0) {
            sb_put(j->b, s, n);
            j->i += n;
            return true;
        }
    }
    /* number: -?int frac? exp? */
    size_t k = 0;
    if (s[k] == '-')
        k++;
    if (s[k] == '0') {
        k++;
    } else if (s[k] >= '1' && s[k] <= '9') {
        while (s[k] >= '0' && s[k] <= '9')
            k++;
    } else {
        return false;
    }
    if (s[k] == '.') {
        k++;
        if (!(s[k] >= '0' && s[k] <= '9'))
            return false;
        while (s[k] >= '0' && s[k] <= '9')
            k++;
    }
    if (s[k] == 'e' || s[k] == 'E') {
        k++;
        if (s[k] == '+' || s[k] == '-')
            k++;
        if (!(s[k] >= '0' && s[k] <= '9'))
            return false;
        while (s[k] >= '0' && s[k] <= '9')
            k++;
    }
    sb_put(j->b, s, k);
    j->i += k;
    return true;
}

/* Appends text (a JSON value) re-laid-out (indent as in struct jparse); NULL appends "{}".
 * Returns 0 or MX_EINVAL with the byte offset of the first error; b is left with a partial
 * value on error (caller fails). */
static int sb_put_json_indent(struct sbuf *b, const char *text, int indent, const char *what,
                              struct mx_err *err) {
    struct jparse j = {text ? text : "{}", 0, b, indent};
    j_ws(&j);
    bool ok = j_value(&j, 0);
    if (ok) {
        j_ws(&j);
        ok = j.s[j.i] == '\0';
    }
    if (!ok)
        return mx_err_set(err, MX_EINVAL, "%s: not valid JSON (at byte %zu)", what, j.i);
    return 0;
}

/* Appends text (a JSON value) as `tojson` writes it: one line, ", " and ": ". */
static int sb_put_json(struct sbuf *b, const char *text, const char *what, struct mx_err *err) {
    return sb_put_json_indent(b, text, 0, what, err);
}

/* ---------------------------------------------------------------------------------------------
 * Shared checks
 */

/* The templates' alternation exception, for messages[first..n). */
static int check_alternation(const struct mx_chat_msg *m, size_t n, size_t first,
                             struct mx_err *err) {
    for (size_t i = first; i < n; i++) {
        bool want_user = (i - first) % 2 == 0;
        if ((m[i].role == MX_ROLE_USER) != want_user ||
            (!want_user && m[i].role != MX_ROLE_ASSISTANT))
            return mx_err_set(err, MX_EINVAL,
                              "chat template: message %zu is '%s': after the optional system "
                              "message, roles must alternate user/assistant/user/...",
                              i, mx_role_name(m[i].role));
    }
    return 0;
}

/* Families with no tool syntax: reject tool messages, tool calls and tool definitions. */
static int check_no_tools(const char *fam, const struct mx_chat_msg *m, size_t n,
                          const struct mx_tmpl_opts *o, bool allow_tool_role,
                          struct mx_err *err) {
    if (o->n_tools > 0)
        return mx_err_set(err, MX_EUNSUP, "chat template %s: no syntax for tool definitions",
                          fam);
    for (size_t i = 0; i < n; i++) {
        if (m[i].n_tool_calls > 0)
            return mx_err_set(err, MX_EUNSUP,
                              "chat template %s: no syntax for tool calls (message %zu)", fam, i);
        if (m[i].role == MX_ROLE_TOOL && !allow_tool_role)
            return mx_err_set(err, MX_EUNSUP,
                              "chat template %s: no 'tool' role (message %zu)", fam, i);
    }
    return 0;
}

/* System messages only as messages[0] (the templates pop it off the front). */
static int check_system_first(const char *fam, const struct mx_chat_msg *m, size_t n,
                              struct mx_err *err) {
    for (size_t i = 1; i < n; i++)
        if (m[i].role == MX_ROLE_SYSTEM)
            return mx_err_set(err, MX_EINVAL,
                              "chat template %s: system message only allowed first (message %zu)",
                              fam, i);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Renderers. Each appends to b and returns 0 or a negative code (b->rc is checked after).
 */

struct rctx {
    const struct mx_chat_msg *m; /* messages */
    size_t n;                    /* count, > 0 */
    const struct mx_tmpl_opts *o;
    const char *bos;             /* resolved BOS/EOS strings */
    const char *eos;
    const char *fam;             /* family name for messages */
    struct sbuf *b;
    struct mx_err *err;
};

/* ChatML. Ref: teknium/OpenHermes-2.5-Mistral-7B tokenizer_config.json chat_template:
 *   {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']
 *   + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'
 *   }}{% endif %}
 * Any role is written by name, so 'tool' is just another turn; no BOS in the text. */
static int render_chatml(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, true, c->err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|im_start|>");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "\n");
        sb_puts(c->b, c->m[i].content);
        sb_puts(c->b, "<|im_end|>\n");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|im_start|>assistant\n");
    return 0;
}

/* Llama 3. Ref: meta-llama/Meta-Llama-3-8B-Instruct chat_template:
 *   {% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] +
 *   '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0
 *   %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if
 *   add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
 * (`|` binds tighter than `+`: only the content is trimmed.) */
static int render_llama3(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, true, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|start_header_id|>");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "<|end_header_id|>\n\n");
        sb_put_trimmed(c->b, c->m[i].content);
        sb_puts(c->b, "<|eot_id|>");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

/* Zephyr. Ref: HuggingFaceH4/zephyr-7b-beta (and TinyLlama-1.1B-Chat) chat_template:
 *   {% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' +
 *   message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n'
 *   + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{
 *   '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and
 *   add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}
 * With trim_blocks the newline after each {% %} goes, the one after each {{ }} stays: every
 * message is "<|role|>\n" content EOS "\n", the prompt is "<|assistant|>\n". */
static int render_zephyr(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "|>\n");
        sb_puts(c->b, c->m[i].content);
        sb_puts(c->b, c->eos);
        sb_puts(c->b, "\n");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|assistant|>\n");
    return 0;
}

/* Phi-3. Ref: microsoft/Phi-3-mini-4k-instruct chat_template (2024-07 revision):
 *   {% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' +
 *   message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' +
 *   message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n'
 *   + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{
 *   '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %} */
static int render_phi3(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "|>\n");
        sb_puts(c->b, c->m[i].content);
        sb_puts(c->b, "<|end|>\n");
    }
    sb_puts(c->b, c->o->add_generation_prompt ? "<|assistant|>\n" : c->eos);
    return 0;
}

/* harmony (gpt-oss). Ref: openai/gpt-oss-120b chat_template.jinja (the same in -20b; llama.cpp
 * models/templates/openai-gpt-oss-120b.jinja), without tools or builtin_tools:
 *   '<|start|>system<|message|>' + model_identity ("You are ChatGPT, a large language model
 *   trained by OpenAI.") + '\nKnowledge cutoff: 2024-06\nCurrent date: ' + strftime_now(
 *   '%Y-%m-%d') + '\n\nReasoning: ' + (reasoning_effort or 'medium') + '\n\n# Valid channels:
 *   analysis, commentary, final. Channel must be included for every message.<|end|>' ;
 *   messages[0] if system/developer: '<|start|>developer<|message|># Instructions\n\n' +
 *   content + '\n\n<|end|>' (skipped when empty) ; user: '<|start|>user<|message|>' + content +
 *   '<|end|>' ; assistant: '<|start|>assistant<|channel|>final<|message|>' + content + ('<|return|>'
 *   for a last assistant message without generation prompt, else '<|end|>'), content holding
 *   channel tags raises ; generation prompt '<|start|>assistant'.
 * Later system messages are silently dropped by the template: an error here. */
static int render_harmony(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc == 0)
        rc = check_system_first(c->fam, c->m, c->n, c->err);
    if (rc < 0)
        return rc;
    const char *effort = c->o->reasoning_effort ? c->o->reasoning_effort : "medium";
    if (strcmp(effort, "low") != 0 && strcmp(effort, "medium") != 0 &&
        strcmp(effort, "high") != 0)
        return mx_err_set(c->err, MX_EINVAL, "chat template %s: reasoning effort '%.32s' (low, "
                          "medium or high)", c->fam, effort);
    char today[16];
    const char *date = c->o->date;
    if (!date) {
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm) || strftime(today, sizeof today, "%Y-%m-%d", &tm) == 0)
            snprintf(today, sizeof today, "1970-01-01");
        date = today;
    }
    sb_puts(c->b, "<|start|>system<|message|>You are ChatGPT, a large language model trained by "
                  "OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: ");
    sb_puts(c->b, date);
    sb_puts(c->b, "\n\nReasoning: ");
    sb_puts(c->b, effort);
    sb_puts(c->b, "\n\n# Valid channels: analysis, commentary, final. Channel must be included "
                  "for every message.<|end|>");
    size_t first = 0;
    if (c->m[0].role == MX_ROLE_SYSTEM) {
        first = 1;
        if (c->m[0].content[0]) {
            sb_puts(c->b, "<|start|>developer<|message|># Instructions\n\n");
            sb_puts(c->b, c->m[0].content);
            sb_puts(c->b, "\n\n<|end|>");
        }
    }
    for (size_t i = first; i < c->n; i++) {
        const char *s = c->m[i].content;
        if (c->m[i].role == MX_ROLE_USER) {
            sb_puts(c->b, "<|start|>user<|message|>");
            sb_puts(c->b, s);
            sb_puts(c->b, "<|end|>");
            continue;
        }
        if (strstr(s, "<|channel|>analysis<|message|>") ||
            strstr(s, "<|channel|>final<|message|>"))
            return mx_err_set(c->err, MX_EINVAL, "chat template %s: message %zu holds channel "
                              "tags (pass the final answer only)", c->fam, i);
        sb_puts(c->b, "<|start|>assistant<|channel|>final<|message|>");
        sb_puts(c->b, s);
        sb_puts(c->b, i + 1 == c->n && !c->o->add_generation_prompt ? "<|return|>" : "<|end|>");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|start|>assistant");
    return 0;
}

/* Gemma. Ref: google/gemma-3-*-it chat_template (text part):
 *   {{ bos_token }} ; if messages[0] is system: first_user_prefix = its content + '\n\n' and
 *   loop_messages = messages[1:] ; roles must alternate user/assistant ; role 'assistant' is
 *   written 'model' ; each turn: '<start_of_turn>' + role + '\n' + (first_user_prefix if
 *   loop.first) + content|trim + '<end_of_turn>\n' ; generation prompt '<start_of_turn>model\n'.
 * (Gemma 1/2 raise on a system message; Gemma 3's merge is the behaviour users expect.) */
static int render_gemma(struct rctx *c) {
    size_t first = c->m[0].role == MX_ROLE_SYSTEM ? 1 : 0;
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc == 0)
        rc = check_alternation(c->m, c->n, first, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    for (size_t i = first; i < c->n; i++) {
        sb_puts(c->b, "<start_of_turn>");
        sb_puts(c->b, c->m[i].role == MX_ROLE_ASSISTANT ? "model" : "user");
        sb_puts(c->b, "\n");
        if (i == first && first == 1) {
            sb_puts(c->b, c->m[0].content);
            sb_puts(c->b, "\n\n");
        }
        sb_put_trimmed(c->b, c->m[i].content);
        sb_puts(c->b, "<end_of_turn>\n");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<start_of_turn>model\n");
    return 0;
}

/* Llama 2 chat. Ref: meta-llama/Llama-2-7b-chat-hf chat_template:
 *   system popped off the front; roles must alternate; for the first loop message with a system
 *   message content = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content ; user: bos_token +
 *   '[INST] ' + content.strip() + ' [/INST]' ; assistant: ' ' + content.strip() + ' ' +
 *   eos_token. (strip() applies to the whole combined content.) No generation prompt: the text
 *   already ends with [/INST]. */
static int render_llama2(struct rctx *c) {
    size_t first = c->m[0].role == MX_ROLE_SYSTEM ? 1 : 0;
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc == 0)
        rc = check_alternation(c->m, c->n, first, c->err);
    if (rc < 0)
        return rc;
    for (size_t i = first; i < c->n; i++) {
        const char *content = c->m[i].content;
        if (c->m[i].role == MX_ROLE_USER) {
            sb_puts(c->b, c->bos);
            sb_puts(c->b, "[INST] ");
        } else {
            sb_puts(c->b, " ");
        }
        if (i == 1 && first == 1) {
            /* strip() applies to '<<SYS>>\n' + sys + '\n<</SYS>>\n\n' + content as a whole:
             * the head starts with '<', the tail may eat into the prefix when content is blank. */
            size_t start = c->b->len;
            sb_puts(c->b, "<<SYS>>\n");
            sb_puts(c->b, c->m[0].content);
            sb_puts(c->b, "\n<</SYS>>\n\n");
            sb_puts(c->b, content);
            if (c->b->rc == 0) {
                while (c->b->len > start && is_ws(c->b->p[c->b->len - 1]))
                    c->b->len--;
                c->b->p[c->b->len] = '\0';
            }
        } else {
            sb_put_trimmed(c->b, content);
        }
        if (c->m[i].role == MX_ROLE_USER) {
            sb_puts(c->b, " [/INST]");
        } else {
            sb_puts(c->b, " ");
            sb_puts(c->b, c->eos);
        }
    }
    return 0;
}

/* Mistral legacy. Ref: mistralai/Mixtral-8x7B-Instruct-v0.1 chat_template as first published
 * (also Mistral-7B-Instruct-v0.1/v0.2):
 *   {{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') !=
 *   (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}{% endif %}{% if message['role'] == 'user'
 *   %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{
 *   message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles
 *   are supported!') }}{% endif %}{% endfor %}
 * Deviation: a leading system message is prepended to the first user message with "\n\n" (the
 * v1 rule) instead of raising. */
static int render_mistral_legacy(struct rctx *c) {
    size_t first = c->m[0].role == MX_ROLE_SYSTEM ? 1 : 0;
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc == 0)
        rc = check_alternation(c->m, c->n, first, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    for (size_t i = first; i < c->n; i++) {
        if (c->m[i].role == MX_ROLE_USER) {
            sb_puts(c->b, "[INST] ");
            if (i == 1 && first == 1) {
                sb_puts(c->b, c->m[0].content);
                sb_puts(c->b, "\n\n");
            }
            sb_puts(c->b, c->m[i].content);
            sb_puts(c->b, " [/INST]");
        } else {
            sb_puts(c->b, c->m[i].content);
            sb_puts(c->b, c->eos);
        }
    }
    return 0;
}

/* Mistral v1. Ref: mistralai/Mixtral-8x7B-Instruct-v0.1 (and Mistral-7B-Instruct-v0.1)
 * chat_template, 2024 revision:
 *   system popped off the front; {{- bos_token }}; roles must alternate; user: ' [INST] ' +
 *   (system_message + '\n\n' if loop.first and system is defined) + content + ' [/INST]';
 *   assistant: ' ' + content + eos_token; anything else raises. */
static int render_mistral_v1(struct rctx *c) {
    size_t first = c->m[0].role == MX_ROLE_SYSTEM ? 1 : 0;
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc == 0)
        rc = check_alternation(c->m, c->n, first, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    for (size_t i = first; i < c->n; i++) {
        if (c->m[i].role == MX_ROLE_USER) {
            sb_puts(c->b, " [INST] ");
            if (i == 1 && first == 1) {
                sb_puts(c->b, c->m[0].content);
                sb_puts(c->b, "\n\n");
            }
            sb_puts(c->b, c->m[i].content);
            sb_puts(c->b, " [/INST]");
        } else {
            sb_puts(c->b, " ");
            sb_puts(c->b, c->m[i].content);
            sb_puts(c->b, c->eos);
        }
    }
    return 0;
}

/* The spacing differences between the Mistral tool-capable templates. */
struct mistral_style {
    const char *sys_open;    /* v7: "[SYSTEM_PROMPT] " / tekken "[SYSTEM_PROMPT]"; v3: NULL */
    const char *inst_open;   /* "[INST] " or "[INST]" */
    const char *tools_open;  /* "[AVAILABLE_TOOLS] [" or "[AVAILABLE_TOOLS][" */
    const char *calls_open;  /* "[TOOL_CALLS] [" or "[TOOL_CALLS][" */
    const char *result_open; /* "[TOOL_RESULTS] {\"content\": " or without the space */
    const char *asst_open;   /* " " before an answer, or "" */
    bool trim_answer;        /* v3: content|trim */
    bool id_exact9;          /* v3: ids of exactly 9 chars; v7: >= 9, last 9 used */
};

/* Tool-call id as the template writes it (v7 keeps the last 9 chars), or an error. */
static int mistral_id(const struct mistral_style *st, const char *id, size_t msg, const char **out,
                      struct mx_err *err) {
    size_t n = id ? strlen(id) : 0;
    if (st->id_exact9 ? n != 9 : n < 9)
        return mx_err_set(err, MX_EINVAL,
                          "chat template: message %zu: tool call id '%.32s' must be %s 9 "
                          "alphanumeric chars",
                          msg, id ? id : "(null)", st->id_exact9 ? "exactly" : "at least");
    *out = id + n - 9;
    return 0;
}

/* Mistral v3 / v3-tekken / v7 / v7-tekken.
 * Ref v3: mistralai/Mistral-7B-Instruct-v0.3 chat_template (Mixtral-8x22B-Instruct-v0.1 uses the
 * same rules):
 *   system popped off the front; user/assistant alternate, skipping tool results and
 *   assistant tool calls; {{- bos_token }}; for each message:
 *   user: if tools and message == user_messages[-1]: '[AVAILABLE_TOOLS] [' + for each tool
 *     '{"type": "function", "function": {' + '"name": "' + name + '", "description": "' + desc
 *     + '", "parameters": ' + parameters|tojson + '}}' joined by ', ' + ']' + '[/AVAILABLE_TOOLS]';
 *     then if loop.last and system: '[INST] ' + system + '\n\n' + content + '[/INST]'
 *     else '[INST] ' + content + '[/INST]'
 *   assistant with tool_calls: '[TOOL_CALLS] [' + (function|tojson)[:-1] + ', "id": "' + id
 *     + '"}' joined by ', ' + ']' + eos_token   (function = {"name": .., "arguments": ..})
 *   assistant: ' ' + content|trim + eos_token
 *   tool: '[TOOL_RESULTS] {"content": ' + content + ', "call_id": "' + id + '"}[/TOOL_RESULTS]'
 * So the system prompt sits before the LAST message when that is a user message, and nowhere
 * otherwise (mistral-common places it before the last user message).
 * Ref v3-tekken: mistralai/Mistral-Nemo-Instruct-2407: the same with no space after [INST],
 *   [AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS], and assistant content + eos_token as is.
 * Ref v7-tekken: mistralai/Mistral-Small-3.1-24B-Instruct-2503: bos_token + '[SYSTEM_PROMPT]' +
 *   system + '[/SYSTEM_PROMPT]' first, then '[AVAILABLE_TOOLS] [' .. before the last user
 *   message, '[INST]' + content + '[/INST]', content + eos_token, '[TOOL_CALLS] [' .. with
 *   id[-9:], '[TOOL_RESULTS] {"content": ' .. id[-9:].
 * Ref v7: Mistral-Large-Instruct-2411 model card: '[SYSTEM_PROMPT] ' + system +
 *   '[/SYSTEM_PROMPT][INST] ' + user + '[/INST] ' + answer + '</s>'; tools as v7-tekken. */
static int render_mistral_tools(struct rctx *c, const struct mistral_style *st) {
    const struct mx_chat_msg *m = c->m;
    size_t first = m[0].role == MX_ROLE_SYSTEM ? 1 : 0;
    size_t last_user = SIZE_MAX;
    int rc = check_system_first(c->fam, m, c->n, c->err);
    if (rc < 0)
        return rc;
    /* Alternation over the messages that are not tool traffic. */
    size_t k = 0;
    for (size_t i = first; i < c->n; i++) {
        bool tool_traffic = m[i].role == MX_ROLE_TOOL ||
                            (m[i].role == MX_ROLE_ASSISTANT && m[i].n_tool_calls > 0);
        if (m[i].role == MX_ROLE_USER)
            last_user = i;
        if (tool_traffic)
            continue;
        if ((m[i].role == MX_ROLE_USER) != (k % 2 == 0))
            return mx_err_set(c->err, MX_EINVAL,
                              "chat template %s: message %zu is '%s': after the optional system "
                              "message, user and assistant must alternate (tool messages aside)",
                              c->fam, i, mx_role_name(m[i].role));
        k++;
    }

    sb_puts(c->b, c->bos);
    if (first == 1 && st->sys_open) {
        sb_puts(c->b, st->sys_open);
        sb_puts(c->b, m[0].content);
        sb_puts(c->b, "[/SYSTEM_PROMPT]");
    }
    for (size_t i = first; i < c->n; i++) {
        const struct mx_chat_msg *msg = &m[i];
        if (msg->role == MX_ROLE_USER) {
            /* `message == user_messages[-1]` compares the dicts, so an earlier user message with
             * the same content also gets the tool list: reproduce that. */
            if (c->o->n_tools > 0 && strcmp(msg->content, m[last_user].content) == 0) {
                sb_puts(c->b, st->tools_open);
                for (size_t t = 0; t < c->o->n_tools; t++) {
                    const struct mx_tool_def *td = &c->o->tools[t];
                    if (!td->name || !td->description)
                        return mx_err_set(c->err, MX_EINVAL,
                                          "chat template: tool %zu has no name or description", t);
                    sb_puts(c->b, "{\"type\": \"function\", \"function\": {\"name\": \"");
                    sb_puts(c->b, td->name); /* the template concatenates, unescaped */
                    sb_puts(c->b, "\", \"description\": \"");
                    sb_puts(c->b, td->description);
                    sb_puts(c->b, "\", \"parameters\": ");
                    rc = sb_put_json(c->b, td->parameters, "chat template: tool parameters",
                                     c->err);
                    if (rc < 0)
                        return rc;
                    sb_puts(c->b, t + 1 < c->o->n_tools ? "}}, " : "}}]");
                }
                sb_puts(c->b, "[/AVAILABLE_TOOLS]");
            }
            sb_puts(c->b, st->inst_open);
            if (!st->sys_open && first == 1 && i == c->n - 1) {
                sb_puts(c->b, m[0].content);
                sb_puts(c->b, "\n\n");
            }
            sb_puts(c->b, msg->content);
            sb_puts(c->b, "[/INST]");
        } else if (msg->role == MX_ROLE_ASSISTANT && msg->n_tool_calls > 0) {
            sb_puts(c->b, st->calls_open);
            for (size_t t = 0; t < msg->n_tool_calls; t++) {
                const struct mx_tool_call *tc = &msg->tool_calls[t];
                const char *id;
                rc = mistral_id(st, tc->id, i, &id, c->err);
                if (rc < 0)
                    return rc;
                if (!tc->name)
                    return mx_err_set(c->err, MX_EINVAL,
                                      "chat template: message %zu: tool call without a name", i);
                sb_puts(c->b, "{\"name\": ");
                sb_put_json_string(c->b, tc->name);
                sb_puts(c->b, ", \"arguments\": ");
                rc = sb_put_json(c->b, tc->arguments, "chat template: tool call arguments",
                                 c->err);
                if (rc < 0)
                    return rc;
                sb_puts(c->b, ", \"id\": \"");
                sb_puts(c->b, id);
                sb_puts(c->b, t + 1 < msg->n_tool_calls ? "\"}, " : "\"}]");
            }
            sb_puts(c->b, c->eos);
        } else if (msg->role == MX_ROLE_ASSISTANT) {
            sb_puts(c->b, st->asst_open);
            if (st->trim_answer)
                sb_put_trimmed(c->b, msg->content);
            else
                sb_puts(c->b, msg->content);
            sb_puts(c->b, c->eos);
        } else { /* tool result */
            const char *id;
            rc = mistral_id(st, msg->tool_call_id, i, &id, c->err);
            if (rc < 0)
                return rc;
            sb_puts(c->b, st->result_open);
            sb_puts(c->b, msg->content); /* content|string: inserted as is */
            sb_puts(c->b, ", \"call_id\": \"");
            sb_puts(c->b, id);
            sb_puts(c->b, "\"}[/TOOL_RESULTS]");
        }
    }
    return 0;
}

static const struct mistral_style style_v3 = {
    NULL, "[INST] ", "[AVAILABLE_TOOLS] [", "[TOOL_CALLS] [", "[TOOL_RESULTS] {\"content\": ",
    " ", true, true,
};
static const struct mistral_style style_v3_tekken = {
    NULL, "[INST]", "[AVAILABLE_TOOLS][", "[TOOL_CALLS][", "[TOOL_RESULTS]{\"content\": ",
    "", false, true,
};
static const struct mistral_style style_v7 = {
    "[SYSTEM_PROMPT] ", "[INST] ", "[AVAILABLE_TOOLS] [", "[TOOL_CALLS] [",
    "[TOOL_RESULTS] {\"content\": ", " ", false, false,
};
static const struct mistral_style style_v7_tekken = {
    "[SYSTEM_PROMPT]", "[INST]", "[AVAILABLE_TOOLS] [", "[TOOL_CALLS] [",
    "[TOOL_RESULTS] {\"content\": ", "", false, false,
};

/* ---------------------------------------------------------------------------------------------
 * Tools outside the Mistral families: Llama 3.1 JSON calls, Hermes/Qwen <tool_call> blocks, and
 * a generic JSON convention for the families whose templates have no tool syntax.
 */

/* True when the conversation needs a family's tool layout: tools offered or calls in it. */
static bool uses_tools(const struct rctx *c) {
    if (c->o->n_tools > 0)
        return true;
    for (size_t i = 0; i < c->n; i++)
        if (c->m[i].n_tool_calls > 0)
            return true;
    return false;
}

/* Appends one tool as HF passes it to a template, {"type": "function", "function": {"name",
 * "description", "parameters"}}, through `tojson` (indent 0) or `tojson(indent=n)`. */
static int sb_put_tool_def(struct sbuf *b, const struct mx_tool_def *td, size_t t, int indent,
                           struct mx_err *err) {
    struct sbuf raw = {0};
    int rc;
    if (!td->name || !*td->name)
        return mx_err_set(err, MX_EINVAL, "chat template: tool %zu has no name", t);
    raw.max = b->max;
    sb_puts(&raw, "{\"type\": \"function\", \"function\": {\"name\": ");
    sb_put_json_string(&raw, td->name);
    if (td->description) {
        sb_puts(&raw, ", \"description\": ");
        sb_put_json_string(&raw, td->description);
    }
    sb_puts(&raw, ", \"parameters\": ");
    sb_puts(&raw, td->parameters ? td->parameters : "{}");
    sb_puts(&raw, "}}");
    if (raw.rc < 0) {
        rc = mx_err_set(err, raw.rc, "chat template: tool %zu: out of memory", t);
    } else {
        rc = sb_put_json_indent(b, raw.p, indent, "chat template: tool parameters", err);
    }
    free(raw.p);
    return rc;
}

/* The call id a tool message answers, looked up among the earlier assistant calls: the call's
 * name, or NULL. */
static const char *call_name_for(const struct mx_chat_msg *m, size_t upto, const char *id) {
    if (!id)
        return NULL;
    for (size_t i = upto; i-- > 0;)
        for (size_t t = 0; t < m[i].n_tool_calls; t++)
            if (m[i].tool_calls[t].id && strcmp(m[i].tool_calls[t].id, id) == 0)
                return m[i].tool_calls[t].name;
    return NULL;
}

/* Llama 3.1 with tools. Ref: meta-llama/Llama-3.1-8B-Instruct chat_template (tools_in_user_message
 * defaults to true, date_string to "26 Jul 2024", no builtin_tools):
 *   bos_token; system message popped off the front (content|trim, else "");
 *   '<|start_header_id|>system<|end_header_id|>\n\n' + ('Environment: ipython\n' if tools) +
 *   'Cutting Knowledge Date: December 2023\n' + 'Today Date: ' + date_string + '\n\n' +
 *   system_message + '<|eot_id|>';
 *   if tools: the first user message is popped and written as '<|start_header_id|>user
 *   <|end_header_id|>\n\n' + 'Given the following functions, please respond with a JSON for a
 *   function call ' + 'with its proper arguments that best answers the given prompt.\n\n' +
 *   'Respond in the format {"name": function name, "parameters": dictionary of argument name
 *   and its value}.' + 'Do not use variables.\n\n' + for each tool: t|tojson(indent=4) +
 *   '\n\n' + first_user_message|trim + '<|eot_id|>';
 *   messages: plain ones as in Llama 3; with tool_calls (exactly one): assistant header +
 *   '{"name": "' + name + '", ' + '"parameters": ' + arguments|tojson + '}' + '<|eot_id|>';
 *   tool/ipython: '<|start_header_id|>ipython<|end_header_id|>\n\n' + content|tojson (a string
 *   is "iterable" in Jinja, so the content is written as a JSON string) + '<|eot_id|>'.
 * Deviation: the template raises on several calls in one message; we write each call as its own
 * assistant turn, so a turn with parallel calls still renders. */
static int render_llama31_tools(struct rctx *c) {
    size_t i = 0;
    int rc = check_system_first(c->fam, c->m, c->n, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    sb_puts(c->b, "<|start_header_id|>system<|end_header_id|>\n\n");
    if (c->o->n_tools > 0)
        sb_puts(c->b, "Environment: ipython\n");
    sb_puts(c->b, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (c->m[0].role == MX_ROLE_SYSTEM)
        sb_put_trimmed(c->b, c->m[i++].content);
    sb_puts(c->b, "<|eot_id|>");
    if (c->o->n_tools > 0) {
        if (i >= c->n || c->m[i].role != MX_ROLE_USER)
            return mx_err_set(c->err, MX_EINVAL,
                              "chat template %s: tools need a first user message to go in",
                              c->fam);
        sb_puts(c->b, "<|start_header_id|>user<|end_header_id|>\n\n"
                      "Given the following functions, please respond with a JSON for a function "
                      "call with its proper arguments that best answers the given prompt.\n\n"
                      "Respond in the format {\"name\": function name, \"parameters\": "
                      "dictionary of argument name and its value}.Do not use variables.\n\n");
        for (size_t t = 0; t < c->o->n_tools; t++) {
            if ((rc = sb_put_tool_def(c->b, &c->o->tools[t], t, 4, c->err)) < 0)
                return rc;
            sb_puts(c->b, "\n\n");
        }
        sb_put_trimmed(c->b, c->m[i++].content);
        sb_puts(c->b, "<|eot_id|>");
    }
    for (; i < c->n; i++) {
        const struct mx_chat_msg *msg = &c->m[i];
        if (msg->role == MX_ROLE_TOOL) {
            sb_puts(c->b, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            sb_put_json_string(c->b, msg->content);
            sb_puts(c->b, "<|eot_id|>");
        } else if (msg->n_tool_calls > 0) {
            for (size_t t = 0; t < msg->n_tool_calls; t++) {
                const struct mx_tool_call *tc = &msg->tool_calls[t];
                if (!tc->name)
                    return mx_err_set(c->err, MX_EINVAL,
                                      "chat template: message %zu: tool call without a name", i);
                sb_puts(c->b, "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"");
                sb_puts(c->b, tc->name); /* concatenated, unescaped, as the template does */
                sb_puts(c->b, "\", \"parameters\": ");
                rc = sb_put_json(c->b, tc->arguments, "chat template: tool call arguments",
                                 c->err);
                if (rc < 0)
                    return rc;
                sb_puts(c->b, "}<|eot_id|>");
            }
        } else {
            sb_puts(c->b, "<|start_header_id|>");
            sb_puts(c->b, mx_role_name(msg->role));
            sb_puts(c->b, "<|end_header_id|>\n\n");
            sb_put_trimmed(c->b, msg->content);
            sb_puts(c->b, "<|eot_id|>");
        }
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

/* ChatML with tools, the Hermes-2-Pro convention. Ref: Qwen/Qwen2.5-7B-Instruct chat_template:
 *   if tools: '<|im_start|>system\n' + (messages[0].content if system else Qwen's default
 *   prompt) + '\n\n# Tools\n\nYou may call one or more functions to assist with the user
 *   query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n
 *   <tools>' + for each tool '\n' + tool|tojson + '\n</tools>\n\nFor each function call, return
 *   a json object with function name and arguments within <tool_call></tool_call> XML tags:\n
 *   <tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>
 *   <|im_end|>\n'; else the system message as a plain turn (or Qwen's default);
 *   user, later system, assistant without calls: '<|im_start|>' + role + '\n' + content +
 *   '<|im_end|>\n'; assistant with calls: '<|im_start|>assistant' + ('\n' + content if content)
 *   + for each call '\n<tool_call>\n{"name": "' + name + '", "arguments": ' + arguments|tojson +
 *   '}\n</tool_call>' + '<|im_end|>\n'; tool: '<|im_start|>user' before the first of a run of
 *   tool messages, '\n<tool_response>\n' + content + '\n</tool_response>', '<|im_end|>\n' after
 *   the last of the run; generation prompt '<|im_start|>assistant\n'.
 * Deviation: no Qwen default system prompt (ChatML models are not all Qwen): without a system
 * message the tools block starts the system turn ("# Tools..."), and no system turn is written
 * when there are no tools. */
static int render_hermes_tools(struct rctx *c) {
    size_t i = 0;
    int rc;
    if (c->o->n_tools > 0) {
        sb_puts(c->b, "<|im_start|>system\n");
        if (c->m[0].role == MX_ROLE_SYSTEM) {
            sb_puts(c->b, c->m[i++].content);
            sb_puts(c->b, "\n\n");
        }
        sb_puts(c->b, "# Tools\n\nYou may call one or more functions to assist with the user "
                      "query.\n\nYou are provided with function signatures within <tools></tools>"
                      " XML tags:\n<tools>");
        for (size_t t = 0; t < c->o->n_tools; t++) {
            sb_puts(c->b, "\n");
            if ((rc = sb_put_tool_def(c->b, &c->o->tools[t], t, 0, c->err)) < 0)
                return rc;
        }
        sb_puts(c->b, "\n</tools>\n\nFor each function call, return a json object with function "
                      "name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                      "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
                      "</tool_call><|im_end|>\n");
    }
    for (; i < c->n; i++) {
        const struct mx_chat_msg *msg = &c->m[i];
        if (msg->role == MX_ROLE_TOOL) {
            if (i == 0 || c->m[i - 1].role != MX_ROLE_TOOL)
                sb_puts(c->b, "<|im_start|>user");
            sb_puts(c->b, "\n<tool_response>\n");
            sb_puts(c->b, msg->content);
            sb_puts(c->b, "\n</tool_response>");
            if (i + 1 == c->n || c->m[i + 1].role != MX_ROLE_TOOL)
                sb_puts(c->b, "<|im_end|>\n");
        } else if (msg->n_tool_calls > 0) {
            sb_puts(c->b, "<|im_start|>assistant");
            if (msg->content && *msg->content) {
                sb_puts(c->b, "\n");
                sb_puts(c->b, msg->content);
            }
            for (size_t t = 0; t < msg->n_tool_calls; t++) {
                const struct mx_tool_call *tc = &msg->tool_calls[t];
                if (!tc->name)
                    return mx_err_set(c->err, MX_EINVAL,
                                      "chat template: message %zu: tool call without a name", i);
                sb_puts(c->b, "\n<tool_call>\n{\"name\": \"");
                sb_puts(c->b, tc->name); /* concatenated, unescaped, as the template does */
                sb_puts(c->b, "\", \"arguments\": ");
                rc = sb_put_json(c->b, tc->arguments, "chat template: tool call arguments",
                                 c->err);
                if (rc < 0)
                    return rc;
                sb_puts(c->b, "}\n</tool_call>");
            }
            sb_puts(c->b, "<|im_end|>\n");
        } else {
            sb_puts(c->b, "<|im_start|>");
            sb_puts(c->b, mx_role_name(msg->role));
            sb_puts(c->b, "\n");
            sb_puts(c->b, msg->content);
            sb_puts(c->b, "<|im_end|>\n");
        }
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|im_start|>assistant\n");
    return 0;
}

/* The generic JSON convention (mixel's own; these families' templates have no tool syntax):
 * the tools and the reply format go into the system message, calls are the assistant's text, and
 * results come back as a user message the family can render.
 *   system: (the caller's system text + '\n\n' if any) + GENERIC_INTRO + one line per
 *     tool (tool|tojson) + GENERIC_FORMAT
 *   assistant with calls: (content|trim + '\n' if content) + '{"tool_calls": [' + for each call
 *     '{"name": ' + name|tojson + ', "arguments": ' + arguments|tojson + '}' joined by ', ' + ']}'
 *   a run of tool messages: one user message, each result 'Result of NAME:\n' + content (or
 *     'Tool result:\n' when the call is not found), joined by '\n\n'.
 * The rewritten conversation is then rendered by the family's own renderer. */
#define GENERIC_INTRO                                                                          \
    "# Tools\n\nYou can call these tools (JSON schemas of their arguments):\n"
#define GENERIC_FORMAT                                                                         \
    "\nTo call tools, reply with only this JSON and nothing else:\n"                            \
    "{\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments as a JSON object>}]}\n" \
    "The results come back in the next message."

/* Owned strings of a rewritten conversation. */
struct generic_conv {
    struct mx_chat_msg *m; /* [n] messages; content points into texts[] or the caller's */
    size_t n;
    char **texts;          /* [n_texts] owned strings */
    size_t n_texts;
};

static void generic_conv_free(struct generic_conv *g) {
    for (size_t i = 0; i < g->n_texts; i++)
        free(g->texts[i]);
    free(g->texts);
    free(g->m);
    memset(g, 0, sizeof(*g));
}

/* Takes ownership of the buffer's text as the content of message g->m[g->n - 1]. */
static int generic_take(struct generic_conv *g, struct sbuf *b, struct mx_err *err) {
    if (b->rc < 0) {
        int rc = b->rc;
        free(b->p);
        memset(b, 0, sizeof(*b));
        return mx_err_set(err, rc, "chat template: tool conversation too long or out of memory");
    }
    if (!b->p && !(b->p = calloc(1, 1)))
        return mx_err_set(err, MX_ENOMEM, "chat template: out of memory");
    g->texts[g->n_texts++] = b->p;
    g->m[g->n - 1].content = b->p;
    memset(b, 0, sizeof(*b));
    return 0;
}

/* Rewrites c's conversation with the generic convention into g (caller frees g even on
 * error). */
static int generic_rewrite(const struct rctx *c, struct generic_conv *g) {
    const struct mx_chat_msg *m = c->m;
    struct sbuf b = {0};
    int rc = 0;
    memset(g, 0, sizeof(*g));
    g->m = calloc(c->n + 1, sizeof(*g->m));
    g->texts = calloc(c->n + 1, sizeof(*g->texts));
    if (!g->m || !g->texts)
        return mx_err_set(c->err, MX_ENOMEM, "chat template: out of memory");
    size_t i = 0;
    if (c->o->n_tools > 0) {
        b.max = c->b->max;
        g->m[g->n++].role = MX_ROLE_SYSTEM;
        if (m[0].role == MX_ROLE_SYSTEM) {
            sb_puts(&b, m[i++].content);
            sb_puts(&b, "\n\n");
        }
        sb_puts(&b, GENERIC_INTRO);
        for (size_t t = 0; t < c->o->n_tools; t++) {
            if ((rc = sb_put_tool_def(&b, &c->o->tools[t], t, 0, c->err)) < 0)
                goto fail;
            sb_puts(&b, "\n");
        }
        sb_puts(&b, GENERIC_FORMAT);
        if ((rc = generic_take(g, &b, c->err)) < 0)
            goto fail;
    }
    for (; i < c->n; i++) {
        b.max = c->b->max;
        if (m[i].role == MX_ROLE_TOOL) {
            g->m[g->n++].role = MX_ROLE_USER;
            for (; i < c->n && m[i].role == MX_ROLE_TOOL; i++) {
                const char *name = call_name_for(m, i, m[i].tool_call_id);
                if (b.len > 0)
                    sb_puts(&b, "\n\n");
                if (name) {
                    sb_puts(&b, "Result of ");
                    sb_puts(&b, name);
                    sb_puts(&b, ":\n");
                } else {
                    sb_puts(&b, "Tool result:\n");
                }
                sb_puts(&b, m[i].content);
            }
            i--;
            if ((rc = generic_take(g, &b, c->err)) < 0)
                goto fail;
        } else if (m[i].n_tool_calls > 0) {
            g->m[g->n++].role = MX_ROLE_ASSISTANT;
            if (m[i].content && *m[i].content) {
                sb_put_trimmed(&b, m[i].content);
                sb_puts(&b, "\n");
            }
            sb_puts(&b, "{\"tool_calls\": [");
            for (size_t t = 0; t < m[i].n_tool_calls; t++) {
                const struct mx_tool_call *tc = &m[i].tool_calls[t];
                if (!tc->name) {
                    rc = mx_err_set(c->err, MX_EINVAL,
                                    "chat template: message %zu: tool call without a name", i);
                    goto fail;
                }
                sb_puts(&b, t ? ", {\"name\": " : "{\"name\": ");
                sb_put_json_string(&b, tc->name);
                sb_puts(&b, ", \"arguments\": ");
                rc = sb_put_json(&b, tc->arguments, "chat template: tool call arguments", c->err);
                if (rc < 0)
                    goto fail;
                sb_puts(&b, "}");
            }
            sb_puts(&b, "]}");
            if ((rc = generic_take(g, &b, c->err)) < 0)
                goto fail;
        } else {
            g->m[g->n++] = m[i];
        }
    }
    return 0;
fail:
    free(b.p);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The MoE model families (qwen3moe, granitemoe, olmoe; qwen2moe is plain chatml)
 */

/* s[0..n) without leading (lead) and/or trailing (trail) '\n' characters: Python's
 * str.lstrip('\n') / rstrip('\n') / strip('\n'). */
static void nl_strip(const char **s, size_t *n, bool lead, bool trail) {
    while (lead && *n > 0 && **s == '\n') {
        (*s)++;
        (*n)--;
    }
    while (trail && *n > 0 && (*s)[*n - 1] == '\n')
        (*n)--;
}

/* Last occurrence of needle in s[0..n), or NULL. */
static const char *last_of(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (memcmp(s + i, needle, k) == 0)
            return s + i;
    return NULL;
}

/* Qwen3. Ref: Qwen/Qwen3-0.6B chat_template (llama.cpp models/templates/Qwen-Qwen3-0.6B.jinja),
 * without tools:
 *   messages[0] system: '<|im_start|>system\n' + content + '<|im_end|>\n';
 *   last_query_index = the last user message (not a '<tool_response>...</tool_response>' one);
 *   user, later system: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n';
 *   assistant: when content holds '</think>': content = content.split('</think>')[-1]
 *     .lstrip('\n'), reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1]
 *     .lstrip('\n'); after last_query_index and (last or reasoning): '<|im_start|>assistant\n
 *     <think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n'), else
 *     '<|im_start|>assistant\n' + content (earlier turns lose their reasoning); then
 *     '<|im_end|>\n';
 *   tool: '<|im_start|>user' before a run, '\n<tool_response>\n' + content + '\n</tool_response>',
 *     '<|im_end|>\n' after it;
 *   generation prompt '<|im_start|>assistant\n' (enable_thinking undefined). */
static int render_qwen3(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, true, c->err);
    if (rc < 0)
        return rc;
    size_t last_query = c->n - 1;
    for (size_t i = c->n; i-- > 0;) {
        const char *s = c->m[i].content;
        size_t n = strlen(s);
        bool wrapped = n >= 15 + 16 && !strncmp(s, "<tool_response>", 15) &&
                       !strcmp(s + n - 16, "</tool_response>");
        if (c->m[i].role == MX_ROLE_USER && !wrapped) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        const struct mx_chat_msg *m = &c->m[i];
        if (m->role == MX_ROLE_SYSTEM || m->role == MX_ROLE_USER) {
            sb_puts(c->b, "<|im_start|>");
            sb_puts(c->b, mx_role_name(m->role));
            sb_puts(c->b, "\n");
            sb_puts(c->b, m->content);
            sb_puts(c->b, "<|im_end|>\n");
        } else if (m->role == MX_ROLE_ASSISTANT) {
            const char *body = m->content, *reason = "";
            size_t nbody = strlen(body), nreason = 0;
            const char *end = strstr(body, "</think>");
            if (end) {
                const char *after = last_of(body, nbody, "</think>") + 8;
                nreason = (size_t)(end - body);
                nl_strip(&body, &nreason, false, true);
                const char *open = last_of(body, nreason, "<think>");
                reason = open ? open + 7 : body;
                nreason -= (size_t)(reason - body);
                nl_strip(&reason, &nreason, true, false);
                nbody = strlen(after);
                body = after;
                nl_strip(&body, &nbody, true, false);
            }
            sb_puts(c->b, "<|im_start|>assistant\n");
            if (i > last_query && (i + 1 == c->n || nreason > 0)) {
                nl_strip(&reason, &nreason, true, true);
                nl_strip(&body, &nbody, true, false);
                sb_puts(c->b, "<think>\n");
                sb_put(c->b, reason, nreason);
                sb_puts(c->b, "\n</think>\n\n");
            }
            sb_put(c->b, body, nbody);
            sb_puts(c->b, "<|im_end|>\n");
        } else { /* tool */
            if (i == 0 || c->m[i - 1].role != MX_ROLE_TOOL)
                sb_puts(c->b, "<|im_start|>user");
            sb_puts(c->b, "\n<tool_response>\n");
            sb_puts(c->b, m->content);
            sb_puts(c->b, "\n</tool_response>");
            if (i + 1 == c->n || c->m[i + 1].role != MX_ROLE_TOOL)
                sb_puts(c->b, "<|im_end|>\n");
        }
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|im_start|>assistant\n");
    return 0;
}

/* Granite 3.x. Ref: ibm-granite/granite-3.0-*-instruct chat_template (the MoE granite-3.0-1b-
 * a400m / 3b-a800m instruct models; quoted with its rendering in llama.cpp's
 * tests/test-chat-template.cpp), without tools: per message '<|start_of_role|>' + role +
 * '<|end_of_role|>' + content + '<|end_of_text|>\n'; generation prompt
 * '<|start_of_role|>assistant<|end_of_role|>'. No BOS in the text; tool results arrive through
 * the generic rewrite, never as a 'tool' role. */
static int render_granite(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|start_of_role|>");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "<|end_of_role|>");
        sb_puts(c->b, c->m[i].content);
        sb_puts(c->b, "<|end_of_text|>\n");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|start_of_role|>assistant<|end_of_role|>");
    return 0;
}

/* Tulu (OLMoE-1B-7B-0924-Instruct, Tulu 2). Ref: allenai/OLMoE-1B-7B-0924-Instruct
 * chat_template:
 *   {{ bos_token }}{% for message in messages %}\n{% if message['role'] == 'system' %}\n{{
 *   '<|system|>\n' + message['content'] }}\n{% elif message['role'] == 'user' %}\n{{
 *   '<|user|>\n' + message['content'] }}\n{% elif message['role'] == 'assistant' %}\n{{
 *   '<|assistant|>\n' + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and
 *   add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}
 * With trim_blocks the newline after each {% %} goes and the one after each {{ }} stays:
 * BOS, then "<|role|>\n" + content (+ EOS for the assistant) + "\n" per message, and
 * "<|assistant|>\n" as the generation prompt. */
static int render_tulu(struct rctx *c) {
    int rc = check_no_tools(c->fam, c->m, c->n, c->o, false, c->err);
    if (rc < 0)
        return rc;
    sb_puts(c->b, c->bos);
    for (size_t i = 0; i < c->n; i++) {
        sb_puts(c->b, "<|");
        sb_puts(c->b, mx_role_name(c->m[i].role));
        sb_puts(c->b, "|>\n");
        sb_puts(c->b, c->m[i].content);
        if (c->m[i].role == MX_ROLE_ASSISTANT)
            sb_puts(c->b, c->eos);
        sb_puts(c->b, "\n");
    }
    if (c->o->add_generation_prompt)
        sb_puts(c->b, "<|assistant|>\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Entry point
 */

static void family_tokens(enum mx_tmpl_kind kind, const char **bos, const char **eos) {
    switch (kind) {
    case MX_TMPL_LLAMA3: *bos = "<|begin_of_text|>"; *eos = "<|eot_id|>"; break;
    case MX_TMPL_GEMMA: *bos = "<bos>"; *eos = "<eos>"; break;
    case MX_TMPL_PHI3: *bos = "<s>"; *eos = "<|endoftext|>"; break;
    case MX_TMPL_HARMONY: *bos = "<|startoftext|>"; *eos = "<|return|>"; break;
    case MX_TMPL_CHATML: case MX_TMPL_QWEN3: *bos = "<s>"; *eos = "<|im_end|>"; break;
    case MX_TMPL_GRANITE: *bos = "<|end_of_text|>"; *eos = "<|end_of_text|>"; break;
    case MX_TMPL_TULU: *bos = "<|endoftext|>"; *eos = "<|endoftext|>"; break;
    default: *bos = "<s>"; *eos = "</s>"; break;
    }
}

void mx_tmpl_prompt_free(struct mx_tmpl_prompt *p) {
    if (!p)
        return;
    free(p->text);
    memset(p, 0, sizeof(*p));
}

int mx_tmpl_render(enum mx_tmpl_kind kind, const struct mx_chat_msg *msgs, size_t n_msgs,
                   const struct mx_tmpl_opts *opts, struct mx_tmpl_prompt *out,
                   struct mx_err *err) {
    static const struct mx_tmpl_opts no_opts;
    struct sbuf b = {0};
    struct rctx c;
    int rc;

    if (!out)
        return mx_err_set(err, MX_EINVAL, "chat template: no output");
    memset(out, 0, sizeof(*out));
    if ((unsigned)kind >= MX_TMPL_COUNT)
        return mx_err_set(err, MX_EINVAL, "chat template: unknown kind %d", (int)kind);
    if (!opts)
        opts = &no_opts;
    b.max = opts->max_len && opts->max_len < MX_TMPL_MAX_TEXT ? opts->max_len : MX_TMPL_MAX_TEXT;
    if (!msgs || n_msgs == 0)
        return mx_err_set(err, MX_EINVAL, "chat template %s: empty conversation",
                          mx_tmpl_name(kind));
    if (opts->n_tools > 0 && !opts->tools)
        return mx_err_set(err, MX_EINVAL, "chat template: %zu tools but no array", opts->n_tools);
    for (size_t i = 0; i < n_msgs; i++) {
        const struct mx_chat_msg *m = &msgs[i];
        if ((unsigned)m->role > MX_ROLE_TOOL)
            return mx_err_set(err, MX_EINVAL, "chat template: message %zu: bad role %d", i,
                              (int)m->role);
        if (m->n_tool_calls > 0 && (m->role != MX_ROLE_ASSISTANT || !m->tool_calls))
            return mx_err_set(err, MX_EINVAL,
                              "chat template: message %zu: tool calls need an assistant message "
                              "and an array", i);
        if (!m->content && m->n_tool_calls == 0)
            return mx_err_set(err, MX_EINVAL, "chat template: message %zu (%s) has no content",
                              i, mx_role_name(m->role));
    }
    /* Renderers read content of tool-call messages only in families that reject tool calls
     * first, so a NULL content there is never dereferenced. */

    c.m = msgs;
    c.n = n_msgs;
    c.o = opts;
    family_tokens(kind, &c.bos, &c.eos);
    if (opts->bos)
        c.bos = opts->bos;
    if (opts->eos)
        c.eos = opts->eos;
    c.fam = mx_tmpl_name(kind);
    c.b = &b;
    c.err = err;

    /* Tool traffic: Llama 3 and ChatML switch to their tool layouts, the families without tool
     * syntax render a conversation rewritten with the generic convention. */
    struct generic_conv gconv = {0};
    struct mx_tmpl_opts gopts;
    bool tool_role = false;
    for (size_t i = 0; i < n_msgs; i++)
        tool_role |= msgs[i].role == MX_ROLE_TOOL;
    switch (kind) {
    case MX_TMPL_MISTRAL_LEGACY: case MX_TMPL_MISTRAL_V1: case MX_TMPL_LLAMA2:
    case MX_TMPL_ZEPHYR: case MX_TMPL_GEMMA: case MX_TMPL_PHI3: case MX_TMPL_HARMONY:
    case MX_TMPL_GRANITE: case MX_TMPL_TULU:
        if (!tool_role && !uses_tools(&c))
            break;
        rc = generic_rewrite(&c, &gconv);
        if (rc < 0) {
            generic_conv_free(&gconv);
            free(b.p);
            return rc;
        }
        gopts = *opts;
        gopts.tools = NULL;
        gopts.n_tools = 0;
        c.o = &gopts;
        c.m = gconv.m;
        c.n = gconv.n;
        break;
    default: break;
    }

    switch (kind) {
    case MX_TMPL_MISTRAL_LEGACY: rc = render_mistral_legacy(&c); break;
    case MX_TMPL_MISTRAL_V1: rc = render_mistral_v1(&c); break;
    case MX_TMPL_MISTRAL_V3: rc = render_mistral_tools(&c, &style_v3); break;
    case MX_TMPL_MISTRAL_V3_TEKKEN: rc = render_mistral_tools(&c, &style_v3_tekken); break;
    case MX_TMPL_MISTRAL_V7: rc = render_mistral_tools(&c, &style_v7); break;
    case MX_TMPL_MISTRAL_V7_TEKKEN: rc = render_mistral_tools(&c, &style_v7_tekken); break;
    case MX_TMPL_LLAMA2: rc = render_llama2(&c); break;
    case MX_TMPL_LLAMA3:
        rc = uses_tools(&c) ? render_llama31_tools(&c) : render_llama3(&c);
        break;
    case MX_TMPL_CHATML:
        rc = uses_tools(&c) ? render_hermes_tools(&c) : render_chatml(&c);
        break;
    case MX_TMPL_QWEN3:
        rc = uses_tools(&c) ? render_hermes_tools(&c) : render_qwen3(&c);
        break;
    case MX_TMPL_GRANITE: rc = render_granite(&c); break;
    case MX_TMPL_TULU: rc = render_tulu(&c); break;
    case MX_TMPL_ZEPHYR: rc = render_zephyr(&c); break;
    case MX_TMPL_GEMMA: rc = render_gemma(&c); break;
    case MX_TMPL_PHI3: rc = render_phi3(&c); break;
    case MX_TMPL_HARMONY: rc = render_harmony(&c); break;
    default: rc = MX_EINVAL; break;
    }
    generic_conv_free(&gconv);
    if (rc == 0 && b.rc < 0) {
        rc = b.rc;
        if (rc == MX_ERANGE)
            mx_err_set(err, rc, "chat template %s: prompt longer than %zu bytes", c.fam, b.max);
        else
            mx_err_set(err, rc, "chat template %s: out of memory", c.fam);
    }
    if (rc == 0 && !b.p) { /* never return a NULL text on success */
        b.p = calloc(1, 1);
        if (!b.p)
            rc = mx_err_set(err, MX_ENOMEM, "chat template %s: out of memory", c.fam);
    }
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    out->text = b.p;
    out->len = b.len;
    size_t nb = strlen(c.bos);
    if (nb > 0 && b.len >= nb && memcmp(b.p, c.bos, nb) == 0) {
        out->tok_offset = nb;
        out->add_bos = true;
    } else {
        out->tok_offset = 0;
        out->add_bos = opts->model_add_bos;
    }
    return 0;
}
