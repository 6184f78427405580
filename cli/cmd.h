/* cmd.h - the subcommands of the mixel binary. Each lives in cli/cmd_<name>.c and is declared
 * weak here, so the table in main.c lists every command of DESIGN.md and --help can say which are
 * in this build. A command returns the process exit status (0 ok, 1 runtime error, 2 usage). */
#ifndef MX_CMD_H
#define MX_CMD_H

#define MX_CMD_LIST(X)                                                                    \
    X(chat,       "full-screen chat (the default with no command; --remote URL: a server)") \
    X(run,        "one completion to stdout: run -m M.gguf (or --remote URL) -p TEXT")    \
    X(image,      "one image: image -d SD.safetensors -p TEXT -o out.png [--show]")       \
    X(show,       "print a PNG/JPEG in the terminal as sixel or half blocks")             \
    X(sessions,   "list, show, export, search or remove saved sessions")                  \
    X(list,       "the models found on this machine, by the name -m takes (alias: models)") \
    X(bench,      "tokens/s, GB/s against measured bandwidth, s/step")                    \
    X(doctor,     "what was found: CPU features, BLAS, CUDA, terminal graphics, paths")   \
    X(inspect,    "describe a GGUF or safetensors file")                                  \
    X(tokenize,   "text -> token ids: tokenize -m MODEL TEXT")                            \
    X(detokenize, "token ids -> text: detokenize -m MODEL IDS...")                        \
    X(logits,     "logits as JSON for comparisons with a peer")                           \
    X(quantize,   "convert a GGUF: quantize IN.gguf OUT.gguf Q4_K_M (llama-quantize)")    \
    X(eval,       "quality: eval ppl|mc|gen -m MODEL -f FILE (perplexity, KL, benchmarks)") \
    X(serve,      "OpenAI-compatible and A1111 sdapi HTTP server: serve -m M [-d SD]")    \
    X(pull,       "download a model: pull hf://OWNER/REPO/FILE.gguf (resumes, verifies)")

#define MX_CMD_DECL(name, help) int mx_cmd_##name(int argc, char **argv) __attribute__((weak));
MX_CMD_LIST(MX_CMD_DECL)
#undef MX_CMD_DECL

/* `mixel eval`'s subcommands (cli/cmd_eval.c dispatches; each in its own cli/eval_<name>.c),
 * weak for the same reason as the commands. */
int mx_cmd_eval_ppl(int argc, char **argv) __attribute__((weak));
int mx_cmd_eval_mc(int argc, char **argv) __attribute__((weak));
int mx_cmd_eval_gen(int argc, char **argv) __attribute__((weak));

#endif
