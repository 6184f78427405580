/* test_engine_llm.c - the chat engine on a real model (stories260K), driven through a real
 * worker thread as the TUI drives it: incremental multi-turn (the second turn prefills only the
 * new tokens, and its answer equals a fresh engine fed the whole conversation: cached ==
 * recomputed), cancel mid-answer, context overflow (oldest exchanges dropped, never the system
 * prompt), stop strings held back, and KV snapshots (resume == uninterrupted, bit for bit; a
 * damaged or foreign snapshot is refused and the conversation re-prefilled).
 *
 * `test_engine_llm --bench16k` (tests/engine_resume16k.sh, not in TESTS) times resuming a
 * 16K-token history from a snapshot against re-prefilling it, on tiny-mixtral-64k-f32.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/base/err.h"
#include "core/base/util.h"
#include "mx_test.h"
#include "app/engine_llm.h"
#include "app/worker.h"
#include "kernels/devices.h"

static const char *g_shared;
static char g_model[1024];
static char g_tmpdir[256];

/* What one reply produced, collected from the worker's events. */
struct result {
    char text[8192];
    size_t len;
    int code;
    char msg[256];
    int n_notices;
    char notice[256];
    double notice_a; /* the last notice's a: 1 = the answer was cut by a full context */
    int n_progress;
    double prog_done, prog_total; /* the last progress event */
    double tps, ctx_used;
};

struct job_args {
    struct mx_engine *e;
    const struct mx_turn *turns;
    int n;
    const struct mx_gen_settings *s;
};

static void job_fn(struct mx_job *job, void *ud) {
    struct job_args *a = ud;
    a->e->reply(a->e, job, a->turns, a->n, a->s);
}

/* Runs one reply on a worker and collects its events until MX_EV_DONE (poll on the wake fd, no
 * sleeps; 60 s is a hang). */
static void run_reply(struct mx_worker *w, struct mx_engine *e, const struct mx_turn *turns,
                      int n, const struct mx_gen_settings *s, struct result *r) {
    memset(r, 0, sizeof *r);
    struct job_args a = {e, turns, n, s};
    assert_int_equal(mx_worker_start(w, job_fn, &a), 0);
    for (;;) {
        struct pollfd p = {.fd = mx_worker_wake_fd(w), .events = POLLIN};
        assert_true(poll(&p, 1, 60000) > 0);
        struct mx_event ev;
        bool done = false;
        while (mx_worker_poll(w, &ev)) {
            switch (ev.kind) {
            case MX_EV_TEXT: {
                size_t k = strlen(ev.text);
                assert_true(r->len + k < sizeof r->text);
                memcpy(r->text + r->len, ev.text, k + 1);
                r->len += k;
                break;
            }
            case MX_EV_NOTICE:
                r->n_notices++;
                snprintf(r->notice, sizeof r->notice, "%s", ev.text ? ev.text : "");
                r->notice_a = ev.a;
                break;
            case MX_EV_PROGRESS:
                r->n_progress++;
                r->prog_done = ev.a;
                r->prog_total = ev.b;
                assert_string_equal(ev.text, "prompt");
                break;
            case MX_EV_STATS: r->tps = ev.a; r->ctx_used = ev.b; break;
            case MX_EV_REASONING: /* the tests' models write no analysis channel */
                fail_msg("unexpected reasoning text: %s", ev.text ? ev.text : "");
                break;
            case MX_EV_DONE:
                r->code = ev.code;
                snprintf(r->msg, sizeof r->msg, "%s", ev.text ? ev.text : "");
                done = true;
                break;
            }
            free(ev.text);
        }
        if (done)
            break;
    }
    /* the job thread ends right after DONE; wait for it so the next start is not MX_EBUSY */
    while (mx_worker_busy(w))
        sched_yield();
}

static struct mx_engine *load(const char *path, int n_ctx) {
    struct mx_err err = {0};
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.n_ctx = n_ctx;
    struct mx_engine *e = mx_engine_llm_new(path, &s, NULL, &err);
    if (!e)
        fail_msg("load %s: %s", path, err.msg);
    return e;
}

static struct mx_gen_settings greedy(int n_predict) {
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.sampling.temp = 0;
    s.sampling.top_p = 1;
    s.sampling.min_p = 0;
    s.sampling.top_k = 0;
    s.sampling.seed = 42;
    s.n_predict = n_predict;
    return s;
}

/* Loads the model, names it, the template warning says it fell back to the default. */
static void test_load_fills_engine(void **state) {
    (void)state;
    struct mx_engine *e = load(g_model, 256);
    assert_string_equal(e->device, "CPU");
    assert_int_equal(e->n_ctx, 256);
    assert_true(e->name[0] != '\0');
    const char *w = mx_engine_llm_warning(e);
    assert_non_null(w);
    assert_true(w[0] != '\0'); /* stories260K has no chat template: default, with a warning */
    assert_string_equal(mx_engine_llm_template(e), "mistral-v1");
    assert_null(mx_engine_llm_warning(NULL));
    e->free(e);
    struct mx_err err = {0};
    assert_null(mx_engine_llm_new("/nonexistent/m.gguf", NULL, NULL, &err));
    assert_true(err.code < 0 && err.msg[0]);
}

/* Turn 2 prefills only what turn 1 did not leave in the cache, and answers exactly as a fresh
 * engine given the whole conversation at once. */
static void test_two_turns_cached_equals_recomputed(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(24);
    struct mx_engine *e = load(g_model, 512);
    struct result r1, r2, rf;
    struct mx_engine_llm_stats st1, st2, stf;

    struct mx_turn turns[3] = {{.role = MX_ROLE_USER, .text = "Once upon a time there was a cat."}};
    run_reply(w, e, turns, 1, &s, &r1);
    assert_int_equal(r1.code, 0);
    assert_true(r1.len > 0);
    assert_int_equal(mx_engine_llm_stats(e, &st1), 0);
    assert_int_equal(st1.n_reused, 0);
    assert_int_equal(st1.n_prefilled, st1.n_prompt);
    assert_true(st1.n_generated > 0);
    assert_int_equal(st1.n_cached, st1.n_prompt + st1.n_generated);
    assert_true(r1.ctx_used == (double)st1.n_cached);

    turns[1] = (struct mx_turn){.role = MX_ROLE_ASSISTANT, .text = r1.text};
    turns[2] = (struct mx_turn){.role = MX_ROLE_USER, .text = "What did the cat do?"};
    run_reply(w, e, turns, 3, &s, &r2);
    assert_int_equal(r2.code, 0);
    assert_int_equal(mx_engine_llm_stats(e, &st2), 0);
    /* the whole first prompt is reused, and nothing but the rest is evaluated */
    assert_true(st2.n_reused >= st1.n_prompt);
    assert_int_equal(st2.n_prefilled, st2.n_prompt - st2.n_reused);
    assert_true(st2.n_prefilled < st2.n_prompt / 2);
    printf("turn 2: prompt %zu tokens, reused %zu, prefilled %zu\n", st2.n_prompt, st2.n_reused,
           st2.n_prefilled);

    struct mx_engine *f = load(g_model, 512);
    run_reply(w, f, turns, 3, &s, &rf);
    assert_int_equal(rf.code, 0);
    assert_int_equal(mx_engine_llm_stats(f, &stf), 0);
    assert_int_equal(stf.n_reused, 0);
    assert_int_equal(stf.n_prefilled, stf.n_prompt);
    assert_int_equal(stf.n_prompt, st2.n_prompt);
    assert_string_equal(rf.text, r2.text);
    f->free(f);
    e->free(e);
    mx_worker_free(w);
}

struct cancel_at {
    struct mx_worker *w;
    size_t at;
};

static void cancel_hook(void *ud, int32_t id, size_t n) {
    (void)id;
    struct cancel_at *c = ud;
    if (n == c->at)
        mx_worker_cancel(c->w);
}

/* Cancel mid-answer: MX_ECANCELED, the partial answer's tokens stay cached, the next turn
 * works and reuses them. */
static void test_cancel_then_next_turn(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(64);
    struct mx_engine *e = load(g_model, 512);
    struct cancel_at c = {w, 5};
    mx_engine_llm_on_token(e, cancel_hook, &c);
    struct result r1, r2;
    struct mx_engine_llm_stats st;
    struct mx_turn turns[3] = {{.role = MX_ROLE_USER, .text = "Tell me a story about a dog."}};
    run_reply(w, e, turns, 1, &s, &r1);
    assert_int_equal(r1.code, MX_ECANCELED);
    assert_int_equal(mx_engine_llm_stats(e, &st), 0);
    assert_int_equal(st.n_generated, 5);
    assert_int_equal(st.n_cached, st.n_prompt + 5);
    assert_true(r1.len > 0);
    size_t n_before = st.n_prompt;

    mx_engine_llm_on_token(e, NULL, NULL);
    turns[1] = (struct mx_turn){.role = MX_ROLE_ASSISTANT, .text = r1.text};
    turns[2] = (struct mx_turn){.role = MX_ROLE_USER, .text = "Go on."};
    run_reply(w, e, turns, 3, &s, &r2);
    assert_int_equal(r2.code, 0);
    assert_true(r2.len > 0);
    assert_int_equal(mx_engine_llm_stats(e, &st), 0);
    assert_true(st.n_reused >= n_before);
    e->free(e);
    mx_worker_free(w);
}

/* A long prompt is prefilled in chunks with progress events that end at the total. */
static void test_long_prompt_progress(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(4);
    struct mx_engine *e = load(g_model, 2048);
    char text[2400];
    size_t k = 0;
    while (k + 30 < sizeof text)
        k += (size_t)snprintf(text + k, sizeof text - k, "The cat sat on the mat. ");
    struct mx_turn turns[1] = {{.role = MX_ROLE_USER, .text = text}};
    struct result r;
    struct mx_engine_llm_stats st;
    run_reply(w, e, turns, 1, &s, &r);
    assert_int_equal(r.code, 0);
    assert_int_equal(mx_engine_llm_stats(e, &st), 0);
    assert_true(st.n_prompt > 512);
    assert_int_equal(r.n_progress, (int)((st.n_prompt + 255) / 256));
    assert_true(r.prog_done == r.prog_total && r.prog_total == (double)st.n_prompt);
    e->free(e);
    mx_worker_free(w);
}

/* Detokenizes the cache's ids (for checking what the prompt held). */
static void cached_text(struct mx_engine *e, char *out, size_t cap);

/* A tiny context: the oldest exchanges are dropped with a notice, never the system prompt,
 * never the current turn. */
static void test_overflow_drops_oldest(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(8);
    struct mx_engine *e = load(g_model, 128);
    struct mx_turn turns[9] = {
        {.role = MX_ROLE_SYSTEM, .text = "Be kind."},
        {.role = MX_ROLE_USER, .text = "Zebra one."},
        {.role = MX_ROLE_ASSISTANT, .text = "Yes one."},
        {.role = MX_ROLE_USER, .text = "Lion two."},
        {.role = MX_ROLE_ASSISTANT, .text = "Yes two."},
        {.role = MX_ROLE_USER, .text = "Frog three."},
        {.role = MX_ROLE_ASSISTANT, .text = "Yes three."},
        {.role = MX_ROLE_USER, .text = "Bird four."},
    };
    struct result r;
    struct mx_engine_llm_stats st;
    /* grow the conversation until something must go */
    int n = 2;
    bool dropped = false;
    for (; n <= 8; n += 2) {
        run_reply(w, e, turns, n, &s, &r);
        assert_int_equal(r.code, 0);
        assert_int_equal(mx_engine_llm_stats(e, &st), 0);
        assert_true(st.n_cached <= 128);
        if (st.n_dropped > 0) {
            dropped = true;
            break;
        }
    }
    assert_true(dropped);
    assert_int_equal(r.n_notices, 1);
    printf("notice: %s\n", r.notice);
    assert_non_null(strstr(r.notice, "left out the 2 oldest messages"));
    char text[4096];
    cached_text(e, text, sizeof text);
    printf("after overflow (%zu messages dropped): %s\n", st.n_dropped, text);
    assert_non_null(strstr(text, "Be kind."));       /* the system prompt stays */
    assert_null(strstr(text, "Zebra"));              /* the oldest exchange went */
    assert_non_null(strstr(text, turns[n - 1].text)); /* the current turn is there */
    e->free(e);
    mx_worker_free(w);
}

/* A stop string (5 bytes of the answer from its 9th on: several characters, so it spans
 * tokens), given through the engine's stop list (the template's place) or through the settings
 * (--stop of run --session): the answer ends right before it and no byte of it is ever posted.
 * Both go through the one hold-back of app/llm.c. */
static void check_stop_cuts(bool via_settings) {
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(40);
    struct mx_engine *e = load(g_model, 256);
    struct mx_turn turns[1] = {{.role = MX_ROLE_USER, .text = "Once upon a time"}};
    struct result full, cut;
    run_reply(w, e, turns, 1, &s, &full);
    assert_int_equal(full.code, 0);
    assert_true(full.len > 12);
    char stop[16];
    snprintf(stop, sizeof stop, "%.5s", full.text + 8);
    const char *stops[] = {stop, "never-seen-stop", NULL};
    if (via_settings) {
        s.stop[0] = stop;
        s.stop[1] = NULL;
    } else {
        mx_engine_llm_set_stops(e, stops);
    }
    mx_engine_llm_clear(e);
    run_reply(w, e, turns, 1, &s, &cut);
    assert_int_equal(cut.code, 0);
    size_t first = (size_t)(strstr(full.text, stop) - full.text);
    assert_int_equal(cut.len, first);
    assert_memory_equal(cut.text, full.text, first);
    e->free(e);
    mx_worker_free(w);
}

static void test_stop_string_held_back(void **state) {
    (void)state;
    check_stop_cuts(false);
}

static void test_settings_stop_joins_template_stops(void **state) {
    (void)state;
    check_stop_cuts(true);
}

/* An assistant turn of tool calls and the tool's answer reach the chat template (mx_turn
 * carries what mx_chat_msg carries): the prompt in the cache holds the call and the result. */
static void test_tool_calls_reach_the_template(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(2);
    struct mx_err err = {0};
    struct mx_gen_settings ls;
    mx_gen_settings_default(&ls);
    ls.n_ctx = 512;
    struct mx_engine *e = mx_engine_llm_new(g_model, &ls, "mistral-v3", &err);
    if (!e)
        fail_msg("load: %s", err.msg);
    struct mx_tool_call call = {"abcdefghi", "get_weather", "{\"city\": \"Paris\"}"};
    /* the answer to the tool's result is the next assistant turn */
    struct mx_turn turns[3] = {
        {.role = MX_ROLE_USER, .text = "What is the weather?"},
        {.role = MX_ROLE_ASSISTANT, .text = NULL, .tool_calls = &call, .n_tool_calls = 1},
        {.role = MX_ROLE_TOOL, .text = "sunny and warm", .tool_call_id = "abcdefghi"},
    };
    struct result r;
    run_reply(w, e, turns, 3, &s, &r);
    if (r.code != 0)
        fail_msg("reply: %s", r.msg);
    char text[4096];
    cached_text(e, text, sizeof text);
    printf("tool prompt: %s\n", text);
    assert_non_null(strstr(text, "get_weather"));
    assert_non_null(strstr(text, "Paris"));
    assert_non_null(strstr(text, "sunny and warm"));
    e->free(e);
    mx_worker_free(w);
}

/* --device reaches the one open path: "cpu" gives the CPU backend, a name not in the registry is
 * an error naming the choices, "auto" picks what mx_device_best says. */
static void test_device_choice(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.n_ctx = 64;
    s.device = "cpu";
    struct mx_engine *e = mx_engine_llm_new(g_model, &s, NULL, &err);
    assert_non_null(e);
    assert_string_equal(e->device, "CPU");
    e->free(e);
    s.device = "tpu";
    assert_null(mx_engine_llm_new(g_model, &s, NULL, &err));
    assert_int_equal(err.code, MX_EINVAL);
    assert_non_null(strstr(err.msg, "cpu"));
    mx_err_clear(&err);
    s.device = "auto";
    e = mx_engine_llm_new(g_model, &s, NULL, &err);
    assert_non_null(e);
    assert_true(strcasecmp(e->device, mx_device_best()) == 0);
    e->free(e);
}

/* A full context ends the answer after one last token that is shown but not cached, with a
 * notice; `mixel run --no-context-shift` stops at the same token (tests/llm_run.sh). */
static void test_full_context_cuts(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(-1);
    s.ignore_eos = true;
    struct mx_engine *e = load(g_model, 64);
    struct mx_turn turns[1] = {{.role = MX_ROLE_USER, .text = "Once"}};
    struct result r;
    run_reply(w, e, turns, 1, &s, &r);
    assert_int_equal(r.code, 0);
    struct mx_engine_llm_stats st;
    assert_int_equal(mx_engine_llm_stats(e, &st), 0);
    assert_non_null(strstr(r.notice, "the context is full"));
    assert_true(r.notice_a == 1); /* marks the answer as cut (worker.h) */
    assert_int_equal(st.n_cached, 64);
    assert_int_equal(st.n_generated, 64 - st.n_prompt + 1);
    e->free(e);
    mx_worker_free(w);
}

static void cached_text(struct mx_engine *e, char *out, size_t cap) {
    size_t n;
    const int32_t *ids = mx_engine_llm_tokens(e, &n);
    assert_non_null(ids);
    struct mx_err err = {0};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(mx_engine_llm_detokenize(e, ids, n, &text, &len, &err), 0);
    snprintf(out, cap, "%s", text);
    free(text);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void snap_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_tmpdir, name);
}

/* save -> new engine -> load gives bit-identical logits to the uninterrupted context, and the
 * next turn reuses the loaded cache and answers as the uninterrupted engine does. */
static void test_snapshot_resume_equals_uninterrupted(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(16);
    struct mx_engine *a = load(g_model, 512);
    struct result r1, ra, rb;
    struct mx_turn turns[3] = {
        {.role = MX_ROLE_USER, .text = "Once upon a time there was a bird."}};
    run_reply(w, a, turns, 1, &s, &r1);
    assert_int_equal(r1.code, 0);
    char path[512];
    snap_path(path, sizeof path, "a.kv");
    struct mx_err err = {0};
    int rc = mx_engine_llm_save(a, path, &err);
    if (rc == MX_EUNSUP) {
        a->free(a);
        mx_worker_free(w);
        mx_test_skip("core/llama cannot serialise its cache (save returned MX_EUNSUP)");
    }
    assert_int_equal(rc, 0);

    struct mx_engine *b = load(g_model, 512);
    assert_int_equal(mx_engine_llm_load(b, path, &err), 0);
    size_t na, nb;
    const int32_t *ta = mx_engine_llm_tokens(a, &na), *tb = mx_engine_llm_tokens(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ta, tb, na * sizeof *ta);

    /* the next turn on the uninterrupted engine and on the resumed one */
    turns[1] = (struct mx_turn){.role = MX_ROLE_ASSISTANT, .text = r1.text};
    turns[2] = (struct mx_turn){.role = MX_ROLE_USER, .text = "Where did it fly?"};
    run_reply(w, a, turns, 3, &s, &ra);
    run_reply(w, b, turns, 3, &s, &rb);
    assert_int_equal(ra.code, 0);
    assert_int_equal(rb.code, 0);
    struct mx_engine_llm_stats sa, sb;
    assert_int_equal(mx_engine_llm_stats(a, &sa), 0);
    assert_int_equal(mx_engine_llm_stats(b, &sb), 0);
    assert_true(sb.n_reused > 0);
    assert_int_equal(sb.n_reused, sa.n_reused);
    assert_int_equal(sb.n_prefilled, sa.n_prefilled);
    assert_string_equal(ra.text, rb.text);

    /* the same next tokens on both: logits bit for bit */
    ta = mx_engine_llm_tokens(a, &na);
    tb = mx_engine_llm_tokens(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ta, tb, na * sizeof *ta);
    int32_t next[3] = {100, 200, 300};
    int32_t n_vocab = 0;
    float *la = malloc(1 << 20), *lb = malloc(1 << 20);
    assert_int_equal(mx_engine_llm_eval(a, next, 3, la, &n_vocab, &err), 0);
    assert_int_equal(mx_engine_llm_eval(b, next, 3, lb, NULL, &err), 0);
    assert_true(n_vocab > 0 && (size_t)n_vocab * 4 <= (1 << 20));
    assert_memory_equal(la, lb, (size_t)n_vocab * sizeof *la);
    free(la);
    free(lb);
    a->free(a);
    b->free(b);
    mx_worker_free(w);
}

static void flip_byte(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    if (off < 0) {
        fseek(f, 0, SEEK_END);
        off += ftell(f);
    }
    fseek(f, off, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

/* A damaged or foreign snapshot is refused with a message, the cache is empty, and the next
 * reply re-prefills the whole conversation (with progress when it is long). */
static void test_snapshot_bad_is_rejected(void **state) {
    (void)state;
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s = greedy(8);
    struct mx_engine *e = load(g_model, 512);
    struct result r;
    struct mx_turn turns[1] = {{.role = MX_ROLE_USER, .text = "A small red fox."}};
    run_reply(w, e, turns, 1, &s, &r);
    char good[512], bad[512], foreign[512], cmd[2200];
    snap_path(good, sizeof good, "good.kv");
    snap_path(bad, sizeof bad, "bad.kv");
    snap_path(foreign, sizeof foreign, "foreign.kv");
    struct mx_err err = {0};
    int rc = mx_engine_llm_save(e, good, &err);
    if (rc == MX_EUNSUP) {
        e->free(e);
        mx_worker_free(w);
        mx_test_skip("core/llama cannot serialise its cache (save returned MX_EUNSUP)");
    }
    assert_int_equal(rc, 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s' '%s'", good, bad, good, foreign);
    assert_int_equal(system(cmd), 0);
    flip_byte(bad, -10);     /* payload damage: caught by the checksum */
    flip_byte(foreign, 16);  /* another model's hash */

    struct mx_engine_llm_stats st;
    const char *cases[] = {bad, foreign};
    const int codes[] = {MX_EFORMAT, MX_EINVAL};
    for (int i = 0; i < 2; i++) {
        mx_err_clear(&err);
        assert_int_equal(mx_engine_llm_load(e, cases[i], &err), codes[i]);
        assert_true(err.msg[0] != '\0');
        printf("rejected: %s\n", err.msg);
        size_t n;
        assert_null(mx_engine_llm_tokens(e, &n));
        run_reply(w, e, turns, 1, &s, &r);
        assert_int_equal(r.code, 0);
        assert_int_equal(mx_engine_llm_stats(e, &st), 0);
        assert_int_equal(st.n_reused, 0);
        assert_int_equal(st.n_prefilled, st.n_prompt);
    }
    mx_err_clear(&err);
    snap_path(bad, sizeof bad, "missing.kv");
    assert_int_equal(mx_engine_llm_load(e, bad, &err), MX_ENOENT);
    e->free(e);
    mx_worker_free(w);
}

/* ---- 16K resume benchmark (optional) ------------------------------------------------------ */

static int bench16k(void) {
    char model[1024], path[512];
    snprintf(model, sizeof model, "%s/models/tiny-mixtral-64k-f32.gguf", g_shared);
    snap_path(path, sizeof path, "bench16k.kv");
    struct mx_err err = {0};
    struct mx_gen_settings gs;
    mx_gen_settings_default(&gs);
    gs.n_ctx = 16384 + 512;
    struct mx_engine *a = mx_engine_llm_new(model, &gs, NULL, &err);
    if (!a) {
        printf("bench16k: %s\n", err.msg);
        return 1;
    }
    int32_t n_vocab = 0;
    const size_t N = 16384;
    int32_t *ids = malloc(N * sizeof *ids);
    float *la = malloc(1 << 22), *lb = malloc(1 << 22);
    uint64_t seed = 7;
    /* a history of N pseudo-random ids (the vocabulary size comes from a first eval) */
    ids[0] = 1;
    if (mx_engine_llm_eval(a, ids, 1, NULL, &n_vocab, &err) < 0)
        goto fail;
    mx_engine_llm_clear(a);
    for (size_t i = 1; i < N; i++)
        ids[i] = (int32_t)(2 + mx_test_rand(&seed) % (uint64_t)(n_vocab - 2));
    double t0 = mx_time_s();
    if (mx_engine_llm_eval(a, ids, N - 1, NULL, NULL, &err) < 0)
        goto fail;
    double t_prefill = mx_time_s() - t0;
    t0 = mx_time_s();
    if (mx_engine_llm_save(a, path, &err) < 0)
        goto fail;
    double t_save = mx_time_s() - t0;
    struct mx_engine *b = mx_engine_llm_new(model, &gs, NULL, &err);
    if (!b)
        goto fail;
    t0 = mx_time_s();
    if (mx_engine_llm_load(b, path, &err) < 0)
        goto fail;
    double t_load = mx_time_s() - t0;
    if (mx_engine_llm_eval(a, ids + N - 1, 1, la, NULL, &err) < 0 ||
        mx_engine_llm_eval(b, ids + N - 1, 1, lb, NULL, &err) < 0)
        goto fail;
    int same = !memcmp(la, lb, (size_t)n_vocab * sizeof *la);
    FILE *f = fopen(path, "rb");
    long size = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
    }
    printf("bench16k: tiny-mixtral-64k-f32, %zu-token history: re-prefill %.2f s, snapshot "
           "save %.3f s, load %.3f s (%.1f MiB), speedup x%.0f, logits %s\n",
           N - 1, t_prefill, t_save, t_load, (double)size / 1048576.0,
           t_load > 0 ? t_prefill / t_load : 0.0, same ? "identical" : "DIFFERENT");
    b->free(b);
    a->free(a);
    free(ids);
    free(la);
    free(lb);
    unlink(path);
    return same ? 0 : 1;
fail:
    printf("bench16k: %s\n", err.msg);
    return 1;
}

/* Eight turns of sampled answers from the random tiny Mixtral (byte tokens the history stores
 * as U+FFFD, words the tokenizer would merge otherwise, answers starting without a space): from
 * turn 2 on, every id the cache held (the previous prompt and the answer as the model wrote it)
 * is reused and only the new user turn is evaluated; and the cache then gives the same logits
 * as a fresh engine evaluating the same ids from scratch. */
static void test_turns_prefill_only_new(void **state) {
    (void)state;
    char model[1100];
    snprintf(model, sizeof model, "%s/models/tiny-mixtral-f32.gguf", g_shared);
    struct mx_worker *w;
    assert_int_equal(mx_worker_new(&w), 0);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.sampling.temp = 1.0f;
    s.n_predict = 20;
    struct mx_engine *e = load(model, 2048);
    static struct result r[8];
    struct mx_turn turns[16];
    static char qs[8][64];
    size_t n_cached = 0, typed = 0, prefilled = 0;
    for (int t = 0; t < 8; t++) {
        snprintf(qs[t], sizeof qs[t], "Question %d: what happened next, and why?", t + 1);
        turns[2 * t] = (struct mx_turn){.role = MX_ROLE_USER, .text = qs[t]};
        s.sampling.seed = 100 + (uint64_t)t;
        run_reply(w, e, turns, 2 * t + 1, &s, &r[t]);
        assert_int_equal(r[t].code, 0);
        struct mx_engine_llm_stats st;
        assert_int_equal(mx_engine_llm_stats(e, &st), 0);
        printf("turn %d: prompt %zu, reused %zu (cache held %zu), prefilled %zu\n", t + 1,
               st.n_prompt, st.n_reused, n_cached, st.n_prefilled);
        assert_int_equal(st.n_reused, n_cached);
        assert_int_equal(st.n_prefilled, st.n_prompt - st.n_reused);
        n_cached = st.n_cached;
        prefilled += st.n_prefilled;
        typed += strlen(qs[t]); /* bytes: one id each with this vocabulary at most */
        turns[2 * t + 1] = (struct mx_turn){.role = MX_ROLE_ASSISTANT, .text = r[t].text};
    }
    /* the evaluated total is what the user typed plus the template's markers (one BOS and
     * "[INST]"/"[/INST]" spelled in bytes by this small vocabulary: under 40 ids a turn) */
    printf("8 turns: %zu ids prefilled for %zu typed bytes\n", prefilled, typed);
    assert_true(prefilled <= typed + 8 * 40);

    size_t n;
    const int32_t *ids = mx_engine_llm_tokens(e, &n);
    assert_true(n == n_cached && n > 100);
    int32_t *copy = malloc(n * sizeof *copy);
    memcpy(copy, ids, n * sizeof *copy);
    struct mx_engine *f = load(model, 2048);
    struct mx_err err = {0};
    int32_t probe = 300, n_vocab = 0;
    float *la = malloc(1 << 20), *lb = malloc(1 << 20);
    assert_int_equal(mx_engine_llm_eval(f, copy, n, NULL, &n_vocab, &err), 0);
    assert_int_equal(mx_engine_llm_eval(f, &probe, 1, lb, NULL, &err), 0);
    assert_int_equal(mx_engine_llm_eval(e, &probe, 1, la, NULL, &err), 0);
    /* the cached K/V came from one-token decode steps, the fresh ones from one batched
     * prefill: the same sums in another order, so equal to float rounding */
    double max = 0, ref = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        max = fmax(max, fabs((double)la[i] - lb[i]));
        ref = fmax(ref, fabs((double)lb[i]));
    }
    printf("logits after %zu cached ids vs from scratch: max |diff| %.3g (max |logit| %.3g)\n",
           n, max, ref);
    assert_true(max <= 1e-4 * ref + 1e-5);
    free(la);
    free(lb);
    free(copy);
    f->free(f);
    e->free(e);
    mx_worker_free(w);
}

/* The load reports its bytes: increasing, ending at the total, which is the weights the backend
 * prepared (all the matrices of the model: most of the file's data). */
struct load_seen {
    int calls;
    uint64_t last, total;
    bool monotonic;
};

static void on_load_seen(void *ud, uint64_t done, uint64_t total) {
    struct load_seen *ls = ud;
    ls->monotonic &= done >= ls->last && (ls->total == 0 || total == ls->total) && done <= total;
    ls->calls++;
    ls->last = done;
    ls->total = total;
}

static void test_load_progress_bytes(void **state) {
    (void)state;
    char model[1100];
    snprintf(model, sizeof model, "%s/models/tiny-mixtral-f32.gguf", g_shared);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.n_ctx = 256;
    struct load_seen ls = {.monotonic = true};
    s.on_load = on_load_seen;
    s.on_load_ud = &ls;
    struct mx_err err = {0};
    struct mx_engine *e = mx_engine_llm_new(model, &s, NULL, &err);
    assert_non_null(e);
    printf("load progress: %d calls, %llu of %llu bytes\n", ls.calls,
           (unsigned long long)ls.last, (unsigned long long)ls.total);
    assert_true(ls.calls >= 4 * 3); /* at least the attention matrices of each layer */
    assert_true(ls.monotonic);
    assert_true(ls.last == ls.total);
    /* 3.4 M f32 parameters, 13.8 MB file: the matrices are all but the embeddings and norms */
    assert_true(ls.total > 10000000 && ls.total < 13797856);
    e->free(e);
}

int main(int argc, char **argv) {
    g_shared = mx_test_require_shared("test_engine_llm");
    snprintf(g_model, sizeof g_model, "%s/models/stories260K.gguf", g_shared);
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/mx-engine-llm-XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc;
    if (argc > 1 && !strcmp(argv[1], "--bench16k")) {
        rc = bench16k();
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_load_fills_engine),
            cmocka_unit_test(test_two_turns_cached_equals_recomputed),
            cmocka_unit_test(test_cancel_then_next_turn),
            cmocka_unit_test(test_overflow_drops_oldest),
            cmocka_unit_test(test_long_prompt_progress),
            cmocka_unit_test(test_stop_string_held_back),
            cmocka_unit_test(test_settings_stop_joins_template_stops),
            cmocka_unit_test(test_tool_calls_reach_the_template),
            cmocka_unit_test(test_device_choice),
            cmocka_unit_test(test_full_context_cuts),
            cmocka_unit_test(test_snapshot_resume_equals_uninterrupted),
            cmocka_unit_test(test_snapshot_bad_is_rejected),
            cmocka_unit_test(test_turns_prefill_only_new),
            cmocka_unit_test(test_load_progress_bytes),
        };
        rc = mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
