/* tok_pre.c - the BPE pre-tokenizers of llama.cpp: the tokenizer.ggml.pre names it knows, what
 * each name sets, and the chain of split steps per pre-tokenizer (src/llama-vocab.cpp's
 * llm_tokenizer_bpe and load()). The patterns are the models' own (their tokenizer.json, as
 * llama.cpp adapts them) and are transcribed here as data.
 *
 * Like llama.cpp's unicode_regex_split, each step splits every piece of the previous step; a
 * step is either one of llama.cpp's hand-written splitters (tok_split.c; used exactly where
 * llama.cpp uses them, by the same pattern text) or a pattern run by tok_regex.c the way
 * llama.cpp runs it with std::regex: a pattern naming a Unicode category (\p{L} ...) runs on
 * the "collapsed" text, where every codepoint above 127 is one byte standing for its category
 * (0xD1 number, 0xD2 letter, 0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 other, 0x0B white
 * space) and each \p{..} becomes that byte plus its ASCII members; a pattern without one runs
 * on the codepoints, white space above 127 again turned into 0x0B. That is also why \p{Lu} and
 * \p{Ll} both mean "any letter" here, as they do in llama.cpp.
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/unicode.cpp (unicode_regex_split)
 */
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/text/tok_internal.h"

/* ---- names ---------------------------------------------------------------------------------- */

/* Per-name settings of llama.cpp's llama_vocab::load for BPE vocabularies. */
#define IM 1u  /* ignore_merges */
#define AB 2u  /* add_bos */
#define KS 4u  /* clean_spaces = false */
#define ES 8u  /* escape_whitespaces (" " -> U+2581) */
#define RB 16u /* raw UTF-8 (byte_encode = false) */
#define NB 32u /* no BOS token (chatglm) */

static const struct {
    const char *name;  /* tokenizer.ggml.pre */
    enum mx_tok_pre pre;
    unsigned set;      /* IM AB KS ES RB NB */
} pre_names[] = {
    {"default", MX_PRE_DEFAULT, 0},
    {"minicpm5", MX_PRE_MINICPM5, IM},
    {"llama3", MX_PRE_LLAMA3, IM | AB}, {"llama-v3", MX_PRE_LLAMA3, IM | AB},
    {"llama-bpe", MX_PRE_LLAMA3, IM | AB}, {"falcon3", MX_PRE_LLAMA3, IM | AB},
    {"falcon-h1", MX_PRE_LLAMA3, IM | AB}, {"pixtral", MX_PRE_LLAMA3, IM | AB},
    {"midm-2.0", MX_PRE_LLAMA3, IM | AB}, {"lfm2", MX_PRE_LLAMA3, IM | AB},
    {"jina-v5-nano", MX_PRE_LLAMA3, IM | AB},
    {"deepseek-llm", MX_PRE_DEEPSEEK_LLM, KS},
    {"deepseek-coder", MX_PRE_DEEPSEEK_CODER, KS},
    {"deepseek-v3", MX_PRE_DEEPSEEK3, KS},
    {"youtu", MX_PRE_YOUTU, KS | IM},
    {"falcon", MX_PRE_FALCON, 0},
    {"mpt", MX_PRE_GPT2, 0},
    {"starcoder", MX_PRE_STARCODER, 0},
    {"gpt-2", MX_PRE_GPT2, 0}, {"phi-2", MX_PRE_GPT2, 0}, {"jina-es", MX_PRE_GPT2, 0},
    {"jina-de", MX_PRE_GPT2, 0}, {"gigachat", MX_PRE_GPT2, 0}, {"jina-v2-es", MX_PRE_GPT2, 0},
    {"jina-v2-de", MX_PRE_GPT2, 0}, {"a.x-4.0", MX_PRE_GPT2, 0}, {"mellum", MX_PRE_GPT2, 0},
    {"modern-bert", MX_PRE_GPT2, 0},
    {"jais-2", MX_PRE_JAIS2, 0},
    {"gemma4", MX_PRE_GEMMA4, ES | RB}, {"granite-embed-multi-311m", MX_PRE_GEMMA4, ES | RB},
    {"sarvam-moe", MX_PRE_GEMMA4, ES | RB | KS},
    {"whitespace", MX_PRE_WHITESPACE, RB},
    {"refact", MX_PRE_STARCODER, 0},
    {"command-r", MX_PRE_STARCODER, KS},
    {"qwen2", MX_PRE_QWEN2, KS}, {"deepseek-r1-qwen", MX_PRE_QWEN2, KS},
    {"kormo", MX_PRE_QWEN2, KS}, {"f2llmv2", MX_PRE_QWEN2, KS},
    {"qwen35", MX_PRE_QWEN35, KS},
    {"stablelm2", MX_PRE_QWEN2, 0},
    {"olmo", MX_PRE_GPT2, 0},
    {"dbrx", MX_PRE_LLAMA3, 0},
    {"smaug-bpe", MX_PRE_LLAMA3, 0},
    {"poro-chat", MX_PRE_BLOOM, KS},
    {"glm4", MX_PRE_LLAMA3, NB}, {"chatglm-bpe", MX_PRE_LLAMA3, NB},
    {"viking", MX_PRE_VIKING, KS},
    {"jais", MX_PRE_GPT2, 0},
    {"tekken", MX_PRE_TEKKEN, KS | IM | AB},
    {"smollm", MX_PRE_STARCODER, KS},
    {"codeshell", MX_PRE_STARCODER, 0},
    {"bloom", MX_PRE_BLOOM, 0},
    {"gpt3-finnish", MX_PRE_BLOOM, 0},
    {"exaone", MX_PRE_STARCODER, 0},
    {"exaone4", MX_PRE_GPT2, 0},
    {"exaone-moe", MX_PRE_EXAONE_MOE, 0},
    {"chameleon", MX_PRE_CHAMELEON, AB | KS},
    {"minerva-7b", MX_PRE_STARCODER, 0},
    {"megrez", MX_PRE_QWEN2, 0},
    {"gpt-4o", MX_PRE_GPT4O, KS}, {"llama4", MX_PRE_GPT4O, KS}, {"kanana2", MX_PRE_GPT4O, KS},
    {"talkie", MX_PRE_GPT4O, KS},
    {"granite-embed-multi-97m", MX_PRE_GRANITE_EMB_MULTI, KS | IM},
    {"tiny_aya", MX_PRE_TINY_AYA, KS}, {"cohere2moe", MX_PRE_TINY_AYA, KS},
    {"superbpe", MX_PRE_SUPERBPE, KS},
    {"trillion", MX_PRE_GPT2, KS},
    {"granite-docling", MX_PRE_GPT2, KS},
    {"bailingmoe", MX_PRE_BAILINGMOE, KS}, {"bailingmoe2", MX_PRE_BAILINGMOE, KS},
    {"llada-moe", MX_PRE_BAILINGMOE, KS},
    {"seed-coder", MX_PRE_SEED_CODER, KS},
    {"hunyuan", MX_PRE_QWEN2, KS},
    {"hunyuan-dense", MX_PRE_DEEPSEEK3, KS},
    {"joyai-llm", MX_PRE_DEEPSEEK3, KS},
    {"kimi-k2", MX_PRE_KIMI_K2, KS},
    {"grok-2", MX_PRE_QWEN2, KS},
    {"afmoe", MX_PRE_AFMOE, KS},
    {"laguna", MX_PRE_LAGUNA, KS},
    {"minimax-m2", MX_PRE_GPT4O, KS},
    {"solar-open", MX_PRE_QWEN2, KS},
    {"mellum2", MX_PRE_STARCODER, 0},
};

bool mx_tok_pre_lookup(const char *name, struct mx_tok_pre_info *info) {
    memset(info, 0, sizeof(*info));
    info->pre = MX_PRE_DEFAULT;
    for (size_t i = 0; name && i < MX_ARRAY_LEN(pre_names); i++) {
        if (strcmp(name, pre_names[i].name) == 0) {
            unsigned s = pre_names[i].set;
            info->pre = pre_names[i].pre;
            info->ignore_merges = s & IM;
            info->add_bos = s & AB;
            info->keep_spaces = s & KS;
            info->escape_spaces = s & ES;
            info->raw_bytes = s & RB;
            info->no_bos = s & NB;
            return true;
        }
    }
    return false;
}

enum mx_tok_pre mx_tok_pre_from_name(const char *name, bool *known) {
    struct mx_tok_pre_info info;
    bool k = mx_tok_pre_lookup(name, &info);
    if (known)
        *known = k;
    return info.pre;
}

const char *mx_tok_pre_name(enum mx_tok_pre pre) {
    if (pre == MX_PRE_GPT2)
        return "gpt-2";
    for (size_t i = 0; i < MX_ARRAY_LEN(pre_names); i++)
        if (pre_names[i].pre == pre)
            return pre_names[i].name;
    return "?";
}

/* ---- patterns ------------------------------------------------------------------------------- */

/* The llama3 family's contractions, as llama.cpp writes (?i:...) for std::regex. */
#define CONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_RX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_RX CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{" \
    "N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RX CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN35_RX CONTR "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}" \
    "\\p{M}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define NEWLINES_RX "[^\\n]+|[\\n]+"
#define KIMI_RX "\\p{Han}+"
#define AFMOE_RX "\\p{AFMoE_digits}"
#define AYA_DIGITS_RX "\\d{1,3}(?=(?:\\d{3})*\\b)"
/* the case-split letter runs of tekken / gpt-4o: (?=[\p{L}])([^a-z]) is "a letter that is not
 * a-z", llama.cpp's stand-in for [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] */
#define UPPER "((?=[\\p{L}])([^a-z]))"
#define LOWER "((?=[\\p{L}])([^A-Z]))"
#define UPPER_M "((?=[\\p{L}\\p{M}])([^a-z]))"
#define LOWER_M "((?=[\\p{L}\\p{M}])([^A-Z]))"
#define CASE_TAIL "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LU "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define LL "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"

/* Up to six steps per pre-tokenizer, in llama.cpp's order. */
static const char *const pre_steps[MX_PRE_COUNT][7] = {
    [MX_PRE_GPT2] = {GPT2_RX},
    [MX_PRE_LLAMA3] = {LLAMA3_RX},
    [MX_PRE_QWEN2] = {QWEN2_RX},
    [MX_PRE_TEKKEN] = {"[^\\r\\n\\p{L}\\p{N}]?" UPPER "*" LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" UPPER
                       "+" LOWER "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
                       "\\s+(?!\\S)|\\s+"},
    [MX_PRE_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RX, "\\p{N}+", "[0-9][0-9][0-9]"},
    [MX_PRE_DEEPSEEK_LLM] = {
        "[\r\n]",
        "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA"
        "\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376"
        "\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-"
        "\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556"
        "\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-"
        "\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15"
        "\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59"
        "\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"
        "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-"
        "\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113"
        "\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-"
        "\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184"
        "\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-"
        "\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
        "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-"
        "\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-"
        "\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2"
        "\U000118A0-\U000118DF\U0001E900-\U0001E943]+",
        "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
        "\\s+$",
        "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
        "\\p{N}+"},
    [MX_PRE_DEEPSEEK_CODER] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                               "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}"},
    [MX_PRE_DEEPSEEK3] = {
        "\\p{N}{1,3}",
        "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n"
        "\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
        " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
    [MX_PRE_YOUTU] = {
        "[\uAC00-\uD7A3\u3131-\u318E]+|[\uFF01\u2026\u201C\u201D"
        "\u2018\u2019\u2014\uFF1A\uFF1B\uFF0C\u3001-\u303F\uFE30-"
        "\uFE4F]+|[\u3105-\u312F]+|[\u4E00-\u9FA5\u3040-\u309F\u30A0-"
        "\u30FF]+",
        "[^\\r\\n\\p{L}\\p{N}]?" LU "*" LL "+" CONTR "?|[^\\r\\n\\p{L}\\p{N}]?" LU "+" LL "*" CONTR
        "?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [MX_PRE_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RX, "[0-9][0-9][0-9]"},
    [MX_PRE_STARCODER] = {"\\p{N}", GPT2_RX},
    [MX_PRE_JAIS2] = {CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                      "[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|"
                      "\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|"
                      "\\s{1,2}(?!\\S)|\\s{1}"},
    [MX_PRE_QWEN35] = {QWEN35_RX},
    [MX_PRE_BLOOM] = {" ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"},
    [MX_PRE_VIKING] = {" ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+", "\\p{N}"},
    [MX_PRE_CHAMELEON] = {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                          "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", GPT2_RX},
    [MX_PRE_GPT4O] = {"[^\\r\\n\\p{L}\\p{N}]?" UPPER "*" LOWER "+" CONTR "?|[^\\r\\n\\p{L}\\p{N}]?"
                      UPPER "+" LOWER "*" CONTR "?|" CASE_TAIL},
    [MX_PRE_GRANITE_EMB_MULTI] = {"[^\\r\\n\\p{L}\\p{N}]?" UPPER_M "*" LOWER_M "+" CONTR
                                  "?|[^\\r\\n\\p{L}\\p{N}]?" UPPER_M "+" LOWER_M "*" CONTR "?|"
                                  CASE_TAIL},
    [MX_PRE_TINY_AYA] = {AYA_DIGITS_RX, "[^\\r\\n\\p{L}\\p{N}]?" LU "*" LL "+" CONTR
                         "?|[^\\r\\n\\p{L}\\p{N}]?" LU "+" LL "*" CONTR "?|" CASE_TAIL},
    [MX_PRE_KIMI_K2] = {KIMI_RX},
    [MX_PRE_SUPERBPE] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))"},
    [MX_PRE_BAILINGMOE] = {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p"
        "{N}]?\\p{L}+|"
                           "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
    [MX_PRE_SEED_CODER] = {CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}"
        "\\r\\n]+|"
                           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [MX_PRE_AFMOE] = {AFMOE_RX,
                      "[\u4E00-\u9FFF\u3400-\u4DBF\u8C48-\uFAFF\u3040-\u309F\u30A0-"
                      "\u30FF\uFF65-\uFF9F\u2F00-\u2FDF\u0E40-\u0E7F\u0E80-\u0EFF"
                      "\u1780-\u17FF\u1000-\u109F\uAA60-\uAA7F\uA9E0-\uA9FF\uAC00-"
                      "\uD7AF\u1100-\u11FF]+",
                      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r"
                      "\\n\\p{L}\\p{P}\\p{S}]?"
                      "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [MX_PRE_LAGUNA] = {NEWLINES_RX, QWEN2_RX},
    [MX_PRE_EXAONE_MOE] = {CONTR "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+"
        "|\\p{N}|"
                           " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
    [MX_PRE_GEMMA4] = {NEWLINES_RX},
    [MX_PRE_MINICPM5] = {"\\p{N}{1,3}", CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}"
                         "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    [MX_PRE_WHITESPACE] = {"\\S+"},
};

/* llama.cpp's unicode_regex_split_custom: the patterns it splits by hand, by their text. */
static int custom_of(const char *rx) {
    static const struct {
        const char *rx;
        enum mx_tok_custom which;
    } map[] = {
        {GPT2_RX, MX_SPLIT_GPT2},         {LLAMA3_RX, MX_SPLIT_LLAMA3},
        {QWEN2_RX, MX_SPLIT_QWEN2},       {QWEN35_RX, MX_SPLIT_QWEN35},
        {KIMI_RX, MX_SPLIT_KIMI},         {AFMOE_RX, MX_SPLIT_AFMOE},
        {NEWLINES_RX, MX_SPLIT_NEWLINES}, {AYA_DIGITS_RX, MX_SPLIT_AFMOE},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(map); i++)
        if (strcmp(rx, map[i].rx) == 0)
            return (int)map[i].which;
    return -1;
}

/* The Unicode categories llama.cpp collapses, with their byte and ASCII members (as regex
 * text). The longer names come first so "\p{Lu}" is not read as "\p{L}" + "u}". */
static const struct {
    const char *name;
    char byte;
    const char *ascii;
} ucats[] = {
    {"\\p{Lu}", '\xD2', "\x41-\x5A\x61-\x7A"}, {"\\p{Ll}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Lt}", '\xD2', "\x41-\x5A\x61-\x7A"}, {"\\p{Lm}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{Lo}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{N}", '\xD1', "\x30-\x39"},
    {"\\p{L}", '\xD2', "\x41-\x5A\x61-\x7A"},
    {"\\p{P}", '\xD3', "\x21-\x23\x25-\x2A\x2C-\x2F\x3A-\x3B\x3F-\x40\\\x5B-\\\x5D"
        "\x5F\\\x7B\\\x7D"},
    {"\\p{M}", '\xD4', ""},
    {"\\p{S}", '\xD5', "\\\x24\\\x2B\x3C-\x3E\x5E\x60\\\x7C\\\x7E"},
};

/* Whether pattern rx names a category llama.cpp collapses (so it runs on collapsed text). */
static bool uses_categories(const char *rx) {
    for (size_t i = 0; i < MX_ARRAY_LEN(ucats); i++)
        if (strstr(rx, ucats[i].name))
            return true;
    return false;
}

/* One step of a pre-tokenizer. */
struct step {
    int custom;        /* enum mx_tok_custom, or -1 for rx */
    bool collapsed;    /* rx runs on the collapsed text */
    struct mx_rx *rx;
};

struct mx_tok_pretok {
    enum mx_tok_pre pre;
    struct step steps[7];  /* in order; each splits the pieces of the one before */
    int n_steps;
    bool collapsed;    /* some step needs the collapsed text */
};

/* Compiles one pattern the way llama.cpp prepares it for std::regex. */
static int compile_step(const char *src, struct step *st, struct mx_err *err) {
    size_t n = strlen(src);
    uint32_t *pat = malloc((n * 16 + 1) * sizeof(*pat)); /* a \p{..} grows to < 40 chars */
    size_t k = 0;
    int rc;
    if (!pat)
        return mx_err_set(err, MX_ENOMEM, "pre-tokenizer: out of memory");
    st->collapsed = uses_categories(src);
    if (st->collapsed) {
        /* llama.cpp: [ and ] (not after a backslash) track being inside a class; \p{X} becomes
         * the class "[bXascii]", or just "bXascii" inside one */
        bool inside = false;
        for (size_t i = 0; i < n; i++) {
            if (src[i] == '[' && (i == 0 || src[i - 1] != '\\')) {
                pat[k++] = '[';
                inside = true;
                continue;
            }
            if (inside && src[i] == ']' && src[i - 1] != '\\') {
                pat[k++] = ']';
                inside = false;
                continue;
            }
            size_t u = MX_ARRAY_LEN(ucats);
            if (src[i] == '\\' && i + 3 < n && src[i + 1] == 'p' && src[i + 2] == '{') {
                const char *close = strchr(src + i + 3, '}');
                for (u = 0; close && (size_t)(close - src) <= i + 10 && u < MX_ARRAY_LEN(ucats);
                     u++)
                    if (strlen(ucats[u].name) == (size_t)(close - src) - i + 1 &&
                        memcmp(src + i, ucats[u].name, (size_t)(close - src) - i + 1) == 0)
                        break;
                if (!close || (size_t)(close - src) > i + 10)
                    u = MX_ARRAY_LEN(ucats);
                if (u < MX_ARRAY_LEN(ucats)) {
                    if (!inside)
                        pat[k++] = '[';
                    pat[k++] = (unsigned char)ucats[u].byte;
                    for (const char *a = ucats[u].ascii; *a; a++)
                        pat[k++] = (unsigned char)*a;
                    if (!inside)
                        pat[k++] = ']';
                    i = (size_t)(close - src);
                    continue;
                }
            }
            pat[k++] = (unsigned char)src[i];
        }
    } else {
        for (size_t o = 0; o < n;)
            pat[k++] = mx_utf8_next(src, n, &o);
    }
    rc = mx_rx_compile(pat, k, &st->rx, err);
    free(pat);
    return rc;
}

void mx_tok_pretok_free(struct mx_tok_pretok *p) {
    if (!p)
        return;
    for (int i = 0; i < p->n_steps; i++)
        mx_rx_free(p->steps[i].rx);
    free(p);
}

int mx_tok_pretok_new(enum mx_tok_pre pre, struct mx_tok_pretok **out, struct mx_err *err) {
    *out = NULL;
    if ((int)pre < 0 || pre >= MX_PRE_COUNT)
        return mx_err_set(err, MX_EINVAL, "pre-tokenizer %d does not exist", (int)pre);
    struct mx_tok_pretok *p = calloc(1, sizeof(*p));
    if (!p)
        return mx_err_set(err, MX_ENOMEM, "pre-tokenizer: out of memory");
    p->pre = pre;
    for (int i = 0; i < 7 && pre_steps[pre][i]; i++) {
        struct step *st = &p->steps[p->n_steps++];
        st->custom = custom_of(pre_steps[pre][i]);
        if (st->custom < 0) {
            int rc = compile_step(pre_steps[pre][i], st, err);
            if (rc < 0) {
                mx_tok_pretok_free(p);
                return rc;
            }
            p->collapsed |= st->collapsed;
        }
    }
    *out = p;
    return 0;
}

/* llama.cpp's collapsed character of a codepoint with flags f. */
static uint32_t collapse(uint32_t cp, unsigned f) {
    if (cp < 128)
        return cp;
    if (f & MX_UC_WS)
        return 0x0B;
    if (f & MX_UC_N)
        return 0xD1;
    if (f & MX_UC_L)
        return 0xD2;
    if (f & MX_UC_P)
        return 0xD3;
    if (f & MX_UC_M)
        return 0xD4;
    if (f & MX_UC_S)
        return 0xD5;
    return 0xD0;
}

int mx_tok_pretok_split(const struct mx_tok_pretok *p, const char *s, size_t len,
                        int (*emit)(void *ud, size_t start, size_t end), void *ud) {
    size_t n = 0, o = 0;
    int rc = MX_ENOMEM;
    uint32_t *cp = malloc((len ? len : 1) * sizeof(*cp));
    bool any_rx = false;
    for (int k = 0; k < p->n_steps; k++)
        any_rx |= p->steps[k].custom < 0;
    uint32_t *alt = any_rx ? malloc((len ? len : 1) * sizeof(*alt)) : NULL; /* regex text */
    uint16_t *fl = malloc((len ? len : 1) * sizeof(*fl));
    size_t *off = malloc((len + 1) * sizeof(*off));
    struct mx_lenvec a = {0}, b = {0};
    if (!cp || (any_rx && !alt) || !fl || !off)
        goto out;
    while (o < len) {
        off[n] = o;
        cp[n] = mx_utf8_next(s, len, &o);
        fl[n] = (uint16_t)(mx_uc_flags(cp[n]) | MX_UC_IN);
        n++;
    }
    off[n] = len;
    if ((rc = mx_lenvec_push(&a, n)) < 0)
        goto out;
    for (int k = 0; k < p->n_steps; k++) {
        const struct step *st = &p->steps[k];
        if (st->custom < 0)
            for (size_t i = 0; i < n; i++)
                alt[i] = st->collapsed ? collapse(cp[i], fl[i])
                         : (cp[i] > 0x7F && (fl[i] & MX_UC_WS)) ? 0x0B : cp[i];
        b.n = 0;
        size_t at = 0;
        for (size_t i = 0; i < a.n; i++) {
            size_t m = a.v[i];
            if (st->custom >= 0) {
                struct mx_cps v = {cp + at, fl + at, m};
                rc = mx_tok_split_custom((enum mx_tok_custom)st->custom, &v, &b);
            } else {
                rc = mx_rx_split(st->rx, alt + at, m, &b);
            }
            if (rc < 0)
                goto out;
            at += m;
        }
        struct mx_lenvec t = a;
        a = b;
        b = t;
    }
    rc = 0;
    for (size_t i = 0, at = 0; i < a.n && rc == 0; i++) {
        rc = emit(ud, off[at], off[at + a.v[i]]);
        at += a.v[i];
    }
out:
    free(cp);
    free(alt);
    free(fl);
    free(off);
    free(a.v);
    free(b.v);
    return rc;
}

int mx_tok_split(enum mx_tok_pre pre, const char *s, size_t len, mx_split_fn emit, void *ud) {
    struct mx_tok_pretok *p;
    int rc = mx_tok_pretok_new(pre, &p, NULL);
    if (rc < 0)
        return rc;
    rc = mx_tok_pretok_split(p, s, len, emit, ud);
    mx_tok_pretok_free(p);
    return rc;
}
