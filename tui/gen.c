/* gen.c - generation: a message sent by the user (stored before it shows as sent), the answer
 * generated on the worker thread and streamed into the conversation from its events (text,
 * progress, stats, done), saved while it streams so a crash loses at most a second of it.
 *
 * The worker runs one job at a time (app/worker.h); this file owns the generation job, load.c the
 * load job; the end of a load arrives here with the other events and is handed over.
 */
#include "tui/gen.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/engine_llm.h"
#include "app/tools.h"
#include "core/base/err.h"
#include "core/base/util.h"
#include "history/db.h"
#include "tui/conv.h"
#include "tui/firstrun.h"
#include "tui/imagegen.h"
#include "tui/load.h"
#include "tui/status.h"
#include "tui/store.h"
#include "tui/tools.h"

struct gen_job {
    struct mx_engine *engine;
    struct mx_turn *turns;     /* n turns; their strings owned */
    struct mx_tool_calls *calls; /* n: an assistant turn's tool calls (owned; turns point in) */
    int n;
    struct mx_gen_settings settings;
};

static struct gen_job g_job; /* one job at a time: the worker enforces it */

/* Enter while an answer streams: the message waits, shown as queued under the answer, and is
 * sent when the answer ends (as Claude Code and Codex queue what is typed while they work):
 * nothing typed is lost, and reading the answer need not wait for it. A second one joins the
 * first. Stopping the answer (Esc, Ctrl-C, /stop) or its failure gives the text back to the
 * input line instead: the user stopped the turn, so nothing is sent behind their back. */
static void queue_add(struct app *a, const char *line) {
    struct msg *q = &a->gen.queued;
    if (q->text) {
        if (mx_app_msg_append(q, "\n") != 0 || mx_app_msg_append(q, line) != 0)
            mx_app_notice(a, true, "out of memory: the message was not queued");
    } else {
        memset(q, 0, sizeof *q);
        q->role = MX_ROLE_USER;
        q->state = MSG_QUEUED;
        q->len = strlen(line);
        q->cap = q->len + 1;
        if (!(q->text = strdup(line))) {
            mx_app_notice(a, true, "out of memory: the message was not queued");
            return;
        }
    }
    a->conv.scroll = 0;
    mx_app_notice(a, false, "queued: sent when the answer ends (Esc stops it and gives the "
                            "message back to edit)");
}

/* Takes the queued message's text (caller frees), NULL when none. */
static char *queue_take(struct app *a) {
    char *t = a->gen.queued.text;
    a->gen.queued.text = NULL;
    mx_app_msg_free(&a->gen.queued);
    memset(&a->gen.queued, 0, sizeof a->gen.queued);
    return t;
}

/* The answer ended with code (why: the engine's message, or NULL): the queued message is sent
 * (a complete answer) or goes back to the input line (stopped or failed), saying so. */
static void queue_after(struct app *a, int code, const char *why) {
    char *t = queue_take(a);
    if (!t)
        return;
    if (code == 0)
        mx_app_send(a, t);
    else if (code == MX_ECANCELED)
        mx_app_notice(a, false, "stopped: your queued message is back in the input");
    else
        mx_app_notice(a, true, "generation failed: %s; your queued message is back in the input",
                      why ? why : mx_strerror(code));
    if (code != 0)
        mx_app_input_give(a, t);
    free(t);
}

static void gen_job_fn(struct mx_job *job, void *ud) {
    struct gen_job *gj = ud;
    gj->engine->reply(gj->engine, job, gj->turns, gj->n, &gj->settings);
}

void mx_app_gen_deinit(struct app *a) {
    if (a)
        free(queue_take(a));
    for (int i = 0; i < g_job.n; i++) {
        free((char *)g_job.turns[i].text);
        free((char *)g_job.turns[i].tool_call_id);
        mx_tool_calls_free(&g_job.calls[i]);
    }
    free(g_job.turns);
    free(g_job.calls);
    memset(&g_job, 0, sizeof g_job);
}

/* Starts the answer to the conversation as it stands (the last message is the user's). */
void mx_app_gen_start(struct app *a) {
    if (!a->o.engine && mx_app_image_unpark(a))
        return; /* the chat model comes back for this answer (unloaded for images) */
    if (!a->o.engine) {
        mx_app_notice(a, true, "no model loaded: start mixel with -m MODEL.gguf (or /model PATH)");
        return;
    }
    if (a->gen.busy)
        return;
    mx_app_gen_deinit(NULL);
    int n = 0;
    g_job.turns = calloc((size_t)a->conv.n_msgs + 1, sizeof *g_job.turns);
    g_job.calls = calloc((size_t)a->conv.n_msgs + 1, sizeof *g_job.calls);
    if (!g_job.turns || !g_job.calls)
        return;
    if (a->conv.system_prompt) {
        g_job.turns[n].role = MX_ROLE_SYSTEM;
        g_job.turns[n++].text = strdup(a->conv.system_prompt);
    }
    for (int i = 0; i < a->conv.n_msgs; i++) {
        const struct msg *m = &a->conv.msgs[i];
        if (m->state == MSG_NOTICE || m->state == MSG_FAILED || m->role == MX_ROLE_SYSTEM ||
            m->image)
            continue;
        g_job.turns[n].role = m->role;
        g_job.turns[n].text = m->role == MX_ROLE_TOOL ? mx_app_tools_result(a, m->text)
                                                      : strdup(m->text);
        /* an answer's tool calls and the call a result answers reach the template */
        if (m->tool_calls && mx_tool_calls_from_json(m->tool_calls, &g_job.calls[n], NULL) == 0) {
            g_job.turns[n].tool_calls = g_job.calls[n].calls;
            g_job.turns[n].n_tool_calls = g_job.calls[n].n_calls;
        }
        if (m->tool_call_id)
            g_job.turns[n].tool_call_id = strdup(m->tool_call_id);
        n++;
    }
    g_job.n = n;
    g_job.engine = a->o.engine;
    g_job.settings = a->settings;
    mx_app_tools_settings(a, &g_job.settings);
    /* a new answer, a /regen or an /edit samples anew unless the user pinned the seed */
    if (!a->seed_fixed)
        g_job.settings.sampling.seed = mx_gen_fresh_seed();
    struct msg *am = mx_app_msg_add(a, MX_ROLE_ASSISTANT, MSG_STREAMING, "");
    if (!am)
        return;
    if (a->store.session && mx_app_store_writable(a)) {
        struct mx_err err = {0};
        int rc = mx_db_msg_begin(a->store.db, a->store.session, MX_DB_PARENT_LEAF,
                                 MX_ROLE_ASSISTANT, &am->db_id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    a->gen.last_db_update = mx_time_s();
    if (mx_worker_start(a->w, gen_job_fn, &g_job) != 0) {
        a->conv.msgs[a->conv.n_msgs - 1].state = MSG_FAILED;
        mx_app_notice(a, true, "could not start the generation thread");
        return;
    }
    a->gen.busy = true;
    a->gen.t0 = mx_time_s();
    a->gen.pieces = 0;
    a->gen.tok_s = a->gen.eng_tok_s = 0;
    a->gen.cut = false;
    mx_rate_reset(&a->gen.rate);
    a->conv.scroll = 0;
}

/* Re-reads one stored message's branch position (sibling index/count) into the view. */
static void refresh_siblings(struct app *a, struct msg *m) {
    struct mx_msg dm;
    if (!a->store.db || !m->db_id || mx_db_msg_get(a->store.db, m->db_id, &dm, NULL) != 0)
        return;
    m->sib_index = dm.sibling_index;
    m->sib_count = dm.sibling_count;
    mx_msg_deinit(&dm);
}

void mx_app_gen_events(struct app *a) {
    struct mx_event ev;
    while (mx_worker_poll(a->w, &ev)) {
        struct msg *m = mx_app_streaming_msg(a);
        switch (ev.kind) {
        case MX_EV_TEXT:
            if (m && ev.text) {
                mx_app_msg_append(m, ev.text);
                mx_app_tools_streaming(a, m); /* a call in the making stays off the screen */
            }
            /* a crash loses at most the last second of an answer */
            if (m && m->db_id && mx_time_s() - a->gen.last_db_update > 1.0) {
                a->gen.last_db_update = mx_time_s();
                struct mx_err err = {0};
                int rc = mx_db_msg_update(a->store.db, m->db_id, m->text, a->gen.pieces, &err);
                if (rc != 0)
                    mx_app_store_warn(a, &err, rc);
            }
            a->gen.pieces++;
            a->gen.tok_s = mx_rate_add(&a->gen.rate, mx_time_s(), 1);
            break;
        case MX_EV_REASONING: /* gpt-oss's thinking: folded above the answer, not stored */
            if (m && ev.text)
                mx_app_msg_append_reasoning(m, ev.text);
            break;
        case MX_EV_PROGRESS:
            if (a->fr.busy)
                mx_app_firstrun_progress(a, ev.a, ev.b);
            else if (a->gen.image)
                mx_app_image_progress(a, ev.text);
            else if (a->load.busy) /* the weights, in bytes */
                mx_app_progress_bytes(a, ev.text, ev.a, ev.b);
            else
                mx_app_progress(a, ev.text, ev.a, ev.b);
            break;
        case MX_EV_STATS:
            /* the engine's average: kept for the end of the answer, where it is exact (while
             * the answer streams the smoothed rate of arrivals is shown) */
            if (ev.a > 0)
                a->gen.eng_tok_s = ev.a;
            if (ev.b > 0)
                a->gen.ctx_used = (int)ev.b;
            break;
        case MX_EV_NOTICE:
            if (ev.a == 1) { /* the answer stops here: the context is full (said at the end) */
                a->gen.cut = true;
                break;
            }
            mx_app_notice(a, false, "%s", ev.text ? ev.text : "");
            break;
        case MX_EV_DONE:
            mx_app_progress_end(a);
            if (a->fr.busy) { /* the first-run screen's download */
                mx_app_firstrun_done(a, ev.code, ev.text);
                break;
            }
            if (a->load.busy) {
                mx_app_load_finish(a, ev.code, ev.text);
                bool answer = a->imgen.answer_after_load;
                a->imgen.answer_after_load = false;
                if (answer && ev.code == 0) /* the chat model is back for a waiting message */
                    mx_app_gen_start(a);
                break;
            }
            if (a->gen.image) {
                mx_app_image_done(a, ev.code, ev.text);
                if (!a->gen.busy && a->imgen.for_tool) { /* a generate_image call's picture */
                    a->imgen.for_tool = false;
                    mx_app_tools_image_done(a, ev.code, a->imgen.result);
                    mx_app_gen_go_on(a);
                }
                if (!a->gen.busy && !a->tools.asking) /* not retried, no tool call waiting:
                                                       * a message typed meanwhile goes now */
                    queue_after(a, ev.code, ev.text);
                break;
            }
            if (a->gen.tool) {
                mx_app_tools_job_done(a, ev.code, ev.text);
                mx_app_gen_go_on(a);
                if (!a->gen.busy && !a->tools.asking)
                    queue_after(a, ev.code, ev.text);
                break;
            }
            a->gen.busy = false;
            struct mx_engine_llm_stats lst;
            a->gen.n_reused = a->gen.n_prefilled = -1;
            if (a->o.engine && mx_engine_llm_stats(a->o.engine, &lst) == 0) {
                a->gen.ctx_used = (int)lst.n_cached; /* the context meter: tokens in the cache */
                /* what the prompt cost: the cache's reuse is what keeps long chats fast */
                if (lst.n_prompt > 0) {
                    a->gen.n_reused = (long)lst.n_reused;
                    a->gen.n_prefilled = (long)lst.n_prefilled;
                }
            }
            if (a->gen.eng_tok_s > 0)
                a->gen.tok_s = a->gen.eng_tok_s;
            bool cut = ev.code == 0 && a->gen.cut;
            if (m && m->shown) { /* the held-back tail (tools.c): the whole answer is in now */
                free(m->shown);
                m->shown = NULL;
                m->r_valid = false;
            }
            /* an answer calling tools: its words stay the message, its calls go with it */
            bool calls = ev.code == 0 && !cut && m && mx_app_tools_take(a, m);
            if (m)
                m->state = cut ? MSG_TRUNCATED : ev.code == 0 ? MSG_DONE
                           : ev.code == MX_ECANCELED ? MSG_STOPPED : MSG_FAILED;
            if (m && m->db_id) {
                /* cut by a full context: partial, and the timings say why (mx_app_session_load
                 * and `mixel sessions export` read it back) */
                /* the model that answered (a GGUF path, or "remote:URL#MODEL"): a session
                 * may change models, so each answer says its own */
                json_t *tj = json_pack("{s:f, s:f}", "tokens_per_s", a->gen.tok_s, "seconds",
                                       mx_time_s() - a->gen.t0);
                if (tj && cut)
                    json_object_set_new(tj, "stop", json_string("context_full"));
                if (tj && a->o.model_path)
                    json_object_set_new(tj, "model", json_string(a->o.model_path));
                char *tjs = tj ? json_dumps(tj, JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER)
                               : NULL;
                json_decref(tj);
                const char *timings = tjs ? tjs : "{}";
                struct mx_err err = {0};
                /* the calls first: a row is never complete without the calls it made (a crash
                 * between the two writes leaves an unfinished answer, which resume shows so) */
                int rc = calls ? mx_db_msg_set_tool(a->store.db, m->db_id, m->tool_calls, NULL,
                                                    &err)
                               : 0;
                if (rc == 0)
                    rc = mx_db_msg_finish(a->store.db, m->db_id, m->text, a->gen.pieces, timings,
                                          ev.code == 0 && !cut ? MX_MSG_COMPLETE
                                                               : MX_MSG_PARTIAL,
                                          &err);
                free(tjs);
                if (rc != 0)
                    mx_app_store_warn(a, &err, rc);
                else
                    refresh_siblings(a, m); /* "2/2" after a regenerate */
            }
            if (calls) { /* the turn goes on with the calls: asked, run, answered */
                mx_app_tools_start(a);
                break;
            }
            if (ev.code == MX_ECANCELED)
                mx_app_notice(a, false, "stopped: the partial answer is kept");
            else if (cut)
                mx_app_notice(a, true, "the context is full: the answer was cut short (kept, "
                              "marked cut); /new starts afresh, /ctx N sets a larger context");
            else if (ev.code == MX_EFULL)
                mx_app_notice_detail(a, true, ev.text, "your message does not fit the context: "
                                     "shorten it, or /ctx N sets a larger context");
            else if (ev.code < 0)
                mx_app_notice_detail(a, true, ev.text, "no answer: generation failed (%s)",
                                     mx_strerror(ev.code));
            queue_after(a, ev.code, ev.text); /* may start the next answer */
            break;
        }
        free(ev.text);
    }
}

void mx_app_gen_go_on(struct app *a) {
    if (!a->tools.go_on || a->gen.busy || a->load.busy)
        return;
    a->tools.go_on = false;
    mx_app_gen_start(a);
}

void mx_app_gen_stop(struct app *a) {
    if (a->gen.busy)
        mx_worker_cancel(a->w);
}

void mx_app_send(struct app *a, const char *line) {
    if (a->gen.busy) {
        queue_add(a, line);
        return;
    }
    mx_app_notice_clear(a);
    mx_app_tools_new_turn(a);
    int64_t id = 0;
    if (mx_app_ensure_session(a) == 0) {
        struct mx_err err = {0};
        int rc = mx_db_msg_append(a->store.db, a->store.session, MX_DB_PARENT_LEAF,
                                  MX_ROLE_USER, line, 0, NULL, &id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    struct msg *m = mx_app_msg_add(a, MX_ROLE_USER, MSG_DONE, line);
    if (m) {
        m->db_id = id;
        refresh_siblings(a, m); /* an edited message is a branch: "2/2", Alt-Left at once */
    }
    if (!a->store.title[0])
        mx_app_store_refresh_title(a);
    mx_app_gen_start(a);
}
