/* template.h - chat templates: a conversation rendered into the exact prompt text a model was
 * trained on, and recognition of the template family from the GGUF `tokenizer.chat_template`.
 *
 * Why not a Jinja interpreter: the families mixel targets (Mistral/Mixtral, Llama, ChatML,
 * Zephyr, Gemma, Phi-3, gpt-oss's harmony) use a handful of fixed layouts. Each is written out here in C from the
 * Jinja template the model ships (the source is named above each renderer), so the output is
 * byte for byte what HF's apply_chat_template(tokenize=False) produces, with the documented
 * deviations below. The Jinja text itself is only used to recognise the family (as llama.cpp's
 * llm_chat_detect_template does, by distinctive substrings).
 *
 * BOS/EOS: the rendered text contains the BOS string exactly where the Jinja template writes
 * `bos_token` (and EOS where it writes `eos_token`). What the engine tokenizes is
 * text + tok_offset with parse_special = true: when the text starts with the BOS string, that
 * string is skipped and add_bos is set, so BOS always comes from the engine as a token id and
 * never twice. When the text does not start with BOS, add_bos follows the model's own flag
 * (tokenizer.ggml.add_bos_token), which is llama.cpp's behaviour. Either way the token sequence
 * is the one llama.cpp's server evaluates for the same conversation.
 *
 * Deviations from the Jinja (all deliberate, all tested):
 * - An empty conversation is an error (most templates index messages[0]).
 * - mistral-legacy (the first Mistral-7B/Mixtral-8x7B template) raises on a system message; we
 *   prepend it to the first user message with "\n\n", as Mistral's later v1 template does.
 * - mistral-v7-tekken (Mistral Small 3.1) injects a dated default system prompt when none is
 *   given; we render no system block instead (the caller passes its own system prompt).
 * - Roles a template silently skips are an MX_EUNSUP error, so a message never vanishes from the
 *   prompt unnoticed.
 * - qwen3: enable_thinking is left undefined (the template's default: the model may think); a
 *   tool conversation uses the chatml tool layout, which is Qwen3's own except that earlier
 *   assistant turns keep any <think> block there.
 * - granite: the llama.cpp rendering of Granite 3.x (granite-3.0 MoE instruct template); the
 *   3.1+ templates' dated default system prompt is not injected.
 *
 * Tools (opts->tools, assistant tool_calls, tool messages), per family:
 * - mistral-v3/-v3-tekken/-v7/-v7-tekken: [AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS] as
 *   their templates write them.
 * - llama3: the Llama 3.1 template's JSON tool calling (tools in the first user message, calls
 *   {"name": .., "parameters": ..}, results in "ipython" turns), used as soon as tools are
 *   offered or a message carries calls; several calls in one message become one assistant turn
 *   each (the template raises on them).
 * - chatml, qwen3: the Hermes-2-Pro / Qwen2.5 convention (<tools> in the system turn, <tool_call>
 *   and <tool_response> blocks), without Qwen2.5's default system prompt (Qwen3 has none).
 * - mistral-legacy, mistral-v1, llama2, zephyr, gemma, phi3, granite, tulu, harmony (no tool
 *   syntax rendered here; Granite's own <|tool_call|> layout is not written): mixel's generic
 *   JSON convention: the tools and the reply format {"tool_calls": [{"name": .., "arguments":
 *   {..}}]} in the system message, calls as the assistant's text, results as a user message.
 * - harmony: mixel's generic JSON convention below for now (harmony's own "to=functions.f"
 *   calls on the commentary channel are not written yet).
 * core/text/tool_call.h parses each family's calls out of an answer and builds the grammar that
 * constrains them.
 *
 * harmony (gpt-oss, openai/gpt-oss-*'s chat_template.jinja): a system block the template writes
 * itself (model identity, knowledge cutoff, current date, "Reasoning: <effort>", the valid
 * channels), the conversation's system message as the developer block ("# Instructions"),
 * earlier assistant turns as their final channel only (the chain of thought is dropped, as the
 * template does), and the generation prompt "<|start|>assistant". The model answers
 * "<|channel|>analysis<|message|>...<|end|><|start|>assistant<|channel|>final<|message|>...",
 * ending with <|return|>; core/text/harmony.h splits that into reasoning and answer.
 */
#ifndef MX_TEMPLATE_H
#define MX_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"

/* Template families. The names (mx_tmpl_name) are what --chat-template accepts. */
enum mx_tmpl_kind {
    MX_TMPL_MISTRAL_LEGACY,    /* "mistral-legacy": Mistral-7B v0.1/v0.2, Mixtral-8x7B (2023) */
    MX_TMPL_MISTRAL_V1,        /* "mistral-v1": Mixtral-8x7B-Instruct, updated 2024 template */
    MX_TMPL_MISTRAL_V3,        /* "mistral-v3": Mistral-7B v0.3, Mixtral-8x22B-Instruct */
    MX_TMPL_MISTRAL_V3_TEKKEN, /* "mistral-v3-tekken": Mistral-Nemo */
    MX_TMPL_MISTRAL_V7,        /* "mistral-v7": Mistral-Large-2411 */
    MX_TMPL_MISTRAL_V7_TEKKEN, /* "mistral-v7-tekken": Mistral-Small-3.1 */
    MX_TMPL_LLAMA2,            /* "llama2": Llama-2-chat (<<SYS>>) */
    MX_TMPL_LLAMA3,            /* "llama3": Llama-3-Instruct */
    MX_TMPL_CHATML,            /* "chatml": <|im_start|> (OpenHermes, Qwen, ...) */
    MX_TMPL_ZEPHYR,            /* "zephyr": zephyr-7b, TinyLlama-chat */
    MX_TMPL_GEMMA,             /* "gemma": Gemma (system merged into the first user turn) */
    MX_TMPL_PHI3,              /* "phi3": Phi-3 */
    MX_TMPL_HARMONY,           /* "harmony": gpt-oss (<|start|>role<|channel|>..<|message|>) */
    MX_TMPL_QWEN3,             /* "qwen3": Qwen3 (ChatML with <think> reasoning) */
    MX_TMPL_GRANITE,           /* "granite": Granite 3.x (<|start_of_role|>) */
    MX_TMPL_TULU,              /* "tulu": OLMoE-Instruct, Tulu 2 (<|user|>, EOS after answers) */
    MX_TMPL_COUNT
};

/* The default when the GGUF has no template: llama-architecture GGUFs are overwhelmingly
 * Mistral/Mixtral/Llama conversions and mixel's target models are Mixtral; every Mistral
 * checkpoint understands the v1 layout. Other architectures and present-but-unrecognised
 * templates get ChatML, the de facto generic format (llama.cpp's fallback too). */
#define MX_TMPL_DEFAULT_LLAMA MX_TMPL_MISTRAL_V1
#define MX_TMPL_DEFAULT_OTHER MX_TMPL_CHATML

#include "core/base/role.h" /* enum mx_role */

/* One tool call made by the assistant. Strings borrowed (owned where mx_tool_calls_parse filled
 * it, see core/text/tool_call.h). */
struct mx_tool_call {
    const char *id;        /* call id: exactly 9 chars for v3, >= 9 for v7 (last 9 used) */
    const char *name;      /* function name */
    const char *arguments; /* JSON object text; NULL means "{}" */
};

/* One message. All strings are NUL-terminated UTF-8, borrowed for the call. */
struct mx_chat_msg {
    enum mx_role role;
    const char *content;                  /* NULL only for an assistant message with tool calls */
    const struct mx_tool_call *tool_calls; /* assistant only; NULL when n_tool_calls == 0 */
    size_t n_tool_calls;
    const char *tool_call_id;             /* tool messages: the call answered (Mistral v3/v7) */
};

/* A tool the model may call. Strings borrowed. */
struct mx_tool_def {
    const char *name;
    const char *description;
    const char *parameters; /* JSON schema object text; NULL means {} */
};

/* Render options. Zero-initialised is valid: family default BOS/EOS strings, no generation
 * prompt, model_add_bos false, no tools. */
struct mx_tmpl_opts {
    const char *bos;            /* model's BOS token text; NULL: family default ("<s>", ...) */
    const char *eos;            /* model's EOS token text; NULL: family default ("</s>", ...) */
    bool add_generation_prompt; /* append the assistant header; Mistral and Llama-2 have
                                 * none (their text ends with [/INST]) and ignore it */
    bool model_add_bos;         /* tokenizer.ggml.add_bos_token (llama.cpp default: true) */
    const struct mx_tool_def *tools; /* tools offered to the model (see "Tools" above) */
    size_t n_tools;
    size_t max_len;             /* longest text accepted; 0: MX_TMPL_MAX_TEXT */
    const char *reasoning_effort; /* harmony: "low", "medium" or "high"; NULL: "medium" */
    const char *date;           /* harmony's "Current date: " (YYYY-MM-DD); NULL: today (local
                                 * time, as the template's strftime_now) */
};

/* A rendered prompt. */
struct mx_tmpl_prompt {
    char *text;        /* the Jinja-equivalent text, NUL-terminated; owned, mx_tmpl_prompt_free */
    size_t len;        /* strlen(text) */
    size_t tok_offset; /* tokenize text + tok_offset (parse_special): skips a leading BOS string */
    bool add_bos;      /* the engine prepends the BOS id */
};

/* How the template was chosen: see mx_tmpl_choose. */
struct mx_tmpl_choice {
    enum mx_tmpl_kind kind;
    const char *source;   /* static: "override", "gguf" or "default" */
    char warning[320];    /* non-empty when the UI should show a warning (fallback used) */
};

/* Longest text a render may produce by default (bytes); beyond it render fails with
 * MX_ERANGE. */
#define MX_TMPL_MAX_TEXT ((size_t)1 << 30)

/* Returns the family's name ("mistral-v1", ...), or "unknown" for an out-of-range kind. */
const char *mx_tmpl_name(enum mx_tmpl_kind kind);

/* Returns the static comma-separated list of names, for --help and error messages. */
const char *mx_tmpl_names(void);

/* Looks a name up (exact, case-sensitive). Returns 0 and sets *out, or MX_EINVAL with a message
 * listing the valid names. */
int mx_tmpl_from_name(const char *name, enum mx_tmpl_kind *out, struct mx_err *err);

/* Recognises the family of a Jinja template text by distinctive substrings. Returns true and
 * sets *out when recognised; false (out untouched) for NULL, empty or unknown text. */
bool mx_tmpl_detect(const char *jinja, enum mx_tmpl_kind *out);

/* Chooses the template for a model: override_name (--chat-template; NULL/empty: none) wins,
 * then the GGUF template text (gguf_template, NULL if absent; a text that is exactly a family
 * name counts as that name), then the documented default for arch (general.architecture, may
 * be NULL) with a warning. Returns 0, or MX_EINVAL for an unknown override name. */
int mx_tmpl_choose(const char *override_name, const char *gguf_template, const char *arch,
                   struct mx_tmpl_choice *out, struct mx_err *err);

/* Renders msgs[0..n_msgs) with the family's rules into *out (zeroed first; caller frees with
 * mx_tmpl_prompt_free even on error, which leaves it empty). opts may be NULL.
 * Errors: MX_EINVAL (no messages, NULL content, roles out of the order the template demands,
 * bad tool-call ids or JSON), MX_EUNSUP (a role or tools the family cannot express), MX_ERANGE
 * (text over opts->max_len or MX_TMPL_MAX_TEXT), MX_ENOMEM. Thread-safe (no shared state). */
int mx_tmpl_render(enum mx_tmpl_kind kind, const struct mx_chat_msg *msgs, size_t n_msgs,
                   const struct mx_tmpl_opts *opts, struct mx_tmpl_prompt *out,
                   struct mx_err *err);

/* Frees the text and zeroes *p; NULL ok. */
void mx_tmpl_prompt_free(struct mx_tmpl_prompt *p);

/* Strings that end an assistant turn for the family (NULL-terminated static array), e.g.
 * "<|im_end|>" for ChatML; the EOS token is always a stop as well and is not repeated here. */
const char *const *mx_tmpl_stop_strings(enum mx_tmpl_kind kind);

#endif
