/* test_eval_mc.c - the model-free parts of `mixel eval mc` and `mixel eval gen`: the benchmark
 * file readers (every format, good files and malformed ones with the messages they give), the
 * MMLU prompt, llama-perplexity's task order, the confidence interval and GSM8K's final-number
 * extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/eval_data.h"
#include "app/eval_gen.h"
#include "app/eval_mc.h"

/* Reads tests/data/eval/NAME (from $MX_SRCDIR, else the current folder's tests/). */
static char *read_data(const char *name, size_t *len) {
    const char *src = getenv("MX_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/eval/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* Parses a committed file with fmt and checks what was told and read. */
static void check_file(const char *name, enum mx_mc_format fmt, enum mx_mc_format want_fmt,
                       const char *want_syntax, size_t n, size_t n_choices) {
    size_t len;
    char *b = read_data(name, &len);
    struct mx_mc_set s;
    struct mx_err err = {0};
    int rc = mx_mc_read(b, len, name, fmt, &s, &err);
    if (rc != 0)
        fail_msg("%s: %s", name, err.msg);
    assert_int_equal(s.format, want_fmt);
    assert_string_equal(s.syntax, want_syntax);
    assert_int_equal(s.n, n);
    for (size_t i = 0; i < s.n; i++) {
        assert_int_equal(s.items[i].n_choices, n_choices);
        assert_true(s.items[i].answer >= 0 && (size_t)s.items[i].answer < n_choices);
        assert_int_equal(s.items[i].index, i);
    }
    mx_mc_set_free(&s);
    mx_mc_set_free(&s); /* twice is fine */
    free(b);
}

/* Every committed file is told apart by auto and reads back its tasks; the four renderings of
 * the story tasks hold the same context, endings and answers. */
static void test_files_auto(void **state) {
    (void)state;
    check_file("hellaswag.txt", MX_MC_AUTO, MX_MC_HELLASWAG, "hellaswag text", 20, 4);
    check_file("arc.jsonl", MX_MC_AUTO, MX_MC_ARC, "jsonl", 20, 4);
    check_file("mc.bin", MX_MC_AUTO, MX_MC_ARC, "llama.cpp binary", 20, 4);
    check_file("stories_test.csv", MX_MC_AUTO, MX_MC_MMLU, "mmlu csv", 20, 4);
    check_file("winogrande.csv", MX_MC_AUTO, MX_MC_WINOGRANDE, "winogrande csv", 6, 2);
    /* forced formats: the binary and JSONL scored as MMLU, HellaSwag forced on its own file */
    check_file("mc.bin", MX_MC_MMLU, MX_MC_MMLU, "llama.cpp binary", 20, 4);
    check_file("arc.jsonl", MX_MC_MMLU, MX_MC_MMLU, "jsonl", 20, 4);
    check_file("hellaswag.txt", MX_MC_HELLASWAG, MX_MC_HELLASWAG, "hellaswag text", 20, 4);

    const char *names[] = {"hellaswag.txt", "arc.jsonl", "mc.bin", "stories_test.csv"};
    struct mx_mc_set s[4];
    struct mx_err err = {0};
    for (int k = 0; k < 4; k++) {
        size_t len;
        char *b = read_data(names[k], &len);
        assert_int_equal(mx_mc_read(b, len, names[k], MX_MC_AUTO, &s[k], &err), 0);
        free(b);
    }
    for (size_t i = 0; i < 20; i++)
        for (int k = 1; k < 4; k++) {
            assert_int_equal(s[k].items[i].answer, s[0].items[i].answer);
            for (size_t c = 0; c < 4; c++)
                assert_string_equal(s[k].items[i].choices[c], s[0].items[i].choices[c]);
            if (k < 3)
                assert_string_equal(s[k].items[i].context, s[0].items[i].context);
        }
    /* the CSV keeps the quoted newline and commas of task 1 */
    assert_string_equal(s[3].items[0].context, "Once upon a time, there was a little girl named "
                        "Lily.\nWhat comes next?");
    assert_string_equal(s[0].items[0].choices[s[0].items[0].answer],
                        "She loved to play outside in the park.");
    for (int k = 0; k < 4; k++)
        mx_mc_set_free(&s[k]);
}

/* Winogrande rows split at the blank; the header line is skipped; answers become 0-based. */
static void test_winogrande_rows(void **state) {
    (void)state;
    const char *csv = "index,sentence,option1,option2,answer\r\n"
                      "0,\"Sarah was a better surgeon than Maria, so _ got the easier cases.\","
                      "Sarah,Maria,2\r\n"
                      "1,The cup fit in _ bag.,the,a,1";
    struct mx_mc_set s;
    struct mx_err err = {0};
    assert_int_equal(mx_mc_read(csv, strlen(csv), "w.csv", MX_MC_AUTO, &s, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.items[0].context, "Sarah was a better surgeon than Maria, so ");
    assert_string_equal(s.items[0].tail, " got the easier cases.");
    assert_string_equal(s.items[0].choices[1], "Maria");
    assert_int_equal(s.items[0].answer, 1);
    assert_string_equal(s.items[1].tail, " bag.");
    assert_int_equal(s.items[1].answer, 0);
    mx_mc_set_free(&s);
}

/* Malformed files: MX_EFORMAT with a message naming the place and the problem. */
static void test_malformed(void **state) {
    (void)state;
    static const struct {
        enum mx_mc_format fmt;
        const char *data;
        size_t len;      /* 0: strlen */
        const char *msg; /* a substring of the message */
    } cases[] = {
        {MX_MC_AUTO, "", 0, "empty file"},
        {MX_MC_HELLASWAG, "ctx\n1\na\nb\nc\n", 0, "5 lines, not a multiple of 6"},
        {MX_MC_HELLASWAG, "ctx\nx\na\nb\nc\nd\n", 0, "h:2: label 'x' is not 0-3"},
        {MX_MC_HELLASWAG, "ctx\n4\na\nb\nc\nd\n", 0, "label '4' is not 0-3"},
        {MX_MC_WINOGRANDE, "0,no blank here,a,b,1\n", 0, "h:1: the sentence has no '_'"},
        {MX_MC_WINOGRANDE, "0,a _ b,a,b,1\n1,a _ b,a,b,3\n", 0, "h:2: answer '3' is not 1 or 2"},
        {MX_MC_WINOGRANDE, "0,a _ b,a,b,1\n1,a _ b,a\n", 0, "h:2: 3 fields, Winogrande rows "},
        {MX_MC_WINOGRANDE, "0,\"a _ b,a,b,1\n", 0, "h:1: a quoted field is not closed"},
        {MX_MC_WINOGRANDE, "0,\"a _\" b,a,b,1\n", 0, "text after a closing quote"},
        {MX_MC_MMLU, "q,a,b,c,d,E\n", 0, "h:1: answer 'E' is not a letter A-D"},
        {MX_MC_MMLU, "q,a,b,c,d,A\nq2\n", 0, "h:2: 1 fields, MMLU rows"},
        {MX_MC_AUTO, "{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n", 0,
         "h:1: \"choices\" must be an array of 2 to 100 strings"},
        {MX_MC_AUTO, "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n", 0,
         "h:1: \"answer\" must be an index 0-1 or a letter A-B"},
        {MX_MC_AUTO, "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 1}\n{\"q\"\n",
         0, "h:2: not JSON"},
        {MX_MC_AUTO, "{\"choices\": [\"a\", \"b\"], \"answer\": 1}\n", 0,
         "h:1: \"question\" is missing"},
        {MX_MC_AUTO, "{\"question\": \"q\", \"choices\": [\"a\", 3], \"answer\": 1}\n", 0,
         "h:1: choice 1 is not a non-empty string"},
        /* binary: no tasks; an offset table past the end; a cut question; too many answers;
         * no right label */
        {MX_MC_AUTO, "\0\0\0\0", 4, "no tasks"},
        {MX_MC_AUTO, "\x05\0\0\0\0\0\0\0", 8, "5 tasks but the offset table does not fit"},
        {MX_MC_AUTO, "\x01\0\0\0\x08\0\0\0\x09\0\0\0abc", 15, "task 1 of 1: the question is "
         "cut off"},
        {MX_MC_AUTO, "\x01\0\0\0\x08\0\0\0\x01\0\0\0q\x65\0\0\0", 17, "answer count too large"},
        {MX_MC_AUTO, "\x01\0\0\0\x08\0\0\0\x01\0\0\0q\x02\0\0\0\x01\0\0\0a\x01\0\0\0b"
         "\0\0\0\0\0\0\0\0\0\0\0\0", 39, "0 answers labelled right"},
        {MX_MC_AUTO, "\x01\0\0\0\x08\0\0\0\x01\0\0\0q\x02\0\0\0\x01\0\0\0a\x01\0\0\0b"
         "\x01\0\0\0", 31, "the labels are cut off"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mx_mc_set s;
        struct mx_err err = {0};
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].data);
        int rc = mx_mc_read(cases[i].data, len, "h", cases[i].fmt, &s, &err);
        if (rc != MX_EFORMAT || !strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: rc %d, message '%s', wanted '%s'", i, rc, err.msg,
                     cases[i].msg);
        assert_int_equal(s.n, 0);
        assert_null(s.items);
    }
    enum mx_mc_format f;
    struct mx_err err = {0};
    assert_int_equal(mx_mc_format_parse("hellaswag", &f, &err), 0);
    assert_int_equal(f, MX_MC_HELLASWAG);
    assert_int_equal(mx_mc_format_parse("arcx", &f, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "auto, hellaswag, winogrande, arc, mmlu"));
}

/* A well-formed binary task with two mc1 answers and an mc2 set (skipped). */
static void test_binary_task(void **state) {
    (void)state;
    static const char b[] = "\x01\0\0\0\x08\0\0\0"
                            "\x02\0\0\0Q?"
                            "\x02\0\0\0\x03\0\0\0yes\x02\0\0\0no\0\0\0\0\x01\0\0\0"
                            "\x01\0\0\0\x01\0\0\0x\x01\0\0\0";
    struct mx_mc_set s;
    struct mx_err err = {0};
    int rc = mx_mc_read(b, sizeof b - 1, "b", MX_MC_AUTO, &s, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.items[0].context, "Q?");
    assert_string_equal(s.items[0].choices[0], "yes");
    assert_string_equal(s.items[0].choices[1], "no");
    assert_int_equal(s.items[0].answer, 1);
    mx_mc_set_free(&s);
}

/* GSM8K JSONL: string and number answers; malformed lines. */
static void test_qa_reader(void **state) {
    (void)state;
    size_t len;
    char *b = read_data("gsm8k.jsonl", &len);
    struct mx_qa_set s;
    struct mx_err err = {0};
    assert_int_equal(mx_qa_read(b, len, "g", &s, &err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.items[1].answer, "1,200 * 2 = 2,400\n#### 2,400");
    mx_qa_set_free(&s);
    free(b);
    const char *num = "\n{\"question\": \"q\", \"answer\": 42}\n\n";
    assert_int_equal(mx_qa_read(num, strlen(num), "g", &s, &err), 0);
    assert_string_equal(s.items[0].answer, "42");
    mx_qa_set_free(&s);
    const char *bad = "{\"question\": \"q\", \"answer\": 1}\n{\"question\": \"q\"}\n";
    assert_int_equal(mx_qa_read(bad, strlen(bad), "g", &s, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "g:2: \"answer\" is missing"));
    mx_err_clear(&err);
    assert_int_equal(mx_qa_read("  \n", 3, "g", &s, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "no questions"));
}

/* GSM8K's final number: "####" first, else the last number; commas, zeros and signs
 * normalised. */
static void test_extract(void **state) {
    (void)state;
    static const struct {
        const char *text, *want; /* want NULL: no number */
    } cases[] = {
        {"She sold 48/2 = 24 clips in May.\n#### 72", "72"},
        {"#### 2,400", "2400"},
        {"#### -5 apples", "-5"},
        {"The answer is 42.", "42"},
        {"It costs $1,234.50 in total, so 1234.5", "1234.5"},
        {"first 3 then 7.", "7"},
        {"from 3-4 days", "4"},
        {"it is -0.0", "0"},
        {"007 agents", "7"},
        {"2.50 dollars", "2.5"},
        {"no digits here", NULL},
        {"#### none, but 12 earlier", "12"},
        {"1,2,3", "123"},
        {"total: 10.", "10"},
        {"x = -3", "-3"},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        bool ok = mx_qa_extract(cases[i].text, out, sizeof out);
        if (ok != (cases[i].want != NULL) || (ok && strcmp(out, cases[i].want) != 0))
            fail_msg("case %zu '%s': got %s '%s', wanted '%s'", i, cases[i].text,
                     ok ? "true" : "false", out, cases[i].want ? cases[i].want : "(none)");
        if (!ok)
            assert_string_equal(out, "");
    }
    char small[3];
    assert_false(mx_qa_extract("12345", small, sizeof small));
    assert_false(mx_qa_extract(NULL, small, sizeof small));
}

/* The Wilson interval against the textbook formula and known values; the standard error. */
static void test_ci(void **state) {
    (void)state;
    const double z = 1.95996398454;
    static const size_t ks[][2] = {{0, 1}, {1, 1}, {3, 20}, {20, 20}, {50, 100}, {7811, 10042}};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        double k = (double)ks[i][0], n = (double)ks[i][1], p = k / n, lo, hi;
        mx_eval_wilson(ks[i][0], ks[i][1], &lo, &hi);
        double c = (p + z * z / (2 * n)) / (1 + z * z / n);
        double h = z / (1 + z * z / n) * sqrt(p * (1 - p) / n + z * z / (4 * n * n));
        assert_true(fabs(lo - (c - h)) < 1e-12 && fabs(hi - (c + h)) < 1e-12);
    }
    double lo, hi;
    mx_eval_wilson(50, 100, &lo, &hi);
    assert_true(fabs(lo - 0.40383) < 1e-5 && fabs(hi - 0.59617) < 1e-5);
    mx_eval_wilson(0, 0, &lo, &hi);
    assert_true(lo == 0 && hi == 0);
    assert_true(fabs(mx_eval_stderr(50, 100) - sqrt(0.25 / 99)) < 1e-15);
    assert_true(mx_eval_stderr(1, 1) == 0);
}

/* llama-perplexity's task order, from tests/eval_pick_ref.cpp (std::mt19937 and libstdc++'s
 * uniform_int_distribution, g++ 12): "./pick 10 10", "./pick 10042 12", "./pick 1267 8". */
static void test_pick(void **state) {
    (void)state;
    static const struct {
        enum mx_mc_format f;
        size_t n_total, n_want;
        size_t want[12];
    } cases[] = {
        {MX_MC_HELLASWAG, 10, 10, {4, 9, 6, 8, 0, 1, 3, 7, 2, 5}},
        {MX_MC_WINOGRANDE, 10, 10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, /* all: file order */
        {MX_MC_ARC, 10, 9, {4, 8, 5, 6, 0, 7, 1, 2, 9}},
        {MX_MC_HELLASWAG, 10042, 12,
         {4187, 10013, 7233, 9363, 1, 1286, 3036, 10032, 1474, 2371, 927, 3984}},
        {MX_MC_WINOGRANDE, 10042, 12,
         {4187, 10012, 7232, 9361, 1, 1285, 3034, 10025, 1472, 2368, 926, 3978}},
        {MX_MC_HELLASWAG, 1267, 8, {528, 1263, 912, 1180, 0, 162, 383, 1265}},
        {MX_MC_MMLU, 1267, 8, {528, 1262, 911, 1178, 0, 161, 381, 1258}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t *idx = calloc(cases[i].n_total, sizeof *idx), n = 0;
        assert_int_equal(mx_mc_pick(cases[i].f, cases[i].n_total, cases[i].n_want, idx, &n), 0);
        assert_int_equal(n, cases[i].n_want);
        for (size_t j = 0; j < n && j < 12; j++)
            if (idx[j] != cases[i].want[j])
                fail_msg("case %zu: task %zu is %zu, llama.cpp's is %zu", i, j, idx[j],
                         cases[i].want[j]);
        free(idx);
    }
    /* n_want 0 (all) keeps HellaSwag random but complete: a permutation */
    size_t idx[10], n;
    assert_int_equal(mx_mc_pick(MX_MC_HELLASWAG, 10, 0, idx, &n), 0);
    assert_int_equal(n, 10);
    assert_int_equal(idx[0], 4);
}

/* Hendrycks' prompt: header with the subject, solved examples, the question ending in
 * "Answer:". */
static void test_mmlu_prompt(void **state) {
    (void)state;
    char *c1[] = {"1", "2", "3", "4"}, *c2[] = {"red", "blue"};
    struct mx_mc_item shot = {.context = "1 + 1 = ?", .choices = c1, .n_choices = 4, .answer = 1};
    struct mx_mc_item q = {.context = "Sky?", .choices = c2, .n_choices = 2, .answer = 0};
    const struct mx_mc_item *shots[] = {&shot};
    char *p = mx_mc_mmlu_prompt(&q, shots, 1, "basic facts");
    assert_string_equal(p, "The following are multiple choice questions (with answers) about "
                        "basic facts.\n\n1 + 1 = ?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
                        "Sky?\nA. red\nB. blue\nAnswer:");
    free(p);
    p = mx_mc_mmlu_prompt(&q, NULL, 0, NULL);
    assert_string_equal(p, "The following are multiple choice questions (with answers).\n\n"
                        "Sky?\nA. red\nB. blue\nAnswer:");
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_auto),
        cmocka_unit_test(test_winogrande_rows),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_binary_task),
        cmocka_unit_test(test_qa_reader),
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_ci),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_mmlu_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
