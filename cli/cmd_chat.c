/* cmd_chat.c - `mixel` / `mixel chat`: the full-screen chat. Parses options, picks the engine
 * and hands over to the TUI main loop (tui/loop.c). */
#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tui/app.h"
#include "cli/cmd.h"
#include "app/engine_llm.h"

static void chat_usage(FILE *f) {
    fprintf(f, "usage: mixel [chat] [-m MODEL.gguf] [--resume [ID]] [--theme NAME] [--system TEXT]\n"
               "                    [--temp T] [--top-p P] [--seed N] [-c CTX] [--db PATH]\n"
               "\n"
               "Full-screen chat. Type /help inside for commands and keys.\n"
               "  -m, --model PATH   GGUF model to chat with\n"
               "  --theme NAME       dark (default), light, high-contrast, basic16, or a file\n"
               "                     NAME.theme in $XDG_CONFIG_HOME/mixel/themes/\n"
               "  --system TEXT      system prompt\n"
               "  --resume [ID]      continue a saved session (id or title; none: the latest)\n"
               "  --db PATH          history database (default $XDG_DATA_HOME/mixel/history.db)\n"
               "  --no-history       keep this conversation in memory only\n"
               "  --graphics MODE    images as sixel, blocks (half blocks), none, or auto\n"
               "  --chat-template NAME  override the model's template (mistral-v1, mistral-v3,\n"
               "                     llama2, llama3, chatml, zephyr, gemma, phi3, ...)\n"
               "  --temp T, --top-p P, --seed N, -c CTX   sampling and context settings\n"
               "  -n, --n-predict N  longest answer in tokens (default: until the model stops)\n"
               "Environment: MIXEL_SCRIPTED_REPLY=FILE|echo answers from a file (or echoes)\n"
               "instead of a model: for testing the interface without weights; MIXEL_SCRIPTED_RATE=N\n"
               "paces it at N pieces per second.\n");
}

/* The shipped themes: next to the binary's source tree when run from a build, else installed. */
static const char *themes_dir(void) {
    static char buf[4200];
    const char *src = getenv("MX_SRCDIR");
    struct stat st;
    if (src) {
        snprintf(buf, sizeof buf, "%s/themes", src);
        if (stat(buf, &st) == 0)
            return buf;
    }
    snprintf(buf, sizeof buf, "%s/themes", MX_DATADIR);
    if (stat(buf, &st) == 0)
        return buf;
    return "themes";
}

int mx_cmd_chat(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"theme", required_argument, NULL, 'T'},
        {"system", required_argument, NULL, 'S'}, {"temp", required_argument, NULL, 't'},
        {"top-p", required_argument, NULL, 'p'}, {"seed", required_argument, NULL, 's'},
        {"ctx", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
        {"resume", optional_argument, NULL, 'r'}, {"db", required_argument, NULL, 'D'},
        {"no-history", no_argument, NULL, 'N'}, {"graphics", required_argument, NULL, 'G'},
        {"chat-template", required_argument, NULL, 'C'},
        {"n-predict", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0}};
    struct mx_app_opts o = {0};
    o.settings.temp = 0.8f;
    o.settings.top_p = 0.95f;
    o.settings.min_p = 0.05f;
    o.settings.top_k = 40;
    o.settings.repeat_penalty = 1.0f;
    o.settings.n_predict = -1;
    o.settings.seed = 0;
    const char *model = NULL, *tmpl = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:c:n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'T': o.theme = optarg; break;
        case 'S': o.system_prompt = optarg; break;
        case 't': o.settings.temp = strtof(optarg, NULL); break;
        case 'p': o.settings.top_p = strtof(optarg, NULL); break;
        case 's': o.settings.seed = strtoull(optarg, NULL, 10); break;
        case 'c': o.settings.n_ctx = atoi(optarg); break;
        case 'r':
            /* --resume, --resume=ID or --resume ID */
            if (optarg)
                o.resume = optarg;
            else if (optind < argc && argv[optind][0] != '-')
                o.resume = argv[optind++];
            else
                o.resume = "";
            break;
        case 'D': o.db_path = optarg; break;
        case 'N': o.no_history = true; break;
        case 'C': tmpl = optarg; break;
        case 'n': o.settings.n_predict = atoi(optarg); break;
        case 'G':
            if (mx_gfx_mode_parse(optarg, &o.graphics) != 0) {
                fprintf(stderr, "mixel chat: --graphics takes auto, sixel, blocks or none\n");
                return 2;
            }
            break;
        case 'h': chat_usage(stdout); return 0;
        default: chat_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mixel chat: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "mixel chat: needs a terminal (for scripts use `mixel run`)\n");
        return 2;
    }
    setlocale(LC_ALL, "");
    o.themes_dir = themes_dir();
    o.model_path = model;
    const char *scripted = getenv("MIXEL_SCRIPTED_REPLY");
    if (scripted && scripted[0]) {
        o.engine = mx_engine_scripted_new(strcmp(scripted, "echo") ? scripted : NULL);
    } else if (model) {
        struct mx_err err = {0};
        fprintf(stderr, "mixel: loading %s\n", model);
        o.engine = mx_engine_llm_new(model, &o.settings, tmpl, &err);
        if (!o.engine) {
            fprintf(stderr, "mixel chat: %s\n", mx_err_msg(&err, err.code));
            return 1;
        }
        o.load_engine = mx_engine_llm_loader;
    } else {
        o.discover = true;
        o.load_engine = mx_engine_llm_loader;
    }
    int rc = mx_app_run(&o);
    if (o.engine)
        o.engine->free(o.engine);
    return rc;
}
