/* rate.c - the live tokens/s (rate.h). Tokens reach the UI in bursts (the worker's queue is
 * drained once per wake-up, a stop-string holdback releases several at once), and the first ones
 * follow the prompt's processing: a rate from the start of the request, or between two bursts,
 * jumps by an order of magnitude (175 -> 1228 -> 7620 tok/s for one model). So the clock starts
 * at the first token, the rate is taken over the last MX_RATE_WINDOW_S of arrivals, and what is
 * shown moves towards it by an exponential average over time (MX_RATE_TAU_S); nothing shows
 * before MX_RATE_MIN_COUNT tokens. */
#include "tui/rate.h"

#include <math.h>
#include <string.h>

void mx_rate_reset(struct mx_rate *r) {
    memset(r, 0, sizeof *r);
}

double mx_rate_add(struct mx_rate *r, double t, long n) {
    if (n <= 0)
        return r->shown;
    if (r->count == 0)
        r->t_first = t;
    r->count += n;
    /* a sample per MX_RATE_STEP_S at most: a burst's events land in one */
    long last = r->n_s - 1;
    if (r->n_s > 1 && t - r->s[last % MX_RATE_SAMPLES].t_open < MX_RATE_STEP_S) {
        r->s[last % MX_RATE_SAMPLES].t = t; /* (time, count) of the latest arrival */
        r->s[last % MX_RATE_SAMPLES].n = r->count;
    } else {
        r->s[r->n_s % MX_RATE_SAMPLES].t_open = t;
        r->s[r->n_s % MX_RATE_SAMPLES].t = t;
        r->s[r->n_s % MX_RATE_SAMPLES].n = r->count;
        r->n_s++;
    }
    /* the base: the oldest earlier sample inside the window, else (after a pause) the one just
     * before the newest; the tokens that came after it arrived in t - its time */
    long newest = r->n_s - 1, oldest = r->n_s > MX_RATE_SAMPLES ? r->n_s - MX_RATE_SAMPLES : 0;
    if (newest <= oldest)
        return r->shown;
    long base = newest - 1;
    for (long i = oldest; i < newest; i++)
        if (t - r->s[i % MX_RATE_SAMPLES].t <= MX_RATE_WINDOW_S) {
            base = i;
            break;
        }
    double t0 = r->s[base % MX_RATE_SAMPLES].t;
    long n0 = r->s[base % MX_RATE_SAMPLES].n;
    double dt = t - t0;
    if (r->count < MX_RATE_MIN_COUNT || dt < 0.25 || r->count <= n0)
        return r->shown;
    double rate = (double)(r->count - n0) / dt;
    /* an average over time (not per event): a burst of tokens at one instant moves it once */
    double w = r->shown > 0 ? 1 - exp(-(t - r->t_shown) / MX_RATE_TAU_S) : 1;
    r->shown += w * (rate - r->shown);
    r->t_shown = t;
    return r->shown;
}
