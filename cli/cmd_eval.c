/* cmd_eval.c - `mixel eval`: dispatches to the quality measurements, each in cli/eval_<name>.c
 * (ppl: perplexity and KL divergence; mc: multiple-choice benchmarks; gen: generated answers with
 * exact-match scoring). The subcommands are weak (cli/cmd.h), so a build without one says so
 * instead of failing to link. */
#include <stdio.h>
#include <string.h>

#include "cli/cmd.h"
#include "cli/opts.h"

/* The subcommand table: name, function (NULL when not linked in), one line of help. */
static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} subs[] = {
    {"ppl", mx_cmd_eval_ppl,
     "perplexity as llama-perplexity computes it; KL divergence against a saved base"},
    {"mc", mx_cmd_eval_mc,
     "multiple choice by log-likelihood (HellaSwag, Winogrande, ARC, MMLU)"},
    {"gen", mx_cmd_eval_gen,
     "generated answers, exact-match scoring (GSM8K style)"},
};

#define N_SUBS (sizeof subs / sizeof subs[0])

static void usage(FILE *f) {
    fprintf(f, "usage: mixel eval ppl|mc|gen -m MODEL -f FILE [options]\n"
               "Measures a model's quality on your machine (mixel eval SUB --help for each):\n");
    for (size_t i = 0; i < N_SUBS; i++)
        fprintf(f, "  %-4s %s%s\n", subs[i].name, subs[i].help,
                subs[i].fn ? "" : " [not in this build yet]");
}

int mx_cmd_eval(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_SUBS; i++) {
        if (strcmp(subs[i].name, name) != 0)
            continue;
        if (!subs[i].fn) {
            fprintf(stderr, "mixel eval: '%s' is not in this build yet (see mixel eval --help)\n",
                    name);
            return 2;
        }
        return subs[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "mixel eval: unknown subcommand '%s' (ppl, mc or gen; see mixel eval --help)\n",
            mx_safe(name));
    return 2;
}
