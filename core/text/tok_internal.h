/* tok_internal.h - what the tokenizer files (tokenizer.c, tok_spm.c, tok_bpe.c, tok_clip.c,
 * tok_unicode.c) share: the tokenizer struct, the vocabulary hash map, a growable id vector,
 * UTF-8 and Unicode-category helpers. Not part of the public API. */
#ifndef MX_TOK_INTERNAL_H
#define MX_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/text.h"
#include "core/text/tokenizer.h"

#define MX_TOK_MAX_TEXT 65536 /* longest token text accepted from a vocabulary */

/* One vocabulary entry; text points into the tokenizer's string pool. */
struct mx_tok_entry {
    const char *text;
    uint32_t len;
    int32_t type;   /* enum mx_tok_type */
    float score;    /* SPM merge priority */
    bool rstrip;    /* white space after this special token is dropped (llama.cpp RSTRIP) */
};

/* C isspace in the C locale, what llama.cpp strips around special tokens. */
static inline bool mx_is_space_ascii(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* One merge rule (BPE/CLIP): left + right, rank = index in the table. */
struct mx_tok_merge {
    const char *left, *right; /* into the string pool */
    uint32_t left_len, right_len;
};

struct mx_tokenizer {
    struct mx_tok_desc d;          /* copy; its pointers are NULLed (the data lives below) */
    struct mx_tok_entry *vocab;    /* [n_vocab] */
    int32_t n_vocab;
    char *pool;                    /* all token and merge texts */
    int32_t *map;                  /* open-addressing text -> id, [map_cap], -1 = empty */
    size_t map_cap;                /* power of two, >= 2 * n_vocab */
    struct mx_tok_merge *merges;   /* [n_merges] */
    int32_t n_merges;
    int32_t *mmap_;                /* pair -> rank, [mmap_cap], -1 = empty */
    size_t mmap_cap;
    int32_t *special;              /* control/user-defined/unknown ids, longest text first */
    int32_t n_special;
    int32_t byte_ids[256];         /* SPM <0xNN> (or the raw byte) / BPE byte char, or -1 */
    int32_t eog[16];               /* ids that end a generation: eos, eot, known end-of-turn */
    struct mx_tok_pretok *pretok;  /* BPE: the compiled pre-tokenizer of d.pre */
    int n_eog;
};

/* Growable vector of ids. */
struct mx_idvec {
    int32_t *v;
    size_t n, cap;
};

int mx_idvec_push(struct mx_idvec *iv, int32_t id); /* 0 or MX_ENOMEM */

/* FNV-1a over bytes, the vocabulary map's hash. */
uint64_t mx_tok_hash(const char *s, size_t len, uint64_t h);
#define MX_TOK_HASH_SEED 0xcbf29ce484222325ull

/* Slot of text in t's vocabulary map: the one holding it, or the empty one where it would go.
 * Slot of the pair (l, r) in the merge map, likewise. The maps are never full (capacity >= 2x). */
size_t mx_tok_map_slot(const struct mx_tokenizer *t, const char *s, size_t len);
size_t mx_tok_merge_slot(const struct mx_tokenizer *t, const char *l, size_t ll, const char *r,
                         size_t rl);
/* Rank of the merge (left, right) or -1. */
int32_t mx_tok_merge_rank(const struct mx_tokenizer *t, const char *l, size_t ll, const char *r,
                          size_t rl);

/* ---- UTF-8 and Unicode ---------------------------------------------------------------------- */

/* llama.cpp's unicode_len_utf8: sequence length from the lead byte's high nibble (1 for
 * continuation bytes). */
static inline size_t mx_utf8_len(unsigned char c) {
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Decodes one codepoint at s[*off] (off < len) like llama.cpp's unicode_cpts_from_utf8: an
 * invalid or truncated sequence consumes one byte and gives U+FFFD. */
uint32_t mx_utf8_next(const char *s, size_t len, size_t *off);


/* Category flags of a codepoint. */
#define MX_UC_L  0x001u /* \p{L} */
#define MX_UC_N  0x002u /* \p{N} */
#define MX_UC_M  0x004u /* \p{M} */
#define MX_UC_LU 0x008u
#define MX_UC_LL 0x010u
#define MX_UC_LT 0x020u
#define MX_UC_LM 0x040u
#define MX_UC_LO 0x080u
#define MX_UC_WS 0x100u /* \s: the White_Space property */
#define MX_UC_P  0x200u /* \p{P} */
#define MX_UC_S  0x400u /* \p{S} */
#define MX_UC_IN 0x8000u /* set by the splitters on every position inside the text */
unsigned mx_uc_flags(uint32_t cp);

/* GPT-2's bytes_to_unicode(): the codepoint standing for byte b, and back (-1 if none). */
uint32_t mx_byte_to_cp(unsigned char b);
int mx_cp_to_byte(uint32_t cp);

/* ---- the algorithms ------------------------------------------------------------------------- */

/* SPM on one raw text fragment (already space-escaped): appends ids. 0 or MX_ENOMEM. */
int mx_tok_spm_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out);

/* BPE on one raw text fragment: pre-tokenize, byte-encode, merge. 0 or MX_ENOMEM. */
int mx_tok_bpe_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out);

/* CLIP on a whole text: clean, lower-case, split, merge with "</w>". 0 or MX_ENOMEM. */
int mx_tok_clip_text(const struct mx_tokenizer *t, const char *text, size_t len,
                     struct mx_idvec *out);

/* Byte-level BPE merge of one pre-token (already byte-encoded, word[0..len)): appends the ids of
 * the final symbols; a symbol missing from the vocabulary falls back to its single bytes (BPE) or
 * to id 0 (CLIP's encoder[] default). n_tail: the last symbol starts this many bytes before the
 * end (CLIP's "x</w>"), else 0. 0 or MX_ENOMEM. */
int mx_tok_bpe_merge(const struct mx_tokenizer *t, const char *word, size_t len, size_t n_tail,
                     struct mx_idvec *out);

/* ---- pre-tokenizers (tok_pre.c, tok_split.c, tok_regex.c) ---- */

/* Growable vector of piece lengths. */
struct mx_lenvec {
    size_t *v;
    size_t n, cap;
};

int mx_lenvec_push(struct mx_lenvec *lv, size_t n); /* 0 or MX_ENOMEM; n == 0 is dropped */

/* A fragment of a text as codepoints with their category flags (mx_uc_flags | MX_UC_IN). */
struct mx_cps {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t n;
};

/* llama.cpp's hand-written splitters (unicode_regex_split_custom_*). */
enum mx_tok_custom {
    MX_SPLIT_GPT2,
    MX_SPLIT_LLAMA3,
    MX_SPLIT_QWEN2,
    MX_SPLIT_QWEN35,
    MX_SPLIT_KIMI,
    MX_SPLIT_AFMOE,
    MX_SPLIT_NEWLINES,
};

/* Splits all of v into pieces, appending their lengths (codepoints). 0 or MX_ENOMEM. */
int mx_tok_split_custom(enum mx_tok_custom which, const struct mx_cps *v, struct mx_lenvec *out);

/* A compiled pattern (ECMAScript subset, see tok_regex.c). */
struct mx_rx;

/* Compiles pat[0..n) (characters as codepoints). 0, MX_EINVAL (malformed or unsupported, with
 * the position in err) or MX_ENOMEM. */
int mx_rx_compile(const uint32_t *pat, size_t n, struct mx_rx **out, struct mx_err *err);
void mx_rx_free(struct mx_rx *rx); /* NULL ok */

/* Splits txt[0..len) like llama.cpp's unicode_regex_split_stl: every match and every unmatched
 * gap between matches is a piece (empty ones dropped). 0 or MX_ENOMEM. */
int mx_rx_split(const struct mx_rx *rx, const uint32_t *txt, size_t len, struct mx_lenvec *out);

/* A pre-tokenizer ready to run: its steps compiled (built once per tokenizer). */
struct mx_tok_pretok;

/* Builds the steps of pre. 0, MX_EINVAL (pre out of range) or MX_ENOMEM. */
int mx_tok_pretok_new(enum mx_tok_pre pre, struct mx_tok_pretok **out, struct mx_err *err);
void mx_tok_pretok_free(struct mx_tok_pretok *p); /* NULL ok */

/* Splits s[0..len) with p: emit(ud, start, end) per non-empty piece, in order (byte offsets;
 * the pieces cover the text). Returns the first non-zero emit result, MX_ENOMEM, else 0. */
int mx_tok_pretok_split(const struct mx_tok_pretok *p, const char *s, size_t len,
                        int (*emit)(void *ud, size_t start, size_t end), void *ud);

/* Splitters: call emit(ud, start, end) for each pre-token of s[0..len) in order (byte offsets;
 * pieces cover the text). Return the first non-zero emit result, else 0. */
typedef int (*mx_split_fn)(void *ud, size_t start, size_t end);
int mx_tok_split(enum mx_tok_pre pre, const char *s, size_t len, mx_split_fn emit, void *ud);
int mx_tok_split_clip(const char *s, size_t len, mx_split_fn emit, void *ud);

/* ---- the merge loop shared by SentencePiece and BPE (tok_merge.c) ---- */

/* A run of text bytes in a doubly linked list of symbols; n == 0 once merged into its left
 * neighbour. */
struct mx_tok_sym {
    size_t off, n;
    int64_t prev, next; /* -1 at the ends */
};

/* Whether symbols l and r merge, and with what priority (*key: larger merges first). */
typedef bool (*mx_tok_pair_fn)(const struct mx_tokenizer *t, const char *text,
                               const struct mx_tok_sym *l, const struct mx_tok_sym *r,
                               double *key);

/* Merges syms[0..n_sym) (linked in order) until no pair merges; ties go to the leftmost pair.
 * Returns 0 or MX_ENOMEM (syms are then partly merged). */
int mx_tok_merge_symbols(const struct mx_tokenizer *t, const char *text, struct mx_tok_sym *syms,
                         int64_t n_sym, mx_tok_pair_fn pair_key);

#endif
