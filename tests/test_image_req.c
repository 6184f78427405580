/* test_image_req.c - the /image and /img2img argument reader (app/image_req.c): words and quotes
 * as a shell splits them, the CLI's option names with their checks, and the progress text the
 * status bar shows while an image is made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "app/image_job.h"

/* Prompt words with options between them: the words join with one space, each option fills its
 * field, quoted values keep their spaces and quotes nest as in a shell. */
static void test_words_and_options(void **state) {
    (void)state;
    struct mx_image_req r;
    struct mx_err err = {0};
    assert_int_equal(mx_image_req_parse("a red  cube -W 64 --height 72 --steps 2 --cfg 7.5 "
                                        "-n \"blurry, \\\"dark\\\"\" on 'a  table' --seed 42 "
                                        "--sampler 'DPM++ 2M' --scheduler karras --rng cpu "
                                        "--clip-skip 2 --eta 0.5 -d ~/m.safetensors "
                                        "--lora a.safetensors:0.5 --lora 'b c.safetensors'",
                                        &r, &err), 0);
    assert_int_equal(r.n_loras, 2);
    assert_string_equal(r.loras[0], "a.safetensors:0.5");
    assert_string_equal(r.loras[1], "b c.safetensors");
    assert_string_equal(r.prompt, "a red cube on a  table");
    assert_string_equal(r.negative, "blurry, \"dark\"");
    assert_int_equal(r.width, 64);
    assert_int_equal(r.height, 72);
    assert_int_equal(r.steps, 2);
    assert_true(r.cfg == 7.5f);
    assert_true(r.seed_set);
    assert_true(r.seed == 42);
    assert_string_equal(r.sampler, "DPM++ 2M");
    assert_string_equal(r.scheduler, "karras");
    assert_string_equal(r.rng, "cpu");
    assert_int_equal(r.clip_skip, 2);
    assert_true(r.eta == 0.5f);
    assert_string_equal(r.ckpt, "~/m.safetensors");
    assert_true(r.strength < 0); /* not given */
    assert_null(r.init_path);
    mx_image_req_free(&r);
    assert_null(r.prompt);
}

/* Nothing given: every field says "the default"; --seed -1 is random as in A1111; "--" makes the
 * words after it prompt words, option-like or not; a negative number is a word. */
static void test_defaults_and_end_of_options(void **state) {
    (void)state;
    struct mx_image_req r;
    struct mx_err err = {0};
    assert_int_equal(mx_image_req_parse("", &r, &err), 0);
    assert_string_equal(r.prompt, "");
    assert_int_equal(r.width, 0);
    assert_int_equal(r.steps, 0);
    assert_true(r.cfg < 0);
    assert_true(r.eta < 0);
    assert_false(r.seed_set);
    mx_image_req_free(&r);
    /* mixel image's other spellings */
    assert_int_equal(mx_image_req_parse("p -s 9 --negative-prompt no -m x.gguf --cfg-scale 2",
                                        &r, &err), 0);
    assert_true(r.seed_set && r.seed == 9);
    assert_string_equal(r.negative, "no");
    assert_string_equal(r.ckpt, "x.gguf");
    assert_true(r.cfg == 2.0f);
    mx_image_req_free(&r);
    assert_int_equal(mx_image_req_parse("x --seed -1 -- --steps 3 -n -5", &r, &err), 0);
    assert_false(r.seed_set);
    assert_string_equal(r.prompt, "x --steps 3 -n -5");
    assert_int_equal(r.steps, 0);
    mx_image_req_free(&r);
    assert_int_equal(mx_image_req_parse("cold -3 degrees --strength 0.5", &r, &err), 0);
    assert_string_equal(r.prompt, "cold -3 degrees");
    assert_true(r.strength == 0.5f);
    mx_image_req_free(&r);
    /* the hires fix and batches (sdpreview) */
    assert_int_equal(mx_image_req_parse("p --hires-scale 1.5 --hires-steps 4 --denoise 0.3 "
                                        "--hires-upscaler 'Latent (bicubic)' --batch-count 2 "
                                        "--batch-size 3", &r, &err), 0);
    assert_true(r.hires && r.hires_scale == 1.5f && r.hires_steps == 4 && r.denoise == 0.3f);
    assert_string_equal(r.hires_upscaler, "Latent (bicubic)");
    assert_true(r.batch_count == 2 && r.batch_size == 3);
    mx_image_req_free(&r);
    assert_int_equal(mx_image_req_parse("p --hires-width 1024", &r, &err), 0);
    assert_true(r.hires && r.hires_width == 1024 && r.hires_height == 0 && r.denoise < 0);
    mx_image_req_free(&r);
    /* the same option twice: the last one counts (as getopt does) */
    assert_int_equal(mx_image_req_parse("p -d a.safetensors -d b.safetensors", &r, &err), 0);
    assert_string_equal(r.ckpt, "b.safetensors");
    mx_image_req_free(&r);
}

/* Each bad input is refused with a message that names the option and the problem; the request
 * is left empty. */
static void test_errors(void **state) {
    (void)state;
    static const struct { const char *arg, *msg; } bad[] = {
        {"p --steps 0", "--steps takes a whole number from 1 to 1000, not '0'"},
        {"p --steps 2x", "--steps takes a whole number from 1 to 1000, not '2x'"},
        {"p -W 4", "-W takes a whole number from 8 to 4096, not '4'"},
        {"p --cfg nan", "--cfg takes a number from 0 to 100, not 'nan'"},
        {"p --strength 0", "--strength takes a number above 0 up to 1"},
        {"p --strength 1.5", "--strength takes a number from 0 to 1, not '1.5'"},
        {"p --seed -5", "--seed takes a whole number (-1: random), not '-5'"},
        {"p --seed 18446744073709551616", "--seed takes a whole number (-1: random)"},
        {"p --clip-skip 13", "--clip-skip takes a whole number from 1 to 12, not '13'"},
        {"p --steps", "--steps needs a value"},
        {"p --denoise 2", "--denoise takes a number from 0 to 1, not '2'"},
        {"p --hires-scale 0.5", "--hires-scale takes a number from 1 to 8, not '0.5'"},
        {"p --hires-width 32", "--hires-width takes a whole number from 64 to 4096, not '32'"},
        {"p --batch-count 0", "--batch-count takes a whole number from 1 to 100, not '0'"},
        {"p --bogus 3", "unknown option --bogus"},
        {"p -n \"open", "a double quote is not closed"},
        {"p -n 'open", "a single quote is not closed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_image_req r;
        struct mx_err err = {0};
        int rc = mx_image_req_parse(bad[i].arg, &r, &err);
        if (rc != MX_EINVAL || !strstr(err.msg, bad[i].msg))
            fail_msg("'%s': rc %d, message '%s'", bad[i].arg, rc, err.msg);
        assert_null(r.prompt);
        assert_null(r.negative);
    }
}

/* Backslashes: outside quotes they escape the next character; inside double quotes only \" and
 * \\; inside single quotes nothing. As in a shell, an escaped option is still an option. */
static void test_backslashes(void **state) {
    (void)state;
    struct mx_image_req r;
    struct mx_err err = {0};
    assert_int_equal(mx_image_req_parse("a\\ b \"c\\d\" 'e\\\"f' \\-\\-steps 4", &r, &err), 0);
    assert_string_equal(r.prompt, "a b c\\d e\\\"f");
    assert_int_equal(r.steps, 4);
    mx_image_req_free(&r);
}

/* The status bar's text per phase; while sampling, the mean seconds per step and the time left
 * for the steps to come. */
static void test_progress_text(void **state) {
    (void)state;
    char buf[160];
    struct mx_sd_progress p = {.phase = MX_SD_PHASE_SAMPLE, .step = 3, .steps = 20};
    mx_image_progress_text(&p, 1.2, buf, sizeof buf);
    assert_string_equal(buf, "image 3/20 \xc2\xb7 1.2 s/step \xc2\xb7 ETA 20 s");
    mx_image_progress_text(&p, 12.4, buf, sizeof buf);
    assert_string_equal(buf, "image 3/20 \xc2\xb7 12 s/step \xc2\xb7 ETA 211 s");
    p.step = 0;
    mx_image_progress_text(&p, 0, buf, sizeof buf);
    assert_string_equal(buf, "image 0/20");
    p.phase = MX_SD_PHASE_TEXT;
    mx_image_progress_text(&p, 0, buf, sizeof buf);
    assert_string_equal(buf, "image: encoding the prompt");
    p.phase = MX_SD_PHASE_DECODE;
    mx_image_progress_text(&p, 0, buf, sizeof buf);
    assert_string_equal(buf, "image: decoding");
    /* cut at the buffer, NUL-terminated */
    p.phase = MX_SD_PHASE_SAMPLE;
    p.step = 3;
    assert_int_equal(mx_image_progress_text(&p, 1.2, buf, 6), 5);
    assert_string_equal(buf, "image");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_and_options),
        cmocka_unit_test(test_defaults_and_end_of_options),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_backslashes),
        cmocka_unit_test(test_progress_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
