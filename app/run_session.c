/* run_session.c - one chat turn of a stored session, for scripts (see run_session.h). It drives
 * the same engine, worker and history code as the TUI, without a screen: events are printed as
 * they arrive. */
#include "app/run_session.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/text.h"
#include "core/base/util.h"
#include "history/db.h"
#include "history/images.h"
#include "history/kvsnap.h"
#include "app/engine_llm.h"
#include "app/tools.h"
#include "app/worker.h"

static volatile sig_atomic_t g_interrupted;

/* Prints "mixel run: <message>" to stderr with the message made inert (it quotes session titles,
 * paths and model metadata: untrusted text). */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...) {
    char msg[1024], safe[MX_SANITIZE_MAX(sizeof msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mx_text_sanitize(msg, strlen(msg), safe, false);
    fprintf(stderr, "mixel run: %s\n", safe);
}

int mx_run_write(const char *s, size_t n) {
    static int tty = -1;
    if (tty < 0)
        tty = isatty(STDOUT_FILENO);
    if (!tty)
        return fwrite(s, 1, n, stdout) == n && fflush(stdout) == 0 ? 0 : MX_EIO;
    /* a terminal: escape sequences in model output are never passed to it */
    char buf[MX_SANITIZE_MAX(512)];
    while (n > 0) {
        size_t k = n < 512 ? n : 512;
        while (k < n && k > 1 && ((unsigned char)s[k] & 0xc0) == 0x80)
            k--; /* never cut a UTF-8 character in two */
        size_t m = mx_text_sanitize(s, k, buf, true);
        if (fwrite(buf, 1, m, stdout) != m)
            return MX_EIO;
        s += k;
        n -= k;
    }
    return fflush(stdout) == 0 ? 0 : MX_EIO;
}

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

struct turn_job {
    struct mx_engine *e;
    struct mx_turn *turns;
    int n;
    struct mx_gen_settings settings;
};

static void turn_job_fn(struct mx_job *job, void *ud) {
    struct turn_job *t = ud;
    t->e->reply(t->e, job, t->turns, t->n, &t->settings);
}

int mx_run_session(const struct mx_run_session_opts *o) {
    struct mx_err err = {0};
    struct mx_db *db = NULL;
    struct mx_engine *e = NULL;
    struct mx_worker *w = NULL;
    struct mx_msg_list path = {0};
    struct mx_db_image_list imgs = {0};
    struct turn_job tj = {0};
    struct mx_tool_calls *calls = NULL; /* [path.n + 1]: turns' tool calls (owned) */
    char **results = NULL;              /* [path.n + 1]: tool results as the template takes them */
    char *answer = NULL;
    size_t alen = 0, acap = 0;
    int status = 1, rc;
    int64_t sid = 0, uid = 0, aid = 0;
    char snap[4200] = "";

    struct mx_db_opts dbo = {.path = o->db_path};
    if ((rc = mx_db_open(&db, &dbo, &err)) != 0 || mx_db_readonly(db)) {
        say("history: %s", rc ? mx_err_msg(&err, rc) : mx_db_readonly_reason(db));
        goto done;
    }
    rc = mx_db_session_find(db, o->session, &sid, &err);
    if (rc == MX_ENOENT) {
        mx_err_clear(&err);
        rc = mx_db_session_create(db, o->session, o->model, NULL, NULL, NULL, &sid, &err);
    }
    if (rc != 0) {
        say("session '%s': %s", o->session, mx_err_msg(&err, rc));
        goto done;
    }
    double t0 = mx_time_s();
    e = o->engine ? o->engine : mx_engine_llm_new(o->model, &o->settings, o->tmpl, &err);
    if (!e) {
        say("%s", mx_err_msg(&err, err.code));
        goto done;
    }
    double t_load = mx_time_s() - t0;
    const char *warn = mx_engine_llm_warning(e);
    if (warn && warn[0])
        say("%s", warn);
    if (!o->engine && mx_kvsnap_path(snap, sizeof snap, sid, NULL) == 0) {
        mx_err_clear(&err);
        rc = mx_engine_llm_load(e, snap, &err);
        if (rc != 0 && rc != MX_ENOENT)
            say("%s: processing the history again", mx_err_msg(&err, rc));
    }

    /* the conversation so far (the active branch, without attached images) + the new message */
    if ((rc = mx_db_active_path(db, sid, &path, &err)) != 0 ||
        (rc = mx_db_image_list(db, sid, &imgs, &err)) != 0) {
        say("history: %s", mx_err_msg(&err, rc));
        goto done;
    }
    tj.turns = calloc(path.n + 1, sizeof *tj.turns);
    calls = calloc(path.n + 1, sizeof *calls);
    results = calloc(path.n + 1, sizeof *results);
    if (!tj.turns || !calls || !results)
        goto done;
    enum mx_tmpl_kind kind = MX_TMPL_MISTRAL_V3;
    if (mx_engine_llm_template(e))
        mx_tmpl_from_name(mx_engine_llm_template(e), &kind, NULL);
    for (size_t i = 0; i < path.n; i++) {
        bool image = false;
        for (size_t k = 0; k < imgs.n; k++)
            image |= imgs.v[k].message == path.v[i].id;
        if (image)
            continue;
        const struct mx_msg *m = &path.v[i];
        struct mx_turn *t = &tj.turns[tj.n];
        t->role = m->role;
        t->text = m->content;
        /* a chat's tool calls and results (app/tools.h) replay as the template writes them */
        if (m->tool_calls[0] && mx_tool_calls_from_json(m->tool_calls, &calls[tj.n], NULL) == 0) {
            t->tool_calls = calls[tj.n].calls;
            t->n_tool_calls = calls[tj.n].n_calls;
        }
        if (m->role == MX_ROLE_TOOL) {
            t->tool_call_id = m->tool_call_id[0] ? m->tool_call_id : NULL;
            if (!(results[tj.n] = mx_tool_result_text(kind, m->content)))
                goto done;
            t->text = results[tj.n];
        }
        tj.n++;
    }
    if ((rc = mx_db_msg_append(db, sid, MX_DB_PARENT_LEAF, MX_ROLE_USER, o->prompt, 0, NULL, &uid,
                               &err)) != 0 ||
        (rc = mx_db_msg_begin(db, sid, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, &aid, &err)) != 0) {
        say("history: %s", mx_err_msg(&err, rc));
        goto done;
    }
    tj.turns[tj.n].role = MX_ROLE_USER;
    tj.turns[tj.n++].text = o->prompt;
    tj.e = e;
    tj.settings = o->settings;

    if (mx_worker_new(&w) != 0 || mx_worker_start(w, turn_job_fn, &tj) != 0) {
        say("cannot start the generation thread");
        goto done;
    }
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    double last_update = mx_time_s(), tok_s = 0;
    int pieces = 0, code = 0;
    bool done = false, cut = false, reasoned = false;
    while (!done) {
        if (g_interrupted)
            mx_worker_cancel(w);
        struct pollfd p = {.fd = mx_worker_wake_fd(w), .events = POLLIN};
        if (poll(&p, 1, 200) < 0 && errno != EINTR)
            break;
        struct mx_event ev;
        while (mx_worker_poll(w, &ev)) {
            if (ev.kind == MX_EV_TEXT && ev.text) {
                size_t n = strlen(ev.text);
                if (reasoned && pieces == 0)
                    mx_run_write("\n\n", 2);
                if (alen + n + 1 > acap) {
                    acap = (alen + n + 1) * 2;
                    char *na = realloc(answer, acap);
                    if (!na) {
                        mx_worker_cancel(w);
                    } else {
                        answer = na;
                    }
                }
                if (answer && alen + n + 1 <= acap) {
                    memcpy(answer + alen, ev.text, n + 1);
                    alen += n;
                }
                mx_run_write(ev.text, n);
                pieces++;
                if (mx_time_s() - last_update > 1.0) { /* a crash loses at most a second */
                    last_update = mx_time_s();
                    mx_db_msg_update(db, aid, answer ? answer : "", pieces, NULL);
                }
            } else if (ev.kind == MX_EV_REASONING && ev.text && o->show_reasoning) {
                if (pieces == 0) { /* before the answer, set off from it by a blank line */
                    mx_run_write(ev.text, strlen(ev.text));
                    reasoned = true;
                }
            } else if (ev.kind == MX_EV_STATS && ev.a > 0) {
                tok_s = ev.a;
            } else if (ev.kind == MX_EV_NOTICE && ev.text) {
                cut |= ev.a == 1; /* the context is full: stored as partial, not complete */
                say("%s", ev.text);
            } else if (ev.kind == MX_EV_DONE) {
                code = ev.code;
                if (code != 0 && code != MX_ECANCELED)
                    say("%s", ev.text ? ev.text : mx_strerror(code));
                done = true;
            }
            free(ev.text);
        }
    }
    sigaction(SIGINT, &old_sa, NULL);
    putchar('\n');
    /* the model that answered (as the chat records it: each answer says its own) */
    json_t *tim = json_pack("{s:f}", "tokens_per_s", tok_s);
    if (tim && cut && code == 0)
        json_object_set_new(tim, "stop", json_string("context_full"));
    if (tim && o->model)
        json_object_set_new(tim, "model", json_string(o->model));
    char *tjs = tim ? json_dumps(tim, JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(tim);
    const char *timings = tjs ? tjs : "{}";
    rc = mx_db_msg_finish(db, aid, answer ? answer : "", pieces, timings,
                          code == 0 && !cut ? MX_MSG_COMPLETE : MX_MSG_PARTIAL, &err);
    free(tjs);
    if (rc != 0)
        say("history: %s", mx_err_msg(&err, rc));
    struct mx_engine_llm_stats st;
    if (mx_engine_llm_stats(e, &st) == 0)
        fprintf(stderr,
                "mixel run: session %lld: load %.2f s; prompt %zu tokens (%zu reused from the "
                "cache, %zu processed in %.2f s); %zu generated at %.1f tokens/s\n",
                (long long)sid, t_load, st.n_prompt, st.n_reused, st.n_prefilled, st.prefill_s,
                st.n_generated, st.gen_s > 0 ? st.n_generated / st.gen_s : tok_s);
    else
        say("session %lld: %s answered, %d pieces at %.1f tokens/s", (long long)sid, e->name,
            pieces, tok_s);
    if (snap[0] && code != MX_ECANCELED) {
        mx_err_clear(&err);
        rc = mx_engine_llm_save(e, snap, &err);
        char dir[4096];
        if (rc == 0 && mx_kvsnap_dir(dir, sizeof dir, NULL) == 0)
            mx_kvsnap_evict(dir, MX_KVSNAP_DEFAULT_CAP, snap, NULL, NULL);
        else if (rc != 0)
            say("KV snapshot not saved: %s", mx_err_msg(&err, rc));
    }
    status = code == 0 ? 0 : code == MX_ECANCELED ? 130 : 1;
done:
    mx_worker_free(w);
    for (size_t i = 0; calls && results && i < path.n + 1; i++) {
        mx_tool_calls_free(&calls[i]);
        free(results[i]);
    }
    free(calls);
    free(results);
    free(tj.turns);
    free(answer);
    mx_db_image_list_free(&imgs);
    mx_msg_list_free(&path);
    if (e && e != o->engine)
        e->free(e);
    mx_db_close(db);
    return status;
}
