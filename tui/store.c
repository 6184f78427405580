/* store.c - persistence glue: the conversation in the history database (a session created with
 * the first message, each message stored before it is shown as sent, an answer saved while it
 * streams), the session's sampling settings as JSON, branches (/regen, /edit, Alt-Left/Right),
 * and KV-cache snapshots so that coming back to a long session does not re-process it.
 *
 * Storage problems never stop the chat: the message stays on screen and the status line says it
 * was not saved (DESIGN.md).
 */
#include "tui/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/engine_llm.h"
#include "core/base/err.h"
#include "history/db.h"
#include "history/images.h"
#include "history/kvsnap.h"
#include "tui/conv.h"
#include "tui/status.h"

void mx_app_store_open(struct app *a) {
    if (!a->o.no_history) {
        struct mx_db_opts dbo = {.path = a->o.db_path};
        struct mx_err derr = {0};
        int rc = mx_db_open(&a->store.db, &dbo, &derr);
        if (rc != 0)
            mx_app_notice_detail(a, true, mx_err_msg(&derr, rc),
                                 "the history cannot be opened (%s): this chat is not saved",
                                 mx_strerror(rc));
        else if (mx_db_readonly(a->store.db))
            mx_app_notice_detail(a, true, mx_db_readonly_reason(a->store.db),
                                 "the history is read-only: new messages are not saved");
    }
    if (a->store.db && a->o.resume) {
        struct mx_session_list l = {0};
        if (!a->o.resume[0]) {
            if (mx_db_session_list(a->store.db, 1, &l, NULL) == 0 && l.n)
                mx_app_session_load(a, l.v[0].id);
            else
                mx_app_notice(a, false, "no saved session to resume yet");
            mx_session_list_free(&l);
        } else {
            mx_app_session_resume(a, a->o.resume);
        }
    }
}

bool mx_app_store_writable(const struct app *a) {
    return a->store.db && !mx_db_readonly(a->store.db);
}

/* The session's settings as a JSON object text (caller frees; NULL when out of memory): the
 * sampling settings and the image checkpoint chosen with /image -d. */
static char *settings_json(const struct app *a) {
    /* the seed goes out as a signed 64-bit integer (what JSON readers take) and comes back
     * through the same two's-complement cast in settings_from_json */
    json_t *o = json_pack("{s:f, s:f, s:I, s:b, s:i}", "temp", (double)a->settings.sampling.temp,
                          "top_p", (double)a->settings.sampling.top_p, "seed",
                          (json_int_t)a->settings.sampling.seed, "seed_fixed", a->seed_fixed,
                          "n_ctx", a->settings.n_ctx);
    if (o && a->imgen.ckpt)
        json_object_set_new(o, "sd_model", json_string(a->imgen.ckpt));
    char *s = o ? json_dumps(o, JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    return s;
}

/* A session's stored settings (written by settings_json); missing or mistyped keys keep the
 * current value. */
static void settings_from_json(struct app *a, const char *text) {
    json_t *o = json_loads(text, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    json_t *v;
    if (json_is_number(v = json_object_get(o, "temp")))
        a->settings.sampling.temp = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(o, "top_p")))
        a->settings.sampling.top_p = (float)json_number_value(v);
    if (json_is_integer(v = json_object_get(o, "seed")))
        a->settings.sampling.seed = (uint64_t)json_integer_value(v);
    /* sessions saved before "seed_fixed" stored "seed": 0 for every one: they vary now */
    a->seed_fixed = json_is_true(json_object_get(o, "seed_fixed"));
    if (json_is_integer(v = json_object_get(o, "n_ctx")))
        a->settings.n_ctx = (int)json_integer_value(v);
    /* the image checkpoint is the session's own: none stored, the default applies */
    free(a->imgen.ckpt);
    a->imgen.ckpt = json_is_string(v = json_object_get(o, "sd_model"))
                        ? strdup(json_string_value(v)) : NULL;
    json_decref(o);
}

int mx_app_ensure_session(struct app *a) {
    if (a->store.session || !mx_app_store_writable(a))
        return a->store.session ? 0 : -1;
    struct mx_err err = {0};
    char *js = settings_json(a);
    const char *model = a->o.model_path ? a->o.model_path : NULL;
    int rc =
        mx_db_session_create(a->store.db, NULL, model, NULL, NULL, js, &a->store.session, &err);
    free(js);
    if (rc != 0) {
        mx_app_store_warn(a, &err, rc);
        return rc;
    }
    return 0;
}

void mx_app_store_settings(struct app *a) {
    if (!a->store.session || !mx_app_store_writable(a))
        return;
    char *js = settings_json(a);
    struct mx_err err = {0};
    int rc = mx_db_session_set_model(a->store.db, a->store.session, NULL, NULL, NULL, js, &err);
    free(js);
    if (rc != 0)
        mx_app_store_warn(a, &err, rc);
}

void mx_app_store_refresh_title(struct app *a) {
    a->store.title[0] = '\0';
    struct mx_session s;
    if (a->store.db && a->store.session &&
        mx_db_session_get(a->store.db, a->store.session, &s, NULL) == 0) {
        snprintf(a->store.title, sizeof a->store.title, "%s", s.title);
        mx_session_deinit(&s);
    }
}

/* KV snapshots: the cache of the session being left is saved so that coming back to it does not
 * re-process its whole history; the one of the session being entered is loaded when it was made
 * with this model (else the next answer re-prefills, with progress). Only between jobs: the
 * engine belongs to the worker while one runs. The scripted engine answers MX_EINVAL: ignored. */
void mx_app_snapshot_save(struct app *a) {
    if (!a->o.engine || !a->store.session || a->gen.busy || a->load.busy ||
        !mx_engine_llm_template(a->o.engine))
        return;
    char path[4200], dir[4096];
    struct mx_err err = {0};
    if (mx_kvsnap_path(path, sizeof path, a->store.session, &err) != 0)
        return;
    int rc = mx_engine_llm_save(a->o.engine, path, &err);
    if (rc != 0 && rc != MX_EINVAL) {
        mx_app_notice_detail(a, true, mx_err_msg(&err, rc),
                             "could not keep this conversation's processed context (%s); "
                             "resuming it will process it again", mx_strerror(rc));
        return;
    }
    if (rc == 0 && mx_kvsnap_dir(dir, sizeof dir, NULL) == 0)
        mx_kvsnap_evict(dir, MX_KVSNAP_DEFAULT_CAP, path, NULL, NULL);
}

void mx_app_snapshot_load(struct app *a) {
    if (!a->o.engine || !a->store.session || !mx_engine_llm_template(a->o.engine))
        return;
    char path[4200];
    struct mx_err err = {0};
    if (mx_kvsnap_path(path, sizeof path, a->store.session, &err) != 0)
        return;
    int rc = mx_engine_llm_load(a->o.engine, path, &err);
    struct mx_engine_llm_stats lst;
    if (rc == 0 && mx_engine_llm_stats(a->o.engine, &lst) == 0)
        a->gen.ctx_used = (int)lst.n_cached;
    /* what a failed snapshot means for the user: the next answer processes the conversation
     * again (slower, same result); the reason's detail goes to /log */
    if (rc == 0)
        mx_app_notice(a, false, "resumed with the saved context: no reprocessing needed");
    else if (rc != MX_ENOENT)
        mx_app_notice_detail(a, false, mx_err_msg(&err, rc), "the saved context %s; "
                             "reprocessing the conversation",
                             rc == MX_EINVAL ? "is for another model"
                             : rc == MX_EUNSUP || rc == MX_ERANGE
                                 ? "does not fit this model's settings"
                                 : "could not be read");
}

/* Replaces the view with session id's active branch. Returns 0 or an MX_E* code. */
int mx_app_session_load(struct app *a, int64_t id) {
    struct mx_msg_list l;
    struct mx_err err = {0};
    int rc = mx_db_active_path(a->store.db, id, &l, &err);
    if (rc != 0) {
        mx_app_notice_detail(a, true, mx_err_msg(&err, rc),
                             "session %lld could not be read from the history (%s)",
                             (long long)id, mx_strerror(rc));
        return rc;
    }
    bool switching = a->store.session != id;
    if (switching)
        mx_app_snapshot_save(a);
    mx_app_conv_clear(a);
    a->store.session = id;
    for (size_t i = 0; i < l.n; i++) {
        const struct mx_msg *dm = &l.v[i];
        /* partial: stopped, or cut by a full context when the timings say so (gen.c) */
        enum msg_state st = dm->state == MX_MSG_COMPLETE ? MSG_DONE
                            : dm->timings && strstr(dm->timings, "\"context_full\"")
                                ? MSG_TRUNCATED : MSG_STOPPED;
        struct msg *m = mx_app_msg_add(a, dm->role, st, dm->content);
        if (!m)
            break;
        m->db_id = dm->id;
        m->sib_index = dm->sibling_index;
        m->sib_count = dm->sibling_count;
        if (dm->tool_calls && dm->tool_calls[0])
            m->tool_calls = strdup(dm->tool_calls);
        if (dm->tool_call_id && dm->tool_call_id[0])
            m->tool_call_id = strdup(dm->tool_call_id);
    }
    mx_msg_list_free(&l);
    mx_app_conv_fold_all(a); /* calls on one line each, their results folded in */
    struct mx_db_image_list imgs;
    if (mx_db_image_list(a->store.db, id, &imgs, NULL) == 0) {
        for (size_t k = 0; k < imgs.n; k++)
            for (int i = 0; i < a->conv.n_msgs; i++)
                if (imgs.v[k].message && a->conv.msgs[i].db_id == imgs.v[k].message &&
                    !a->conv.msgs[i].image)
                    a->conv.msgs[i].image = strdup(imgs.v[k].path);
        mx_db_image_list_free(&imgs);
    }
    struct mx_session s; /* one read for the settings and the title */
    a->store.title[0] = '\0';
    if (mx_db_session_get(a->store.db, id, &s, NULL) == 0) {
        settings_from_json(a, s.sampling);
        snprintf(a->store.title, sizeof a->store.title, "%s", s.title);
        mx_session_deinit(&s);
    }
    if (switching) {
        a->gen.ctx_used = 0; /* the other session's cache is not this one's */
        a->gen.n_reused = a->gen.n_prefilled = -1;
        mx_app_snapshot_load(a);
    }
    return 0;
}

/* After a store operation that moved the active leaf: re-read the branch so sibling counts
 * ("2/3") are current, keeping what is on screen if that fails. */
void mx_app_session_reload(struct app *a) {
    if (a->store.db && a->store.session && !a->gen.busy)
        mx_app_session_load(a, a->store.session);
}

/* /new and /clear: leave the current session (saved in history, its KV cache snapshotted) and
 * start an empty conversation; the next message creates a new session. */
void mx_app_session_fresh(struct app *a, const char *what) {
    if (a->gen.busy) {
        mx_app_notice(a, true, "an answer is still being generated: Esc stops it");
        return;
    }
    mx_app_snapshot_save(a);
    if (a->o.engine && mx_engine_llm_template(a->o.engine))
        mx_engine_llm_clear(a->o.engine);
    mx_app_conv_clear(a);
    a->gen.ctx_used = 0;
    a->gen.n_reused = a->gen.n_prefilled = -1;
    a->store.session = 0;
    free(a->imgen.ckpt); /* a new session starts from the default image model */
    a->imgen.ckpt = NULL;
    a->store.title[0] = '\0';
    mx_app_notice(a, false, "%s", what);
}

/* Moves the conversation to the previous/next sibling of the last message that has siblings
 * (a regenerated answer or an edited question), continuing that branch to its newest leaf. */
void mx_app_branch_step(struct app *a, int dir) {
    if (!a->store.db || !a->store.session || a->gen.busy)
        return;
    for (int i = a->conv.n_msgs - 1; i >= 0; i--) {
        struct msg *m = &a->conv.msgs[i];
        if (m->sib_count < 2 || !m->db_id)
            continue;
        struct mx_msg_list sibs;
        int idx;
        struct mx_err err = {0};
        if (mx_db_msg_siblings(a->store.db, m->db_id, &sibs, &idx, &err) != 0)
            return;
        int to = idx - 1 + dir;
        int64_t target = to >= 0 && to < (int)sibs.n ? sibs.v[to].id : 0;
        mx_msg_list_free(&sibs);
        if (!target) {
            mx_app_notice(a, false, "no %s branch", dir < 0 ? "earlier" : "later");
            return;
        }
        int64_t leaf;
        int rc = mx_db_msg_latest_leaf(a->store.db, target, &leaf, &err);
        if (rc == 0)
            rc = mx_db_set_leaf(a->store.db, a->store.session, leaf, &err);
        if (rc != 0) {
            mx_app_store_warn(a, &err, rc);
            return;
        }
        mx_app_session_reload(a);
        return;
    }
    mx_app_notice(a, false, "no branches here yet: /regen or /edit make one");
}

int mx_app_session_resume(struct app *a, const char *arg) {
    int64_t id;
    struct mx_err err = {0};
    int rc = mx_db_session_find(a->store.db, arg, &id, &err);
    if (rc != 0) {
        if (rc == MX_ENOENT)
            mx_app_notice(a, true, "no saved session has the id or title '%s' (F2 lists them)",
                          arg);
        else
            mx_app_notice_detail(a, true, mx_err_msg(&err, rc),
                                 "cannot look sessions up (%s)", mx_strerror(rc));
        return rc;
    }
    rc = mx_app_session_load(a, id);
    if (rc == 0)
        mx_app_notice(a, false, "resumed session %lld", (long long)id);
    return rc;
}
