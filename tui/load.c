/* load.c - loading a model (/model PATH, the picker) on the worker thread, so the screen stays
 * alive for the seconds a big GGUF takes; on success the new engine replaces the old one, the
 * session's KV cache saved before and the new engine's snapshot loaded after.
 */
#include "tui/load.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/engine_llm.h"
#include "core/base/err.h"
#include "history/db.h"
#include "tui/conv.h"
#include "tui/status.h"
#include "tui/store.h"

struct load_job {
    mx_engine_loader loader;
    char *path;
    struct mx_gen_settings settings;
    struct mx_engine *result;
};

static struct load_job g_load;

/* The weights' progress, as a bar in the status bar; at most ~100 events for a big file. */
struct load_progress {
    struct mx_job *job;
    uint64_t last;
};

static void on_load(void *ud, uint64_t done, uint64_t total) {
    struct load_progress *p = ud;
    if (done < total && done - p->last < total / 100)
        return;
    p->last = done;
    mx_job_post(p->job, MX_EV_PROGRESS, "loading", (double)done, (double)total);
}

static void load_job_fn(struct mx_job *job, void *ud) {
    struct load_job *lj = ud;
    struct mx_err err = {0};
    struct load_progress lp = {job, 0};
    mx_job_post(job, MX_EV_NOTICE, "loading the model\xe2\x80\xa6", 0, 0);
    lj->settings.on_load = on_load;
    lj->settings.on_load_ud = &lp;
    lj->result = lj->loader(lj->path, &lj->settings, &err);
    lj->settings.on_load = NULL; /* lp ends here */
    lj->settings.on_load_ud = NULL;
    mx_job_done(job, lj->result ? 0 : (err.code ? err.code : MX_EIO), lj->result ? NULL : err.msg);
}

void mx_app_load_start(struct app *a, const char *path) {
    if (!a->o.load_engine) {
        mx_app_notice(a, true, "this build cannot load models (the LLM engine is not in it)");
        return;
    }
    if (a->gen.busy || a->load.busy) {
        mx_app_notice(a, true, "busy: wait for the answer (Esc stops it) or the load to finish");
        return;
    }
    free(g_load.path);
    g_load = (struct load_job){.loader = a->o.load_engine, .path = strdup(path),
                               .settings = a->settings};
    if (!g_load.path || mx_worker_start(a->w, load_job_fn, &g_load) != 0) {
        mx_app_notice(a, true, "could not start loading");
        return;
    }
    a->load.busy = true;
}

/* The load job ended: switch engines, or say why not. */
void mx_app_load_finish(struct app *a, int code, const char *msg) {
    a->load.busy = false;
    if (code != 0 || !g_load.result) {
        mx_app_notice_detail(a, true, msg, "cannot load %s (%s)", g_load.path, mx_strerror(code));
        return;
    }
    mx_app_snapshot_save(a);
    if (a->load.owned)
        a->load.owned->free(a->load.owned);
    a->load.owned = a->o.engine = g_load.result;
    g_load.result = NULL;
    a->o.model_path = g_load.path; /* kept alive in g_load until exit */
    a->pick.open = false;
    a->gen.ctx_used = 0;
    a->gen.n_reused = a->gen.n_prefilled = -1;
    mx_app_conv_drop_banner(a); /* "No model is loaded" is no longer true */
    const char *warn = mx_engine_llm_warning(a->o.engine);
    if (warn && warn[0])
        mx_app_notice(a, true, "loaded %s; %s", a->o.engine->name, warn);
    else
        mx_app_notice(a, false, "loaded %s", a->o.engine->name);
    mx_app_snapshot_load(a);
}

/* The file name of a path, for notices. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

void mx_app_load_session_model(struct app *a) {
    struct mx_session s;
    if (!a->store.db || !a->store.session ||
        mx_db_session_get(a->store.db, a->store.session, &s, NULL) != 0)
        return;
    if (!s.model_path[0]) {
        /* made before any model was loaded: nothing to restore */
    } else if (!a->o.engine && !a->load.busy) {
        /* "remote:URL#MODEL": a server answered this session; the loader reconnects to it */
        if (!strncmp(s.model_path, "remote:", 7) || access(s.model_path, R_OK) == 0) {
            mx_app_notice(a, false, "loading this session's model, %s", base_name(s.model_path));
            mx_app_load_start(a, s.model_path);
        } else {
            mx_app_notice(a, true, "this session's model %s is not there any more: choose one "
                          "with /model", s.model_path);
        }
    } else if (a->o.model_path && strcmp(a->o.model_path, s.model_path) != 0) {
        mx_app_notice(a, false, "this session was made with %s; answering with %s",
                      base_name(s.model_path), base_name(a->o.model_path));
    }
    mx_session_deinit(&s);
}

void mx_app_load_deinit(void) {
    if (g_load.result)
        g_load.result->free(g_load.result);
    free(g_load.path);
    memset(&g_load, 0, sizeof g_load);
}
