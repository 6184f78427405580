/* tools.c - tool calls in the chat (tools.h).
 *
 * The turn, on the UI thread: an answer ends (gen.c) -> its calls are taken out of its text and
 * stored with it -> for each call, in order: the call is shown on its folded line and waits for
 * y / n / a (the confirmation view has the keys; --yes or an earlier "a" for that tool skip the
 * question) -> approved: generate_image starts the /image job (imagegen.c: the same checkpoint
 * choice, progress, cancel and image panel), the others run on the worker (app/tools.h:
 * mx_tool_run, cancelled by Esc like an answer); declined: the result is "the user declined" ->
 * the result is stored as a tool message (hidden: folded into the call's line) -> when every
 * call has its result, the answer goes on (a->tools.go_on: gen.c starts a new generation with
 * the tool messages in the conversation), at most MX_APP_TOOL_ROUNDS times per user message.
 *
 * The worker never waits for the user: the question is asked between jobs, so Esc, /quit and a
 * message typed meanwhile behave as they do between answers, and the image tool is the same job
 * /image runs.
 */
#include "tui/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/engine_llm.h"
#include "app/tools.h"
#include "core/base/err.h"
#include "history/db.h"
#include "tui/conv.h"
#include "tui/imagegen.h"
#include "tui/status.h"
#include "tui/store.h"

static const char DECLINED[] = MX_APP_TOOL_DECLINED;
static const char ERROR_PREFIX[] = MX_APP_TOOL_ERROR;

/* The tool job on the worker (one job at a time: the worker enforces it). */
static struct {
    const struct mx_tools *reg;  /* borrowed from the app */
    const struct mx_tool *tool;  /* borrowed */
    char *arguments;             /* owned */
    char *result;                /* owned: what the job produced */
} g_run;

void mx_app_tools_init(struct app *a, struct mx_tools *reg, bool yes) {
    a->tools.reg = reg;
    a->tools.yes = yes;
    a->tools.msg = -1;
    a->tools.grammar_kind = -1;
    if (reg && reg->n)
        a->tools.always = calloc(reg->n, sizeof *a->tools.always);
}

void mx_app_tools_deinit(struct app *a) {
    free(g_run.arguments);
    free(g_run.result);
    memset(&g_run, 0, sizeof g_run);
    mx_tools_free(a->tools.reg);
    free(a->tools.always);
    free(a->tools.calls);
    free(a->tools.grammar);
    memset(&a->tools, 0, sizeof a->tools);
}

void mx_app_tools_new_turn(struct app *a) {
    a->tools.rounds = 0;
}

/* The template family whose call syntax the engine's answers use (the scripted engine speaks
 * Mistral's). */
static enum mx_tmpl_kind engine_family(const struct app *a) {
    enum mx_tmpl_kind k = MX_TMPL_MISTRAL_V3;
    const char *name = mx_engine_llm_template(a->o.engine);
    if (name)
        mx_tmpl_from_name(name, &k, NULL);
    return k;
}

char *mx_app_tools_result(struct app *a, const char *text) {
    return mx_tool_result_text(engine_family(a), text);
}

void mx_app_tools_streaming(struct app *a, struct msg *m) {
    if (!a->tools.reg || !a->tools.reg->n || !m->text)
        return;
    size_t n = mx_tool_calls_text_len(engine_family(a), m->text, m->len);
    if (n >= m->len) {
        if (m->shown) {
            free(m->shown);
            m->shown = NULL;
            m->r_valid = false;
        }
        return;
    }
    /* what may still be a call is held back: the surely-text part, and a mark for the rest */
    char *s = malloc(n + 8);
    if (!s)
        return;
    memcpy(s, m->text, n);
    memcpy(s + n, n ? "\n\n\xe2\x9a\x99" : "\xe2\x9a\x99", n ? 6 : 4); /* ⚙ */
    s[n + (n ? 5 : 3)] = '\0';
    if (!m->shown || strcmp(m->shown, s)) {
        free(m->shown);
        m->shown = s;
        m->r_valid = false;
    } else {
        free(s);
    }
}

void mx_app_tools_settings(struct app *a, struct mx_gen_settings *s) {
    const struct mx_tools *r = a->tools.reg;
    if (!r || r->n == 0)
        return;
    s->tools = r->defs; /* the registry lives as long as the app */
    s->n_tools = r->n;
    if (s->grammar || s->grammar_text)
        return; /* the user's --grammar / --json-schema keeps the whole answer: no call grammar */
    enum mx_tmpl_kind kind = engine_family(a);
    if (a->tools.grammar_kind != (int)kind) {
        free(a->tools.grammar);
        a->tools.grammar = NULL;
        a->tools.grammar_kind = (int)kind;
        struct mx_err err = {0};
        int rc = mx_tool_grammar(kind, r->defs, r->n, &a->tools.grammar, &a->tools.trigger,
                                 &err);
        if (rc != 0)
            mx_app_notice_detail(a, true, err.msg, "tools: the calls' arguments cannot be "
                                 "constrained (%s); they are checked when a call comes",
                                 mx_strerror(rc));
    }
    s->grammar_trigger = a->tools.trigger;
    s->grammar_text = a->tools.grammar;
    s->grammar_name = "tool calls";
}

/* ---- the calls of an answer ----------------------------------------------------------------- */

bool mx_app_tools_take(struct app *a, struct msg *m) {
    if (!a->tools.reg || !m->text)
        return false;
    struct mx_tool_calls c;
    struct mx_err err = {0};
    int rc = mx_tool_calls_parse(engine_family(a), m->text, m->len, &c, &err);
    if (rc != 0 || c.n_calls == 0) {
        if (rc != 0)
            mx_app_notice_detail(a, true, err.msg, "the answer's tool call is malformed: kept "
                                 "as text, nothing runs");
        mx_tool_calls_free(&c);
        return false;
    }
    char *json = NULL;
    if (mx_tool_calls_to_json(c.calls, c.n_calls, &json) != 0) {
        mx_tool_calls_free(&c);
        return false;
    }
    free(m->text);
    m->text = c.content; /* the answer's words without the calls */
    c.content = NULL;
    m->len = strlen(m->text);
    m->cap = m->len + 1;
    free(m->tool_calls);
    m->tool_calls = json;
    mx_tool_calls_free(&c);
    return true;
}

/* Stores the result of the current call as a tool message and moves to the next call. */
static void next_call(struct app *a);

static void add_result(struct app *a, const char *id, const char *text) {
    int64_t db_id = 0;
    if (a->store.session && mx_app_store_writable(a)) {
        struct mx_err err = {0};
        int rc = mx_db_msg_append(a->store.db, a->store.session, MX_DB_PARENT_LEAF,
                                  MX_ROLE_TOOL, text, 0, NULL, &db_id, &err);
        if (rc == 0)
            rc = mx_db_msg_set_tool(a->store.db, db_id, NULL, id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    int at = a->tools.msg; /* mx_app_msg_add may move the array */
    struct msg *r = mx_app_msg_add(a, MX_ROLE_TOOL, MSG_DONE, text);
    if (r) {
        r->db_id = db_id;
        r->hidden = true;
        r->tool_call_id = strdup(id);
    }
    if (at >= 0 && at < a->conv.n_msgs)
        mx_app_conv_fold(a, at);
}

/* The current call (parsed from a->tools.calls) into *c; false when there is none. */
static bool current_calls(struct app *a, struct mx_tool_calls *c) {
    if (!a->tools.calls || mx_tool_calls_from_json(a->tools.calls, c, NULL) != 0)
        return false;
    if (a->tools.next >= c->n_calls) {
        mx_tool_calls_free(c);
        return false;
    }
    return true;
}

/* Every call has its result: the answer goes on (or stops at the round limit). */
static void calls_done(struct app *a) {
    int at = a->tools.msg;
    free(a->tools.calls);
    a->tools.calls = NULL;
    a->tools.asking = false;
    a->tools.msg = -1;
    if (at >= 0 && at < a->conv.n_msgs)
        mx_app_conv_fold(a, at);
    if (++a->tools.rounds >= MX_APP_TOOL_ROUNDS) {
        mx_app_notice(a, true, "tools: the model called tools %d times for one message; "
                      "stopped there (send a message to go on)", a->tools.rounds);
        return;
    }
    a->tools.go_on = true; /* gen.c starts the answer (mx_app_gen_go_on) */
}

/* Runs call k (approved). */
static void run_call(struct app *a, const struct mx_tool_call *call, const struct mx_tool *t);

/* The current call's result is text (a declined call, an error, a tool's answer). */
static void finish_call(struct app *a, const char *text) {
    struct mx_tool_calls c;
    if (!current_calls(a, &c))
        return;
    add_result(a, c.calls[a->tools.next].id, text);
    mx_tool_calls_free(&c);
    a->tools.next++;
    next_call(a);
}

/* An error as the model's result: "error: what" (what err says). */
static void finish_error(struct app *a, const char *msg) {
    char text[400];
    snprintf(text, sizeof text, "%s%s", ERROR_PREFIX, msg && msg[0] ? msg : "failed");
    finish_call(a, text);
}

static void next_call(struct app *a) {
    struct mx_tool_calls c;
    if (!current_calls(a, &c)) {
        calls_done(a);
        return;
    }
    const struct mx_tool_call *call = &c.calls[a->tools.next];
    const struct mx_tool *t = mx_tools_find(a->tools.reg, call->name);
    if (!t) { /* the model made a name up: it hears so, nothing runs */
        char why[200];
        snprintf(why, sizeof why, "there is no tool called '%.64s'", call->name);
        mx_tool_calls_free(&c);
        finish_error(a, why);
        return;
    }
    struct mx_err err = {0};
    if (mx_tool_check_args(t, call->arguments, NULL, &err) != 0) { /* refused before asking */
        mx_tool_calls_free(&c);
        finish_error(a, err.msg);
        return;
    }
    size_t ti = (size_t)(t - a->tools.reg->v);
    if (a->tools.yes || (a->tools.always && a->tools.always[ti])) {
        run_call(a, call, t);
    } else {
        a->tools.asking = true;
        char line[300];
        mx_tool_call_line(call->name, call->arguments, 60, line, sizeof line);
        mx_app_notice(a, false, "the model calls %s: run it? y yes, n no, a always for %s "
                      "(this session)", line, t->name);
    }
    if (a->tools.msg >= 0 && a->tools.msg < a->conv.n_msgs)
        mx_app_conv_fold(a, a->tools.msg);
    mx_tool_calls_free(&c);
}

void mx_app_tools_start(struct app *a) {
    int last = a->conv.n_msgs - 1;
    if (last < 0 || !a->conv.msgs[last].tool_calls)
        return;
    free(a->tools.calls);
    a->tools.calls = strdup(a->conv.msgs[last].tool_calls);
    a->tools.msg = last;
    a->tools.next = 0;
    a->tools.asking = false;
    if (!a->tools.calls)
        return;
    next_call(a);
}

/* ---- running -------------------------------------------------------------------------------- */

static bool job_canceled(void *ud) {
    return mx_job_canceled(ud);
}

static void tool_job_fn(struct mx_job *job, void *ud) {
    (void)ud;
    struct mx_err err = {0};
    int rc = mx_tool_run(g_run.reg, g_run.tool, g_run.arguments, job_canceled, job,
                         &g_run.result, &err);
    mx_job_done(job, rc, rc < 0 ? mx_err_msg(&err, rc) : NULL);
}

static void run_call(struct app *a, const struct mx_tool_call *call, const struct mx_tool *t) {
    a->tools.asking = false;
    struct mx_err err = {0};
    if (t->kind == MX_TOOL_GENERATE_IMAGE) {
        struct mx_image_req req;
        if (mx_tool_image_req(t, call->arguments, &req, &err) != 0) {
            finish_error(a, err.msg);
            return;
        }
        if (mx_app_image_request(a, "generate_image", &req, true) != 0)
            finish_error(a, "the image could not be started (see the notice)");
        return;
    }
    free(g_run.arguments);
    free(g_run.result);
    g_run.reg = a->tools.reg;
    g_run.tool = t;
    g_run.arguments = strdup(call->arguments ? call->arguments : "{}");
    g_run.result = NULL;
    if (!g_run.arguments || mx_worker_start(a->w, tool_job_fn, NULL) != 0) {
        finish_error(a, "could not start the tool");
        return;
    }
    a->gen.busy = true;
    a->gen.tool = true;
    snprintf(a->status.prog, sizeof a->status.prog, "tool %s running (Esc stops it)", t->name);
}

void mx_app_tools_job_done(struct app *a, int code, const char *msg) {
    a->gen.busy = false;
    a->gen.tool = false;
    a->status.prog[0] = '\0';
    if (code == MX_ECANCELED) {
        mx_app_notice(a, false, "tool stopped: the answer waits for your next message");
        /* the turn ends here: the model hears the call was stopped when the user goes on */
        struct mx_tool_calls c;
        while (current_calls(a, &c)) {
            add_result(a, c.calls[a->tools.next].id, "error: the user stopped this call");
            mx_tool_calls_free(&c);
            a->tools.next++;
        }
        free(a->tools.calls);
        a->tools.calls = NULL;
        return;
    }
    if (code != 0) {
        finish_error(a, msg);
        return;
    }
    char *r = g_run.result;
    g_run.result = NULL;
    finish_call(a, r ? r : "");
    free(r);
}

void mx_app_tools_image_done(struct app *a, int code, const char *result) {
    if (code == 0)
        finish_call(a, result);
    else
        finish_error(a, result);
}

/* ---- the question --------------------------------------------------------------------------- */

static bool ask_focused(const struct app *a) {
    return a->tools.asking;
}

static int ask_key(struct app *a, const unsigned char *b, size_t n, size_t *used) {
    *used = mx_key_len(b, n);
    struct mx_tool_calls c;
    if (!current_calls(a, &c)) {
        a->tools.asking = false;
        return MX_KEY_HANDLED | MX_KEY_REDRAW;
    }
    const struct mx_tool_call *call = &c.calls[a->tools.next];
    const struct mx_tool *t = mx_tools_find(a->tools.reg, call->name);
    int ch = *used == 1 ? b[0] : 0;
    if ((ch == 'y' || ch == 'Y' || ch == 'a' || ch == 'A') && t) {
        if ((ch == 'a' || ch == 'A') && a->tools.always)
            a->tools.always[t - a->tools.reg->v] = true;
        mx_app_notice_clear(a);
        run_call(a, call, t);
        if (a->tools.msg >= 0)
            mx_app_conv_fold(a, a->tools.msg);
    } else if (ch == 'n' || ch == 'N' || (b[0] == 0x1b && *used == 1) || ch == 0x03) {
        a->tools.asking = false;
        mx_app_notice(a, false, "declined: the model is told so");
        finish_call(a, DECLINED);
    } else {
        mx_app_notice(a, false, "the model waits for your answer: y runs the call, n declines "
                      "it, a runs %s without asking for the rest of this session",
                      t ? t->name : "it");
    }
    mx_tool_calls_free(&c);
    return MX_KEY_HANDLED | MX_KEY_REDRAW;
}

const struct mx_view_ops mx_view_toolask = {
    .name = "tool confirmation", .focused = ask_focused, .key = ask_key,
};

/* ---- /tools --------------------------------------------------------------------------------- */

void mx_app_cmd_tools(struct app *a, const char *arg) {
    (void)arg;
    const struct mx_tools *r = a->tools.reg;
    if (!r || r->n == 0) {
        mx_app_notice(a, false, "tools: none (%s)", r ? "add them under \"tools\" in "
                      "config.json, or allow a folder for read_file with --allow-dir"
                      : "--no-tools");
        return;
    }
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "Tools the model may call (%s):\n\n",
                                  a->tools.yes ? "--yes: they run without asking"
                                               : "each call asks first");
    for (size_t i = 0; i < r->n && len < sizeof text; i++) {
        const struct mx_tool *t = &r->v[i];
        char what[300];
        if (t->kind == MX_TOOL_READ_FILE) {
            size_t k = (size_t)snprintf(what, sizeof what, "reads text files in");
            for (size_t d = 0; d < r->n_allow && k < sizeof what; d++)
                k += (size_t)snprintf(what + k, sizeof what - k, "%s %s", d ? "," : "",
                                      r->allow_dirs[d]);
        } else if (t->kind == MX_TOOL_GENERATE_IMAGE) {
            snprintf(what, sizeof what, "draws with the session's image model");
        } else {
            snprintf(what, sizeof what, "runs %s (no shell, %g s, %zu bytes)", t->argv[0],
                     t->timeout_s, t->max_output);
        }
        len += (size_t)snprintf(text + len, sizeof text - len, "- **%s**: %s%s\n", t->name,
                                what, a->tools.always && a->tools.always[i]
                                          ? " (always allowed this session)" : "");
    }
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, text);
    a->conv.scroll = 0;
}
