/* eval_gen.c - exact-match benchmarks through the chat engine (see eval_gen.h).
 *
 * Each question is one job on a worker thread running the engine's reply (exactly what a chat
 * turn runs); this thread collects the text events. The engine keeps what the previous prompt
 * shares with the next (BOS, the system message, the template's header) in its cache.
 */
#include "app/eval_gen.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/bytes.h"
#include "core/base/util.h"
#include "app/engine_llm.h"
#include "app/worker.h"

/* ---- the final number ----------------------------------------------------------------------- */

/* The number starting at s[0] (a digit, or '-' before one): its end and its normalised text in
 * out (false when it does not fit). */
static bool take_number(const char *s, const char **end, char *out, size_t cap) {
    size_t n = 0;
    bool neg = *s == '-';
    if (neg)
        s++;
    char digits[128];
    size_t nd = 0, dot = (size_t)-1;
    bool ok = true;
    for (; isdigit((unsigned char)*s) || (*s == ',' && isdigit((unsigned char)s[1])); s++)
        if (*s != ',') {
            if (nd + 1 < sizeof digits)
                digits[nd++] = *s;
            else
                ok = false;
        }
    if (*s == '.' && isdigit((unsigned char)s[1])) {
        dot = nd;
        for (s++; isdigit((unsigned char)*s); s++) {
            if (nd + 1 < sizeof digits)
                digits[nd++] = *s;
            else
                ok = false;
        }
    }
    *end = s;
    size_t int_end = dot == (size_t)-1 ? nd : dot;
    size_t i = 0;
    while (i + 1 < int_end && digits[i] == '0') /* leading zeros, keep one */
        i++;
    size_t frac_end = nd;
    if (dot != (size_t)-1)
        while (frac_end > int_end && digits[frac_end - 1] == '0') /* trailing decimal zeros */
            frac_end--;
    bool zero = true;
    for (size_t k = i; k < frac_end; k++)
        zero &= digits[k] == '0';
    char buf[160];
    if (neg && !zero)
        buf[n++] = '-';
    for (size_t k = i; k < int_end; k++)
        buf[n++] = digits[k];
    if (frac_end > int_end) {
        buf[n++] = '.';
        for (size_t k = int_end; k < frac_end; k++)
            buf[n++] = digits[k];
    }
    buf[n] = '\0';
    if (!ok || n + 1 > cap)
        return false;
    memcpy(out, buf, n + 1);
    return true;
}

/* The last number in s[0..): true with it in out. */
static bool last_number(const char *s, char *out, size_t cap) {
    bool found = false;
    const char *start = s;
    while (*s) {
        bool minus = *s == '-' && isdigit((unsigned char)s[1]) &&
                     (s == start || !isalnum((unsigned char)s[-1]));
        if (isdigit((unsigned char)*s) || minus) {
            const char *end;
            found = take_number(s, &end, out, cap);
            s = end;
        } else {
            s++;
        }
    }
    if (!found && cap)
        out[0] = '\0';
    return found;
}

bool mx_qa_extract(const char *text, char *out, size_t cap) {
    if (cap)
        out[0] = '\0';
    if (!text || !cap)
        return false;
    const char *mark = NULL;
    for (const char *p = strstr(text, "####"); p; p = strstr(p + 4, "####"))
        mark = p;
    if (mark) { /* GSM8K: "#### 42" ends the reference answer */
        const char *s = mark + 4;
        while (*s && !isdigit((unsigned char)*s) &&
               !(*s == '-' && isdigit((unsigned char)s[1])) && *s != '\n')
            s++;
        const char *end;
        if ((isdigit((unsigned char)*s) || *s == '-') && take_number(s, &end, out, cap))
            return true;
    }
    return last_number(text, out, cap);
}

/* ---- asking the engine ---------------------------------------------------------------------- */

/* One question's job on the worker thread. */
struct ask {
    struct mx_engine *e;
    struct mx_turn turns[2];
    int n;
    struct mx_gen_settings s;
};

static void ask_job(struct mx_job *job, void *ud) {
    struct ask *a = ud;
    a->e->reply(a->e, job, a->turns, a->n, &a->s);
}

/* Runs one reply to completion, collecting its text in t. Returns the job's code (0,
 * MX_ECANCELED, an error with its message in err). */
static int ask_one(struct mx_worker *w, struct ask *a, struct mx_bytes *t,
                   const struct mx_qa_opts *o, struct mx_err *err) {
    t->n = 0;
    if (mx_bytes_add(t, "", 0) < 0)
        return mx_err_set(err, MX_ENOMEM, "eval gen: out of memory");
    if (mx_worker_start(w, ask_job, a) != 0)
        return mx_err_set(err, MX_EBUSY, "eval gen: the generation thread is busy");
    int code = 0;
    bool done = false, oom = false;
    while (!done) {
        if (o->canceled && o->canceled(o->ud))
            mx_worker_cancel(w);
        struct pollfd p = {.fd = mx_worker_wake_fd(w), .events = POLLIN};
        if (poll(&p, 1, 100) < 0 && errno != EINTR)
            break;
        struct mx_event ev;
        while (mx_worker_poll(w, &ev)) {
            if (ev.kind == MX_EV_TEXT && ev.text && !oom &&
                mx_bytes_add(t, ev.text, strlen(ev.text)) < 0) {
                oom = true;
                mx_worker_cancel(w);
            } else if (ev.kind == MX_EV_DONE) {
                code = ev.code;
                if (code < 0 && code != MX_ECANCELED)
                    mx_err_set(err, code, "%s", ev.text ? ev.text : mx_strerror(code));
                done = true;
            }
            free(ev.text);
        }
    }
    while (mx_worker_busy(w)) /* the job has posted DONE and is returning */
        poll(NULL, 0, 1);
    if (oom)
        return mx_err_set(err, MX_ENOMEM, "eval gen: out of memory");
    return done ? code : mx_err_set(err, MX_EIO, "eval gen: lost the generation thread");
}

int mx_qa_run(struct mx_engine *e, const struct mx_qa_set *set, const struct mx_gen_settings *s,
              const struct mx_qa_opts *o, struct mx_qa_totals *tot, struct mx_err *err) {
    struct mx_qa_opts none = {0};
    if (!o)
        o = &none;
    memset(tot, 0, sizeof *tot);
    if (!e || !set || set->n == 0)
        return mx_err_set(err, MX_EINVAL, "eval gen: no questions");
    size_t n = o->n > 0 && o->n < set->n ? o->n : set->n;
    char (*want)[64] = calloc(n, sizeof *want);
    if (!want)
        return mx_err_set(err, MX_ENOMEM, "eval gen: out of memory");
    for (size_t i = 0; i < n; i++) /* every reference first: a bad file fails before the model */
        if (!mx_qa_extract(set->items[i].answer, want[i], sizeof want[i])) {
            free(want);
            return mx_err_set(err, MX_EFORMAT, "question %zu: the reference answer has no "
                              "number", i + 1);
        }
    struct mx_worker *w = NULL;
    struct mx_bytes t = {0};
    int rc = mx_worker_new(&w);
    if (rc < 0) {
        free(want);
        return mx_err_set(err, rc, "eval gen: cannot start the generation thread");
    }
    tot->n_total = n;
    double t0 = mx_time_s();
    for (size_t i = 0; i < n; i++) {
        struct ask a = {.e = e, .s = *s};
        if (o->system && o->system[0])
            a.turns[a.n++] = (struct mx_turn){.role = MX_ROLE_SYSTEM, .text = o->system};
        a.turns[a.n++] = (struct mx_turn){.role = MX_ROLE_USER, .text = set->items[i].question};
        double q0 = mx_time_s();
        if ((rc = ask_one(w, &a, &t, o, err)) < 0)
            break;
        struct mx_engine_llm_stats st = {0};
        mx_engine_llm_stats(e, &st);
        char got[64];
        bool has = mx_qa_extract(t.p, got, sizeof got);
        struct mx_qa_task res = {
            .index = i, .question = set->items[i].question, .reply = t.p, .got = got,
            .want = want[i], .correct = has && strcmp(got, want[i]) == 0,
            .n_generated = st.n_generated, .seconds = mx_time_s() - q0,
        };
        tot->n_done++;
        tot->n_correct += res.correct;
        tot->n_no_number += !has;
        tot->n_prompt += st.n_prefilled;
        tot->n_generated += st.n_generated;
        tot->gen_s += st.gen_s;
        tot->seconds = mx_time_s() - t0;
        if (o->progress)
            o->progress(o->ud, &res, tot);
    }
    tot->seconds = mx_time_s() - t0;
    mx_worker_free(w);
    mx_bytes_free(&t);
    free(want);
    return rc;
}
