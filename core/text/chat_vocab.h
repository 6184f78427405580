/* chat_vocab.h - glue between a model's files and the chat layer: choosing the template from a
 * GGUF (tokenizer.chat_template, general.architecture, --chat-template) and adapting
 * core/tokenizer to the chat layer's tokenize callback, with the BOS/EOS strings and the
 * add_bos flag the template renderer needs. Kept apart from chat.c so that the chat logic stays
 * testable with a fake tokenizer. */
#ifndef MX_CHAT_VOCAB_H
#define MX_CHAT_VOCAB_H

#include <stdbool.h>

#include "core/text/chat.h"
#include "core/base/err.h"
#include "core/format/gguf.h"
#include "core/text/template.h"
#include "core/text/tokenizer.h"

/* Chooses the template for the model in g (see mx_tmpl_choose: override_name, then the GGUF's
 * tokenizer.chat_template, then the default for general.architecture, with a warning). Returns
 * 0, MX_EINVAL for an unknown override, MX_EFORMAT when those keys hold another type. */
int mx_chat_choose_template(const struct mx_gguf *g, const char *override_name,
                            struct mx_tmpl_choice *out, struct mx_err *err);

/* What the renderer needs from the vocabulary, NUL-terminated copies. */
struct mx_chat_vocab {
    char bos[64];  /* BOS token text ("<s>"); empty when the vocabulary has none */
    char eos[64];  /* EOS token text ("</s>") */
    bool add_bos;  /* tokenizer.ggml.add_bos_token */
};

/* Fills v from t. Returns 0, or MX_EFORMAT when a BOS/EOS text is longer than 63 bytes or
 * contains a NUL. */
int mx_chat_vocab_init(struct mx_chat_vocab *v, const struct mx_tokenizer *t, struct mx_err *err);

/* Points opts' bos/eos/model_add_bos at v (v must outlive opts' use). */
void mx_chat_vocab_apply(const struct mx_chat_vocab *v, struct mx_tmpl_opts *opts);

/* A chat tokenizer backed by t (borrowed, must outlive it): encodes with
 * MX_TOK_PARSE_SPECIAL and prepends t's BOS id when asked (never MX_TOK_ADD_SPECIAL, which
 * could also append EOS). */
struct mx_chat_tokenizer mx_chat_tokenizer_from(const struct mx_tokenizer *t);

#endif
