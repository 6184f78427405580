/* cmd_chat.c - `mixel` / `mixel chat`: the full-screen chat. Parses options, picks the engine
 * and hands over to the TUI main loop (tui/loop.c). */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tui/app.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "app/config.h"
#include "app/discover.h"
#include "app/engine_llm.h"
#include "app/tools.h"
#include "net/pull.h"
#include "cli/remote.h"
#include "net/remote_images.h"

static void chat_usage(FILE *f) {
    fprintf(f, "usage: mixel [chat] [-m MODEL] [--resume [ID]] [--theme NAME] [--system TEXT]\n"
               "                    [--temp T] [--top-p P] [--seed N] [-c CTX] [--db PATH]\n"
               "                    [--allow-dir DIR] [--yes] [--no-tools]\n"
               "\n"
               "Full-screen chat. Type /help inside for commands and keys.\n"
               "  --theme NAME              dark (default), light, high-contrast, basic16, or a\n"
               "                            file NAME.theme in $XDG_CONFIG_HOME/mixel/themes/\n"
               "  --system TEXT             system prompt\n"
               "  --resume [ID]             continue a saved session (id or title; none: the\n"
               "                            latest)\n"
               "  --db PATH                 history database (default\n"
               "                            $XDG_DATA_HOME/mixel/history.db)\n"
               "  --no-history              keep this conversation in memory only\n"
               "  --graphics MODE           images as sixel, blocks (half blocks), none, or auto\n"
               "  --sd-model PATH           the image checkpoint /image uses in sessions that\n"
               "                            chose none with -d (default: the first found)\n"
               "  --chat-template NAME      override the model's template (mistral-v1,\n"
               "                            mistral-v3, llama2, llama3, chatml, zephyr, gemma,\n"
               "                            phi3, qwen3, granite, tulu, ...)\n"
               "  --list-models             with --remote: print the server's models and exit\n"
               "  --remote-images URL       /image and /img2img drawn by an AUTOMATIC1111-\n"
               "                            compatible server (e.g. http://gpu-box:7860)\n"
               "  --allow-dir DIR           let the model read text files in DIR (read_file;\n"
               "                            more folders: tools.allow_dirs in config.json)\n"
               "  --yes                     run the model's tool calls without asking (default:\n"
               "                            each call waits for y / n / a)\n"
               "  --no-tools                offer the model no tools (generate_image, read_file\n"
               "                            and the config's commands)\n");
    mx_cli_common_help(f, MX_CLI_CHAT);
    fprintf(f, "Tools (README, man mixel): generate_image, read_file in allowed folders and\n"
               "the commands under \"tools\" in $XDG_CONFIG_HOME/mixel/config.json; each call\n"
               "waits for y / n / a(lways this session) unless --yes.\n"
               "Environment: MIXEL_SCRIPTED_REPLY=FILE|echo answers from a file (or echoes)\n"
               "instead of a model: for testing the interface without weights (FILE1:FILE2: one\n"
               "file per round of tool calls); MIXEL_SCRIPTED_RATE=N paces it at N pieces per\n"
               "second.\n");
}

/* Whether the chat has something to draw with: --sd-model, --remote-images, or an SD 1.x/2.x
 * checkpoint where A1111, ComfyUI and the hub keep them (what /image would pick). Only then is
 * generate_image offered: a tool that can only fail teaches the model nothing and costs every
 * prompt its description. */
static bool image_model_known(const char *sd_model, const char *images_url) {
    if ((sd_model && *sd_model) || (images_url && *images_url))
        return true;
    char cwd[4096];
    char *found = mx_discover_sd_default(getenv("HOME"), getcwd(cwd, sizeof cwd));
    free(found);
    return found != NULL;
}

int mx_cmd_chat(int argc, char **argv) {
    /* `mixel --bogus` reaches here with argv[0] the binary's path: errors then name `mixel` */
    const bool named = argc > 0 && !strcmp(argv[0], "chat");
    const char *who = named ? "mixel chat" : "mixel";
    struct mx_app_opts o = {0};
    struct mx_cli_opts co;
    mx_cli_opts_init(&co);
    const char *tmpl = NULL;
    const char *graphics = NULL;
    bool list_models = false;
    const char *images_url = NULL;
    const char *allow_dir = NULL;
    bool no_tools = false;
    const struct mx_cli_extra extra[] = {
        {NULL, "--remote-images", MX_X_STR, &images_url, 0, 0},
        {NULL, "--list-models", MX_X_FLAG, &list_models, 0, 0},
        {NULL, "--no-history", MX_X_FLAG, &o.no_history, 0, 0},
        {NULL, "--resume", MX_X_OPTSTR, &o.resume, 0, 0}, /* --resume, --resume ID, =ID */
        {NULL, "--theme", MX_X_STR, &o.theme, 0, 0},
        {NULL, "--system", MX_X_STR, &o.system_prompt, 0, 0},
        {NULL, "--db", MX_X_STR, &o.db_path, 0, 0},
        {NULL, "--chat-template", MX_X_STR, &tmpl, 0, 0},
        {NULL, "--graphics", MX_X_STR, &graphics, 0, 0},
        {NULL, "--sd-model", MX_X_STR, &o.sd_model, 0, 0},
        {NULL, "--allow-dir", MX_X_STR, &allow_dir, 0, 0},
        {NULL, "--yes", MX_X_FLAG, &o.tools_yes, 0, 0},
        {NULL, "--no-tools", MX_X_FLAG, &no_tools, 0, 0},
    };
    int pr = mx_cli_parse(named ? "chat" : "", MX_CLI_CHAT, argc, argv, &co, extra,
                          sizeof extra / sizeof extra[0], chat_usage);
    if (pr != 0)
        return pr > 0 ? 0 : 2;
    if (graphics && mx_gfx_mode_parse(graphics, &o.graphics) != 0) {
        fprintf(stderr, "%s: --graphics: '%s' is not one of auto, sixel, blocks, none\n", who,
                mx_safe(graphics));
        return 2;
    }
    if (mx_cli_grammar_setup("chat", &co))
        return 1;
    o.settings = co.s;
    o.seed_fixed = co.seed_set;
    const char *model = co.model;
    struct mx_remote_opts ro;
    int remote = mx_cli_remote_begin("chat", &co, &ro);
    if (remote < 0)
        return 2;
    if (remote && (co.s.grammar || co.s.grammar_text)) {
        /* the grammar stage runs in the local sampler; a server samples on its own */
        mx_cli_err("chat", "--grammar, --json-schema and --json need a local model, not "
                   "--remote");
        mx_cli_remote_end();
        return 2;
    }
    if (list_models) {
        int st = 2;
        if (remote)
            st = mx_cli_remote_list("chat", &ro, stdout);
        else
            mx_cli_err("chat", "--list-models lists a server's models: give --remote URL");
        mx_cli_remote_end();
        return st;
    }
    if (no_tools && (allow_dir || o.tools_yes)) {
        fprintf(stderr, "%s: --no-tools: there are no tool calls for %s to act on\n", who,
                allow_dir ? "--allow-dir" : "--yes");
        mx_cli_remote_end();
        return 2;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        mx_cli_err("chat", "needs a terminal (for scripts use `mixel run`)");
        return 2;
    }
    if (!no_tools) { /* the tools: config.json's and the built-ins (app/tools.h) */
        struct mx_config *cfg = NULL;
        struct mx_err err = {0};
        int rc = mx_config_load(&cfg, NULL, &err);
        if (rc == 0)
            rc = mx_tools_new(&o.tools, cfg, &allow_dir, allow_dir ? 1 : 0,
                              image_model_known(o.sd_model, images_url), &err);
        mx_config_free(cfg);
        if (rc != 0) {
            mx_cli_err("chat", "%s", mx_err_msg(&err, rc));
            mx_cli_remote_end();
            return 2;
        }
    }
    if (model && mx_cli_resolve_model("chat", &co)) {
        mx_tools_free(o.tools);
        return 1;
    }
    model = co.model;
    setlocale(LC_ALL, "");
    o.model_path = model;
    const char *scripted = getenv("MIXEL_SCRIPTED_REPLY");
    if (images_url) {
        struct mx_remote_opts io;
        struct mx_err err = {0};
        if (mx_cli_remote_images_opts("chat", images_url, &io) < 0) {
            mx_tools_free(o.tools);
            return 2;
        }
        if (!(o.remote_images = mx_remote_images_new(&io, &err))) {
            mx_cli_err("chat", "--remote-images: %s", mx_err_msg(&err, err.code));
            mx_cli_remote_end();
            mx_tools_free(o.tools);
            return 2;
        }
    }
    static char remote_id[700]; /* the session's model path: "remote:URL#MODEL" */
    if (scripted && scripted[0]) {
        o.engine = mx_engine_scripted_new(strcmp(scripted, "echo") ? scripted : NULL);
    } else if (remote) {
        struct mx_err err = {0};
        o.engine = mx_remote_engine_new(&ro, &err);
        if (!o.engine) {
            mx_cli_err("chat", "%s", mx_err_msg(&err, err.code));
            mx_cli_remote_end();
            if (o.remote_images)
                o.remote_images->free(o.remote_images);
            mx_tools_free(o.tools);
            return 1;
        }
        mx_remote_engine_id(o.engine, remote_id, sizeof remote_id);
        o.model_path = remote_id;
        o.load_engine = mx_cli_remote_loader;
    } else if (model) {
        struct mx_err err = {0};
        fprintf(stderr, "mixel: loading %s\n", mx_safe(model));
        o.engine = mx_engine_llm_new(model, &o.settings, tmpl, &err);
        if (!o.engine) {
            mx_cli_err("chat", "%s", mx_err_msg(&err, err.code));
            if (o.remote_images)
                o.remote_images->free(o.remote_images);
            mx_tools_free(o.tools);
            return 1;
        }
        o.load_engine = mx_cli_remote_loader; /* GGUF paths and remote ones */
    } else {
        o.discover = true;
        o.load_engine = mx_cli_remote_loader; /* GGUF paths and remote ones */
    }
    o.settings.on_load = NULL; /* stderr belongs to curses from here on: the TUI shows loads */
    o.settings.on_load_ud = NULL;
    o.list_models = mx_cli_remote_models; /* /model with no argument: the server's models */
    o.fetch = mx_pull_fetch; /* the first-run screen's downloads (net/pull.h) */
    int st = mx_app_run(&o); /* it frees the engine (app.h) */
    mx_cli_remote_end();
    return st;
}
