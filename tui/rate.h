/* rate.h - the live tokens/s of the status bar (rate.c): a rate over a sliding window of recent
 * arrivals, smoothed, shown only once a few tokens came in. Pure (times are passed in), so a test
 * can replay any arrival pattern. */
#ifndef MX_TUI_RATE_H
#define MX_TUI_RATE_H

#include <stdbool.h>

#define MX_RATE_SAMPLES 64   /* (time, count) samples kept: at most one per MX_RATE_STEP_S */
#define MX_RATE_WINDOW_S 2.0 /* the rate is measured over (about) the last two seconds */
#define MX_RATE_STEP_S 0.05
#define MX_RATE_MIN_COUNT 8  /* nothing is shown before this many tokens arrived */
#define MX_RATE_TAU_S 0.5    /* time constant of the average shown */

struct mx_rate {
    struct {
        double t_open;  /* the first arrival it holds: it takes those of MX_RATE_STEP_S after */
        double t;       /* the latest arrival it holds */
        long n;         /* tokens arrived up to t */
    } s[MX_RATE_SAMPLES]; /* a ring; the newest at s[(n_s - 1) % MX_RATE_SAMPLES] */
    long n_s;           /* samples taken */
    long count;         /* tokens arrived so far */
    double t_first;     /* when the first token arrived (the clock starts there, not at the
                         * request: prompt processing is no part of the generation rate) */
    double shown;       /* the smoothed rate (0: not enough yet) */
    double t_shown;     /* when it was last updated */
};

/* Empties the meter (a new answer starts). */
void mx_rate_reset(struct mx_rate *r);
/* n tokens arrived at time t (seconds, non-decreasing). Returns the rate to show, 0 while too
 * few have come in. */
double mx_rate_add(struct mx_rate *r, double t, long n);

#endif
